// Testbed pods as the core interprets them: the same path the agent takes (kube pod -> profile ->
// MeshPod, with the pods file's node-local `shunt:` facts as extras), so annotations are parsed
// and rejected by the core, not by this package.

import { interpretPod, ISTIO_SIDECAR, type MeshPod } from '@shunt/core';
import { kubePodWith, type Testbed } from '@shunt/testbed';

export type Interpreted = { ok: true; pod: MeshPod } | { ok: false; error: Error };

/** `env` (when given) replaces the pod's istio-proxy env; `annotations` are added to its own. */
export function interpret(tb: Testbed, name: string, env?: Record<string, string>, annotations: Record<string, string> = {}): Interpreted {
  const kube = kubePodWith(tb, name, env, annotations);
  const r = interpretPod(kube, {}, ISTIO_SIDECAR, kube.shunt);
  return r.ok ? { ok: true, pod: r.pod } : { ok: false, error: r.error };
}

export function meshPod(tb: Testbed, name: string, env?: Record<string, string>, annotations: Record<string, string> = {}): MeshPod {
  const r = interpret(tb, name, env, annotations);
  if (!r.ok) throw r.error;
  return r.pod;
}
