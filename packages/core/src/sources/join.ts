// Pods joined with their namespace's labels (the ambient profile reads `istio.io/dataplane-mode` there):
// a namespace label change re-announces that namespace's pods. Shared by both sources.
import { podRefOf } from '../kube/normalise';
import type { KubeNamespace, KubePod, PodExtras } from '../kube/types';
import type { PodRef } from '../types';
import type { RawPodEvent } from './events';

interface Entry {
  ref: PodRef;
  /** Absent while the pod's latest object was rejected: nothing to re-announce. */
  pod?: KubePod;
  extras: PodExtras;
}

export class PodNamespaceJoin {
  private readonly pods = new Map<string, Entry>();
  private readonly nsLabels = new Map<string, Record<string, string>>();

  labelsOf(namespace: string): Record<string, string> {
    return this.nsLabels.get(namespace) ?? {};
  }

  podUids(): string[] {
    return [...this.pods.keys()];
  }

  namespaceNames(): string[] {
    return [...this.nsLabels.keys()];
  }

  upsertPod(pod: KubePod, extras: PodExtras = {}): RawPodEvent[] {
    const ref = podRefOf(pod);
    this.pods.set(ref.uid, { ref, pod, extras });
    return [{ type: 'upsert', pod, namespaceLabels: this.labelsOf(ref.namespace), extras }];
  }

  /** The pod's latest object failed validation: announce the rejection, remember the pod for its delete. */
  rejectPod(ref: PodRef, reason: string): RawPodEvent[] {
    this.pods.set(ref.uid, { ref, extras: {} });
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
    for (const { ref, pod, extras } of this.pods.values()) {
      if (pod && ref.namespace === namespace) out.push({ type: 'upsert', pod, namespaceLabels: this.labelsOf(namespace), extras });
    }
    return out;
  }
}

function sameLabels(a: Record<string, string>, b: Record<string, string>): boolean {
  const ka = Object.keys(a);
  return ka.length === Object.keys(b).length && ka.every((k) => a[k] === b[k]);
}
