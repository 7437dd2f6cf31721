// What the agent does when redirectMode=auto finds no backend that serves its profile on this
// node (e.g. istio-ambient where this build has no tc backend): it keeps
// watching and interpreting pods so that every pod that should be redirected is reported
// `rejected` with the reason (log line, shunt_pods_rejected), instead of crash-looping with the
// pods unaccounted for. Nothing is written to the kernel; the agent never becomes ready.
import type { Observable, Subscription } from 'rxjs';
import { wantsRedirect, type ReconcilerInput } from '@shunt/core';
import type { PodStateTracker } from '../observability/pod-states';

export interface PodsWithoutBackend {
  /** Resolves after the source's first full listing has been reported. */
  synced: Promise<void>;
  stop(): void;
}

export function reportPodsWithoutBackend(events: Observable<ReconcilerInput>, tracker: PodStateTracker, reason: string): PodsWithoutBackend {
  const reported = new Set<string>();
  let markSynced!: () => void;
  const synced = new Promise<void>((r) => (markSynced = r));
  const sub: Subscription = events.subscribe({
    next(ev) {
      if (ev.type === 'synced') return markSynced();
      const at = Date.now();
      if (ev.type === 'reject') {
        reported.add(ev.pod.uid);
        tracker.onStatus({ pod: ev.pod, state: 'rejected', reason: ev.reason, at });
      } else if (ev.type === 'upsert' && wantsRedirect(ev.pod)) {
        reported.add(ev.pod.uid);
        const ref = { uid: ev.pod.uid, namespace: ev.pod.namespace, name: ev.pod.name };
        tracker.onStatus({ pod: ref, state: 'rejected', reason: `${ev.pod.membership} member (${ev.pod.membershipReason}), but ${reason}`, at });
      } else if (reported.delete(ev.pod.uid)) {
        // Deleted, or no longer a member: it stops counting as rejected.
        tracker.onStatus({ pod: { uid: ev.pod.uid, namespace: ev.pod.namespace, name: ev.pod.name }, state: 'removed', at });
      }
    },
    error: () => markSynced(),
  });
  return { synced, stop: () => sub.unsubscribe() };
}
