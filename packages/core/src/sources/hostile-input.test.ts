// Property test: hostile pods-file entries go through exactly the code the agent runs (entries →
// PodsFileDiff (validation) → interpret → Reconciler → backend), next to good pods. Whatever the bad
// entries hold — any field of any type, huge/negative/NaN numbers, long and non-ASCII strings, lone
// surrogates, duplicate uids, 10,000-entry lists — nothing is thrown, every good pod is enrolled, and
// every bad entry gets exactly one report (a `rejected` status or one source problem) that names it.
import fc from 'fast-check';
import { Subject, config as rxConfig } from 'rxjs';
import { Reconciler } from '../reconciler/reconciler';
import { RecordingBackend } from '../testing/recording-backend';
import { eventually } from '../testing/collect';
import type { MeshPod, PodStatus } from '../types';
import { SYNCED, type RawPodEvent, type ReconcilerInput } from './events';
import { interpret } from './interpret';
import { displayValue } from '../kube/validate';
import { podsFileEntries } from './pods-file';
import { PodsFileDiff } from './pods-file-diff';

type Json = Record<string, unknown>;

const goodPod = (i: number, note = ''): Json => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: {
    name: `good-${i}`,
    namespace: 'shop',
    uid: `uid-good-${i}`,
    labels: { app: 'web' },
    annotations: { 'sidecar.istio.io/status': '{}', 'x.example.com/note': note },
  },
  spec: { nodeName: 'node-1', containers: [{ name: 'app', env: [{ name: 'A', value: note }] }, { name: 'istio-proxy', securityContext: { runAsUser: 1337 } }] },
  status: { phase: 'Running', podIPs: [{ ip: `198.18.${(i >> 8) & 255}.${i & 255}` }] },
  shunt: { netnsPath: `/var/run/netns/good-${i}`, hostVeth: `vg${i}` },
});

// --- values that are invalid wherever they are put ------------------------------------------------
const TEN_THOUSAND = Array.from({ length: 10_000 }, (_, i) => i);
const notString = fc.oneof(
  fc.integer(),
  fc.double(), // includes NaN, ±Infinity, -0
  fc.boolean(),
  fc.array(fc.anything(), { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 5 }), fc.anything(), { maxKeys: 3 }),
  fc.constant(TEN_THOUSAND),
);
const notObject = fc.oneof(fc.integer(), fc.double(), fc.boolean(), fc.string({ maxLength: 10 }), fc.array(fc.anything(), { maxLength: 3 }), fc.constant(TEN_THOUSAND));
const notArray = fc.oneof(fc.integer(), fc.double(), fc.boolean(), fc.string({ maxLength: 10 }), fc.dictionary(fc.string({ maxLength: 5 }), fc.anything(), { maxKeys: 3 }));
const loneSurrogate = fc.tuple(fc.string({ maxLength: 10 }), fc.constantFrom('\uD800', '\uDFFF', '\uDBFF'), fc.string({ maxLength: 10 })).map(([a, s, b]) => `${a}${s}${b}`);
const nonAscii = fc.string({ unit: 'grapheme', minLength: 1, maxLength: 20 }).map((s) => `Ünïcødé ${s}`); // space + upper case: never a DNS name
const longText = (min: number) => fc.integer({ min, max: min + 5_000 }).map((n) => 'a'.repeat(n));
const badId = fc.oneof(
  fc.constantFrom(4_294_967_296, 4_294_967_295, 2 ** 31, -1, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 1.5, 2 ** 53, 1e308, Number.MAX_VALUE),
  fc.integer({ min: 2 ** 31, max: Number.MAX_SAFE_INTEGER }),
  fc.integer({ min: Number.MIN_SAFE_INTEGER, max: -1 }),
  fc.string({ maxLength: 10 }),
  fc.boolean(),
  fc.constant(TEN_THOUSAND),
);
const dnsBad = fc.oneof(notString, loneSurrogate, nonAscii);

/** Where a bad value goes, and values that are wrong there. `identity`: the value breaks the pod's uid/name. */
const MUTATIONS: { path: (string | number)[]; values: fc.Arbitrary<unknown>; identity?: boolean }[] = [
  { path: [], values: fc.oneof(fc.constant(null), fc.integer(), fc.string({ maxLength: 10 }), fc.boolean(), fc.constant([])), identity: true },
  { path: ['metadata'], values: notObject, identity: true },
  { path: ['metadata', 'name'], values: fc.oneof(dnsBad, fc.constant(null), longText(254)), identity: true },
  { path: ['metadata', 'namespace'], values: fc.oneof(dnsBad, longText(64)), identity: true },
  { path: ['metadata', 'uid'], values: fc.oneof(notString, longText(49), nonAscii), identity: true },
  { path: ['metadata', 'labels'], values: notObject },
  { path: ['metadata', 'labels', 'app'], values: fc.oneof(notString, loneSurrogate, nonAscii, longText(64)) },
  { path: ['metadata', 'annotations', 'x.example.com/note'], values: fc.oneof(notString, loneSurrogate, longText(300_000)) },
  { path: ['metadata', 'annotations', 'bad key!'], values: fc.string({ maxLength: 5 }) },
  { path: ['metadata', 'annotations', 'traffic.sidecar.istio.io/includeInboundPorts'], values: fc.constantFrom('70000', '-1', 'abc', '80,,90', '+80', '*,x') },
  { path: ['metadata', 'annotations', 'traffic.sidecar.istio.io/excludeOutboundIPRanges'], values: fc.constantFrom('10.0.0.0/33', '*', '300.1.1.1/8', ' 10.0.0.0/8') },
  { path: ['spec'], values: notObject },
  { path: ['spec', 'nodeName'], values: notString },
  { path: ['spec', 'hostNetwork'], values: fc.oneof(fc.integer(), fc.string({ maxLength: 5 }), fc.constant([])) },
  { path: ['spec', 'containers'], values: fc.oneof(notArray, fc.constant(TEN_THOUSAND.map(() => ({ name: 'app' }))), fc.constant([{ name: 42 }])) },
  { path: ['spec', 'containers', 1, 'name'], values: fc.oneof(dnsBad, fc.constant('app')) }, // 'app': duplicate name
  { path: ['spec', 'containers', 1, 'securityContext'], values: notObject },
  { path: ['spec', 'containers', 1, 'securityContext', 'runAsUser'], values: badId },
  { path: ['spec', 'containers', 1, 'securityContext', 'runAsGroup'], values: badId },
  { path: ['spec', 'containers', 0, 'env'], values: fc.oneof(notArray, fc.constant([{ name: 42 }]), fc.constant([{ name: 'A', value: '\uD800' }])) },
  { path: ['spec', 'containers', 1, 'args'], values: fc.oneof(notArray, fc.constant([42, {}])) },
  { path: ['status'], values: notObject },
  { path: ['status', 'phase'], values: fc.oneof(notString, fc.string({ maxLength: 8 }).map((s) => `Exploded${s}`)) },
  { path: ['status', 'podIP'], values: fc.oneof(notString, fc.constantFrom('not-an-ip', '198.18.0.1/24', '999.1.1.1', '::g')) },
  {
    path: ['status', 'podIPs'],
    values: fc.oneof(notArray, fc.constant([{ ip: '198.18.0.1' }, { ip: '198.18.0.2' }, { ip: '2001:db8::1' }]), fc.constant([{ ip: '999.0.0.1' }]), fc.constant(TEN_THOUSAND.map((i) => ({ ip: `198.18.0.${i & 255}` })))),
  },
  { path: ['shunt'], values: fc.oneof(fc.integer(), fc.string({ maxLength: 5 }), fc.constant([])) },
  { path: ['shunt', 'netnsPath'], values: fc.oneof(notString, fc.constantFrom('relative/path', '/a\0b', ''), loneSurrogate.map((s) => `/${s}`), longText(4097).map((s) => `/${s}`)) },
  { path: ['shunt', 'hostVeth'], values: fc.oneof(notString, fc.constantFrom('a b', 'x/y', 'eth:0', ''), longText(16)) },
  { path: ['shunt', 'netnsCookie'], values: fc.oneof(fc.constantFrom('-1', 'abc', '18446744073709551616', 1.5, -1, Number.NaN, true), fc.constant({})) },
];

function setAt(obj: Json, path: (string | number)[], value: unknown): unknown {
  if (path.length === 0) return value;
  let cur = obj as Record<string | number, unknown>;
  for (const k of path.slice(0, -1)) cur = cur[k] as Record<string | number, unknown>;
  cur[path[path.length - 1]!] = value;
  return obj;
}

interface BadEntry {
  where: string;
  uid?: string;
  what: string;
}

/** Runs one file's worth of entries through the agent's pipeline; returns what each side saw. */
async function runPipeline(items: unknown[], backend = new RecordingBackend('sockops', { record: true })) {
  const diff = new PodsFileDiff('pods.yaml', 'node-1');
  const { events: raw, newProblems } = diff.apply(diff.plan(podsFileEntries([items], 'pods.yaml')));
  const events = new Subject<RawPodEvent>();
  const rec = new Reconciler({ backend, events: events.pipe(interpret('istio-sidecar')), resyncIntervalMs: 0, maxInFlight: 64 });
  const statuses: PodStatus[] = [];
  rec.status$.subscribe((s) => statuses.push(s));
  await rec.start();
  for (const e of raw) events.next(e);
  events.next(SYNCED);
  await eventually(() => {
    const s = rec.snapshot();
    return s.inFlight === 0 && s.queued === 0;
  }, 30_000, 'reconciler idle');
  await rec.stop();
  return { backend, statuses, problems: newProblems, snapshot: rec.snapshot() };
}

// Anything thrown asynchronously (rxjs reports subscriber errors on a timer; promises nobody awaits).
const escaped: unknown[] = [];
const onRejection = (e: unknown) => escaped.push(e);
beforeAll(() => {
  process.on('unhandledRejection', onRejection);
  rxConfig.onUnhandledError = (e) => escaped.push(e);
});
afterAll(() => {
  process.off('unhandledRejection', onRejection);
  rxConfig.onUnhandledError = null;
});

describe('hostile pods-file entries (property)', () => {
  it('every good pod is enrolled, every bad entry has exactly one report naming it, nothing is thrown', async () => {
    const mutation = fc.integer({ min: 0, max: MUTATIONS.length - 1 }).chain((m) => fc.tuple(fc.constant(m), MUTATIONS[m]!.values));
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.string({ unit: 'grapheme', maxLength: 30 }), { minLength: 1, maxLength: 6 }), // good pods' (valid, non-ASCII) notes
        fc.array(mutation, { minLength: 1, maxLength: 8 }),
        fc.array(fc.nat(), { maxLength: 3 }), // duplicates of good uids
        fc.nat(),
        async (notes, mutations, dups, seed) => {
          const items: unknown[] = [];
          const good: string[] = [];
          const bad: BadEntry[] = [];
          // Interleave good and bad entries deterministically from the seed.
          type Slot = { kind: 'good'; i: number; note: string } | { kind: 'bad'; k: number; m: [number, unknown] };
          const rank = (o: Slot) => (((o.kind === 'good' ? o.i : 100 + o.k) * 7919 + seed) % 101);
          const order: Slot[] = [
            ...notes.map((note, i): Slot => ({ kind: 'good', i, note })),
            ...mutations.map((m, k): Slot => ({ kind: 'bad', k, m })),
          ].sort((a, b) => rank(a) - rank(b));
          for (const o of order) {
            const where = `item ${items.length + 1}`;
            if (o.kind === 'good') {
              items.push(goodPod(o.i, o.note));
              good.push(`uid-good-${o.i}`);
            } else {
              const [mi, value] = o.m;
              const spec = MUTATIONS[mi]!;
              const base = goodPod(1000 + o.k);
              (base.metadata as Json).name = `bad-${o.k}`;
              (base.metadata as Json).uid = `uid-bad-${o.k}`;
              items.push(setAt(base, spec.path, value));
              bad.push({ where, uid: spec.identity ? undefined : `uid-bad-${o.k}`, what: `${spec.path.join('.')}=${displayValue(value)}` });
            }
          }
          for (const d of dups) {
            const of = d % notes.length;
            const copy = goodPod(of);
            (copy.metadata as Json).name = `dup-${items.length}`;
            bad.push({ where: `item ${items.length + 1}`, what: `duplicate uid-good-${of}` });
            items.push(copy);
          }

          const { backend, statuses, problems, snapshot } = await runPipeline(items);

          for (const uid of good) {
            expect(backend.installed.has(uid)).toBe(true);
            expect(snapshot.pods.find((p) => p.pod.uid === uid)?.state).toBe('enrolled');
          }
          expect(statuses.filter((s) => s.state === 'rejected' && good.includes(s.pod.uid))).toEqual([]);
          const reports = [
            ...statuses.filter((s): s is Extract<PodStatus, { state: 'rejected' }> => s.state === 'rejected').map((s) => ({ uid: s.pod.uid, text: s.reason })),
            ...problems.map((text) => ({ uid: undefined as string | undefined, text })),
          ];
          for (const b of bad) {
            const mine = reports.filter((r) => r.text.includes(`${b.where}:`) || (b.uid !== undefined && r.uid === b.uid));
            if (mine.length !== 1) throw new Error(`${b.where} (${b.what}): ${mine.length} reports: ${JSON.stringify(mine).slice(0, 500)}`);
            // The report names the pod (or the entry), the field and the value.
            expect(mine[0]!.text).toMatch(/(pod|namespace) .+: .+=.*(rejected: |appears again)/);
            expect(mine[0]!.text).not.toMatch(/Invalid (key in record|input)($| \()/); // zod's bare words are not a reason
          }
          expect(reports).toHaveLength(bad.length);
          // No bad entry reached the backend.
          for (const uid of backend.installed.keys()) expect(good).toContain(uid);
          expect(escaped).toEqual([]);
        },
      ),
      {
        numRuns: 40,
        seed: Number(process.env['FC_SEED'] ?? 20261201),
        endOnFailure: true,
        // Counterexamples hold 10,000-entry lists: report the cause, not the whole value.
        reporter: (out) => {
          if (out.failed) throw new Error(`property failed (seed ${out.seed}, path ${out.counterexamplePath}): ${String((out.errorInstance as Error)?.message ?? out.errorInstance).slice(0, 2000)}`);
        },
      },
    );
  }, 120_000);

  it('10,000 entries, one in ten hostile: 9,000 enrolled, 1,000 reports, nothing thrown', async () => {
    const items: unknown[] = [];
    const samples = fc.sample(fc.integer({ min: 0, max: MUTATIONS.length - 1 }).chain((m) => fc.tuple(fc.constant(m), MUTATIONS[m]!.values)), { numRuns: 1000, seed: 7 });
    let b = 0;
    for (let i = 0; i < 10_000; i++) {
      if (i % 10 === 9) {
        const [mi, value] = samples[b]!;
        const base = goodPod(20_000 + b);
        (base.metadata as Json).name = `bad-${b}`;
        (base.metadata as Json).uid = `uid-bad-${b}`;
        items.push(setAt(base, MUTATIONS[mi]!.path, value));
        b++;
      } else items.push(goodPod(i));
    }
    const { backend, statuses, problems } = await runPipeline(items, new RecordingBackend('sockops', { record: false }));
    expect(backend.installed.size).toBe(9000);
    expect(statuses.filter((s) => s.state === 'rejected').length + problems.length).toBe(1000);
    expect(escaped).toEqual([]);
  }, 120_000);
});

describe('the reconciler is unbreakable by construction', () => {
  class ThrowingBackend extends RecordingBackend {
    override fingerprint(pod: MeshPod): string {
      // As the sockops backend did for runAsUser 4294967296: a synchronous throw from fingerprint().
      if (pod.name.startsWith('fp-')) throw new Error(`proxy.uid=${pod.proxy.uid}: not a uid/gid (0..4294967294)`);
      return super.fingerprint(pod);
    }
    override enroll(pod: MeshPod): Promise<void> {
      if (pod.name.startsWith('sync-')) throw new Error('synchronous enroll failure');
      if (pod.name.startsWith('undef-')) return undefined as unknown as Promise<void>;
      return super.enroll(pod);
    }
  }

  it('a throwing fingerprint rejects that pod, a throwing enroll fails that pod, the stream and the others go on', async () => {
    const items = [goodPod(1), { ...goodPod(2), metadata: { ...(goodPod(2).metadata as Json), name: 'fp-2' } }, { ...goodPod(3), metadata: { ...(goodPod(3).metadata as Json), name: 'sync-3' } }, { ...goodPod(4), metadata: { ...(goodPod(4).metadata as Json), name: 'undef-4' } }, goodPod(5)];
    const backend = new ThrowingBackend('sockops');
    const { statuses, snapshot } = await runPipeline(items, backend);
    expect([...backend.installed.keys()].sort()).toEqual(['uid-good-1', 'uid-good-5']);
    // A backend returning a non-promise is taken as done, not as a crash.
    expect(snapshot.pods.find((p) => p.pod.uid === 'uid-good-4')?.state).toBe('enrolled');
    const state = (uid: string) => snapshot.pods.find((p) => p.pod.uid === uid);
    expect(state('uid-good-2')).toMatchObject({ state: 'rejected', reason: expect.stringMatching(/sockops backend cannot serve pod shop\/fp-2: proxy\.uid=1337/) });
    expect(state('uid-good-3')).toMatchObject({ state: 'failed', reason: 'synchronous enroll failure' });
    expect(statuses.filter((s) => s.pod.uid === 'uid-good-2' && s.state === 'rejected')).toHaveLength(1);
    expect(escaped).toEqual([]);
  });

  it('an operator that throws for one pod rejects that pod and keeps the subscription', async () => {
    const backend = new RecordingBackend('sockops');
    const events = new Subject<ReconcilerInput>();
    const rec = new Reconciler({ backend, events, resyncIntervalMs: 0 });
    await rec.start();
    // A MeshPod whose getters throw stands for any bug reached while handling one event.
    const exploding = { type: 'upsert', pod: { uid: 'u-boom', namespace: 'n', name: 'boom', get membership(): never { throw new Error('boom'); } } } as unknown as ReconcilerInput;
    const { testMeshPod } = await import('../testing/mesh-pod');
    events.next({ type: 'upsert', pod: testMeshPod('a') });
    events.next(exploding);
    events.next({ type: 'upsert', pod: testMeshPod('b') });
    await eventually(() => backend.installed.has('uid-a') && backend.installed.has('uid-b'), 5000, 'a and b enrolled');
    expect(rec.snapshot().pods.find((p) => p.pod.uid === 'u-boom')).toMatchObject({ state: 'rejected', reason: expect.stringMatching(/boom/) });
    await rec.stop();
    expect(escaped).toEqual([]);
  });
});
