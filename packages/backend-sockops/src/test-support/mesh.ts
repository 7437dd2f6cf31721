/**
 * Testbed pods as the agent sees them: tb.kubePod() interpreted by the core's istio-sidecar
 * profile, with the pods file's node-local `shunt:` facts as extras, so Istio annotations
 * (excludeOutboundPorts, excludeInboundPorts, ...) are parsed by the core exactly as in
 * production, not re-implemented here.
 */
import { ISTIO_SIDECAR, interpretPod, type MeshPod } from '@shunt/core';
import { kubePodWith, type Testbed } from '@shunt/testbed';

/** The pod as the profile reads it; `env` (when given) replaces its istio-proxy env, `annotations` are added. */
export function interpretedMeshPod(tb: Testbed, name: string, env?: Record<string, string>, annotations: Record<string, string> = {}): MeshPod {
  const kube = kubePodWith(tb, name, env, annotations);
  const r = interpretPod(kube, {}, ISTIO_SIDECAR, kube.shunt);
  if (!r.ok) throw r.error;
  return r.pod;
}
