// The one operator that turns raw pod events from either source into PodEvents through a mesh profile.
// It never errors the stream: whatever one pod's interpretation throws becomes that pod's `reject`.
import { map, type OperatorFunction } from 'rxjs';
import { DEFAULT_MESH_CAPTURE, type MeshCaptureDefaults } from '../capture-options';
import { errorMessage } from '../errors';
import { InternPool } from '../intern';
import { podRefOf } from '../kube/normalise';
import { interpretPod, profileByName, type MeshProfile } from '../profiles';
import type { MeshPod, ProfileName } from '../types';
import type { RawPodEvent, ReconcilerInput } from './events';

/** `mesh`: the agent's mesh-wide capture defaults (config: ownerGroups, dropInvalid, hostLoopbackCidr, clusterDnsServers). */
export function interpret(
  profile: MeshProfile | ProfileName,
  mesh: MeshCaptureDefaults = DEFAULT_MESH_CAPTURE,
): OperatorFunction<RawPodEvent, ReconcilerInput> {
  const p = typeof profile === 'string' ? profileByName(profile) : profile;
  const pool = new InternPool();
  return map((ev: RawPodEvent): ReconcilerInput => {
    if (ev.type !== 'upsert') return ev;
    try {
      const r = interpretPod(ev.pod, ev.namespaceLabels, p, ev.extras, mesh);
      if (!r.ok) return { type: 'reject', pod: r.ref, reason: r.error.message };
      const pod = shareCommonParts(r.pod, pool);
      return ev.digest !== undefined ? { type: 'upsert', pod, digest: ev.digest } : { type: 'upsert', pod };
    } catch (err) {
      const ref = podRefOf(ev.pod);
      return { type: 'reject', pod: ref, reason: `pod ${ref.namespace}/${ref.name}: cannot be interpreted: ${errorMessage(err)}` };
    }
  });
}

const NO_IPS: string[] = Object.freeze([]) as unknown as string[];

/**
 * The pod's parts most pods share (proxy settings, traffic selection, capture options, namespace,
 * membership reason) replaced by the pool's one frozen instance: the reconciler keeps every pod's
 * MeshPod for as long as the pod exists, and at 10,000 pods these copies were most of it.
 */
function shareCommonParts(pod: MeshPod, pool: InternPool): MeshPod {
  pod.namespace = pool.string(pod.namespace);
  pod.profile = pool.string(pod.profile) as MeshPod['profile'];
  if (pod.membershipReason !== undefined) pod.membershipReason = pool.string(pod.membershipReason);
  pod.proxy = pool.value(pod.proxy);
  pod.traffic = pool.value(pod.traffic);
  if (pod.capture) pod.capture = pool.value(pod.capture);
  if (pod.ips.v6.length === 0) pod.ips = { v4: pod.ips.v4, v6: NO_IPS };
  else if (pod.ips.v4.length === 0) pod.ips = { v4: NO_IPS, v6: pod.ips.v6 };
  return pod;
}
