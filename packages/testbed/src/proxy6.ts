// The IPv6 sidecar stand-in. HAProxy only asks SO_ORIGINAL_DST for IPv4, so for IPv6 this small
// Node proxy asks IP6T_SO_ORIGINAL_DST (through @shunt/libbpf) on each accepted socket, as Envoy
// does, connects there and logs in the same format as HAProxy. It runs as `node -e` in the pod.
// A listener with family 4 serves IPv4 the same way (SO_ORIGINAL_DST; TestbedOptions.ipv4Proxy
// 'node'): libuv reads until read() returns 0 and does not take EPOLLRDHUP as end of stream,
// unlike HAProxy 2.6's short-read heuristic (packages/backend-sockops/README.md, Splicing).

export const PROXY6_SOURCE = String.raw`
'use strict';
const net = require('node:net');
const { originalDst } = require(process.env.SHUNT_LIBBPF_MAIN);
const listeners = JSON.parse(process.env.SHUNT_PROXY6_LISTENERS);
const ep = (a, p) => (a ? '[' + a + ']:' + p : '-');
let ready = 0;
for (const l of listeners) {
  const family = l.family === 4 ? 4 : 6;
  const server = net.createServer({ allowHalfOpen: true, noDelay: true }, (client) => {
    const at = Date.now() / 1000;
    const fields = { listener: l.name, client: ep(client.remoteAddress, client.remotePort), dst: '-', upstream: '-', src: '-' };
    let dst;
    try {
      dst = originalDst(client._handle.fd, family);
    } catch (e) {
      process.stderr.write('proxy6: no original destination for ' + fields.client + ': ' + e.message + '\n');
      client.destroy();
      return;
    }
    fields.dst = ep(dst.address, dst.port);
    const upstream = net.connect({ host: dst.address, port: dst.port, family, allowHalfOpen: true, noDelay: true, ...(l.source ? { localAddress: l.source } : {}) });
    let term = '--';
    let open = 2;
    const closed = () => {
      if (--open > 0) return;
      process.stdout.write('shunt-proxy proxy=' + (family === 4 ? 'node4' : 'proxy6') + ' listener=' + fields.listener + ' client=' + fields.client + ' dst=' + fields.dst +
        ' upstream=' + fields.upstream + ' src=' + fields.src + ' up=' + client.bytesRead + ' down=' + client.bytesWritten +
        ' at=' + at.toFixed(3) + ' term=' + term + '\n');
    };
    upstream.on('connect', () => {
      fields.upstream = ep(upstream.remoteAddress, upstream.remotePort);
      fields.src = ep(upstream.localAddress, upstream.localPort);
    });
    client.pipe(upstream);
    upstream.pipe(client);
    client.on('error', () => { term = 'CD'; upstream.destroy(); });
    upstream.on('error', () => { term = 'SC'; client.destroy(); });
    client.on('close', closed);
    upstream.on('close', closed);
  });
  server.on('error', (e) => { process.stderr.write('proxy6: listen ' + l.port + ': ' + e.message + '\n'); process.exit(1); });
  server.listen(family === 4 ? { host: '0.0.0.0', port: l.port } : { host: '::', port: l.port, ipv6Only: true }, () => {
    if (++ready === listeners.length) process.stderr.write('proxy6 ready\n');
  });
}
process.on('SIGTERM', () => process.exit(0));
`;
