// Testbed pods as the core interprets them: the same path the agent takes (kube pod -> profile ->
// MeshPod, with the pods file's node-local `shunt:` facts as extras), so annotations are parsed
// and rejected by the core, not by this package.

import { interpretPod, ISTIO_SIDECAR, type MeshPod } from '@shunt/core';
import type { Testbed } from '@shunt/testbed';

export type Interpreted = { ok: true; pod: MeshPod } | { ok: false; error: Error };

export function interpret(tb: Testbed, name: string): Interpreted {
  const kube = tb.kubePod(name);
  const r = interpretPod(kube, {}, ISTIO_SIDECAR, kube.shunt);
  return r.ok ? { ok: true, pod: r.pod } : { ok: false, error: r.error };
}

export function meshPod(tb: Testbed, name: string): MeshPod {
  const r = interpret(tb, name);
  if (!r.ok) throw r.error;
  return r.pod;
}
