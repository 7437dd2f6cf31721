// Testbed pods as the core interprets them: the same path the agent takes (kube pod -> profile ->
// MeshPod), so annotations are parsed and rejected by the core, not by this package.

import { interpretPod, ISTIO_SIDECAR, type MeshPod } from '@shunt/core';
import type { Testbed } from '@shunt/testbed';

export type Interpreted = { ok: true; pod: MeshPod } | { ok: false; error: Error };

export function interpret(tb: Testbed, name: string): Interpreted {
  const info = tb.pod(name);
  const kube = tb.kubePod(name);
  const r = interpretPod(kube as unknown as Parameters<typeof interpretPod>[0], {}, ISTIO_SIDECAR, {
    netnsPath: info.netnsPath,
    cgroupPath: info.cgroupPath,
    hostVeth: info.hostVeth,
  });
  return r.ok ? { ok: true, pod: r.pod } : { ok: false, error: r.error };
}

export function meshPod(tb: Testbed, name: string): MeshPod {
  const r = interpret(tb, name);
  if (!r.ok) throw r.error;
  return r.pod;
}
