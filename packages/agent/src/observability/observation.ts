// The kernel readings behind /metrics, and the reconciler's observe() through the same place. A
// scrape must cost the same at 10 or 10,000 pods and never wait on a slow backend: it takes the
// last reading while it is fresh — younger than maxAgeMs and no enroll/unenroll finished since —
// else starts one (never two at once) and waits for it only within a budget, answering from the
// previous one (with its age exported) when that runs out.
// A scrape reads counts only: the backend's summarize() where it has one (entry counts, no per-pod
// records: a full observe at 10,000 pods grew the heap by 25-40 MiB per scrape), else a full
// observe(). The reconciler's full observations also serve scrapes, reduced to their counts: no
// per-pod copy is kept between resyncs.
import { summaryOf, type InstalledState, type InstalledSummary, type RedirectBackend } from '@shunt/core';

export interface ObservationOptions {
  /** A scrape reuses an observation this young (default 15 s). */
  maxAgeMs?: number;
  /** How long a scrape waits for a new observation (default 2 s). */
  budgetMs?: number;
  /** The backend's count-only reading (RedirectBackend.summarize); absent = scrapes observe(). */
  summarize?: () => Promise<InstalledSummary>;
  now?: () => number;
}

export class ObservationCache {
  private last: { at: number; state: InstalledSummary } | null = null;
  private inflight: Promise<InstalledState> | null = null;
  private inflightSummary: Promise<void> | null = null;
  private readonly summarize: (() => Promise<InstalledSummary>) | undefined;
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
    this.summarize = opts.summarize;
  }

  /** A new observation (joining one in flight), recorded for scrapes. */
  refresh(): Promise<InstalledState> {
    if (!this.inflight) {
      const started = this.now();
      this.changed = false;
      this.inflight = this.observe()
        .then((state) => {
          this.record(started, summaryOf(state));
          return state;
        })
        .finally(() => (this.inflight = null));
    }
    return this.inflight;
  }

  /** A reading for scrapes: the count-only one where the backend has it (joining one in flight). */
  private read(): Promise<void> {
    const summarize = this.summarize;
    if (!summarize) return this.refresh().then(() => undefined);
    if (!this.inflightSummary) {
      const started = this.now();
      this.changed = false;
      this.inflightSummary = summarize()
        .then((s) => this.record(started, s))
        .finally(() => (this.inflightSummary = null));
    }
    return this.inflightSummary;
  }

  /** Keeps the newer of two readings (a slow full observe may finish after a later summary). */
  private record(at: number, state: InstalledSummary): void {
    if (!this.last || this.last.at <= at) this.last = { at, state };
  }

  /** For scrapes: see the file comment. null when nothing was ever observed (or the first one failed). */
  async current(): Promise<{ state: InstalledSummary; ageMs: number } | null> {
    const fresh = this.last && !this.changed && this.now() - this.last.at <= this.maxAgeMs;
    if (!fresh) {
      let timer: NodeJS.Timeout | undefined;
      const budget = new Promise<void>((r) => (timer = setTimeout(r, this.budgetMs)));
      // A failed observation leaves the previous one standing; the caller counts errors.
      const attempt = this.read().then(
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
