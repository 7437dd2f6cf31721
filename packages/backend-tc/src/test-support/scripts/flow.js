// The sending app of the tc splice suite (splice.e2e.test.ts and its siblings), run inside a testbed
// pod (its netns and cgroup) against @shunt/testbed's pattern-server.js; the pattern stream (byte i
// is i mod 251) comes from @shunt/testbed's scripts/pattern.js and is checked by the side that
// receives it.
//   client <host> <port> <flow json> <timeoutMs>: one connection per flow, all at once; prints
//     {flows: [{sent, received, bad, error?, maxStallMs, stallAt, local}]}. A flow is the server's
//     header ({mode, pauseMs, slowMs, rrSize, replyBytes, pauseFile, closeMs}) plus bytes,
//     writeSize and, for 'rr', rounds. A flow {mode:'short', count} makes `count` short connections
//     one after another (one request, one reply each).
//     A flow with stallReportMs prints {event:'stalled', flow, at, ms, local} (once, before the
//     result line) when one wait for 'drain' has lasted that long: the sender is blocked right now,
//     `at` bytes written (what a test waits for before it resumes a paused reader).
'use strict';
const net = require('node:net');
const { check, pattern, writeAll } = require('@shunt/testbed/scripts/pattern');
const log = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const [role, ...args] = process.argv.slice(2);

if (role === 'client') {
  const [host, port, flowsJson, timeoutMs] = args;
  const flows = JSON.parse(flowsJson);
  const timer = setTimeout(() => {
    log({ error: `timeout after ${timeoutMs} ms` });
    process.exit(2);
  }, Number(timeoutMs));
  const one = (f, idx) =>
    new Promise((resolve) => {
      const t0 = Date.now();
      const r = { sent: 0, received: 0, bad: null, maxStallMs: 0, stallAt: null, local: null, ms: 0 };
      let reported = false;
      const c = net.connect({ host, port: Number(port), allowHalfOpen: true, noDelay: true });
      c.on('connect', () => {
        r.local = c.localPort;
        c.write(JSON.stringify(f) + '\n');
        if (f.mode === 'rr') {
          let round = 0;
          let got = 0;
          c.write(pattern(0, f.rrSize));
          c.on('data', (d) => {
            const b = check(d, r.received);
            if (b !== null && r.bad === null) r.bad = b;
            r.received += d.length;
            got += d.length;
            while (got >= f.rrSize) {
              got -= f.rrSize;
              if (++round >= f.rounds) return c.end();
              c.write(pattern(round * f.rrSize, f.rrSize));
            }
          });
          r.sent = f.rrSize * f.rounds;
          return;
        }
        c.on('data', (d) => {
          const b = check(d, r.received);
          if (b !== null && r.bad === null) r.bad = b;
          r.received += d.length;
        });
        writeAll(
          c,
          f.bytes,
          f.writeSize || 64 << 10,
          (sent) => {
            r.sent = sent;
            c.end();
          },
          {
            stall: (ms, at) => {
              if (ms > r.maxStallMs) {
                r.maxStallMs = ms;
                r.stallAt = at;
              }
            },
            longStall:
              f.stallReportMs > 0
                ? {
                    ms: f.stallReportMs,
                    report: (at, ms) => {
                      if (reported) return;
                      reported = true;
                      log({ event: 'stalled', flow: idx, at, ms, local: r.local });
                    },
                  }
                : null,
          },
        );
      });
      c.on('error', (e) => (r.error = e.code || e.message));
      c.on('close', () => {
        r.ms = Date.now() - t0;
        resolve(r);
      });
    });
  const short = async (f) => {
    const r = { ok: 0, error: undefined };
    for (let i = 0; i < f.count; i++) {
      const reply = await new Promise((resolve) => {
        let got = '';
        const c = net.connect({ host, port: Number(port), noDelay: true }, () => c.write(JSON.stringify({ mode: 'short' }) + '\n'));
        c.on('data', (d) => (got += d));
        c.on('error', (e) => resolve(`error ${e.code || e.message}`));
        c.on('close', () => resolve(got));
      });
      if (reply === 'ok\n') r.ok++;
      else r.error = reply;
    }
    return r;
  };
  Promise.all(flows.map((f, i) => (f.mode === 'short' ? short(f) : one(f, i)))).then((res) => {
    clearTimeout(timer);
    log({ flows: res });
  });
} else {
  process.stderr.write('usage: flow.js client <host> <port> <flows json> <timeoutMs>\n');
  process.exit(64);
}
