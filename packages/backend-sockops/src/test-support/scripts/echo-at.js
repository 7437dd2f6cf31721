// Burst client: waits until wall-clock time `startAt` (epoch ms, so many pods connect in the
// same moment), sends `message` to host:port, half-closes, prints the reply as one JSON line.
// argv: host port message startAt
'use strict';
const net = require('node:net');
const [host, port, message, startAt] = process.argv.slice(2);
const done = (ev) => {
  process.stdout.write(JSON.stringify(ev) + '\n');
  process.exit(0);
};
setTimeout(() => {
  const c = net.connect({ host, port: Number(port) }, () => c.end(message));
  let reply = '';
  c.on('data', (d) => (reply += d.toString()));
  c.on('end', () => done({ reply }));
  c.on('error', (e) => done({ error: e.code || e.message }));
  setTimeout(() => done({ error: 'timeout' }), 10000).unref();
}, Math.max(0, Number(startAt) - Date.now()));
