// The small subset of the Kubernetes Pod and Namespace shapes that shunt reads.
// Deliberately not @kubernetes/client-node's types: the core model must not depend on the client,
// and a pods file written by hand is held to the same shape.

export interface KubeObjectMeta {
  name?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  deletionTimestamp?: string;
}

export interface KubeEnvVar {
  name: string;
  value?: string;
}

export interface KubeContainer {
  name: string;
  image?: string;
  args?: string[];
  env?: KubeEnvVar[];
  /** Native sidecars (init containers with restartPolicy Always) carry this. */
  restartPolicy?: string;
  securityContext?: { runAsUser?: number; runAsGroup?: number };
}

export interface KubePod {
  apiVersion?: string;
  kind?: string;
  metadata?: KubeObjectMeta;
  spec?: {
    nodeName?: string;
    hostNetwork?: boolean;
    /** ztunnel's identity for the pod (ZDS WorkloadInfo.service_account). */
    serviceAccountName?: string;
    containers?: KubeContainer[];
    initContainers?: KubeContainer[];
    /** What kubelet builds the pod's resolv.conf from (per-pod DNS servers for DNS capture). */
    dnsPolicy?: string;
    dnsConfig?: { nameservers?: string[] };
  };
  status?: {
    phase?: string;
    podIP?: string;
    podIPs?: { ip: string }[];
  };
}

export interface KubeNamespace {
  apiVersion?: string;
  kind?: string;
  metadata?: KubeObjectMeta;
}

/** Node-local facts about a pod that the API object does not carry (the pods file and the agent supply them). */
export interface PodExtras {
  netnsPath?: string;
  cgroupPath?: string;
  hostVeth?: string;
  netnsCookie?: string;
}
