// A RedirectBackend that keeps its "kernel state" in memory and records every call; tests tell it to
// fail, hang or drift. Used by the reconciler's tests and benchmark, and by the agent's unit tests.
import { meshPodFingerprint } from '../fingerprint';
import { supportFromRules } from '../selection/rules';
import type { BackendName, InstalledState, MeshPod, NodeCapabilities, NodeContext, PodRef, RedirectBackend, Support } from '../types';

export interface RecordedCall {
  op: 'enroll' | 'unenroll' | 'observe' | 'start' | 'stop';
  uid?: string;
  at: number;
}

type Op = 'enroll' | 'unenroll';

export class RecordingBackend implements RedirectBackend {
  readonly calls: RecordedCall[] = [];
  readonly installed = new Map<string, { ref: PodRef; fingerprint: string }>();
  maxConcurrent = 0;
  maxConcurrentPerPod = 0;
  private running = 0;
  private readonly runningPerPod = new Map<string, number>();
  private readonly failures: { uid?: string; op?: Op; remaining: number; message: string; retryable?: boolean }[] = [];
  private readonly hangs = new Map<string, { op?: Op; waiters: (() => void)[]; released: boolean }>();
  private observeFailure?: string;

  constructor(
    readonly name: BackendName = 'iptables',
    private readonly opts: { delayMs?: number; record?: boolean } = {},
  ) {}

  support(caps: NodeCapabilities): Support {
    return supportFromRules(this.name, caps);
  }

  fingerprint(pod: MeshPod): string {
    return meshPodFingerprint(pod);
  }

  async start(_node: NodeContext): Promise<void> {
    this.record('start');
  }

  async stop(_opts: { cleanup: boolean }): Promise<void> {
    this.record('stop');
  }

  /** The next `times` calls (for `uid`, or any pod; of `op`, or either) throw `message` (marked `retryable: false` when asked). */
  fail(opts: { uid?: string; op?: Op; times?: number; message?: string; retryable?: boolean }): void {
    this.failures.push({
      uid: opts.uid,
      op: opts.op,
      remaining: opts.times ?? 1,
      message: opts.message ?? 'injected failure',
      ...(opts.retryable !== undefined ? { retryable: opts.retryable } : {}),
    });
  }

  /** Calls for `uid` block until the returned function is called. */
  hang(uid: string, op?: Op): () => void {
    const h = { op, waiters: [] as (() => void)[], released: false };
    this.hangs.set(uid, h);
    return () => {
      h.released = true;
      this.hangs.delete(uid);
      for (const w of h.waiters) w();
    };
  }

  /** Change what the "kernel" holds behind the reconciler's back. */
  drift(uid: string, change: { fingerprint: string } | 'remove'): void {
    const cur = this.installed.get(uid);
    if (change === 'remove') this.installed.delete(uid);
    else if (cur) cur.fingerprint = change.fingerprint;
  }

  /** State nobody asked for (a pod enrolled by a previous agent and deleted while it was down). */
  plant(ref: PodRef, fingerprint = 'planted'): void {
    this.installed.set(ref.uid, { ref, fingerprint });
  }

  failObserve(message: string | undefined): void {
    this.observeFailure = message;
  }

  callsFor(uid: string, op?: RecordedCall['op']): RecordedCall[] {
    return this.calls.filter((c) => c.uid === uid && (!op || c.op === op));
  }

  async enroll(pod: MeshPod): Promise<void> {
    await this.perform('enroll', pod.uid, () => this.installed.set(pod.uid, { ref: { uid: pod.uid, namespace: pod.namespace, name: pod.name }, fingerprint: this.fingerprint(pod) }));
  }

  async unenroll(pod: PodRef): Promise<void> {
    await this.perform('unenroll', pod.uid, () => this.installed.delete(pod.uid));
  }

  async observe(): Promise<InstalledState> {
    this.record('observe');
    if (this.observeFailure) throw new Error(this.observeFailure);
    return {
      backend: this.name,
      nodeReady: true,
      nodeDetail: {},
      pods: [...this.installed.values()].map((i) => ({ ...i.ref, fingerprint: i.fingerprint })),
      counters: {},
    };
  }

  private record(op: RecordedCall['op'], uid?: string) {
    if (this.opts.record !== false) this.calls.push({ op, uid, at: Date.now() });
  }

  private async perform(op: Op, uid: string, apply: () => void): Promise<void> {
    this.record(op, uid);
    this.running++;
    const perPod = (this.runningPerPod.get(uid) ?? 0) + 1;
    this.runningPerPod.set(uid, perPod);
    this.maxConcurrent = Math.max(this.maxConcurrent, this.running);
    this.maxConcurrentPerPod = Math.max(this.maxConcurrentPerPod, perPod);
    try {
      if (this.opts.delayMs) await new Promise((r) => setTimeout(r, this.opts.delayMs));
      const h = this.hangs.get(uid);
      if (h && !h.released && (!h.op || h.op === op)) await new Promise<void>((r) => h.waiters.push(r));
      const f = this.failures.find((x) => x.remaining > 0 && (!x.uid || x.uid === uid) && (!x.op || x.op === op));
      if (f) {
        f.remaining--;
        throw f.retryable === undefined ? new Error(f.message) : Object.assign(new Error(f.message), { retryable: f.retryable });
      }
      apply();
    } finally {
      this.running--;
      const left = (this.runningPerPod.get(uid) ?? 1) - 1;
      if (left === 0) this.runningPerPod.delete(uid);
      else this.runningPerPod.set(uid, left);
    }
  }
}
