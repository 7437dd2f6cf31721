// Turns the reconciler's per-pod status stream into one log line per state change (with the
// reason) and the pod metrics, and measures event → status latency.
// A pod first seen already enrolled as wanted (adopted at a restart: no backend call, nothing
// changed in the kernel) is logged at debug and counted instead: a restart with 10,000 pods
// writes one summary line (`adoptedUnchanged` in the ready line), not 10,000 info lines.
import type { PodEvent, PodStatus } from '@shunt/core';
import type { AgentLogger } from './log';
import type { AgentMetrics, PodState } from './metrics';

interface Known {
  state: PodState;
  reason?: string;
}

export class PodStateTracker {
  private readonly known = new Map<string, Known>();
  /** When the latest not-yet-answered event of each pod arrived (monotonic ms). */
  private readonly pendingSince = new Map<string, number>();
  private readonly latencies: number[] = [];
  private adopted = 0;

  constructor(
    private readonly log: AgentLogger,
    private readonly metrics: AgentMetrics,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Call for every event handed to the reconciler. */
  onEvent(ev: PodEvent): void {
    if (!this.pendingSince.has(ev.pod.uid)) this.pendingSince.set(ev.pod.uid, this.now());
  }

  onStatus(st: PodStatus): void {
    const { uid, namespace, name } = st.pod;
    const since = this.pendingSince.get(uid);
    let ms: number | undefined;
    if (since !== undefined) {
      this.pendingSince.delete(uid);
      ms = this.now() - since;
      this.metrics.observeReconcile(ms / 1000, st.state);
      if (st.state === 'enrolled') this.recordLatency(ms);
    }
    const reason = 'reason' in st ? st.reason : undefined;
    const prev = this.known.get(uid);
    if (prev && prev.state === st.state && prev.reason === reason) return;
    if (st.state === 'removed') this.known.delete(uid);
    else this.known.set(uid, { state: st.state, reason });
    this.metrics.setPodState(uid, st.state);
    const fields = {
      pod: `${namespace}/${name}`,
      uid,
      state: st.state,
      previous: prev?.state ?? 'unknown',
      ...(reason !== undefined ? { reason } : {}),
      ...('attempts' in st ? { attempts: st.attempts } : {}),
      // Event → this state, so enroll latency can be read from the logs.
      ...(ms !== undefined ? { ms: Math.round(ms * 100) / 100 } : {}),
    };
    if (st.state === 'enrolled' && st.unchanged && !prev) {
      this.adopted++;
      this.log.debug(fields, 'pod state changed');
    } else if (st.state === 'failed') this.log.warn(fields, 'pod state changed');
    else if (st.state === 'rejected') this.log.warn(fields, 'pod state changed');
    else this.log.info(fields, 'pod state changed');
  }

  /** Pods first seen already enrolled as wanted (no backend call), logged at debug only. */
  adoptedUnchanged(): number {
    return this.adopted;
  }

  states(): Map<string, Known> {
    return new Map(this.known);
  }

  /** Event → enrolled latencies in ms, the most recent 100,000. */
  enrollLatenciesMs(): number[] {
    return [...this.latencies];
  }

  private recordLatency(ms: number): void {
    if (this.latencies.length >= 100_000) this.latencies.shift();
    this.latencies.push(ms);
  }
}
