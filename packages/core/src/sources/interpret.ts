// The one operator that turns raw pod events from either source into PodEvents through a mesh profile.
import { map, type OperatorFunction } from 'rxjs';
import { interpretPod, profileByName, type MeshProfile } from '../profiles';
import type { ProfileName } from '../types';
import type { RawPodEvent, ReconcilerInput } from './events';

export function interpret(profile: MeshProfile | ProfileName): OperatorFunction<RawPodEvent, ReconcilerInput> {
  const p = typeof profile === 'string' ? profileByName(profile) : profile;
  return map((ev: RawPodEvent): ReconcilerInput => {
    if (ev.type !== 'upsert') return ev;
    const r = interpretPod(ev.pod, ev.namespaceLabels, p, ev.extras);
    return r.ok ? { type: 'upsert', pod: r.pod } : { type: 'reject', pod: r.ref, reason: r.error.message };
  });
}
