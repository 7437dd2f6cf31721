// Bulk-transfer sender: sends `bytes` bytes of pseudo-random data (1 MiB blocks, each stamped with
// its index so a lost, reordered or repeated block changes the hash) to host:port, half-closes,
// and prints one JSON line: {sent, sha256, reply, blockedAt} or {error, sent}. It creates
// `resumeFile` (for bulk-sink.js) as soon as it is blocked — no progress for 500 ms, i.e. the
// path pushes back — or has handed everything to the kernel (nothing pushed back).
// A write error (EPIPE, ENOMEM, ECONNRESET) is reported, never retried.
// argv: host port bytes resumeFile timeoutMs
'use strict';
const fs = require('node:fs');
const net = require('node:net');
const crypto = require('node:crypto');
const [host, port, bytes, resumeFile, timeoutMs] = process.argv.slice(2);
const total = Number(bytes);
const BLOCK = 1 << 20;
const STALL_MS = 500;
const base = crypto.randomBytes(BLOCK);
const hash = crypto.createHash('sha256');
let sent = 0;
let blockedAt = null;
let done = false;
const signal = (why) => {
  if (!fs.existsSync(resumeFile)) fs.writeFileSync(resumeFile, why);
};
const finish = (out) => {
  if (done) return;
  done = true;
  process.stdout.write(JSON.stringify({ ...out, sent, blockedAt }) + '\n');
  process.exit(0);
};
const c = net.connect({ host, port: Number(port), allowHalfOpen: true }, () => {
  let index = 0;
  const pump = () => {
    while (sent < total) {
      const n = Math.min(BLOCK, total - sent);
      const block = Buffer.from(base.subarray(0, n));
      block.writeUInt32BE(index++ >>> 0, 0);
      hash.update(block);
      sent += n;
      if (!c.write(block)) {
        const stall = setTimeout(() => {
          if (blockedAt === null) blockedAt = sent;
          signal(`blocked after ${sent} bytes`);
        }, STALL_MS);
        c.once('drain', () => {
          clearTimeout(stall);
          pump();
        });
        return;
      }
    }
    c.end(() => signal(`all ${sent} bytes written`));
  };
  pump();
});
let reply = '';
c.on('data', (d) => (reply += d.toString()));
c.on('end', () => {
  try {
    finish({ sha256: hash.digest('hex'), reply: JSON.parse(reply) });
  } catch {
    finish({ error: `bad reply ${JSON.stringify(reply.slice(0, 200))}` });
  }
});
c.on('error', (e) => finish({ error: e.code || e.message }));
setTimeout(() => finish({ error: 'timeout' }), Number(timeoutMs)).unref();
