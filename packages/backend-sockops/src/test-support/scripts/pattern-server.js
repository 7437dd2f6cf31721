// Receiver of the bulk-safety suite (splice-safety.e2e.test.ts). Per connection: a JSON header line
// {mode, pauseMs, slowMs, rrSize, replyBytes}, then a stream where byte i == i mod 251, checked as
// it arrives. mode 'sink': read (after pauseMs unread; slowMs between 64 KiB reads); 'rr': answer
// each rrSize-byte message with rrSize bytes of the server's own pattern stream; 'bidi': send
// replyBytes pattern bytes while reading. On EOF prints one JSON line {id, mode, bytes, bad, error?}
// (bad: offset of the first wrong byte, or null) and ends its side. argv: port
'use strict';
const net = require('node:net');
const { check, pattern, writeAll } = require('./pattern');
const [port] = process.argv.slice(2);
const log = (ev) => process.stdout.write(JSON.stringify(ev) + '\n');
let nextId = 0;
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
    // bidi: our side ends once our stream is written and theirs has ended.
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
      if (cfg.mode === 'bidi') writeAll(c, cfg.replyBytes, 64 << 10, () => finishOut());
      if (cfg.pauseMs > 0) {
        c.pause();
        setTimeout(() => c.resume(), cfg.pauseMs);
      }
      if (rest.length > 0) onBody(rest);
    });
    c.on('error', (e) => (error = e.code || e.message));
    c.on('end', () => {
      log({ id, mode: cfg && cfg.mode, bytes, bad, error });
      inDone = true;
      if (!cfg || cfg.mode !== 'bidi' || outDone) c.end();
    });
    c.on('close', () => {
      if (error) log({ id, mode: cfg && cfg.mode, bytes, bad, error, closed: true });
    });
  })
  .listen({ host: '0.0.0.0', port: Number(port) }, () => log({ event: 'ready' }));
