import type { InstalledState, InstalledSummary } from '@shunt/core';
import { ObservationCache } from './observation';

const state = (pods: number): InstalledState => ({
  backend: 'sockops',
  nodeReady: true,
  nodeDetail: {},
  pods: Array.from({ length: pods }, (_, i) => ({ uid: `u${i}`, namespace: 'n', name: `p${i}`, fingerprint: 'f' })),
  counters: {},
});

test('a scrape reuses a fresh observation and never starts two at once', async () => {
  let t = 0;
  let calls = 0;
  const cache = new ObservationCache(async () => (calls++, state(calls)), { maxAgeMs: 1000, now: () => t });
  expect((await cache.current())?.state.pods).toBe(1);
  t = 500;
  expect(await cache.current()).toMatchObject({ ageMs: 500 });
  expect(calls).toBe(1);
  t = 2000;
  await Promise.all([cache.current(), cache.current(), cache.refresh()]);
  expect(calls).toBe(2);
});

test('a slow observation does not hold the scrape past its budget: the previous one answers', async () => {
  let t = 0;
  let release!: () => void;
  let slow = false;
  const cache = new ObservationCache(
    () => (slow ? new Promise<InstalledState>((r) => (release = () => r(state(7)))) : Promise.resolve(state(3))),
    { maxAgeMs: 10, budgetMs: 50, now: () => t },
  );
  await cache.current();
  slow = true;
  t = 100;
  const started = Date.now();
  const r = await cache.current();
  expect(Date.now() - started).toBeLessThan(5000); // bounded by the 50 ms budget, generously
  expect(r).toMatchObject({ ageMs: 100 });
  expect(r!.state.pods).toBe(3);
  release();
  await cache.refresh();
  expect((await cache.current())!.state.pods).toBe(7);
});

test('a failed observation keeps the previous one and is reported once', async () => {
  let fail = false;
  let t = 0;
  const cache = new ObservationCache(async () => {
    if (fail) throw new Error('observe timed out');
    return state(2);
  }, { maxAgeMs: 0, now: () => t });
  await cache.current();
  fail = true;
  t = 1;
  expect((await cache.current())!.state.pods).toBe(2);
  expect((cache.lastError as Error).message).toBe('observe timed out');
});

test('an enroll or unenroll through the wrapped backend makes the next scrape read again', async () => {
  let calls = 0;
  const backend = {
    name: 'sockops' as const,
    support: () => ({ ok: true as const }),
    start: async () => undefined,
    enroll: async () => undefined,
    unenroll: async () => undefined,
    observe: async () => (calls++, state(calls)),
    fingerprint: () => 'f',
    stop: async () => undefined,
  };
  const cache = new ObservationCache(() => backend.observe(), { maxAgeMs: 60_000 });
  const wrapped = cache.wrap(backend);
  await cache.current();
  await cache.current();
  expect(calls).toBe(1);
  await wrapped.unenroll({ uid: 'u', namespace: 'n', name: 'p' });
  expect((await cache.current())!.state.pods).toBe(2);
  expect(calls).toBe(2);
});

test('with a count-only summarize(), scrapes never run a full observe; the resync\'s observe still serves them as counts', async () => {
  let t = 0;
  let observes = 0;
  let summaries = 0;
  let installed = 5;
  const summary = (): InstalledSummary => ({ backend: 'sockops', nodeReady: true, nodeDetail: { capacity: { pods: installed } }, pods: installed, counters: { c: 1 } });
  const cache = new ObservationCache(async () => (observes++, state(installed)), {
    maxAgeMs: 1000,
    now: () => t,
    summarize: async () => (summaries++, summary()),
  });
  expect(await cache.current()).toMatchObject({ state: { pods: 5, nodeDetail: { capacity: { pods: 5 } } }, ageMs: 0 });
  t = 500;
  await cache.current(); // fresh: reused
  expect([observes, summaries]).toEqual([0, 1]);
  t = 2000;
  installed = 6;
  await Promise.all([cache.current(), cache.current()]); // stale: one summary for both
  expect([observes, summaries]).toEqual([0, 2]);
  // The reconciler's full observe gets the whole state; scrapes after it reuse its counts.
  installed = 7;
  expect((await cache.refresh()).pods).toHaveLength(7);
  expect((await cache.current())!.state.pods).toBe(7);
  expect([observes, summaries]).toEqual([1, 2]);
  // What a scrape holds is the counts only (no per-pod records kept between resyncs).
  expect(Array.isArray((await cache.current())!.state.pods)).toBe(false);
});

test('a failed summarize() keeps the previous reading and is reported', async () => {
  let t = 0;
  let fail = false;
  const cache = new ObservationCache(async () => state(1), {
    maxAgeMs: 0,
    now: () => t,
    summarize: async () => {
      if (fail) throw new Error('count failed');
      return { backend: 'sockops', nodeReady: true, nodeDetail: {}, pods: 3, counters: {} };
    },
  });
  expect((await cache.current())!.state.pods).toBe(3);
  fail = true;
  t = 1;
  expect((await cache.current())!.state.pods).toBe(3);
  expect((cache.lastError as Error).message).toBe('count failed');
});
