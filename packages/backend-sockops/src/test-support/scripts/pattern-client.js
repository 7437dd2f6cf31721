// Sender of the bulk-safety suite (splice-safety.e2e.test.ts): runs every flow of a phase at once
// against host:port and prints one JSON line {flows: [...]}. Per flow: header line for
// @shunt/testbed's pattern-server.js, then `bytes` pattern bytes in `writeSize` writes (optionally in bursts), and
// for 'rr' rounds of rrSize-byte request/response, for 'bidi' the server's stream checked too.
// A flow reports {sent, error?, maxStallMs, stallAt (bytes written when the longest wait began),
// received, bad}. Every error is reported, never retried. argv: host port phaseJson timeoutMs
'use strict';
const net = require('node:net');
const { check, pattern, writeAll } = require('@shunt/testbed/scripts/pattern');
const [host, port, phaseJson, timeoutMs] = process.argv.slice(2);
const phase = JSON.parse(phaseJson);

function runFlow(f) {
  return new Promise((resolve) => {
    const r = { sent: 0, maxStallMs: 0, stallAt: null, received: 0, bad: null };
    let finished = false;
    const finish = (extra) => {
      if (finished) return;
      finished = true;
      if (c.patternSent !== undefined) r.sent = c.patternSent;
      resolve({ ...r, ...extra });
    };
    const c = net.connect({ host, port: Number(port), allowHalfOpen: true }, () => {
      c.write(JSON.stringify({ mode: f.mode, pauseMs: f.pauseMs || 0, slowMs: f.slowMs || 0, rrSize: f.rrSize || 0, replyBytes: f.replyBytes || 0 }) + '\n');
      const stall = (ms, at) => {
        if (ms > r.maxStallMs) {
          r.maxStallMs = ms;
          r.stallAt = at;
        }
      };
      if (f.mode === 'rr') {
        let round = 0;
        let got = 0;
        const send = () => {
          if (round === f.rounds) return c.end();
          c.write(pattern(r.sent, f.rrSize));
          r.sent += f.rrSize;
        };
        c.on('data', () => {
          // counted by the handler registered first (below, before connect completes); one full reply -> next request
          while (r.received - got >= f.rrSize) {
            got += f.rrSize;
            round++;
            send();
          }
        });
        send();
      } else {
        // bidi: our side ends only once the server's stream has fully arrived. A socket whose own
        // side is already shut gets EPOLLHUP at the peer's FIN, and libuv takes a short read plus
        // EPOLLHUP as end of stream (uv__stream_io), which after a guard switch to TCP (bytes in
        // two queues, one read returns from one) would drop the tail; see the README, Splicing.
        const want = f.mode === 'bidi' ? f.replyBytes || 0 : 0;
        writeAll(c, f.bytes, f.writeSize, (sent) => {
          r.sent = sent;
          if (r.received >= want) return c.end();
          const endWhenDone = () => {
            if (r.received < want) return;
            c.off('data', endWhenDone);
            c.end();
          };
          c.on('data', endWhenDone);
        }, { stall, burst: f.burst || null });
      }
    });
    // on(), not prependListener(): only Readable's on('data') switches the stream to flowing mode.
    c.on('data', (d) => {
      const b = check(d, r.received);
      if (b !== null && r.bad === null) r.bad = b;
      r.received += d.length;
    });
    c.on('error', (e) => finish({ error: e.code || e.message }));
    c.on('close', () => finish({}));
    c.on('end', () => undefined);
  });
}

const timer = setTimeout(() => {
  process.stdout.write(JSON.stringify({ error: 'timeout' }) + '\n');
  process.exit(0);
}, Number(timeoutMs));
Promise.all(phase.flows.map(runFlow)).then((flows) => {
  clearTimeout(timer);
  process.stdout.write(JSON.stringify({ flows }) + '\n');
  process.exit(0);
});
