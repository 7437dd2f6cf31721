// Cost of a pods-file change at scale: load a 10,000-pod JSON file through podsFileSource, then
// change one pod N times (atomic rename, as an editor or the demo writes it) and time each change
// from the write to the pod's upsert event. Peak RSS is sampled every 5 ms during the change phase
// (process maxRSS covers the whole run, including the initial load).
// Usage: npx tsc -p tsconfig.build.json && node scripts/bench-pods-file.js [pods=10000] [changes=5]
'use strict';
const { mkdtempSync, writeFileSync, renameSync, rmSync } = require('node:fs');
const { tmpdir } = require('node:os');
const { join } = require('node:path');
const { podsFileSource } = require('../dist');

const N = Number(process.argv[2] ?? 10000);
const CHANGES = Number(process.argv[3] ?? 5);
const dir = mkdtempSync(join(tmpdir(), 'shunt-bench-podsfile-'));
const path = join(dir, 'pods.json');

const pod = (i, rev) => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: {
    name: `web-${i}`,
    namespace: `ns-${i % 50}`,
    uid: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
    labels: { app: `web-${i % 100}`, 'pod-template-hash': 'abcdef123' },
    annotations: { 'sidecar.istio.io/status': '{"initContainers":null,"containers":["istio-proxy"]}', rev: String(rev) },
  },
  spec: {
    nodeName: 'node-1',
    containers: [
      { name: 'app', image: 'example/app:1', env: [{ name: 'A', value: '1' }] },
      { name: 'istio-proxy', image: 'example/proxy:1', args: ['proxy', 'sidecar'], securityContext: { runAsUser: 1337, runAsGroup: 1337 } },
    ],
  },
  status: { phase: 'Running', podIP: `198.18.${(i >> 8) & 255}.${i & 255}`, podIPs: [{ ip: `198.18.${(i >> 8) & 255}.${i & 255}` }] },
  shunt: { netnsPath: `/var/run/netns/web-${i}`, hostVeth: `veth${i}` },
});
const pods = Array.from({ length: N }, (_, i) => pod(i, 0));
const write = () => {
  writeFileSync(`${path}.tmp`, JSON.stringify(pods));
  renameSync(`${path}.tmp`, path);
};

async function main() {
  write();
  let waiter = null;
  const t0 = process.hrtime.bigint();
  let loadMs = 0;
  const sub = podsFileSource(path, { debounceMs: 20, pollMs: 200, onError: (e) => console.error('error:', e.message) }).subscribe((ev) => {
    if (ev.type === 'synced') loadMs = Number(process.hrtime.bigint() - t0) / 1e6;
    if (waiter && ev.type === 'upsert' && ev.pod.metadata.name === waiter.name) waiter.done();
  });
  while (loadMs === 0) await new Promise((r) => setTimeout(r, 10));
  const loadRss = process.resourceUsage().maxRSS / 1024;
  let peak = 0;
  const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage.rss() / 2 ** 20)), 5);
  const times = [];
  for (let c = 1; c <= CHANGES; c++) {
    const i = (c * 7919) % N;
    pods[i] = pod(i, c);
    const seen = new Promise((r) => (waiter = { name: `web-${i}`, done: r }));
    const start = process.hrtime.bigint();
    write();
    await Promise.race([seen, new Promise((_, rej) => setTimeout(() => rej(new Error('no event within 60 s')), 60000))]);
    times.push(Number(process.hrtime.bigint() - start) / 1e6);
    await new Promise((r) => setTimeout(r, 300));
  }
  clearInterval(sampler);
  sub.unsubscribe();
  rmSync(dir, { recursive: true, force: true });
  times.sort((a, b) => a - b);
  console.log(JSON.stringify({
    pods: N,
    initialLoadMs: Math.round(loadMs),
    maxRssAfterLoadMiB: Math.round(loadRss),
    changeMs: { median: Math.round(times[times.length >> 1]), min: Math.round(times[0]), max: Math.round(times[times.length - 1]) },
    changePhasePeakRssMiB: Math.round(peak),
    processMaxRssMiB: Math.round(process.resourceUsage().maxRSS / 1024),
    node: process.version,
  }));
}
main().catch((e) => { console.error(e); process.exit(1); });
