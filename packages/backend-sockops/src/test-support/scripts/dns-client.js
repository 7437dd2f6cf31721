// Test DNS-ish client: one query to host:port, unconnected (sendto), connected UDP (as glibc's
// resolver does) or TCP; prints the reply, the address it came from and (connected UDP) the
// socket's peer as one JSON line.
// argv: host port mode(sendto|connect|tcp)
'use strict';
const dgram = require('node:dgram');
const net = require('node:net');
const [host, port, mode] = process.argv.slice(2);
const done = (ev) => {
  process.stdout.write(JSON.stringify(ev) + '\n');
  process.exit(0);
};
setTimeout(() => done({ error: 'timeout' }), 5000).unref();
const query = `q-${process.pid}`;
if (mode === 'tcp') {
  const c = net.connect({ host, port: Number(port) }, () => c.write(query));
  let reply = '';
  c.on('data', (d) => (reply += d.toString()));
  c.on('end', () => done({ reply, from: `${c.remoteAddress}:${c.remotePort}`, query }));
  c.on('error', (e) => done({ error: e.code || e.message }));
} else {
  const s = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
  s.on('message', (msg, rinfo) => {
    const ev = { reply: msg.toString(), from: `${rinfo.address}:${rinfo.port}`, query };
    // A connected socket also has a peer (getpeername), which should be the server asked too.
    if (mode === 'connect') {
      const peer = s.remoteAddress();
      ev.peer = `${peer.address}:${peer.port}`;
    }
    done(ev);
  });
  s.on('error', (e) => done({ error: e.code || e.message }));
  if (mode === 'connect') s.connect(Number(port), host, () => s.send(query));
  else s.send(query, Number(port), host);
}
