// Test helper: records everything an Observable emits and waits (bounded) for a condition on it.
import type { Observable, Subscription } from 'rxjs';

export interface Collector<T> {
  readonly items: T[];
  /** Resolves with the items once `pred(items)` holds; rejects after `timeoutMs` with what was seen. */
  until(pred: (items: T[]) => boolean, timeoutMs?: number, what?: string): Promise<T[]>;
  /** Forget what was seen so far. */
  clear(): void;
  stop(): void;
  readonly errors: unknown[];
}

export function collect<T>(source: Observable<T>): Collector<T> {
  const items: T[] = [];
  const errors: unknown[] = [];
  const waiters = new Set<() => void>();
  const sub: Subscription = source.subscribe({
    next: (v) => {
      items.push(v);
      for (const w of [...waiters]) w();
    },
    error: (e) => errors.push(e),
  });
  return {
    items,
    errors,
    until(pred, timeoutMs = 5000, what = 'condition') {
      return new Promise<T[]>((resolve, reject) => {
        const check = () => {
          if (pred(items)) {
            waiters.delete(check);
            clearTimeout(timer);
            resolve(items);
          }
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; saw ${JSON.stringify(items.slice(-10))}`));
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
    clear: () => {
      items.length = 0;
    },
    stop: () => sub.unsubscribe(),
  };
}

/** Polls `pred` every 5 ms until it holds; rejects after `timeoutMs` naming `what`. */
export function eventually(pred: () => boolean, timeoutMs = 5000, what = 'condition'): Promise<void> {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const tick = () => {
      if (pred()) return resolve();
      if (Date.now() - t0 > timeoutMs) return reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      setTimeout(tick, 5);
    };
    tick();
  });
}
