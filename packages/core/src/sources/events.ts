// What the two pod sources emit before a mesh profile has looked at the pods.
import type { KubePod, PodExtras } from '../kube/types';
import type { PodEvent, PodRef } from '../types';

/** Marks the end of the first complete listing: the source now holds every pod that exists. */
export interface SyncedEvent {
  type: 'synced';
}
export const SYNCED: SyncedEvent = Object.freeze({ type: 'synced' }) as SyncedEvent;

export type RawPodEvent =
  /** `digest`: see PodEvent's upsert (carried through to it). */
  | { type: 'upsert'; pod: KubePod; namespaceLabels: Record<string, string>; extras: PodExtras; digest?: string }
  /** See PodEvent's `unchanged`: passes the profile untouched. */
  | { type: 'unchanged'; pod: PodRef; fingerprint: string; digest: string }
  | { type: 'delete'; pod: PodRef }
  /** The source's validation step refused the object (kube/validate.ts); `reason` names pod, field and value. */
  | { type: 'reject'; pod: PodRef; reason: string }
  | SyncedEvent;

/** What the reconciler consumes: pod events plus the sync marker (plain `Observable<PodEvent>` is accepted too). */
export type ReconcilerInput = PodEvent | SyncedEvent;

export function isPodEvent(e: ReconcilerInput): e is PodEvent {
  return e.type !== 'synced';
}
