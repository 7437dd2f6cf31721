// Test DNS-ish responder: answers every UDP datagram (IPv4 and IPv6) and every TCP connection
// on `port` with "<name>|<query>", and logs who asked. argv: name port
'use strict';
const dgram = require('node:dgram');
const net = require('node:net');
const [name, port] = process.argv.slice(2);
const log = (ev) => process.stdout.write(JSON.stringify(ev) + '\n');
const udp = (type) =>
  new Promise((resolve) => {
    const s = dgram.createSocket({ type, ipv6Only: type === 'udp6' });
    s.on('message', (msg, rinfo) => {
      log({ event: 'query', proto: type, from: `${rinfo.address}:${rinfo.port}`, query: msg.toString() });
      s.send(`${name}|${msg.toString()}`, rinfo.port, rinfo.address);
    });
    s.bind(Number(port), type === 'udp6' ? '::' : '0.0.0.0', resolve);
  });
const tcp = (host, ipv6Only) =>
  new Promise((resolve) => {
    net
      .createServer((c) => {
        c.on('error', () => c.destroy());
        c.once('data', (d) => c.end(`${name}|${d.toString()}`));
      })
      .listen({ host, port: Number(port), ipv6Only }, resolve);
  });
Promise.all([udp('udp4'), udp('udp6'), tcp('0.0.0.0', false), tcp('::', true)]).then(() => log({ event: 'ready' }));
