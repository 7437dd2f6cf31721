// Testbed pods as entries of core's pods file: the Kubernetes pod plus the node-local facts
// (netns, cgroup, host veth) under the `shunt:` key.
import type { KubePod } from '@shunt/testbed';

export function podsFileEntry(p: KubePod): Record<string, unknown> {
  const { testbed, ...pod } = p;
  return { ...pod, shunt: { netnsPath: testbed.netnsPath, cgroupPath: testbed.cgroupPath, hostVeth: testbed.hostVeth } };
}
