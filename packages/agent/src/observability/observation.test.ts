import type { InstalledState } from '@shunt/core';
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
  expect((await cache.current())?.state.pods).toHaveLength(1);
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
  expect(r!.state.pods).toHaveLength(3);
  release();
  await cache.refresh();
  expect((await cache.current())!.state.pods).toHaveLength(7);
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
  expect((await cache.current())!.state.pods).toHaveLength(2);
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
  expect((await cache.current())!.state.pods).toHaveLength(2);
  expect(calls).toBe(2);
});
