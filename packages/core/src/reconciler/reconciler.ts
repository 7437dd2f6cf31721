// The reconciler: desired state from PodEvents, installed state through one RedirectBackend.
//
// - One serial lane per pod: at most one backend call per pod at a time; events that arrive meanwhile
//   only update the desired state, and the lane runs again with the latest (intermediate states are
//   skipped, never applied out of order).
// - At most `maxInFlight` pods are worked on at once; the rest wait in FIFO order.
// - A failed call is retried with exponential backoff and jitter, and reported (`failed`, reason,
//   attempts). A call that does not return within `opTimeoutMs` counts as failed and frees its slot,
//   but the pod's lane stays closed until the call really ends, so two calls never overlap on a pod.
// - No backend call when the desired fingerprint equals the one known to be installed.
// - Delete → unenroll. Reject → status `rejected`; the pod keeps whatever it had (see README:
//   removing a redirect because of a typo would silently take the pod out of the mesh, so we keep the
//   last good state, as Istio keeps a running pod's rules when its annotations are later edited).
// - Resync: `observe()` is compared with what we believe is installed; drifted or missing pods are
//   re-enrolled, and installed pods nobody wants are unenrolled — the latter only once the source has
//   said `synced`, so a half-listed start never removes anybody.
// - Unbreakable by construction: nothing a pod, an operator or the backend throws escapes into the
//   event subscription, a timer or a promise nobody awaits. A throwing `fingerprint()` rejects that
//   pod (it keeps its last good state), a throwing `enroll()` fails that pod (retried), and an
//   unexpected error while handling one event is reported against that pod; the others go on.
import { Subject, type Observable, type Subscription } from 'rxjs';
import { backoffDelay, type BackoffPolicy } from '../backoff';
import { errorMessage } from '../errors';
import { wantsRedirect } from '../profiles';
import type { ReconcilerInput } from '../sources/events';
import type { Logger, MeshPod, PodRef, PodStatus, RedirectBackend, RestartMemoEntry } from '../types';

export interface ReconcilerOptions {
  backend: RedirectBackend;
  events: Observable<ReconcilerInput>;
  maxInFlight?: number;
  retry?: Partial<BackoffPolicy>;
  opTimeoutMs?: number;
  /** 0 disables the periodic resync (call `resync()` yourself). */
  resyncIntervalMs?: number;
  log?: Logger;
  random?: () => number;
  /**
   * Wait before retrying a call that failed with an error marked `retryable: false` (e.g. a full
   * map: retrying cannot help until a pod leaves or the setting is raised). A new desired state
   * retries at once, as always. Default 5 minutes.
   */
  nonRetryableDelayMs?: number;
}

type Desired =
  | { kind: 'enrolled'; pod: MeshPod; fingerprint: string; digest?: string }
  /**
   * From an `unchanged` event: the pod's object is on its way. Settled (enrolled) when the kernel
   * holds the fingerprint; otherwise pending, and nothing runs until the object arrives.
   */
  | { kind: 'vouched'; fingerprint: string; digest: string }
  | { kind: 'absent' };
type Phase = 'idle' | 'queued' | 'running' | 'backoff';
/** Fingerprint known to be installed, 'absent', or 'unknown' after a failed or timed-out call. */
type Applied = string;
const ABSENT = 'absent';
// A failed call may have changed something before failing; 'unknown' matches no desired state, so the
// next attempt (enroll or unenroll, both idempotent) runs whatever the desired state is.
const UNKNOWN = 'unknown';

interface PodState {
  ref: PodRef;
  desired: Desired;
  applied: Applied;
  deleted: boolean;
  rejected?: string;
  attempts: number;
  lastError?: string;
  /** The last failure said retrying would not help (long backoff instead of the usual one). */
  permanent?: boolean;
  phase: Phase;
  hung: boolean;
  retryTimer?: NodeJS.Timeout;
  /** Bumped whenever `desired` changes; resync skips pods changed after its observe() began. */
  version: number;
  status?: PodStatus;
}

export type PodView =
  | 'pending'
  | 'enrolled'
  | 'failed'
  | 'rejected'
  | 'removing'
  | 'not-enrolled';

export interface PodSnapshot {
  pod: PodRef;
  state: PodView;
  desiredFingerprint?: string;
  appliedFingerprint?: string;
  attempts: number;
  reason?: string;
  busy: boolean;
}

export interface ResyncReport {
  at: number;
  nodeReady: boolean;
  /** Pods whose installed fingerprint differed from ours (or were missing) and were scheduled for repair. */
  drifted: PodRef[];
  /** Installed pods nobody wants, scheduled for unenroll. */
  extra: PodRef[];
  error?: string;
}

export interface ReconcilerStats {
  enrollCalls: number;
  unenrollCalls: number;
  /** Events that needed no backend call (fingerprint unchanged). */
  skipped: number;
  failures: number;
  timeouts: number;
  resyncs: number;
  repairs: number;
}

export interface ReconcilerSnapshot {
  synced: boolean;
  inFlight: number;
  queued: number;
  pods: PodSnapshot[];
  lastResync?: ResyncReport;
  sourceError?: string;
  stats: ReconcilerStats;
}

const noopLog: Logger = { debug() {}, info() {}, warn() {}, error() {} };

export class Reconciler {
  private readonly backend: RedirectBackend;
  private readonly maxInFlight: number;
  private readonly retry: BackoffPolicy;
  private readonly opTimeoutMs: number;
  private readonly resyncIntervalMs: number;
  private readonly log: Logger;
  private readonly random: () => number;
  private readonly states = new Map<string, PodState>();
  private readonly queue: PodState[] = [];
  private readonly running = new Set<Promise<void>>();
  private readonly statusSubject = new Subject<PodStatus>();
  private inFlight = 0;
  private version = 0;
  private synced = false;
  private stopped = false;
  private started = false;
  private subscription?: Subscription;
  private resyncTimer?: NodeJS.Timeout;
  private resyncing?: Promise<ResyncReport>;
  /** What the backend held when we started, until the source is synced. */
  private adopted = new Map<string, { ref: PodRef; fingerprint: string }>();
  private lastResync?: ResyncReport;
  private sourceError?: string;
  private readonly stats: ReconcilerStats = { enrollCalls: 0, unenrollCalls: 0, skipped: 0, failures: 0, timeouts: 0, resyncs: 0, repairs: 0 };

  /** Every pod state change, as it happens. */
  readonly status$: Observable<PodStatus> = this.statusSubject.asObservable();

  constructor(private readonly options: ReconcilerOptions) {
    this.backend = options.backend;
    this.maxInFlight = Math.max(1, options.maxInFlight ?? 8);
    this.retry = { initialMs: options.retry?.initialMs ?? 200, maxMs: options.retry?.maxMs ?? 30_000 };
    this.opTimeoutMs = options.opTimeoutMs ?? 30_000;
    this.resyncIntervalMs = options.resyncIntervalMs ?? 60_000;
    this.log = options.log ?? noopLog;
    this.random = options.random ?? Math.random;
  }

  /** Reads what is installed (so an adopted pod with an unchanged config costs no call), then consumes events. */
  async start(): Promise<void> {
    if (this.started) throw new Error('reconciler already started');
    this.started = true;
    try {
      const installed = await this.withTimeout(this.backend.observe(), 'observe');
      for (const p of installed.pods) this.adopted.set(p.uid, { ref: { uid: p.uid, namespace: p.namespace, name: p.name }, fingerprint: p.fingerprint });
    } catch (err) {
      this.log.warn({ err: errorMessage(err) }, 'initial observe failed; every pod will be enrolled again');
    }
    if (this.stopped) return;
    this.subscription = this.options.events.subscribe({
      next: (ev) => this.onEventSafely(ev),
      error: (err) => {
        this.sourceError = errorMessage(err);
        this.log.error({ err: this.sourceError }, 'pod source failed; keeping the installed state');
      },
    });
    if (this.resyncIntervalMs > 0) {
      this.resyncTimer = setInterval(() => void this.resync().catch((err) => this.log.error({ err: errorMessage(err) }, 'resync failed')), this.resyncIntervalMs);
      this.resyncTimer.unref?.();
    }
  }

  /** Stops taking events and waits (bounded) for calls in progress; queued work and retries are dropped. */
  async stop(opts: { drainTimeoutMs?: number } = {}): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.subscription?.unsubscribe();
    if (this.resyncTimer) clearInterval(this.resyncTimer);
    for (const st of this.states.values()) if (st.retryTimer) clearTimeout(st.retryTimer);
    this.queue.length = 0;
    const drained = Promise.allSettled([...this.running]).then(() => undefined);
    let timer: NodeJS.Timeout | undefined;
    const limit = new Promise<void>((r) => (timer = setTimeout(r, opts.drainTimeoutMs ?? 10_000)));
    await Promise.race([drained, limit]);
    clearTimeout(timer);
    this.statusSubject.complete();
  }

  /** Backend calls running or queued now (O(1), unlike snapshot()). */
  get busy(): boolean {
    return this.inFlight > 0 || this.queue.length > 0;
  }

  snapshot(): ReconcilerSnapshot {
    const pods: PodSnapshot[] = [];
    for (const st of this.states.values()) pods.push(this.view(st));
    return {
      synced: this.synced,
      inFlight: this.inFlight,
      queued: this.queue.length,
      pods,
      lastResync: this.lastResync,
      sourceError: this.sourceError,
      stats: { ...this.stats },
    };
  }

  /** Compares observe() with our view and schedules repairs. Concurrent calls share one run. */
  resync(): Promise<ResyncReport> {
    this.resyncing ??= this.doResync()
      .catch((err): ResyncReport => {
        // A malformed observe() answer or a bug must not kill the timer's promise chain.
        const report: ResyncReport = { at: Date.now(), nodeReady: false, drifted: [], extra: [], error: errorMessage(err) };
        this.log.error({ err: report.error }, 'resync failed');
        this.lastResync = report;
        return report;
      })
      .finally(() => (this.resyncing = undefined));
    return this.resyncing;
  }

  // --- events ---------------------------------------------------------------------------------------

  /** One event's failure is that pod's failure: it never reaches the subscription (which would end it). */
  private onEventSafely(ev: ReconcilerInput): void {
    try {
      this.onEvent(ev);
    } catch (err) {
      const ref = eventRef(ev);
      const reason = `cannot handle ${ev.type} event: ${errorMessage(err)}`;
      this.log.error({ pod: ref ? `${ref.namespace}/${ref.name}` : undefined, uid: ref?.uid, err: reason }, 'event failed');
      if (!ref) return;
      try {
        this.onReject(ref, reason);
      } catch {
        // nothing more we can do for a pod whose very reference is unusable; the log line above says it
      }
    }
  }

  private onEvent(ev: ReconcilerInput): void {
    if (this.stopped) return;
    switch (ev.type) {
      case 'synced':
        return this.onSynced();
      case 'upsert':
        return this.onUpsert(ev.pod, ev.digest);
      case 'unchanged':
        return this.onUnchanged(ev.pod, ev.fingerprint, ev.digest);
      case 'delete':
        return this.onDelete(ev.pod);
      case 'reject':
        return this.onReject(ev.pod, ev.reason);
    }
  }

  /**
   * The source vouches for a pod it did not read (restart memo). Taken as enrolled only if the
   * kernel holds exactly that fingerprint; a pod whose kernel state drifted stays pending until its
   * full object comes (then it is repaired as usual). A pod already known keeps what it has.
   */
  private onUnchanged(ref: PodRef, fingerprint: string, digest: string): void {
    if (typeof fingerprint !== 'string' || typeof digest !== 'string') throw new Error('unchanged event without fingerprint or digest');
    if (this.states.has(ref.uid)) return;
    const st = this.newState(ref, this.adopted.get(ref.uid)?.fingerprint ?? ABSENT);
    st.desired = { kind: 'vouched', fingerprint, digest };
    this.desiredChanged(st);
  }

  private onUpsert(pod: MeshPod, digest?: string): void {
    let desired: Desired;
    if (wantsRedirect(pod)) {
      let fingerprint: string;
      try {
        fingerprint = this.backend.fingerprint(pod);
        if (typeof fingerprint !== 'string') throw new Error(`fingerprint is ${typeof fingerprint}, not a string`);
      } catch (err) {
        // The backend cannot encode this pod: a configuration problem retrying will not fix, so the
        // pod is rejected and keeps its last good state, like a bad annotation.
        this.onReject(pod, `${this.backend.name} backend cannot serve pod ${pod.namespace}/${pod.name}: ${errorMessage(err)}`);
        return;
      }
      desired = digest !== undefined ? { kind: 'enrolled', pod, fingerprint, digest } : { kind: 'enrolled', pod, fingerprint };
    } else {
      desired = { kind: 'absent' };
    }
    let st = this.states.get(pod.uid);
    if (!st) {
      const adopted = this.adopted.get(pod.uid);
      // Non-members we never installed cost no memory.
      if (desired.kind === 'absent' && !adopted) return;
      st = this.newState(pod, adopted?.fingerprint ?? ABSENT);
    }
    st.ref = { uid: pod.uid, namespace: pod.namespace, name: pod.name };
    st.deleted = false;
    const wasRejected = st.rejected !== undefined;
    st.rejected = undefined;
    // The object of a vouched pod: it takes over (it is what a repair enrolls), whatever it says.
    if (st.desired.kind === 'vouched') {
      st.desired = desired;
      this.desiredChanged(st);
      return;
    }
    if (sameDesired(st.desired, desired) && !wasRejected) {
      // Same fingerprint from an object written differently: the memo follows the object now in the source.
      if (st.desired.kind === 'enrolled' && desired.kind === 'enrolled') st.desired.digest = desired.digest;
      this.stats.skipped++;
      return;
    }
    st.desired = desired;
    this.desiredChanged(st);
  }

  private onDelete(ref: PodRef): void {
    const st = this.states.get(ref.uid);
    if (!st) return;
    st.deleted = true;
    st.desired = { kind: 'absent' };
    this.desiredChanged(st);
  }

  private onReject(ref: PodRef, reason: string): void {
    let st = this.states.get(ref.uid);
    if (!st) st = this.newState(ref, this.adopted.get(ref.uid)?.fingerprint ?? ABSENT);
    st.rejected = reason;
    st.deleted = false;
    this.setStatus(st, { pod: st.ref, state: 'rejected', reason, at: Date.now() });
    // The desired state stays the last good one: nothing to apply.
  }

  private onSynced(): void {
    if (this.synced) return;
    this.synced = true;
    for (const [uid, a] of this.adopted) {
      if (this.states.has(uid)) continue;
      const st = this.newState(a.ref, a.fingerprint);
      st.deleted = true;
      this.kick(st);
    }
    this.adopted.clear();
  }

  private newState(ref: PodRef, applied: Applied): PodState {
    const st: PodState = {
      ref: { uid: ref.uid, namespace: ref.namespace, name: ref.name },
      desired: { kind: 'absent' },
      applied,
      deleted: false,
      attempts: 0,
      phase: 'idle',
      hung: false,
      version: ++this.version,
    };
    this.states.set(ref.uid, st);
    return st;
  }

  private desiredChanged(st: PodState): void {
    st.version = ++this.version;
    // A new desired state makes the old failure moot: try now instead of waiting out the backoff.
    if (st.phase === 'backoff') {
      clearTimeout(st.retryTimer);
      st.retryTimer = undefined;
      st.phase = 'idle';
      st.attempts = 0;
    }
    this.kick(st);
  }

  // --- the per-pod lane -----------------------------------------------------------------------------

  private needsWork(st: PodState): boolean {
    return st.desired.kind !== 'absent' ? st.applied !== st.desired.fingerprint : st.applied !== ABSENT;
  }

  private kick(st: PodState): void {
    if (this.stopped || st.phase !== 'idle') return;
    if (this.needsWork(st)) {
      // Nothing to enroll with yet: the pod's object follows its `unchanged` event.
      if (st.desired.kind === 'vouched') return;
      st.phase = 'queued';
      this.queue.push(st);
      this.pump();
    } else {
      this.settleIdle(st);
    }
  }

  /**
   * Nothing (more) to do for this pod: finish a removal, or record that it matches. `afterCall`:
   * a backend call just made it match; otherwise it already did (adopted, or back to what is in).
   */
  private settleIdle(st: PodState, afterCall = false): void {
    if (st.desired.kind === 'absent' && (st.deleted || !st.rejected)) {
      this.forget(st);
      return;
    }
    if (st.desired.kind !== 'absent' && !st.rejected && st.status?.state !== 'enrolled') {
      this.setStatus(st, { pod: st.ref, state: 'enrolled', at: Date.now(), ...(afterCall ? {} : { unchanged: true as const }) });
    }
  }

  private forget(st: PodState): void {
    if (this.states.get(st.ref.uid) !== st) return;
    this.states.delete(st.ref.uid);
    if (st.status && st.status.state !== 'removed') this.setStatus(st, { pod: st.ref, state: 'removed', at: Date.now() });
  }

  private pump(): void {
    while (!this.stopped && this.inFlight < this.maxInFlight && this.queue.length > 0) {
      const st = this.queue.shift()!;
      if (this.states.get(st.ref.uid) !== st) continue;
      const p = this.runLane(st)
        .catch((err) => {
          // runLane handles backend failures itself; this is a bug guard, so the lane must not stay stuck.
          this.log.error({ pod: `${st.ref.namespace}/${st.ref.name}`, err: errorMessage(err) }, 'pod lane failed');
          if (st.phase === 'running') {
            st.phase = 'idle';
            st.applied = UNKNOWN;
          }
        })
        .finally(() => this.running.delete(p));
      this.running.add(p);
    }
  }

  private async runLane(st: PodState): Promise<void> {
    st.phase = 'running';
    this.inFlight++;
    let slotHeld = true;
    const releaseSlot = () => {
      if (!slotHeld) return;
      slotHeld = false;
      this.inFlight--;
      this.pump();
    };
    const target = st.desired;
    const version = st.version;
    if (target.kind === 'vouched') {
      // Not queued by kick(); a guard, so a lane never enrolls without the pod's object.
      st.phase = 'idle';
      releaseSlot();
      return;
    }
    const verb = target.kind === 'enrolled' ? 'enroll' : 'unenroll';
    if (target.kind === 'enrolled') this.stats.enrollCalls++;
    else this.stats.unenrollCalls++;

    let call: Promise<void>;
    try {
      // Promise.resolve: a backend that throws synchronously or returns a non-promise still gives one outcome.
      call = Promise.resolve(target.kind === 'enrolled' ? this.backend.enroll(target.pod) : this.backend.unenroll(st.ref));
    } catch (err) {
      call = Promise.reject(err);
    }
    const outcome = call.then(
      () => ({ ok: true as const }),
      (err: unknown) => ({ ok: false as const, reason: errorMessage(err), permanent: isNonRetryable(err) }),
    );
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), this.opTimeoutMs)));
    const first = await Promise.race([outcome, timeout]);
    clearTimeout(timer);

    if (first === 'timeout') {
      this.stats.timeouts++;
      st.hung = true;
      st.applied = UNKNOWN;
      this.recordFailure(st, `${verb} timed out after ${this.opTimeoutMs} ms`);
      releaseSlot();
      const late = await outcome; // the lane stays closed until the call really ends
      st.hung = false;
      if (late.ok) st.applied = target.kind === 'enrolled' ? target.fingerprint : ABSENT;
      st.phase = 'idle';
      this.after(st, late.ok, version);
      return;
    }
    releaseSlot();
    if (first.ok) {
      st.applied = target.kind === 'enrolled' ? target.fingerprint : ABSENT;
      st.attempts = 0;
      st.lastError = undefined;
      if (target.kind === 'absent' && !st.deleted && st.status?.state === 'enrolled') {
        this.setStatus(st, { pod: st.ref, state: 'removed', at: Date.now() });
      }
    } else {
      st.applied = UNKNOWN;
      st.permanent = first.permanent;
      this.recordFailure(st, first.reason);
    }
    st.phase = 'idle';
    this.after(st, first.ok, version);
  }

  private recordFailure(st: PodState, reason: string): void {
    this.stats.failures++;
    st.attempts++;
    st.lastError = reason;
    this.log.warn({ pod: `${st.ref.namespace}/${st.ref.name}`, uid: st.ref.uid, attempts: st.attempts, reason }, 'backend call failed');
    if (!st.rejected) this.setStatus(st, { pod: st.ref, state: 'failed', reason, attempts: st.attempts, at: Date.now() });
  }

  private after(st: PodState, ok: boolean, versionAtStart: number): void {
    if (this.stopped || this.states.get(st.ref.uid) !== st) return;
    if (!this.needsWork(st)) {
      st.attempts = 0;
      st.lastError = undefined;
      this.settleIdle(st, true);
      return;
    }
    if (ok || st.version !== versionAtStart) {
      this.kick(st);
      return;
    }
    const delay = st.permanent ? (this.options.nonRetryableDelayMs ?? 300_000) : backoffDelay(st.attempts - 1, this.retry, this.random);
    st.permanent = false;
    st.phase = 'backoff';
    st.retryTimer = setTimeout(() => {
      st.retryTimer = undefined;
      if (st.phase !== 'backoff') return;
      st.phase = 'idle';
      this.kick(st);
    }, delay);
  }

  private setStatus(st: PodState, status: PodStatus): void {
    st.status = status;
    try {
      this.statusSubject.next(status);
    } catch (err) {
      // Only with rxjs' deprecated synchronous error handling; a status consumer must not stop a lane.
      this.log.error({ err: errorMessage(err) }, 'status subscriber failed');
    }
  }

  // --- resync ---------------------------------------------------------------------------------------

  private async doResync(): Promise<ResyncReport> {
    const startedAt = this.version;
    const report: ResyncReport = { at: Date.now(), nodeReady: false, drifted: [], extra: [] };
    this.stats.resyncs++;
    let installed;
    try {
      installed = await this.withTimeout(this.backend.observe(), 'observe');
    } catch (err) {
      report.error = errorMessage(err);
      this.log.warn({ err: report.error }, 'resync: observe failed');
      this.lastResync = report;
      return report;
    }
    if (this.stopped) return report;
    report.nodeReady = installed.nodeReady;
    if (!installed.nodeReady) this.log.warn({ backend: installed.backend, detail: installed.nodeDetail }, 'resync: node-wide state incomplete');
    const seen = new Map(installed.pods.map((p) => [p.uid, p] as const));
    for (const st of this.states.values()) {
      // Busy pods, and pods whose desired state changed after observe() began, are judged next time.
      if (st.phase !== 'idle' || st.version > startedAt) continue;
      const actual = seen.get(st.ref.uid)?.fingerprint ?? ABSENT;
      if (actual === st.applied) continue;
      st.applied = actual;
      if (!this.needsWork(st)) continue;
      (st.desired.kind === 'enrolled' ? report.drifted : report.extra).push(st.ref);
      this.stats.repairs++;
      this.kick(st);
    }
    if (this.synced) {
      for (const p of installed.pods) {
        if (this.states.has(p.uid)) continue;
        const st = this.newState(p, p.fingerprint);
        st.deleted = true;
        report.extra.push(st.ref);
        this.stats.repairs++;
        this.kick(st);
      }
    }
    if (report.drifted.length + report.extra.length > 0) {
      this.log.info({ drifted: report.drifted.length, extra: report.extra.length }, 'resync: repairing drift');
    }
    this.lastResync = report;
    return report;
  }

  private async withTimeout<T>(p: Promise<T>, what: string): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        p,
        new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} timed out after ${this.opTimeoutMs} ms`)), this.opTimeoutMs))),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * The restart memo: every pod enrolled as wanted whose source gave a digest of its object, with
   * the fingerprint the kernel holds. A pod source may vouch with it at the next start.
   */
  restartMemo(): RestartMemoEntry[] {
    const out: RestartMemoEntry[] = [];
    for (const st of this.states.values()) {
      const d = st.desired;
      if (d.kind === 'absent' || d.digest === undefined || st.rejected || st.applied !== d.fingerprint) continue;
      out.push({ digest: d.digest, uid: st.ref.uid, namespace: st.ref.namespace, name: st.ref.name, fingerprint: d.fingerprint });
    }
    return out;
  }

  private view(st: PodState): PodSnapshot {
    const busy = st.phase === 'running' || st.phase === 'queued';
    let state: PodView;
    if (st.rejected) state = 'rejected';
    else if (st.lastError && st.attempts > 0) state = 'failed';
    else if (st.desired.kind === 'absent') state = st.applied === ABSENT ? 'not-enrolled' : 'removing';
    else state = st.applied === st.desired.fingerprint ? 'enrolled' : 'pending';
    return {
      pod: st.ref,
      state,
      desiredFingerprint: st.desired.kind !== 'absent' ? st.desired.fingerprint : undefined,
      appliedFingerprint: st.applied === ABSENT || st.applied === UNKNOWN ? undefined : st.applied,
      attempts: st.attempts,
      reason: st.rejected ?? (st.attempts > 0 ? st.lastError : undefined),
      busy,
    };
  }
}

/** Errors that say so (`retryable: false`, e.g. a backend's capacity error) are not retried soon. */
function isNonRetryable(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { retryable?: unknown }).retryable === false;
}

function eventRef(ev: ReconcilerInput): PodRef | undefined {
  try {
    if (ev.type === 'synced') return undefined;
    const p = ev.pod as Partial<PodRef> | undefined;
    return p && typeof p.uid === 'string' ? { uid: p.uid, namespace: String(p.namespace ?? ''), name: String(p.name ?? '') } : undefined;
  } catch {
    return undefined;
  }
}

function sameDesired(a: Desired, b: Desired): boolean {
  if (a.kind !== b.kind) return false;
  return a.kind === 'absent' || a.fingerprint === (b as { fingerprint: string }).fingerprint;
}
