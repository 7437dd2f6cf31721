import { getHeapSpaceStatistics } from 'node:v8';
import { MemoryReclaimer, reclaimMemory } from './memory';

const oldSpace = () => getHeapSpaceStatistics().find((s) => s.space_name === 'old_space')!;

test('reclaimMemory() compacts: old space pages kept alive by a few objects go back', () => {
  // Long-lived objects interleaved with garbage that lives long enough to be promoted: old space
  // ends up with pages that each hold a little live data (a start with 10,000 pods, in small).
  const keep: object[] = [];
  let tmp: object[] = [];
  for (let i = 0; i < 40_000; i++) {
    keep.push({ id: `p${i}`, a: [i, i + 1] });
    for (let j = 0; j < 40; j++) tmp.push({ j, t: `y${j}.${i}`, q: [j] });
    if (tmp.length > 200_000) tmp = [];
  }
  tmp = [];
  const before = oldSpace().space_size;
  expect(reclaimMemory()).toBe(true);
  const after = oldSpace();
  // A plain full GC leaves old space near `before` (measured: 117 -> 117 MB); compaction shrinks it
  // to about what is live.
  expect(after.space_size).toBeLessThan(before * 0.6);
  expect(after.space_size).toBeLessThan(after.space_used_size * 3 + 4 * 1048576);
  expect(keep).toHaveLength(40_000);
});

describe('MemoryReclaimer', () => {
  let t0 = 0;
  let runs: number[] = [];
  let busy = false;
  const make = () =>
    new MemoryReclaimer({ quietMs: 500, minIntervalMs: 5000, minActivity: 10, busy: () => busy, reclaim: () => (runs.push(Date.now() - t0), true), now: () => Date.now() });
  // Fake timers fake Date.now too: each timer sees the time it fires at.
  const advance = (ms: number) => jest.advanceTimersByTime(ms);
  beforeEach(() => {
    jest.useFakeTimers();
    t0 = Date.now();
    runs = [];
    busy = false;
  });
  afterEach(() => jest.useRealTimers());

  test('compacts once the burst is over: after enough activity and a quiet time, not during it', () => {
    const r = make();
    for (let i = 0; i < 30; i++) {
      r.note();
      advance(100); // activity every 100 ms: never quiet
    }
    expect(runs).toEqual([]);
    advance(600);
    expect(runs).toEqual([3400]); // 500 ms after the last note (at 2900)
    r.stop();
  });

  test('too little activity never compacts; busy defers it; at most one per interval', () => {
    const r = make();
    for (let i = 0; i < 9; i++) r.note();
    advance(10_000);
    expect(runs).toEqual([]);
    r.note(); // the 10th: armed
    busy = true;
    advance(2000);
    expect(runs).toEqual([]);
    busy = false;
    advance(1000);
    expect(runs).toHaveLength(1);
    const first = runs[0]!;
    r.note(20);
    advance(1000);
    expect(runs).toHaveLength(1); // within 5 s of the last
    advance(5000);
    expect(runs).toEqual([first, first + 5000]);
    r.stop();
    r.note(100);
    advance(10_000);
    expect(runs).toHaveLength(2);
  });

  test('reclaimNow() runs unless busy, and resets the activity', () => {
    const r = make();
    busy = true;
    expect(r.reclaimNow()).toBe(false);
    busy = false;
    r.note(5);
    expect(r.reclaimNow()).toBe(true);
    r.note(5); // 5 since the reset: below the threshold
    advance(10_000);
    expect(runs).toEqual([0]);
    r.stop();
  });
});
