/**
 * Testbed pods as the agent sees them: tb.kubePod() interpreted by the core's istio-sidecar
 * profile, so Istio annotations (excludeOutboundPorts, excludeInboundPorts, ...) are parsed by
 * the core exactly as in production, not re-implemented here.
 * interpretPod/ISTIO_SIDECAR come from the core's source until its index exports them.
 */
import type { MeshPod } from '@shunt/core';
import type { Testbed } from '@shunt/testbed';
import { ISTIO_SIDECAR, interpretPod } from '../../../core/src/profiles';

export function interpretedMeshPod(tb: Testbed, name: string): MeshPod {
  const info = tb.pod(name);
  const r = interpretPod(tb.kubePod(name) as unknown as Parameters<typeof interpretPod>[0], {}, ISTIO_SIDECAR, {
    netnsPath: info.netnsPath,
    cgroupPath: info.cgroupPath,
    hostVeth: info.hostVeth,
  });
  if (!r.ok) throw r.error;
  return r.pod;
}
