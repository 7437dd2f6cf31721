// The agent's Prometheus metrics. Pod gauges follow the reconciler's status stream; kernel
// counters are read from the backend (observe()) at scrape time, so they are never stale
// and never come from the agent's memory.
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { InstalledState, PodStatus } from '@shunt/core';

export type PodState = PodStatus['state'];

export interface AgentMetrics {
  registry: Registry;
  /** Latest state of each pod; drives the shunt_pods_* gauges. */
  setPodState(uid: string, state: PodState | null): void;
  /** Time from the pod event to its status (enroll/unenroll/reject). */
  observeReconcile(seconds: number, result: PodState): void;
  setBackend(backend: string, kernelRelease: string): void;
  /** Where scrape-time kernel counters come from (the running backend's observe()). */
  setObserver(observe: (() => Promise<InstalledState>) | null): void;
}

export function createAgentMetrics(opts: { defaultMetrics?: boolean } = {}): AgentMetrics {
  const registry = new Registry();
  if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: registry });
  const states = new Map<string, PodState>();
  const count = (s: PodState): number => [...states.values()].filter((x) => x === s).length;

  new Gauge({ name: 'shunt_pods_enrolled', help: 'Pods whose redirect is installed.', registers: [registry], collect() { this.set(count('enrolled')); } });
  new Gauge({ name: 'shunt_pods_failed', help: 'Pods whose enroll keeps failing (retried with backoff).', registers: [registry], collect() { this.set(count('failed')); } });
  new Gauge({ name: 'shunt_pods_rejected', help: 'Pods whose annotations could not be honoured.', registers: [registry], collect() { this.set(count('rejected')); } });
  const transitions = new Counter({
    name: 'shunt_pod_state_changes_total',
    help: 'Pod state changes, by new state.',
    labelNames: ['state'],
    registers: [registry],
  });
  const duration = new Histogram({
    name: 'shunt_reconcile_duration_seconds',
    help: 'Seconds from a pod event to the pod reaching its state, by result.',
    labelNames: ['result'],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  const info = new Gauge({
    name: 'shunt_backend_info',
    help: 'The redirect backend running on this node (value 1), with the kernel release.',
    labelNames: ['backend', 'kernel'],
    registers: [registry],
  });
  let observe: (() => Promise<InstalledState>) | null = null;
  const observeErrors = new Counter({ name: 'shunt_observe_errors_total', help: 'Failed reads of the kernel state at scrape time.', registers: [registry] });
  new Gauge({
    name: 'shunt_pods_installed',
    help: 'Pods found installed in the kernel by the backend (read back at scrape time).',
    registers: [registry],
    async collect() {
      const s = await readState();
      if (s) this.set(s.pods.length);
    },
  });
  new Gauge({
    name: 'shunt_kernel_counter',
    help: "The backend's kernel counters (summed over CPUs), read back at scrape time.",
    labelNames: ['name'],
    registers: [registry],
    async collect() {
      const s = await readState();
      this.reset();
      if (s) for (const [name, v] of Object.entries(s.counters)) this.set({ name }, v);
    },
  });

  // One kernel read per scrape, shared by the gauges that need it.
  let pending: Promise<InstalledState | null> | null = null;
  function readState(): Promise<InstalledState | null> {
    if (!observe) return Promise.resolve(null);
    if (!pending) {
      const fn = observe;
      pending = fn()
        .catch(() => {
          observeErrors.inc();
          return null;
        })
        .finally(() => setImmediate(() => (pending = null)));
    }
    return pending;
  }

  return {
    registry,
    setPodState(uid, state) {
      if (state === null || state === 'removed') states.delete(uid);
      else states.set(uid, state);
      if (state) transitions.inc({ state });
    },
    observeReconcile(seconds, result) {
      duration.observe({ result }, seconds);
    },
    setBackend(backend, kernelRelease) {
      info.reset();
      info.set({ backend, kernel: kernelRelease }, 1);
    },
    setObserver(fn) {
      observe = fn;
    },
  };
}
