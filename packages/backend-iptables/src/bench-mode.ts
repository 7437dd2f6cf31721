// The `iptables` path for the testbed's bench and demo harness: this backend's REDIRECT rules in
// the client and server pods, whose sidecars then carry the traffic. Structurally a testbed
// PathMode; typed locally so the package does not depend on @shunt/testbed at run time.

import { release } from 'node:os';
import { parseKernelRelease, type MeshPod, type NodeCapabilities, type NodeContext } from '@shunt/core';
import { IptablesBackend } from './backend';
import type { IptablesBackendOptions, IptablesVariant } from './options';

/** What the mode needs from a testbed pod (a subset of @shunt/testbed's PodInfo). */
export interface BenchPodInfo {
  uid: string;
  name: string;
  namespace: string;
  netnsPath: string;
  ipv4: string;
  ipv6: string;
}

export interface BenchTestbed {
  pod(name: string): BenchPodInfo;
}

export interface BenchModePods {
  client: string;
  server: string;
}

export interface IptablesPathMode {
  name: string;
  description: string;
  expectsProxy: boolean;
  setup(tb: BenchTestbed, pods: BenchModePods): Promise<void>;
  teardown(tb: BenchTestbed, pods: BenchModePods): Promise<void>;
}

export interface IptablesBenchModeOptions extends IptablesBackendOptions {
  /** The node probe's answer; without it, `variant` must say which iptables to use. */
  caps?: NodeCapabilities;
  /** Mode name in the report; default `iptables`. */
  name?: string;
}

/** The istio-sidecar profile's settings for a testbed pod (uid/gid 1337, 15001/15006, Istio's never-captured ports). */
export function sidecarMeshPod(p: BenchPodInfo): MeshPod {
  return {
    uid: p.uid,
    namespace: p.namespace,
    name: p.name,
    profile: 'istio-sidecar',
    membership: 'sidecar',
    hostNetwork: false,
    ips: { v4: [p.ipv4], v6: p.ipv6 ? [p.ipv6] : [] },
    netnsPath: p.netnsPath,
    interceptionMode: 'REDIRECT',
    proxy: { uid: 1337, gid: 1337, outboundPort: 15001, inboundPort: 15006 },
    traffic: {
      inbound: { include: '*', exclude: [15008, 15020, 15021, 15090] },
      outbound: { includePorts: [], excludePorts: [], includeCidrs: '*', excludeCidrs: [] },
    },
  };
}

function capsFor(variant: IptablesVariant): NodeCapabilities {
  const yes = { available: true, evidence: `variant ${variant} chosen by the caller` };
  return {
    kernelRelease: release(),
    kernel: parseKernelRelease(release()),
    cgroup2Path: null,
    bpffsPath: null,
    iptablesVariant: variant,
    features: { [`iptables:${variant}`]: yes } as NodeCapabilities['features'],
  };
}

export function iptablesBenchMode(opts: IptablesBenchModeOptions = {}): IptablesPathMode {
  let backend: IptablesBackend | undefined;
  return {
    name: opts.name ?? 'iptables',
    description: "shunt's iptables backend (istio-iptables REDIRECT rules) in both pods: client → its sidecar (15001) → server sidecar (15006) → server",
    expectsProxy: true,
    async setup(tb, which) {
      const caps = opts.caps ?? (opts.variant ? capsFor(opts.variant) : undefined);
      if (!caps) throw new Error('iptables bench mode: pass caps (from the node probe) or a variant');
      // Records stay in memory unless asked for: the harness must never adopt, or clean up, a node agent's pods.
      backend = new IptablesBackend({ stateDir: null, ...opts });
      const quiet = { debug() {}, info() {}, warn() {}, error() {} };
      const node: NodeContext = { nodeName: 'bench', profile: 'istio-sidecar', caps, cgroupRoot: '/', bpffsRoot: '/sys/fs/bpf/shunt', log: quiet };
      await backend.start(node);
      for (const name of [which.client, which.server]) await backend.enroll(sidecarMeshPod(tb.pod(name)));
    },
    async teardown() {
      if (!backend) return;
      await backend.stop({ cleanup: true });
      backend = undefined;
    },
  };
}
