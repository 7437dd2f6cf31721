import type { NodeInfo, PodInfo } from './testbed';

/** Annotations that carry what a real node learns from the CRI, for the pods-file source. */
export const TESTBED_ANNOTATIONS = {
  netnsPath: 'testbed.shunt.dev/netns-path',
  cgroupPath: 'testbed.shunt.dev/cgroup-path',
  hostVeth: 'testbed.shunt.dev/host-veth',
  nodeNetnsPath: 'testbed.shunt.dev/node-netns-path',
} as const;

export interface KubeContainer {
  name: string;
  image: string;
  ports?: { containerPort: number; protocol: 'TCP' }[];
  securityContext?: { runAsUser: number; runAsGroup: number };
}

/** The subset of a core/v1 Pod that mesh profiles read. */
export interface KubePod {
  apiVersion: 'v1';
  kind: 'Pod';
  metadata: {
    name: string;
    namespace: string;
    uid: string;
    labels: Record<string, string>;
    annotations: Record<string, string>;
  };
  spec: {
    nodeName: string;
    hostNetwork: false;
    containers: KubeContainer[];
    initContainers?: KubeContainer[];
  };
  status: {
    phase: 'Running';
    podIP: string;
    podIPs: { ip: string }[];
  };
  /** Same facts as the testbed.shunt.dev annotations, typed. */
  testbed: { netnsPath: string; cgroupPath: string; hostVeth: string; nodeNetnsPath: string };
}

export function kubePodOf(p: PodInfo, node: NodeInfo): KubePod {
  const annotations: Record<string, string> = {
    ...p.annotations,
    [TESTBED_ANNOTATIONS.netnsPath]: p.netnsPath,
    [TESTBED_ANNOTATIONS.cgroupPath]: p.cgroupPath,
    [TESTBED_ANNOTATIONS.hostVeth]: p.hostVeth,
    [TESTBED_ANNOTATIONS.nodeNetnsPath]: node.netnsPath,
  };
  const containers: KubeContainer[] = [{ name: 'app', image: 'shunt-testbed/app', ports: [{ containerPort: 8080, protocol: 'TCP' }] }];
  const labels = { ...p.labels };
  if (p.mesh === 'sidecar') {
    annotations['sidecar.istio.io/status'] ??= JSON.stringify({
      initContainers: ['istio-init'],
      containers: ['istio-proxy'],
      volumes: ['istio-envoy'],
      imagePullSecrets: null,
    });
    labels['security.istio.io/tlsMode'] ??= 'istio';
    containers.push({ name: 'istio-proxy', image: 'shunt-testbed/haproxy-sidecar', securityContext: { runAsUser: 1337, runAsGroup: 1337 } });
  }
  if (p.mesh === 'ambient') labels['istio.io/dataplane-mode'] ??= 'ambient';
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: p.name, namespace: p.namespace, uid: p.uid, labels, annotations },
    spec: { nodeName: node.name, hostNetwork: false, containers },
    status: { phase: 'Running', podIP: p.ipv4, podIPs: [{ ip: p.ipv4 }, { ip: p.ipv6 }] },
    testbed: { netnsPath: p.netnsPath, cgroupPath: p.cgroupPath, hostVeth: p.hostVeth, nodeNetnsPath: node.netnsPath },
  };
}
