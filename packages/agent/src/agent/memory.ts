// Returning a burst's memory to the node. A start with 10,000 pods (a pods-file change, a resync)
// allocates its temporaries interleaved with the pods' long-lived state. What survives a young
// collection is promoted, so old space fills with pages that each keep a few live objects; a full
// GC frees the garbage but keeps those pages (measured at 10,000 pods: 45 MB live in 95 MB of old
// space after a full GC), until V8's memory reducer compacts them after some idle seconds, if ever.
// At the end of a burst the agent asks for that compaction itself: one compacting full GC, run only
// when no pod work is in flight (60-80 ms at 10,000 pods, measured).
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

let gcFn: (() => void) | null | undefined;

/** The isolate's gc(): node's own with --expose-gc, else exposed here once (a new context sees the flag). */
function gcFunction(): (() => void) | null {
  if (gcFn !== undefined) return gcFn;
  const global = (globalThis as { gc?: unknown }).gc;
  if (typeof global === 'function') return (gcFn = global as () => void);
  try {
    setFlagsFromString('--expose-gc');
    const fn = runInNewContext('gc') as unknown;
    gcFn = typeof fn === 'function' ? (fn as () => void) : null;
  } catch {
    gcFn = null;
  }
  return gcFn;
}

/**
 * One full GC that also compacts old space (V8's own flag, set for this collection only), so
 * emptied pages go back to the OS. false when the runtime offers no gc() (nothing happens then).
 */
export function reclaimMemory(): boolean {
  const gc = gcFunction();
  if (!gc) return false;
  setFlagsFromString('--compact-on-every-full-gc');
  try {
    gc(); // node 20's gc() ignores its options: a full, synchronous collection
  } finally {
    setFlagsFromString('--no-compact-on-every-full-gc');
  }
  return true;
}

export interface ReclaimerOptions {
  /** Quiet time (no pod activity) before a compaction (default 500 ms). */
  quietMs?: number;
  /** At most one compaction this often (default 5 s). */
  minIntervalMs?: number;
  /** Activity (pod state changes, readings) that makes a compaction worth it (default 50). */
  minActivity?: number;
  /** Is pod work in flight or queued? Never compact then (it would delay an enroll). */
  busy: () => boolean;
  reclaim?: () => boolean;
  now?: () => number;
  /** After each compaction: how long it took (ms) and why (`ready`, `burst`). */
  onReclaim?: (ms: number, why: 'now' | 'burst') => void;
}

/**
 * Compacts once a burst is over: after `minActivity` notes, once `quietMs` passed without one and
 * nothing is busy, at most every `minIntervalMs`. A node with steady churn (a pod every few
 * seconds) never reaches the activity threshold between compactions' intervals often: the cost
 * stays bounded by one full GC per interval.
 */
export class MemoryReclaimer {
  private activity = 0;
  private lastNote = 0;
  private lastReclaim = -Infinity;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private readonly quietMs: number;
  private readonly minIntervalMs: number;
  private readonly minActivity: number;
  private readonly reclaim: () => boolean;
  private readonly now: () => number;
  /** Compactions run (for tests and the log). */
  runs = 0;

  constructor(private readonly opts: ReclaimerOptions) {
    this.quietMs = opts.quietMs ?? 500;
    this.minIntervalMs = opts.minIntervalMs ?? 5_000;
    this.minActivity = opts.minActivity ?? 50;
    this.reclaim = opts.reclaim ?? reclaimMemory;
    this.now = opts.now ?? (() => performance.now());
  }

  /** Some pod work happened (weight: how much, e.g. a pods-file reading of many entries). */
  note(weight = 1): void {
    if (this.stopped) return;
    this.activity += weight;
    this.lastNote = this.now();
    if (this.activity >= this.minActivity) this.arm(this.quietMs);
  }

  /** Compact now (the end of a known burst, e.g. the first full sync), unless busy. */
  reclaimNow(): boolean {
    if (this.stopped || this.opts.busy()) return false;
    return this.run('now');
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  private run(why: 'now' | 'burst'): boolean {
    const t = performance.now();
    const ok = this.reclaim();
    this.activity = 0;
    this.lastReclaim = this.now();
    if (ok) {
      this.runs++;
      this.lastMs = performance.now() - t;
      try {
        this.opts.onReclaim?.(this.lastMs, why);
      } catch {
        // bookkeeping only
      }
    }
    return ok;
  }

  /** Duration of the last compaction (ms), for the log. */
  lastMs: number | undefined;

  private arm(ms: number): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (this.stopped || this.activity < this.minActivity) return;
      const t = this.now();
      const wait = Math.max(this.lastNote + this.quietMs - t, this.lastReclaim + this.minIntervalMs - t, this.opts.busy() ? this.quietMs : 0);
      if (wait > 0) return this.arm(wait);
      this.run('burst');
    }, ms);
    this.timer.unref();
  }
}
