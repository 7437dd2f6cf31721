// Pods joined with their namespace's labels (the ambient profile reads `istio.io/dataplane-mode` there):
// a namespace label change re-announces that namespace's pods. Shared by both sources.
import { hash } from 'node:crypto';
import { podRefOf } from '../kube/normalise';
import type { KubeNamespace, KubePod, PodExtras } from '../kube/types';
import type { PodRef } from '../types';
import type { RawPodEvent } from './events';

interface Entry {
  ref: PodRef;
  /** Absent while the pod's latest object was rejected: nothing to re-announce. */
  pod?: KubePod;
  extras: PodExtras;
  /** The source's digest of the pod's object, without the labels part (see labelsDigest). */
  digest?: string;
  /** Its latest object was rejected (nothing to re-announce). */
  rejected?: boolean;
}

export interface PodNamespaceJoinOptions {
  /**
   * Keep each pod's object to re-announce it when its namespace's labels change (default true).
   * false: keep only its reference; such pods are listed by takeStale() instead, for a source that
   * can read them again (the pods file), which saves a copy of every pod.
   */
  keepObjects?: boolean;
}

export class PodNamespaceJoin {
  private readonly pods = new Map<string, Entry>();
  private readonly nsLabels = new Map<string, Record<string, string>>();
  private readonly keepObjects: boolean;
  private stale: string[] = [];

  constructor(opts: PodNamespaceJoinOptions = {}) {
    this.keepObjects = opts.keepObjects ?? true;
  }

  /** Pods (uids) a namespace change should re-announce but whose objects were not kept; clears the list. */
  takeStale(): string[] {
    const out = this.stale;
    this.stale = [];
    return out;
  }

  labelsOf(namespace: string): Record<string, string> {
    return this.nsLabels.get(namespace) ?? {};
  }

  podUids(): string[] {
    return [...this.pods.keys()];
  }

  namespaceNames(): string[] {
    return [...this.nsLabels.keys()];
  }

  /** `digest`: the source's digest of the object; the event carries it joined with the labels' (memoKey). */
  upsertPod(pod: KubePod, extras: PodExtras = {}, digest?: string): RawPodEvent[] {
    const ref = podRefOf(pod);
    this.pods.set(ref.uid, this.keepObjects ? { ref, pod, extras, ...(digest !== undefined ? { digest } : {}) } : { ref, extras: NO_EXTRAS });
    return [this.upsertEvent(ref, pod, extras, digest)];
  }

  private upsertEvent(ref: PodRef, pod: KubePod, extras: PodExtras, digest: string | undefined): RawPodEvent {
    const namespaceLabels = this.labelsOf(ref.namespace);
    return digest !== undefined
      ? { type: 'upsert', pod, namespaceLabels, extras, digest: this.memoKey(digest, ref.namespace) }
      : { type: 'upsert', pod, namespaceLabels, extras };
  }

  /** The restart memo's key of a pod object: its digest and its namespace's labels (the profile reads both). */
  memoKey(digest: string, namespace: string): string {
    return `${digest}.${labelsDigest(this.labelsOf(namespace))}`;
  }

  /**
   * A pod vouched for by the restart memo (not read this time): remembered for its delete, and
   * announced as `unchanged` with the fingerprint its object gave last time; the full object
   * comes later through upsertPod.
   */
  vouchPod(ref: PodRef, fingerprint: string, digest: string): RawPodEvent[] {
    this.pods.set(ref.uid, { ref, extras: NO_EXTRAS });
    return [{ type: 'unchanged', pod: ref, fingerprint, digest }];
  }

  /** The pod's latest object failed validation: announce the rejection, remember the pod for its delete. */
  rejectPod(ref: PodRef, reason: string): RawPodEvent[] {
    this.pods.set(ref.uid, { ref, extras: NO_EXTRAS, rejected: true });
    return [{ type: 'reject', pod: ref, reason }];
  }

  deletePod(uid: string): RawPodEvent[] {
    const e = this.pods.get(uid);
    if (!e) return [];
    this.pods.delete(uid);
    return [{ type: 'delete', pod: e.ref }];
  }

  upsertNamespace(ns: KubeNamespace): RawPodEvent[] {
    const name = ns.metadata?.name;
    if (!name) return [];
    const labels = ns.metadata?.labels ?? {};
    const before = this.nsLabels.get(name);
    this.nsLabels.set(name, labels);
    if (before !== undefined && sameLabels(before, labels)) return [];
    if (before === undefined && Object.keys(labels).length === 0) return [];
    return this.reannounce(name);
  }

  deleteNamespace(name: string): RawPodEvent[] {
    const before = this.nsLabels.get(name);
    if (before === undefined) return [];
    this.nsLabels.delete(name);
    return Object.keys(before).length === 0 ? [] : this.reannounce(name);
  }

  private reannounce(namespace: string): RawPodEvent[] {
    const out: RawPodEvent[] = [];
    for (const { ref, pod, extras, digest, rejected } of this.pods.values()) {
      if (ref.namespace !== namespace) continue;
      if (pod) out.push(this.upsertEvent(ref, pod, extras, digest));
      else if (!rejected) this.stale.push(ref.uid);
    }
    return out;
  }
}

const NO_EXTRAS: PodExtras = Object.freeze({}) as PodExtras;

/** Short digest of a label set, independent of key order. */
export function labelsDigest(labels: Record<string, string>): string {
  const keys = Object.keys(labels);
  if (keys.length === 0) return '0';
  keys.sort();
  return hash('sha1', JSON.stringify(keys.map((k) => [k, labels[k]])), 'base64').slice(0, 12);
}

function sameLabels(a: Record<string, string>, b: Record<string, string>): boolean {
  const ka = Object.keys(a);
  return ka.length === Object.keys(b).length && ka.every((k) => a[k] === b[k]);
}
