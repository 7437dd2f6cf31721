// The sockops backend's capacity (maxPods and the maps sized from it), as observe() reports it in
// nodeDetail.capacity (observe() and summarize() alike): one reader for `shunt status`, `shunt doctor` and /metrics.
import type { InstalledState, InstalledSummary } from '@shunt/core';

export interface CapacityView {
  maxPods: number;
  pods: number;
  podsLeft: number;
  maps: Record<string, { used: number; max: number }>;
}

export function capacityOf(state: InstalledState | InstalledSummary | null | undefined): CapacityView | null {
  const c = state?.nodeDetail?.['capacity'] as CapacityView | null | undefined;
  if (!c || typeof c.maxPods !== 'number' || typeof c.maps !== 'object') return null;
  return c;
}

/** "capacity: 120 of 1024 pods (904 left; maxPods); pod_by_ip 120/2048, …" */
export function formatCapacity(c: CapacityView): string {
  const maps = Object.entries(c.maps)
    .map(([name, m]) => `${name} ${m.used}/${m.max}`)
    .join(', ');
  return `capacity: ${c.pods} of ${c.maxPods} pods (${c.podsLeft} left; raise with maxPods / --max-pods); maps ${maps}`;
}
