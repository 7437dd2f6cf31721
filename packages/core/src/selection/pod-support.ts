// Per-pod support: the chosen backend may be unable to capture a pod as its settings ask (the sockops
// backend cannot exclude interfaces, for example). Such an upsert becomes a `reject` naming the
// reasons, so the reconciler reports the pod `rejected` and installs nothing, instead of retrying an
// enroll that can never succeed. Backends are chosen per node; see the README ("Per-pod fallback").
import { map, type OperatorFunction } from 'rxjs';
import { wantsRedirect } from '../profiles';
import type { ReconcilerInput } from '../sources/events';
import type { RedirectBackend } from '../types';

export function rejectPodsBackendCannotServe(backend: Pick<RedirectBackend, 'name' | 'supportPod'>): OperatorFunction<ReconcilerInput, ReconcilerInput> {
  return map((ev: ReconcilerInput): ReconcilerInput => {
    if (ev.type !== 'upsert' || !backend.supportPod || !wantsRedirect(ev.pod)) return ev;
    const s = backend.supportPod(ev.pod);
    if (s.ok) return ev;
    const { uid, namespace, name } = ev.pod;
    return { type: 'reject', pod: { uid, namespace, name }, reason: `backend ${backend.name} cannot serve this pod: ${s.reasons.join('; ')}` };
  });
}
