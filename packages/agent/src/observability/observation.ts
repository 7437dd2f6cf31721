// One reading of the kernel state shared by the reconciler's resync and /metrics. A scrape must
// cost the same at 10 or 10,000 pods and never wait on a slow backend: it takes the last
// observation while it is fresh — younger than maxAgeMs and no enroll/unenroll finished since —
// else starts one (never two at once) and waits for it only within a budget, answering from the
// previous one (with its age exported) when that runs out.
import type { InstalledState, RedirectBackend } from '@shunt/core';

export interface ObservationOptions {
  /** A scrape reuses an observation this young (default 15 s). */
  maxAgeMs?: number;
  /** How long a scrape waits for a new observation (default 2 s). */
  budgetMs?: number;
  now?: () => number;
}

export class ObservationCache {
  private last: { at: number; state: InstalledState } | null = null;
  private inflight: Promise<InstalledState> | null = null;
  /** An enroll or unenroll finished since the last observation started: it may be out of date. */
  private changed = true;
  private readonly maxAgeMs: number;
  private readonly budgetMs: number;
  private readonly now: () => number;

  constructor(
    private readonly observe: () => Promise<InstalledState>,
    opts: ObservationOptions = {},
  ) {
    this.maxAgeMs = opts.maxAgeMs ?? 15_000;
    this.budgetMs = opts.budgetMs ?? 2_000;
    this.now = opts.now ?? Date.now;
  }

  /** A new observation (joining one in flight), recorded for scrapes. */
  refresh(): Promise<InstalledState> {
    if (!this.inflight) {
      const started = this.now();
      this.changed = false;
      this.inflight = this.observe()
        .then((state) => {
          this.last = { at: started, state: forScrapes(state) };
          return state;
        })
        .finally(() => (this.inflight = null));
    }
    return this.inflight;
  }

  /** For scrapes: see the file comment. null when nothing was ever observed (or the first one failed). */
  async current(): Promise<{ state: InstalledState; ageMs: number } | null> {
    const fresh = this.last && !this.changed && this.now() - this.last.at <= this.maxAgeMs;
    if (!fresh) {
      let timer: NodeJS.Timeout | undefined;
      const budget = new Promise<void>((r) => (timer = setTimeout(r, this.budgetMs)));
      // A failed observation leaves the previous one standing; the caller counts errors.
      const attempt = this.refresh().then(
        () => undefined,
        (err: unknown) => {
          this.lastError = err;
        },
      );
      await Promise.race([attempt, budget]);
      clearTimeout(timer);
    }
    return this.last ? { state: this.last.state, ageMs: this.now() - this.last.at } : null;
  }

  /** The error of the last failed refresh started by a scrape (then cleared). */
  lastError: unknown = undefined;

  /** The backend, with observe() going through this cache (what the reconciler is given). */
  wrap(backend: RedirectBackend): RedirectBackend {
    return {
      name: backend.name,
      support: (caps) => backend.support(caps),
      start: (node) => backend.start(node),
      enroll: (pod) => backend.enroll(pod).finally(() => (this.changed = true)),
      unenroll: (pod) => backend.unenroll(pod).finally(() => (this.changed = true)),
      observe: () => this.refresh(),
      fingerprint: (pod) => backend.fingerprint(pod),
      stop: (opts) => backend.stop(opts),
    };
  }
}

/**
 * What a scrape reads of an observation (pod count, node detail, counters), without each pod's
 * detail: the cache holds it between resyncs, and at 10,000 pods the per-pod details (netns,
 * addresses, inbound state) are a few MB nobody reads there. The reconciler gets the full answer.
 */
function forScrapes(state: InstalledState): InstalledState {
  return { ...state, pods: state.pods.map((p) => ({ uid: p.uid, namespace: p.namespace, name: p.name, fingerprint: p.fingerprint })) };
}
