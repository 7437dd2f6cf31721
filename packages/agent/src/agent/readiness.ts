// What /readyz means (README "Readiness"): the agent is ready once its backend runs, the pod
// source has delivered its first full listing, and every listed pod that needs a redirect has
// had its first answer: none is still pending. From then on it stays ready (a DaemonSet must not
// flap unready, and stall its rollout, because a pod failed or new pods arrived).
// Failed pods do not hold readiness back — one pod whose proxy never listens, or a full map,
// must not take the node's agent out of service — but they are never silent: the /readyz
// body counts them, `shunt_pods_failed` exports them, `shunt status` lists them with reasons.
import type { ReconcilerSnapshot } from '@shunt/core';

export interface PodCounts {
  total: number;
  enrolled: number;
  pending: number;
  failed: number;
  rejected: number;
}

export function podCounts(snap: Pick<ReconcilerSnapshot, 'pods'>): PodCounts {
  const c: PodCounts = { total: snap.pods.length, enrolled: 0, pending: 0, failed: 0, rejected: 0 };
  for (const p of snap.pods) {
    if (p.state === 'enrolled') c.enrolled++;
    else if (p.state === 'pending') c.pending++;
    else if (p.state === 'failed') c.failed++;
    else if (p.state === 'rejected') c.rejected++;
  }
  return c;
}

/** True once the first sync is done and no pod is pending: the moment the agent becomes ready. */
export function firstSyncSettled(snap: Pick<ReconcilerSnapshot, 'synced' | 'pods'>): boolean {
  return snap.synced && podCounts(snap).pending === 0;
}

/** The /readyz answer. `latched`: the agent became ready before. */
export function readinessAnswer(latched: boolean, snap: Pick<ReconcilerSnapshot, 'synced' | 'pods'> | undefined): { ok: boolean; detail: string } {
  if (!snap) return { ok: false, detail: 'starting the backend' };
  const c = podCounts(snap);
  const tally = `${c.enrolled} of ${c.total} pods enrolled, ${c.pending} pending, ${c.failed} failed, ${c.rejected} rejected`;
  if (!latched) {
    if (!snap.synced) return { ok: false, detail: 'waiting for the first full pod listing' };
    return { ok: false, detail: `enrolling the listed pods: ${tally}` };
  }
  if (c.failed > 0) return { ok: true, detail: `ready with failures: ${tally} (see shunt status, metric shunt_pods_failed)` };
  return { ok: true, detail: `ready: ${tally}` };
}
