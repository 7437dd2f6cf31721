// Test client: connects to host:port (optionally from a fixed local port), sends a payload of
// `bytes` bytes (or the word "hello"), prints one JSON line with the reply and both ends.
// argv: host port [bytes] [localPort]
'use strict';
const net = require('node:net');
const [host, port, bytes, localPort] = process.argv.slice(2);
const opts = { host, port: Number(port), allowHalfOpen: true };
if (localPort) opts.localPort = Number(localPort);
const c = net.connect(opts, () => {
  const remote = `${c.remoteAddress}:${c.remotePort}`;
  const local = `${c.localAddress}:${c.localPort}`;
  let reply = '';
  c.on('data', (d) => (reply += d.toString()));
  c.on('end', () => {
    process.stdout.write(JSON.stringify({ reply: reply.trim(), remote, local }) + '\n');
    process.exit(0);
  });
  if (bytes && Number(bytes) > 0) {
    const chunk = Buffer.alloc(64 * 1024, 120);
    let left = Number(bytes);
    const pump = () => {
      while (left > 0) {
        const n = Math.min(left, chunk.length);
        left -= n;
        if (!c.write(chunk.subarray(0, n))) return void c.once('drain', pump);
      }
      c.end();
    };
    pump();
  } else c.write('hello\n');
});
c.on('error', (e) => {
  process.stdout.write(JSON.stringify({ error: e.code || e.message }) + '\n');
  process.exit(0);
});
setTimeout(() => {
  process.stdout.write(JSON.stringify({ error: 'timeout' }) + '\n');
  process.exit(0);
}, 10000).unref();
