// Bulk-transfer sink: per connection, leaves the data unread (a receiver lagging behind its sender)
// until the file `resumeFile` exists (the sender creates it once it is blocked or has written
// everything) or `maxPauseMs` passed, then reads to EOF, hashing, and replies one JSON line
// {bytes, sha256}. argv: port resumeFile maxPauseMs
'use strict';
const fs = require('node:fs');
const net = require('node:net');
const crypto = require('node:crypto');
const [port, resumeFile, maxPauseMs] = process.argv.slice(2);
const log = (ev) => process.stdout.write(JSON.stringify(ev) + '\n');
net
  .createServer({ allowHalfOpen: true, pauseOnConnect: true }, (c) => {
    const hash = crypto.createHash('sha256');
    let bytes = 0;
    c.on('error', (e) => log({ event: 'error', error: e.code || e.message, bytes }));
    c.on('data', (d) => {
      bytes += d.length;
      hash.update(d);
    });
    c.on('end', () => {
      const digest = hash.digest('hex');
      log({ event: 'done', bytes, sha256: digest });
      c.end(JSON.stringify({ bytes, sha256: digest }) + '\n');
    });
    const deadline = Date.now() + Number(maxPauseMs);
    const poll = setInterval(() => {
      const why = fs.existsSync(resumeFile) ? fs.readFileSync(resumeFile, 'utf8') : Date.now() > deadline ? 'max pause' : null;
      if (why === null) return;
      clearInterval(poll);
      log({ event: 'resume', why, bytes });
      c.resume();
    }, 20);
  })
  .listen({ host: '0.0.0.0', port: Number(port) }, () => log({ event: 'ready' }));
