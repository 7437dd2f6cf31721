// Traffic for the tc splice suite (splice.e2e.test.ts), run as an app inside a testbed pod (its
// netns and cgroup). Byte i of every stream is i mod 251 (a prime: a lost, repeated or reordered
// chunk shows at its first byte), checked by the side that receives it.
//   server <port>: dual-stack listener. Per connection a JSON header line {mode, pauseMs, slowMs,
//     rrSize, replyBytes, pauseFile}, then: 'sink' reads (unread for pauseMs first, slowMs between
//     reads; with pauseFile, unread until that file exists, at most pauseMs: the test resumes it);
//     'rr' answers every rrSize bytes with rrSize bytes; 'bidi' sends replyBytes while reading.
//     On EOF prints {id, mode, bytes, bad, error?} (bad: offset of the first wrong byte or null).
//     'drop' never reads and closes after closeMs (with the data unread).
//   client <host> <port> <flow json> <timeoutMs>: one connection per flow, all at once; prints
//     {flows: [{sent, received, bad, error?, maxStallMs, stallAt, local}]}. A flow {mode:'short',
//     count} makes `count` short connections one after another (one request, one reply each).
//     A flow with stallReportMs prints {event:'stalled', flow, at, ms, local} (once, before the
//     result line) when one wait for 'drain' has lasted that long: the sender is blocked right now,
//     `at` bytes written (what a test waits for before it resumes a paused reader).
'use strict';
const fs = require('node:fs');
const net = require('node:net');
const P = 251;
const PAT = Buffer.alloc(P * 512 + (256 << 10));
for (let i = 0; i < PAT.length; i++) PAT[i] = i % P;
const pattern = (at, len) => {
  const out = Buffer.allocUnsafe(len);
  for (let done = 0; done < len; ) {
    const off = (at + done) % P;
    const n = Math.min(len - done, PAT.length - off);
    PAT.copy(out, done, off, off + n);
    done += n;
  }
  return out;
};
const check = (d, at) => {
  for (let done = 0; done < d.length; ) {
    const off = (at + done) % P;
    const n = Math.min(d.length - done, PAT.length - off);
    if (d.compare(PAT, off, off + n, done, done + n) !== 0) for (let i = 0; i < n; i++) if (d[done + i] !== PAT[off + i]) return at + done + i;
    done += n;
  }
  return null;
};
/** Writes total pattern bytes in size-byte writes, waiting for 'drain' when the kernel pushes back. */
/** stall(ms, at) after each wait; longStall = {ms, report(at, ms)}: called once a single wait lasts ms (while it lasts). */
function writeAll(c, total, size, done, stall = () => undefined, longStall = null) {
  let sent = 0;
  const pump = () => {
    while (sent < total) {
      const n = Math.min(size, total - sent);
      const ok = c.write(pattern(sent, n));
      sent += n;
      if (!ok) {
        const t0 = Date.now();
        const at = sent;
        const timer = longStall && setTimeout(() => longStall.report(at, Date.now() - t0), longStall.ms);
        c.once('drain', () => {
          if (timer) clearTimeout(timer);
          stall(Date.now() - t0, at);
          pump();
        });
        return;
      }
    }
    done(sent);
  };
  pump();
}
const log = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const [role, ...args] = process.argv.slice(2);

if (role === 'server') {
  let nextId = 0;
  net
    .createServer({ allowHalfOpen: true }, (c) => {
      const id = nextId++;
      let head = Buffer.alloc(0);
      let cfg = null;
      let bytes = 0;
      let bad = null;
      let error;
      let rrPending = 0;
      let sentOut = 0;
      let outDone = false;
      let inDone = false;
      const body = (d) => {
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
        if (cfg) return body(d);
        head = Buffer.concat([head, d]);
        const nl = head.indexOf(10);
        if (nl < 0) return;
        cfg = JSON.parse(head.subarray(0, nl).toString());
        const rest = head.subarray(nl + 1);
        if (cfg.mode === 'short') return c.end('ok\n');
        if (cfg.mode === 'drop') {
          // Never reads: closes with everything unread after closeMs (TCP would reset the sender).
          c.pause();
          setTimeout(() => {
            log({ id, mode: 'drop', bytes: 0, bad: null });
            c.destroy();
          }, cfg.closeMs);
          return;
        }
        if (cfg.mode === 'bidi')
          writeAll(c, cfg.replyBytes, 64 << 10, () => {
            outDone = true;
            if (inDone) c.end();
          });
        if (cfg.pauseFile) {
          // Unread until the file exists (polled), at most pauseMs.
          c.pause();
          const until = Date.now() + cfg.pauseMs;
          const poll = () => (fs.existsSync(cfg.pauseFile) || Date.now() >= until ? c.resume() : setTimeout(poll, 10));
          poll();
        } else if (cfg.pauseMs > 0) {
          c.pause();
          setTimeout(() => c.resume(), cfg.pauseMs);
        }
        if (rest.length > 0) body(rest);
      });
      c.on('error', (e) => (error = e.code || e.message));
      c.on('end', () => {
        inDone = true;
        if (cfg && cfg.mode !== 'short') log({ id, mode: cfg.mode, bytes, bad, error });
        if (!cfg || cfg.mode !== 'bidi' || outDone) c.end();
      });
    })
    .listen({ host: '::', port: Number(args[0]), ipv6Only: false }, () => log({ event: 'ready' }));
} else if (role === 'client') {
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
          (ms, at) => {
            if (ms > r.maxStallMs) {
              r.maxStallMs = ms;
              r.stallAt = at;
            }
          },
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
  process.stderr.write('usage: flow.js server <port> | client <host> <port> <flows json> <timeoutMs>\n');
  process.exit(64);
}
