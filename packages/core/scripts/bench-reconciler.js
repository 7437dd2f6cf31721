#!/usr/bin/env node
// Reconciler throughput and memory, with a no-op backend (nothing but the reconciler is measured).
// Run after building: `npx tsc -p tsconfig.build.json && node --expose-gc scripts/bench-reconciler.js`.
// Not a test: it prints numbers, it asserts nothing.
'use strict';
const { Subject } = require('rxjs');
const core = require('../dist/index.js');

const PODS = Number(process.env.PODS ?? 10_000);
const UPDATES = Number(process.env.UPDATES ?? 5);

class NoopBackend {
  constructor() {
    this.name = 'iptables';
    this.installed = new Map();
  }
  support() { return { ok: true }; }
  fingerprint(pod) { return core.meshPodFingerprint(pod); }
  async start() {}
  async stop() {}
  async enroll(pod) { this.installed.set(pod.uid, this.fingerprint(pod)); }
  async unenroll(ref) { this.installed.delete(ref.uid); }
  async observe() {
    return { backend: 'iptables', nodeReady: true, nodeDetail: {}, counters: {}, pods: [...this.installed].map(([uid, fingerprint]) => ({ uid, namespace: 'bench', name: uid, fingerprint })) };
  }
}

function pod(i, version) {
  return core.testMeshPod(`p${i}`, {
    namespace: 'bench',
    ip: `198.18.${(i >> 8) & 255}.${i & 255}`,
    annotations: { 'traffic.sidecar.istio.io/excludeOutboundPorts': String(1000 + version) },
  });
}

const gc = () => global.gc && (global.gc(), global.gc());
const mb = (b) => (b / 1024 / 1024).toFixed(1);

async function settle(r, want) {
  // Wait (bounded) until every pod is enrolled with its latest config and nothing is queued.
  const deadline = Date.now() + 120_000;
  for (;;) {
    const s = r.snapshot();
    if (s.inFlight === 0 && s.queued === 0 && want(s)) return s;
    if (Date.now() > deadline) throw new Error('did not settle in 120 s');
    // snapshot() walks every pod, so look rarely; the error this adds is under 10 ms per phase.
    await new Promise((res) => setTimeout(res, 10));
  }
}

async function main() {
  // Events are built before timing so that only the reconciler is measured.
  const creates = Array.from({ length: PODS }, (_, i) => ({ type: 'upsert', pod: pod(i, 0) }));
  const updates = [];
  for (let v = 1; v <= UPDATES; v++) for (let i = 0; i < PODS; i++) updates.push({ type: 'upsert', pod: pod(i, v) });
  const dupes = updates.slice(-PODS); // same config again: must cost no backend call

  gc();
  const heap0 = process.memoryUsage().heapUsed;
  const backend = new NoopBackend();
  const events = new Subject();
  const r = new core.Reconciler({ backend, events, maxInFlight: 64, resyncIntervalMs: 0 });
  await r.start();

  let t = process.hrtime.bigint();
  for (const e of creates) events.next(e);
  await settle(r, (s) => s.pods.length === PODS && s.pods.every((p) => p.state === 'enrolled'));
  const createMs = Number(process.hrtime.bigint() - t) / 1e6;

  gc();
  const heap1 = process.memoryUsage().heapUsed;

  t = process.hrtime.bigint();
  for (const e of updates) events.next(e);
  await settle(r, (s) => s.pods.every((p) => p.state === 'enrolled' && p.desiredFingerprint === p.appliedFingerprint));
  const updateMs = Number(process.hrtime.bigint() - t) / 1e6;
  const calls = r.snapshot().stats.enrollCalls;

  t = process.hrtime.bigint();
  for (const e of dupes) events.next(e);
  const dupMs = Number(process.hrtime.bigint() - t) / 1e6;

  t = process.hrtime.bigint();
  const rep = await r.resync();
  const resyncMs = Number(process.hrtime.bigint() - t) / 1e6;

  const stats = r.snapshot().stats;
  const counts = { updates: updates.length, dupes: dupes.length };
  await r.stop();
  // heap1 - heap0 is the reconciler's own state: the MeshPods were built before heap0.
  const overhead = (heap1 - heap0) / PODS;

  // Full footprint: MeshPods built on the fly and kept only by the reconciler.
  creates.length = 0;
  updates.length = 0;
  dupes.length = 0;
  gc();
  const heap2 = process.memoryUsage().heapUsed;
  const events2 = new Subject();
  const r2 = new core.Reconciler({ backend: new NoopBackend(), events: events2, maxInFlight: 64, resyncIntervalMs: 0 });
  await r2.start();
  for (let i = 0; i < PODS; i++) events2.next({ type: 'upsert', pod: pod(i, 0) });
  await settle(r2, (s) => s.pods.length === PODS && s.pods.every((p) => p.state === 'enrolled'));
  gc();
  const heap3 = process.memoryUsage().heapUsed;
  const rss = process.memoryUsage().rss;
  await r2.stop();
  console.log(JSON.stringify({ node: process.version, pods: PODS, gcExposed: Boolean(global.gc) }));
  console.log(`create:  ${PODS} new pods, one enroll call each, in ${createMs.toFixed(0)} ms → ${Math.round(PODS / (createMs / 1000))} events/s`);
  console.log(`update:  ${counts.updates} changed-config events in ${updateMs.toFixed(0)} ms → ${Math.round(counts.updates / (updateMs / 1000))} events/s (${calls - PODS} enroll calls; the rest coalesced)`);
  console.log(`dedupe:  ${counts.dupes} unchanged events in ${dupMs.toFixed(0)} ms → ${Math.round(counts.dupes / (dupMs / 1000))} events/s, backend calls: ${stats.enrollCalls - calls}`);
  console.log(`resync:  observe + compare ${PODS} pods in ${resyncMs.toFixed(0)} ms (drifted ${rep.drifted.length}, extra ${rep.extra.length})`);
  console.log(`memory:  reconciler state alone +${mb(heap1 - heap0)} MB (${Math.round(overhead)} bytes/pod)`);
  console.log(`memory:  ${PODS} pods in desired state incl. their MeshPods +${mb(heap3 - heap2)} MB heap (${Math.round((heap3 - heap2) / PODS)} bytes/pod); process RSS ${mb(rss)} MB`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
