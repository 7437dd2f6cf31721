import type { NodeInfo, PodInfo } from './testbed';

/**
 * What a real node learns from the CRI rather than from the API, in the shape of the `shunt:` key
 * of @shunt/core's pods-file entries (the only place node-local facts go).
 */
export interface PodsFileShunt {
  netnsPath: string;
  cgroupPath: string;
  hostVeth: string;
}

export interface KubeContainer {
  name: string;
  image: string;
  ports?: { containerPort: number; protocol: 'TCP' }[];
  securityContext?: { runAsUser: number; runAsGroup: number };
  /** Environment variables (istio-proxy's PROXY_UID, ISTIO_OUTBOUND_OWNER_GROUPS, …); kubePodOf() sets none. */
  env?: { name: string; value: string }[];
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
  /**
   * Node-local facts for the pods-file source. Not a Pod field: drop it (see `apiPodOf`) before
   * announcing the pod through a Kubernetes API, where the agent must discover them itself.
   */
  shunt: PodsFileShunt;
}

/** The pod as a Kubernetes API server stores it: without the pods-file-only `shunt:` key. */
export function apiPodOf(pod: KubePod): Omit<KubePod, 'shunt'> {
  const { shunt: _nodeLocal, ...apiPod } = pod;
  return apiPod;
}

export function kubePodOf(p: PodInfo, node: NodeInfo): KubePod {
  const annotations: Record<string, string> = { ...p.annotations };
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
    shunt: { netnsPath: p.netnsPath, cgroupPath: p.cgroupPath, hostVeth: p.hostVeth },
  };
}
