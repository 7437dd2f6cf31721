import { Subject } from 'rxjs';
import type { ReconcilerInput } from '../sources/events';
import { collect, eventually } from '../testing/collect';
import { testMeshPod as mp } from '../testing/mesh-pod';
import { RecordingBackend } from '../testing/recording-backend';
import type { PodStatus } from '../types';
import { Reconciler, type ReconcilerOptions } from './reconciler';

const ref = (name: string) => ({ uid: `uid-${name}`, namespace: 'test', name });

function setup(opts: Partial<ReconcilerOptions> & { backend?: RecordingBackend } = {}) {
  const backend = opts.backend ?? new RecordingBackend();
  const events = new Subject<ReconcilerInput>();
  const r = new Reconciler({ resyncIntervalMs: 0, retry: { initialMs: 5, maxMs: 40 }, opTimeoutMs: 2000, ...opts, backend, events });
  const statuses = collect(r.status$);
  return { backend, events, r, statuses };
}

const lastState = (items: PodStatus[], name: string) => [...items].reverse().find((s) => s.pod.name === name)?.state;
const upsert = (name: string, o?: Parameters<typeof mp>[1]): ReconcilerInput => ({ type: 'upsert', pod: mp(name, o) });

let cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup) await c();
  cleanup = [];
  jest.useRealTimers();
});
const started = async (s: ReturnType<typeof setup>) => {
  await s.r.start();
  cleanup.push(() => s.r.stop({ drainTimeoutMs: 500 }));
  return s;
};

describe('Reconciler', () => {
  it('enrolls members, reports status, and calls nothing for non-members', async () => {
    const s = await started(setup());
    s.events.next(upsert('a'));
    s.events.next(upsert('plain', { member: false }));
    await s.statuses.until((i) => lastState(i, 'a') === 'enrolled');
    expect(s.backend.installed.get('uid-a')?.fingerprint).toBe(s.backend.fingerprint(mp('a')));
    expect(s.backend.callsFor('uid-plain')).toEqual([]);
    expect(s.r.snapshot().pods.map((p) => [p.pod.name, p.state])).toEqual([['a', 'enrolled']]);
  });

  it('dedupes: an unchanged fingerprint makes no backend call, a change makes one', async () => {
    const s = await started(setup());
    s.events.next(upsert('a'));
    await s.statuses.until((i) => lastState(i, 'a') === 'enrolled');
    for (let i = 0; i < 5; i++) s.events.next(upsert('a'));
    await new Promise((r) => setTimeout(r, 20));
    expect(s.backend.callsFor('uid-a', 'enroll')).toHaveLength(1);
    expect(s.r.snapshot().stats.skipped).toBe(5);
    s.events.next(upsert('a', { annotations: { 'traffic.sidecar.istio.io/excludeOutboundPorts': '5432' } }));
    await eventually(() => s.backend.callsFor('uid-a', 'enroll').length === 2 && s.r.snapshot().pods[0]?.state === 'enrolled');
    expect(s.backend.installed.get('uid-a')!.fingerprint).toBe(s.backend.fingerprint(mp('a', { annotations: { 'traffic.sidecar.istio.io/excludeOutboundPorts': '5432' } })));
  });

  it('a failure marked non-retryable (a full map) waits the long delay, not the usual backoff', async () => {
    const s = await started(setup({ nonRetryableDelayMs: 60_000 }));
    s.backend.fail({ uid: 'uid-full', times: 100, message: 'map pod_cfg is full; raise maxPods', retryable: false });
    s.backend.fail({ uid: 'uid-flaky', times: 3, message: 'transient' });
    s.events.next(upsert('full'));
    s.events.next(upsert('flaky'));
    // The retryable pod goes through its backoff (5, 10, 20 ms) and gets in.
    await s.statuses.until((i) => lastState(i, 'flaky') === 'enrolled');
    await new Promise((r) => setTimeout(r, 200));
    expect(s.backend.callsFor('uid-full', 'enroll')).toHaveLength(1);
    const full = s.r.snapshot().pods.find((p) => p.pod.name === 'full')!;
    expect(full).toMatchObject({ state: 'failed', attempts: 1, reason: expect.stringMatching(/raise maxPods/) });
    // A new desired state retries at once, as for any failure.
    s.events.next(upsert('full', { annotations: { 'traffic.sidecar.istio.io/excludeOutboundPorts': '5432' } }));
    await eventually(() => s.backend.callsFor('uid-full', 'enroll').length === 2);
  });

  it('unenrolls on delete and on losing membership, then forgets the pod', async () => {
    const s = await started(setup());
    s.events.next(upsert('a'));
    s.events.next(upsert('b'));
    await s.statuses.until((i) => lastState(i, 'a') === 'enrolled' && lastState(i, 'b') === 'enrolled');
    s.events.next({ type: 'delete', pod: ref('a') });
    s.events.next(upsert('b', { member: false, annotations: { 'sidecar.istio.io/inject': 'false' } }));
    await s.statuses.until((i) => lastState(i, 'a') === 'removed' && lastState(i, 'b') === 'removed');
    expect(s.backend.installed.size).toBe(0);
    expect(s.backend.callsFor('uid-a', 'unenroll')).toHaveLength(1);
    expect(s.r.snapshot().pods).toEqual([]);
    s.events.next({ type: 'delete', pod: ref('never-seen') });
    expect(s.backend.callsFor('uid-never-seen')).toEqual([]);
  });

  it('isolates failures: a failing pod is retried with growing backoff while others proceed', async () => {
    jest.useFakeTimers();
    const s = setup({ maxInFlight: 1, random: () => 1, retry: { initialMs: 100, maxMs: 1000 } });
    await s.r.start();
    s.backend.fail({ uid: 'uid-bad', times: 3, message: 'netns gone' });
    s.events.next(upsert('bad'));
    s.events.next(upsert('good'));
    await jest.advanceTimersByTimeAsync(0);
    // good was not held up by bad's retries, even with one slot
    expect(lastState(s.statuses.items, 'good')).toBe('enrolled');
    expect(s.statuses.items.filter((x) => x.pod.name === 'bad')).toEqual([
      expect.objectContaining({ state: 'failed', reason: 'netns gone', attempts: 1 }),
    ]);
    // random()=1 → delays are exactly initial·2^n: 100, 200, 400 ms
    await jest.advanceTimersByTimeAsync(99);
    expect(s.backend.callsFor('uid-bad', 'enroll')).toHaveLength(1);
    await jest.advanceTimersByTimeAsync(1);
    expect(s.backend.callsFor('uid-bad', 'enroll')).toHaveLength(2);
    await jest.advanceTimersByTimeAsync(199);
    expect(s.backend.callsFor('uid-bad', 'enroll')).toHaveLength(2);
    await jest.advanceTimersByTimeAsync(1);
    expect(s.backend.callsFor('uid-bad', 'enroll')).toHaveLength(3);
    await jest.advanceTimersByTimeAsync(400);
    expect(s.backend.callsFor('uid-bad', 'enroll')).toHaveLength(4);
    expect(s.statuses.items.filter((x) => x.pod.name === 'bad').map((x) => (x.state === 'failed' ? x.attempts : x.state))).toEqual([1, 2, 3, 'enrolled']);
    expect(s.backend.callsFor('uid-good', 'enroll')).toHaveLength(1);
    await s.r.stop({ drainTimeoutMs: 10 });
  });

  it('a new desired state cuts a backoff short', async () => {
    const s = await started(setup({ retry: { initialMs: 60_000, maxMs: 60_000 } }));
    s.backend.fail({ uid: 'uid-a', times: 1 });
    s.events.next(upsert('a'));
    await s.statuses.until((i) => lastState(i, 'a') === 'failed');
    s.events.next(upsert('a', { annotations: { 'traffic.sidecar.istio.io/excludeOutboundPorts': '1' } }));
    await s.statuses.until((i) => lastState(i, 'a') === 'enrolled', 2000);
  });

  it('a hung call times out, frees its slot, and never overlaps with the next call for that pod', async () => {
    const s = await started(setup({ maxInFlight: 1, opTimeoutMs: 50 }));
    const release = s.backend.hang('uid-slow');
    s.events.next(upsert('slow'));
    s.events.next(upsert('fast'));
    await s.statuses.until((i) => lastState(i, 'fast') === 'enrolled' && lastState(i, 'slow') === 'failed', 3000);
    const failed = s.statuses.items.find((x) => x.pod.name === 'slow' && x.state === 'failed') as Extract<PodStatus, { state: 'failed' }>;
    expect(failed.reason).toBe('enroll timed out after 50 ms');
    // Newer config while the call hangs: no second call until the first one ends.
    s.events.next(upsert('slow', { annotations: { 'traffic.sidecar.istio.io/excludeOutboundPorts': '9' } }));
    await new Promise((r) => setTimeout(r, 120));
    expect(s.backend.callsFor('uid-slow', 'enroll')).toHaveLength(1);
    expect(s.r.snapshot().pods.find((p) => p.pod.name === 'slow')).toMatchObject({ state: 'failed', busy: true });
    release();
    await s.statuses.until((i) => lastState(i, 'slow') === 'enrolled', 3000);
    expect(s.backend.maxConcurrentPerPod).toBe(1);
    expect(s.backend.installed.get('uid-slow')!.fingerprint).toBe(s.backend.fingerprint(mp('slow', { annotations: { 'traffic.sidecar.istio.io/excludeOutboundPorts': '9' } })));
  });

  it('keeps at most maxInFlight pods in flight, and one call per pod at a time', async () => {
    const backend = new RecordingBackend('iptables', { delayMs: 3 });
    const s = await started(setup({ backend, maxInFlight: 4 }));
    for (let i = 0; i < 40; i++) s.events.next(upsert(`p${i}`));
    for (let i = 0; i < 40; i += 3) s.events.next(upsert(`p${i}`, { annotations: { 'traffic.sidecar.istio.io/excludeOutboundPorts': '7' } }));
    await s.statuses.until((items) => Array.from({ length: 40 }, (_, i) => `p${i}`).every((n) => lastState(items, n) === 'enrolled'), 10_000);
    await new Promise((r) => setTimeout(r, 30));
    expect(backend.maxConcurrent).toBe(4);
    expect(backend.maxConcurrentPerPod).toBe(1);
    expect(backend.installed.size).toBe(40);
  });

  it('coalesces: ten updates during one call lead to exactly one more call, with the latest state', async () => {
    const s = await started(setup());
    const release = s.backend.hang('uid-a');
    s.events.next(upsert('a'));
    await new Promise((r) => setTimeout(r, 10));
    for (let i = 1; i <= 10; i++) s.events.next(upsert('a', { annotations: { 'traffic.sidecar.istio.io/excludeOutboundPorts': String(i) } }));
    release();
    await eventually(() => s.backend.callsFor('uid-a', 'enroll').length === 2 && s.r.snapshot().pods[0]?.state === 'enrolled', 3000);
    await new Promise((r) => setTimeout(r, 20));
    expect(s.backend.callsFor('uid-a', 'enroll')).toHaveLength(2);
    expect(s.backend.installed.get('uid-a')!.fingerprint).toBe(s.backend.fingerprint(mp('a', { annotations: { 'traffic.sidecar.istio.io/excludeOutboundPorts': '10' } })));
  });

  it('reject: reported, never applied, and an enrolled pod keeps its last good redirect', async () => {
    const s = await started(setup());
    s.events.next({ type: 'reject', pod: ref('new'), reason: 'pod test/new: bad' });
    s.events.next(upsert('a'));
    await s.statuses.until((i) => lastState(i, 'a') === 'enrolled' && lastState(i, 'new') === 'rejected');
    const good = s.backend.installed.get('uid-a')!.fingerprint;
    s.events.next({ type: 'reject', pod: ref('a'), reason: 'pod test/a: includeInboundPorts="70000" rejected' });
    await s.statuses.until((i) => lastState(i, 'a') === 'rejected');
    await new Promise((r) => setTimeout(r, 20));
    expect(s.backend.installed.get('uid-a')!.fingerprint).toBe(good);
    expect(s.backend.callsFor('uid-a', 'unenroll')).toEqual([]);
    expect(s.backend.callsFor('uid-new')).toEqual([]);
    expect(s.r.snapshot().pods.find((p) => p.pod.name === 'a')).toMatchObject({ state: 'rejected', appliedFingerprint: good });
    // Drift of a rejected pod is repaired back to the last good state.
    s.backend.drift('uid-a', 'remove');
    await s.r.resync();
    await eventually(() => s.backend.installed.get('uid-a')?.fingerprint === good);
    // Fixed annotations: applied again (same config as before → no call needed, status back to enrolled).
    s.events.next(upsert('a'));
    await s.statuses.until((i) => lastState(i, 'a') === 'enrolled');
    s.events.next({ type: 'reject', pod: ref('a'), reason: 'bad again' });
    s.events.next({ type: 'delete', pod: ref('a') });
    await s.statuses.until((i) => lastState(i, 'a') === 'removed');
    expect(s.backend.installed.has('uid-a')).toBe(false);
  });

  it('resync repairs drift: re-enrolls changed and missing pods, unenrolls extras only after sync', async () => {
    const s = await started(setup());
    s.events.next(upsert('a'));
    s.events.next(upsert('b'));
    s.events.next(upsert('c'));
    await s.statuses.until((i) => ['a', 'b', 'c'].every((n) => lastState(i, n) === 'enrolled'));
    s.backend.drift('uid-a', { fingerprint: 'tampered' });
    s.backend.drift('uid-b', 'remove');
    s.backend.plant(ref('stray'));
    const before = await s.r.resync();
    expect(before.drifted.map((p) => p.name).sort()).toEqual(['a', 'b']);
    expect(before.extra).toEqual([]); // the source has not said "synced": the stray may just not be listed yet
    await eventually(() => s.backend.installed.get('uid-a')?.fingerprint === s.backend.fingerprint(mp('a')) && s.backend.installed.has('uid-b'));
    expect(s.backend.installed.has('uid-stray')).toBe(true);
    s.events.next({ type: 'synced' });
    const after = await s.r.resync();
    expect(after.extra.map((p) => p.name)).toEqual(['stray']);
    await eventually(() => !s.backend.installed.has('uid-stray'));
    const clean = await s.r.resync();
    expect([clean.drifted, clean.extra]).toEqual([[], []]);
    expect(s.backend.callsFor('uid-c', 'enroll')).toHaveLength(1);
    expect(s.r.snapshot().stats.repairs).toBe(3);
  });

  it('periodic resync runs on its own', async () => {
    const s = await started(setup({ resyncIntervalMs: 20 }));
    s.events.next(upsert('a'));
    await s.statuses.until((i) => lastState(i, 'a') === 'enrolled');
    s.backend.drift('uid-a', 'remove');
    await eventually(() => s.backend.installed.has('uid-a'), 3000);
    expect(s.backend.callsFor('uid-a', 'enroll')).toHaveLength(2);
  });

  it('adopts what a previous agent installed: no call for unchanged pods, stale ones removed after sync', async () => {
    const backend = new RecordingBackend();
    backend.plant(ref('a'), backend.fingerprint(mp('a')));
    backend.plant(ref('gone'), 'old');
    const s = await started(setup({ backend }));
    s.events.next(upsert('a'));
    s.events.next(upsert('b'));
    await s.statuses.until((i) => lastState(i, 'a') === 'enrolled' && lastState(i, 'b') === 'enrolled');
    expect(backend.callsFor('uid-a', 'enroll')).toEqual([]);
    // Adopted as it was (no call) says so, for a log summary; an enroll that made a call does not.
    const enrolled = (name: string) => s.statuses.items.find((st) => st.pod.name === name && st.state === 'enrolled');
    expect(enrolled('a')).toMatchObject({ unchanged: true });
    expect(enrolled('b')).not.toHaveProperty('unchanged');
    expect(backend.installed.has('uid-gone')).toBe(true);
    s.events.next({ type: 'synced' });
    await eventually(() => !backend.installed.has('uid-gone'));
    expect(backend.callsFor('uid-gone', 'unenroll')).toHaveLength(1);
  });

  it('a failed observe during resync is reported, not fatal', async () => {
    const s = await started(setup());
    s.backend.failObserve('bpffs not mounted');
    const rep = await s.r.resync();
    expect(rep.error).toBe('bpffs not mounted');
    s.backend.failObserve(undefined);
    s.events.next(upsert('a'));
    await s.statuses.until((i) => lastState(i, 'a') === 'enrolled');
  });

  it('stop() drains calls in progress, then ignores events and completes the status stream', async () => {
    const backend = new RecordingBackend('iptables', { delayMs: 30 });
    const s = setup({ backend });
    await s.r.start();
    s.events.next(upsert('a'));
    await new Promise((r) => setTimeout(r, 5));
    await s.r.stop();
    expect(backend.installed.has('uid-a')).toBe(true);
    let completed = false;
    s.r.status$.subscribe({ complete: () => (completed = true) });
    expect(completed).toBe(true);
    s.events.next(upsert('b'));
    await new Promise((r) => setTimeout(r, 40));
    expect(backend.callsFor('uid-b')).toEqual([]);
  });

  it('a failing source is recorded and the installed state is kept', async () => {
    const s = await started(setup());
    s.events.next(upsert('a'));
    await s.statuses.until((i) => lastState(i, 'a') === 'enrolled');
    s.events.error(new Error('apiserver unreachable'));
    expect(s.r.snapshot().sourceError).toBe('apiserver unreachable');
    expect(s.backend.installed.has('uid-a')).toBe(true);
  });
});
