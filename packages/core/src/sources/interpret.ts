// The one operator that turns raw pod events from either source into PodEvents through a mesh profile.
import { map, type OperatorFunction } from 'rxjs';
import { DEFAULT_MESH_CAPTURE, type MeshCaptureDefaults } from '../capture-options';
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
    const r = interpretPod(ev.pod, ev.namespaceLabels, p, ev.extras, mesh);
    return r.ok ? { type: 'upsert', pod: r.pod } : { type: 'reject', pod: r.ref, reason: r.error.message };
  });
}
