// Test echo server: replies "<name>|<local addr:port>|<first chunk>" to every connection, or
// with argv[3]=sink counts bytes until EOF and replies with the count. argv: name port mode
'use strict';
const net = require('node:net');
const [name, port, mode] = process.argv.slice(2);
const log = (ev) => process.stdout.write(JSON.stringify(ev) + '\n');
function serve(host, family) {
  return new Promise((resolve) => {
    net
      .createServer({ allowHalfOpen: true }, (c) => {
        c.on('error', () => c.destroy());
        log({ event: 'conn', local: `${c.localAddress}:${c.localPort}`, peer: `${c.remoteAddress}:${c.remotePort}` });
        if (mode === 'sink') {
          let n = 0;
          c.on('data', (d) => (n += d.length));
          c.on('end', () => c.end(`${name}|${n}\n`));
          return;
        }
        c.once('data', (d) => c.end(`${name}|${c.localAddress}:${c.localPort}|${d.toString().trim()}\n`));
      })
      .listen({ host, port: Number(port), ipv6Only: family === 6 }, resolve);
  });
}
Promise.all([serve('0.0.0.0', 4), serve('::', 6)]).then(() => log({ event: 'ready' }));
