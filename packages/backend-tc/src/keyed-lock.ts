/**
 * Runs async work one at a time per key (a netns cookie): prepare(), enroll(), unenroll() and
 * release() of one netns come from different callers (the netns watcher, the reconciler) and
 * each reads, attaches and pins that netns' links, so they must not interleave.
 */
export class KeyedLock<K> {
  private readonly tails = new Map<K, Promise<unknown>>();

  run<T>(key: K, fn: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(key) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const tail = next.catch(() => undefined);
    this.tails.set(key, tail);
    // Forget the key once its last queued call is done (no growth with netns churn).
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return next;
  }
}
