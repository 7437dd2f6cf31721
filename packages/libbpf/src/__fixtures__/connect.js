// Client for the sk_lookup test: connects to host:port and prints what the listener said,
// or the error code (ECONNREFUSED when nothing takes the connection). Bounded by a timeout.
const net = require('node:net');

const [host, port] = [process.argv[2], Number(process.argv[3])];
let reply = '';
const done = (result) => {
  console.log(JSON.stringify(result));
  process.exit(0);
};
const sock = net.connect({ host, port });
sock.setTimeout(5000, () => done({ ok: false, code: 'TIMEOUT' }));
sock.on('data', (d) => (reply += d.toString()));
sock.on('end', () => done({ ok: true, reply: JSON.parse(reply) }));
sock.on('error', (err) => done({ ok: false, code: err.code }));
