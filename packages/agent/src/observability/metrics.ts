// The agent's Prometheus metrics. Pod gauges follow the reconciler's status stream; kernel
// counters and counts are read from the backend at scrape time (a count-only summarize(), or
// observe()), so they are never stale and never come from the agent's memory.
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { InstalledSummary, PodStatus } from '@shunt/core';
import { capacityOf } from './capacity';
import type { ObservationCache } from './observation';

export type PodState = PodStatus['state'];

export interface AgentMetrics {
  registry: Registry;
  /** Latest state of each pod; drives the shunt_pods_* gauges. */
  setPodState(uid: string, state: PodState | null): void;
  /** Time from the pod event to its status (enroll/unenroll/reject). */
  observeReconcile(seconds: number, result: PodState): void;
  setBackend(backend: string, kernelRelease: string): void;
  /** Where scrape-time kernel state comes from (the running backend's observations, cached). */
  setObserver(observations: ObservationCache | null): void;
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
  let observations: ObservationCache | null = null;
  const observeErrors = new Counter({ name: 'shunt_observe_errors_total', help: 'Failed reads of the kernel state at scrape time.', registers: [registry] });
  new Gauge({
    name: 'shunt_pods_installed',
    help: 'Pods found installed in the kernel by the backend (read back at scrape time).',
    registers: [registry],
    async collect() {
      const s = await readState();
      if (s) this.set(s.pods);
    },
  });
  new Gauge({
    name: 'shunt_observation_age_seconds',
    help: 'Age of the kernel reading the scrape-time gauges come from (a scrape reuses a fresh one and never waits long for a new one).',
    registers: [registry],
    async collect() {
      await readState();
      if (lastAgeMs !== null) this.set(lastAgeMs / 1000);
    },
  });
  new Gauge({
    name: 'shunt_capacity_max_pods',
    help: 'Pods the redirect maps hold (the maxPods setting, or the pinned maps\' size).',
    registers: [registry],
    async collect() {
      const c = capacityOf(await readState());
      if (c) this.set(c.maxPods);
    },
  });
  new Gauge({
    name: 'shunt_capacity_pods_left',
    help: 'Pods that can still be enrolled before maxPods is reached.',
    registers: [registry],
    async collect() {
      const c = capacityOf(await readState());
      if (c) this.set(c.podsLeft);
    },
  });
  new Gauge({
    name: 'shunt_capacity_map_entries',
    help: 'Entries of each per-pod map: used, and max (max_entries, sized from maxPods).',
    labelNames: ['map', 'of'],
    registers: [registry],
    async collect() {
      const c = capacityOf(await readState());
      this.reset();
      if (c)
        for (const [map, m] of Object.entries(c.maps)) {
          this.set({ map, of: 'used' }, m.used);
          this.set({ map, of: 'max' }, m.max);
        }
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

  // One (cached, bounded) kernel reading per scrape, shared by the gauges that need it.
  let pending: Promise<InstalledSummary | null> | null = null;
  let lastAgeMs: number | null = null;
  function readState(): Promise<InstalledSummary | null> {
    if (!observations) return Promise.resolve(null);
    if (!pending) {
      const cache = observations;
      pending = cache
        .current()
        .then((r) => {
          if (cache.lastError !== undefined) {
            observeErrors.inc();
            cache.lastError = undefined;
          }
          lastAgeMs = r ? r.ageMs : null;
          return r?.state ?? null;
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
    setObserver(cache) {
      observations = cache;
    },
  };
}
