// The pattern stream of the splice suites (backend-sockops splice-safety, backend-tc splice): byte i
// of a stream is i mod 251 (a prime, so no write size lines up with it: a lost, repeated or
// reordered chunk shows at its first byte). Required by the apps those suites run in testbed pods
// (pattern-server.js here, each suite's own client).
'use strict';
const P = 251;
const PAT = Buffer.alloc(P * 1024 + (1 << 20));
for (let i = 0; i < PAT.length; i++) PAT[i] = i % P;

/** `len` bytes of the stream starting at offset `at`. */
function pattern(at, len) {
  const out = Buffer.allocUnsafe(len);
  let done = 0;
  while (done < len) {
    const off = (at + done) % P;
    const n = Math.min(len - done, PAT.length - off);
    PAT.copy(out, done, off, off + n);
    done += n;
  }
  return out;
}

/** Offset (in the stream) of the first byte of d (which starts at `at`) that is wrong, or null. */
function check(d, at) {
  let done = 0;
  while (done < d.length) {
    const off = (at + done) % P;
    const n = Math.min(d.length - done, PAT.length - off);
    if (d.compare(PAT, off, off + n, done, done + n) !== 0) {
      for (let i = 0; i < n; i++) if (d[done + i] !== PAT[off + i]) return at + done + i;
    }
    done += n;
  }
  return null;
}

/**
 * Writes `total` pattern bytes to socket c in `size`-byte writes, waiting for 'drain' whenever the
 * kernel pushes back, then calls done(sent); c.patternSent is the count so far. Options:
 *   stall(ms, sentSoFar): told of every wait once it ends;
 *   burst {size, gapMs}: at most size bytes, then a pause of gapMs;
 *   longStall {ms, report(sentSoFar, ms)}: called while one wait has lasted ms (the sender is
 *     blocked right now), at most once per wait.
 */
function writeAll(c, total, size, done, opts = {}) {
  const stall = opts.stall || (() => undefined);
  const { burst, longStall } = opts;
  let sent = 0;
  const pump = () => {
    let inBurst = 0;
    while (sent < total) {
      if (burst && inBurst >= burst.size) {
        setTimeout(pump, burst.gapMs);
        return;
      }
      const n = Math.min(size, total - sent);
      const ok = c.write(pattern(sent, n));
      sent += n;
      c.patternSent = sent;
      inBurst += n;
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

module.exports = { pattern, check, writeAll, P };
