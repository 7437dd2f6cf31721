// The restart memo, core side: a pods file's first reading vouches for items whose digest the memo
// holds (no parse, no validation), the next reading delivers their full objects, and the reconciler
// takes a voucher as enrolled only where the kernel holds the recorded fingerprint.
import { Subject } from 'rxjs';
import { Reconciler } from '../reconciler/reconciler';
import { collect } from '../testing/collect';
import { testMeshPod as mp } from '../testing/mesh-pod';
import { RecordingBackend } from '../testing/recording-backend';
import type { PodStatus, RestartMemoEntry } from '../types';
import type { RawPodEvent, ReconcilerInput } from './events';
import { labelsDigest } from './join';
import { entryDigest, readPodsFileEntries } from './pods-file';
import { PodsFileDiff } from './pods-file-diff';

const pod = (name: string, extra: Record<string, unknown> = {}) => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: 'shop', uid: `uid-${name}`, annotations: { 'sidecar.istio.io/status': '{}' } },
  spec: { containers: [{ name: 'app' }, { name: 'istio-proxy' }], ...extra },
  status: { podIP: '198.18.0.9' },
  shunt: { netnsPath: `/var/run/netns/${name}` },
});
// A pod the validation step refuses: if the memo shortcut parsed or validated it, it would be a reject.
const invalid = pod('bad', { containers: [{ name: 'app' }, { name: 'istio-proxy', securityContext: { runAsUser: 4294967296 } }] });

/** A file's text and the memo entry its item i would have (item text digest + labels digest of no labels). */
function fileWithMemo(items: unknown[], memoFor: number[], fingerprint = (i: number) => `fp-${i}`): { text: string; memo: RestartMemoEntry[] } {
  const texts = items.map((i) => JSON.stringify(i));
  const memo = memoFor.map((i) => {
    const m = (items[i] as ReturnType<typeof pod>).metadata;
    return { digest: `${entryDigest(texts[i]!)}.${labelsDigest({})}`, uid: m.uid, namespace: m.namespace, name: m.name, fingerprint: fingerprint(i) };
  });
  return { text: `[${texts.join(',')}]`, memo };
}

/** [type, uid] of each event (an upsert carries the Kubernetes object, the others a PodRef). */
const kinds = (evs: RawPodEvent[]) =>
  evs.map((e) => [e.type, e.type === 'synced' ? '' : e.type === 'upsert' ? e.pod.metadata?.uid : e.pod.uid]);

function read(diff: PodsFileDiff, text: string): RawPodEvent[] {
  const entries = readPodsFileEntries(text, 'pods.json', (d) => diff.knows(d));
  return diff.apply(diff.plan(entries)).events;
}

describe('pods file with a restart memo', () => {
  it('vouches for memo items without validating them, then delivers their objects at the next reading', () => {
    const { text, memo } = fileWithMemo([pod('a'), invalid, pod('c')], [0, 1]);
    const diff = new PodsFileDiff('pods.json', undefined, memo);
    const first = read(diff, text);
    expect(kinds(first)).toEqual([
      ['unchanged', 'uid-a'],
      ['unchanged', 'uid-bad'],
      ['upsert', 'uid-c'],
    ]);
    expect(first[0]).toMatchObject({ fingerprint: 'fp-0', digest: memo[0]!.digest });
    expect(diff.vouched).toBe(2);
    // The item not in the memo carries its digest, for the next memo.
    expect(first[2]).toMatchObject({ type: 'upsert', digest: expect.stringMatching(/\./) });

    const second = read(diff, text);
    expect(kinds(second)).toEqual([
      ['upsert', 'uid-a'],
      ['reject', 'uid-bad'],
    ]);
    expect(second[0]).toMatchObject({ digest: memo[0]!.digest });
    expect((second[1] as { reason: string }).reason).toMatch(/runAsUser="4294967296"/);
    expect(diff.vouched).toBe(0);
    expect(read(diff, text)).toEqual([]);
  });

  it('a memo item whose namespace labels changed is vouched with no fingerprint (it waits for its object)', () => {
    const ns = { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', labels: { team: 'x' } } };
    const { text, memo } = fileWithMemo([pod('a'), ns], [0]);
    const diff = new PodsFileDiff('pods.json', undefined, memo);
    const ev = read(diff, text).find((e) => e.type === 'unchanged');
    expect(ev).toMatchObject({ type: 'unchanged', fingerprint: '' });
  });

  it('the memo is for the first reading only, and a removed memo item is deleted', () => {
    const { text, memo } = fileWithMemo([pod('a'), pod('b')], [0, 1]);
    const diff = new PodsFileDiff('pods.json', undefined, memo);
    read(diff, text);
    const { text: onlyB } = fileWithMemo([pod('b')], []);
    expect(kinds(read(diff, onlyB))).toEqual([
      ['upsert', 'uid-b'],
      ['delete', 'uid-a'],
    ]);
  });
});

describe('reconciler with unchanged events', () => {
  const lastState = (items: PodStatus[], name: string) => [...items].reverse().find((s) => s.pod.name === name)?.state;

  it('enrolls a vouched pod without a call only where the kernel holds its fingerprint; a drifted one waits for its object and is repaired', async () => {
    const backend = new RecordingBackend();
    const a = mp('a');
    const b = mp('b');
    backend.plant({ uid: a.uid, namespace: a.namespace, name: a.name }, backend.fingerprint(a));
    backend.plant({ uid: b.uid, namespace: b.namespace, name: b.name }, 'drifted');
    const events = new Subject<ReconcilerInput>();
    const r = new Reconciler({ backend, events, resyncIntervalMs: 0, retry: { initialMs: 5, maxMs: 40 } });
    const statuses = collect(r.status$);
    await r.start();
    try {
      events.next({ type: 'unchanged', pod: { uid: a.uid, namespace: a.namespace, name: a.name }, fingerprint: backend.fingerprint(a), digest: 'da' });
      events.next({ type: 'unchanged', pod: { uid: b.uid, namespace: b.namespace, name: b.name }, fingerprint: backend.fingerprint(b), digest: 'db' });
      events.next({ type: 'synced' });
      await statuses.until((i) => lastState(i, 'a') === 'enrolled');
      const snap = () => Object.fromEntries(r.snapshot().pods.map((p) => [p.pod.name, p.state]));
      expect(snap()).toEqual({ a: 'enrolled', b: 'pending' });
      expect(backend.calls.filter((c) => c.op === 'enroll' || c.op === 'unenroll')).toEqual([]);
      // The memo lists what the kernel holds as wanted: a, not the drifted b.
      expect(r.restartMemo().map((m) => [m.uid, m.digest])).toEqual([[a.uid, 'da']]);

      // The objects follow: a is unchanged (no call), b is enrolled.
      events.next({ type: 'upsert', pod: a, digest: 'da' });
      events.next({ type: 'upsert', pod: b, digest: 'db' });
      await statuses.until((i) => lastState(i, 'b') === 'enrolled');
      expect(backend.callsFor(a.uid, 'enroll')).toHaveLength(0);
      expect(backend.callsFor(b.uid, 'enroll')).toHaveLength(1);
      expect(backend.installed.get(b.uid)?.fingerprint).toBe(backend.fingerprint(b));
      expect(r.restartMemo().map((m) => m.uid).sort()).toEqual([a.uid, b.uid].sort());
    } finally {
      await r.stop({ drainTimeoutMs: 500 });
    }
  });

  it('a vouched pod deleted before its object comes is unenrolled', async () => {
    const backend = new RecordingBackend();
    const a = mp('a');
    const ref = { uid: a.uid, namespace: a.namespace, name: a.name };
    backend.plant(ref, backend.fingerprint(a));
    const events = new Subject<ReconcilerInput>();
    const r = new Reconciler({ backend, events, resyncIntervalMs: 0 });
    const statuses = collect(r.status$);
    await r.start();
    try {
      events.next({ type: 'unchanged', pod: ref, fingerprint: backend.fingerprint(a), digest: 'da' });
      events.next({ type: 'synced' });
      events.next({ type: 'delete', pod: ref });
      await statuses.until((i) => lastState(i, 'a') === 'removed');
      expect(backend.installed.has(a.uid)).toBe(false);
    } finally {
      await r.stop({ drainTimeoutMs: 500 });
    }
  });
});
