// The receiving app of the splice suites (backend-sockops splice-safety, backend-tc splice), run in
// a testbed pod. argv: port [host] (default '::', dual-stack; '0.0.0.0' for IPv4 only).
// Per connection a JSON header line {mode, pauseMs, slowMs, rrSize, replyBytes, pauseFile,
// closeMs}, then a pattern stream (pattern.js) checked as it arrives:
//   'sink'  reads; unread for pauseMs first (with pauseFile: until that file exists, at most
//           pauseMs, so the test resumes it), slowMs between reads;
//   'rr'    answers every rrSize bytes with rrSize bytes of its own pattern stream;
//   'bidi'  sends replyBytes pattern bytes while reading; ends its side once both are done;
//   'short' answers "ok\n" and ends (one short connection, not logged);
//   'drop'  never reads and closes after closeMs with everything unread (TCP would reset the sender).
// Prints {event:'ready'} when listening and, per connection at its EOF, {id, mode, bytes, bad,
// error?} (bad: offset of the first wrong byte, or null); an error after that adds a line with
// closed: true.
'use strict';
const fs = require('node:fs');
const net = require('node:net');
const { check, pattern, writeAll } = require('./pattern');

const [port, host = '::'] = process.argv.slice(2);
const log = (ev) => process.stdout.write(JSON.stringify(ev) + '\n');
let nextId = 0;

function pauseAtStart(c, cfg) {
  if (cfg.pauseFile) {
    c.pause();
    const until = Date.now() + cfg.pauseMs;
    const poll = () => (fs.existsSync(cfg.pauseFile) || Date.now() >= until ? c.resume() : setTimeout(poll, 10));
    poll();
  } else if (cfg.pauseMs > 0) {
    c.pause();
    setTimeout(() => c.resume(), cfg.pauseMs);
  }
}

net
  .createServer({ allowHalfOpen: true }, (c) => {
    const id = nextId++;
    let head = Buffer.alloc(0);
    let cfg = null;
    let bytes = 0;
    let bad = null;
    let rrPending = 0;
    let sentOut = 0;
    let error;
    let outDone = false;
    let inDone = false;
    const finishOut = () => {
      outDone = true;
      if (inDone) c.end();
    };
    const onBody = (d) => {
      const b = check(d, bytes);
      if (b !== null && bad === null) bad = b;
      bytes += d.length;
      if (cfg.mode === 'rr') {
        rrPending += d.length;
        while (rrPending >= cfg.rrSize) {
          rrPending -= cfg.rrSize;
          c.write(pattern(sentOut, cfg.rrSize));
          sentOut += cfg.rrSize;
        }
      }
      if (cfg.slowMs > 0) {
        c.pause();
        setTimeout(() => c.resume(), cfg.slowMs);
      }
    };
    c.on('data', (d) => {
      if (cfg) return onBody(d);
      head = Buffer.concat([head, d]);
      const nl = head.indexOf(10);
      if (nl < 0) return;
      cfg = JSON.parse(head.subarray(0, nl).toString());
      const rest = head.subarray(nl + 1);
      if (cfg.mode === 'short') return c.end('ok\n');
      if (cfg.mode === 'drop') {
        c.pause();
        setTimeout(() => {
          log({ id, mode: 'drop', bytes: 0, bad: null });
          c.destroy();
        }, cfg.closeMs);
        return;
      }
      if (cfg.mode === 'bidi') writeAll(c, cfg.replyBytes, 64 << 10, finishOut);
      pauseAtStart(c, cfg);
      if (rest.length > 0) onBody(rest);
    });
    c.on('error', (e) => (error = e.code || e.message));
    c.on('end', () => {
      inDone = true;
      if (cfg && cfg.mode !== 'short') log({ id, mode: cfg.mode, bytes, bad, error });
      if (!cfg || cfg.mode !== 'bidi' || outDone) c.end();
    });
    c.on('close', () => {
      if (error) log({ id, mode: cfg && cfg.mode, bytes, bad, error, closed: true });
    });
  })
  .listen({ host, port: Number(port), ...(host === '::' ? { ipv6Only: false } : {}) }, () => log({ event: 'ready' }));
