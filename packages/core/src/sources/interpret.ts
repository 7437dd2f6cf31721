// The one operator that turns raw pod events from either source into PodEvents through a mesh profile.
// It never errors the stream: whatever one pod's interpretation throws becomes that pod's `reject`.
import { map, type OperatorFunction } from 'rxjs';
import { DEFAULT_MESH_CAPTURE, type MeshCaptureDefaults } from '../capture-options';
import { errorMessage } from '../errors';
import { podRefOf } from '../kube/normalise';
import { interpretPod, profileByName, type MeshProfile } from '../profiles';
import type { ProfileName } from '../types';
import type { RawPodEvent, ReconcilerInput } from './events';

/** `mesh`: the agent's mesh-wide capture defaults (config: ownerGroups, dropInvalid, hostLoopbackCidr, clusterDnsServers). */
export function interpret(
  profile: MeshProfile | ProfileName,
  mesh: MeshCaptureDefaults = DEFAULT_MESH_CAPTURE,
): OperatorFunction<RawPodEvent, ReconcilerInput> {
  const p = typeof profile === 'string' ? profileByName(profile) : profile;
  return map((ev: RawPodEvent): ReconcilerInput => {
    if (ev.type !== 'upsert') return ev;
    try {
      const r = interpretPod(ev.pod, ev.namespaceLabels, p, ev.extras, mesh);
      if (!r.ok) return { type: 'reject', pod: r.ref, reason: r.error.message };
      return ev.digest !== undefined ? { type: 'upsert', pod: r.pod, digest: ev.digest } : { type: 'upsert', pod: r.pod };
    } catch (err) {
      const ref = podRefOf(ev.pod);
      return { type: 'reject', pod: ref, reason: `pod ${ref.namespace}/${ref.name}: cannot be interpreted: ${errorMessage(err)}` };
    }
  });
}
