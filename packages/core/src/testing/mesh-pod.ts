// Builds MeshPods for tests through the real profile, so test data has the shape real events have.
import type { KubePod } from '../kube/types';
import { ISTIO_SIDECAR, interpretPod } from '../profiles';
import type { MeshPod } from '../types';

export function testMeshPod(name: string, opts: { annotations?: Record<string, string>; member?: boolean; ip?: string; namespace?: string } = {}): MeshPod {
  const member = opts.member ?? true;
  const pod: KubePod = {
    metadata: {
      name,
      namespace: opts.namespace ?? 'test',
      uid: `uid-${name}`,
      annotations: { ...(member ? { 'sidecar.istio.io/status': '{}' } : {}), ...opts.annotations },
    },
    spec: { containers: [{ name: 'app' }, ...(member ? [{ name: 'istio-proxy' }] : [])] },
    status: { podIP: opts.ip ?? '198.18.0.2' },
  };
  const r = interpretPod(pod, {}, ISTIO_SIDECAR, { netnsPath: `/var/run/netns/shunt-test-${name}` });
  if (!r.ok) throw r.error;
  return r.pod;
}
