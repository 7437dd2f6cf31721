// Child process of enroll-latency.manual.test.ts: the prober, outside the process that enrolls.
// Runs inside the pod netns. argv: <family 4|6> <address> <port> <pod address>, a destination nothing listens on: a connect
// there is refused (RST from the peer) until the pod is enrolled, and completes once its SYN is
// hairpinned to ztunnel's outbound listener, whose kernel side answers the handshake by itself
// (no user-space server on the probe path). On {cmd: 'go', timeoutMs}: one connect that must be
// refused, then {kind: 'armed'}, then connects back to back until one completes:
// {kind: 'hit', atNs (CLOCK_MONOTONIC, as the parent's process.hrtime), attempts}.
'use strict';
const net = require('node:net');

// Started inside the pod netns (nsenter --net): plain sockets, whose completion this process's
// own event loop sees (one wake-up, no worker thread). The source address is checked on every
// hit all the same.
const [family, address, port, own] = process.argv.slice(2);
const pause = new Int32Array(new SharedArrayBuffer(4));
const attempt = () =>
  new Promise((resolve, reject) => {
    const sock = net.connect({ host: address, port: Number(port), family: Number(family) });
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error('connect timed out (1 s)'));
    }, 1000);
    sock.once('connect', () => {
      const atNs = process.hrtime.bigint();
      clearTimeout(timer);
      const from = sock.localAddress;
      sock.destroy();
      if (from !== own) reject(new Error(`connected from ${from}, not from the pod address ${own}`));
      else resolve({ atNs });
    });
    sock.once('error', (err) => {
      clearTimeout(timer);
      sock.destroy();
      if (err.code === 'ECONNREFUSED') resolve(null);
      else reject(err);
    });
  });

process.on('message', (m) => {
  if (!m || m.cmd !== 'go') return;
  (async () => {
    if ((await attempt()) !== null) return process.send({ kind: 'error', message: 'connected before the enroll: the destination must refuse' });
    process.send({ kind: 'armed' });
    const deadline = process.hrtime.bigint() + BigInt(m.timeoutMs) * 1000000n;
    for (let attempts = 1; attempts <= 100000; attempts++) {
      const hit = await attempt();
      if (hit) return process.send({ kind: 'hit', atNs: hit.atNs.toString(), attempts });
      if (process.hrtime.bigint() > deadline) break;
      // 0.2 ms asleep between attempts (sub-ms, unlike timers): the probe must not take a core
      // from the enroll it measures on a 2-core machine; the resolution is about that period.
      Atomics.wait(pause, 0, 0, 0.2);
    }
    process.send({ kind: 'error', message: `no connect completed within ${m.timeoutMs} ms` });
  })().catch((err) => process.send({ kind: 'error', message: err.message }));
});
process.on('disconnect', () => process.exit(0));
