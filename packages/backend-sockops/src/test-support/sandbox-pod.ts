/**
 * A sidecar pod of the kernel sandbox (test-support/sandbox.ts) as the backend receives it: the
 * core's MeshPod, built directly (these tests have no Kubernetes object). The parts every kernel
 * test had written out alike are fixed here: uid `uid-<name>`, the istio-sidecar profile, REDIRECT,
 * and the stand-in proxy the tests start (proxy.js as PROXY_UID, outbound 15001, inbound 15006).
 * What a test relies on stays in the test: the pod's addresses, its inbound excludes and its
 * outbound selection (whose default here is "everything captured, nothing excluded").
 */
import type { MeshPod, TrafficSelection } from '@shunt/core';
import type { Netns } from './sandbox';

/** The uid (and gid) the stand-in proxy runs as, and the pods' proxy.uid. */
export const PROXY_UID = 1337;

export interface SandboxPodSpec {
  name: string;
  namespace: string;
  v4: string;
  v6?: string[];
  /** Ports never redirected inbound. */
  inboundExclude: number[];
  /** Over { includePorts: [], excludePorts: [], includeCidrs: '*', excludeCidrs: [] }. */
  outbound?: Partial<TrafficSelection['outbound']>;
  /** The proxy's DNS port (DNS capture), when the test has one. */
  dnsPort?: number;
}

export function sandboxPod(ns: Netns, spec: SandboxPodSpec): MeshPod {
  return {
    uid: `uid-${spec.name}`,
    namespace: spec.namespace,
    name: spec.name,
    profile: 'istio-sidecar',
    membership: 'sidecar',
    hostNetwork: false,
    ips: { v4: [spec.v4], v6: spec.v6 ?? [] },
    netnsPath: ns.path,
    interceptionMode: 'REDIRECT',
    proxy: { uid: PROXY_UID, gid: PROXY_UID, outboundPort: 15001, inboundPort: 15006, ...(spec.dnsPort ? { dnsPort: spec.dnsPort } : {}) },
    traffic: {
      inbound: { include: '*', exclude: spec.inboundExclude },
      outbound: { includePorts: [], excludePorts: [], includeCidrs: '*', excludeCidrs: [], ...spec.outbound },
    },
  };
}
