// Test stand-in for the sidecar proxy (runs as the proxy uid): accepts on the outbound and
// inbound ports, asks the kernel for SO_ORIGINAL_DST like Envoy does, logs it as a JSON line,
// and relays to the original destination. argv: outPort inPort
'use strict';
const net = require('node:net');
const path = require('node:path');
const { originalDst } = require(path.resolve(__dirname, '../../../../libbpf/dist/index.js'));

const [outPort, inPort] = process.argv.slice(2).map(Number);
const log = (ev) => process.stdout.write(JSON.stringify(ev) + '\n');

function serve(host, port, family) {
  return new Promise((resolve) => {
    const srv = net.createServer({ allowHalfOpen: true }, (c) => {
      let orig = null;
      let err = null;
      try {
        orig = originalDst(c._handle.fd, family);
      } catch (e) {
        err = e.code || String(e.message);
      }
      log({ event: 'accept', listener: port, family, orig, err, local: `${c.localAddress}:${c.localPort}`, peer: `${c.remoteAddress}:${c.remotePort}` });
      c.on('error', () => c.destroy());
      if (!orig) return void c.end('NOORIG\n');
      const up = net.connect({ host: orig.address, port: orig.port, allowHalfOpen: true });
      up.on('error', () => c.destroy());
      c.pipe(up);
      up.pipe(c);
    });
    srv.listen({ host, port, ipv6Only: family === 6 }, resolve);
  });
}

Promise.all([serve('0.0.0.0', outPort, 4), serve('::', outPort, 6), serve('0.0.0.0', inPort, 4), serve('::', inPort, 6)]).then(() =>
  log({ event: 'ready' }),
);
