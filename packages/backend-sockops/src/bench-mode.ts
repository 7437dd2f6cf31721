/**
 * The `sockops` path mode for the testbed's demo and bench harness (`PathMode` in
 * @shunt/testbed). Typed structurally so this package does not depend on the testbed.
 */
import * as fs from 'node:fs';
import type { MeshPod, NodeCapabilities } from '@shunt/core';
import { SockopsBackend, type SockopsOptions } from './backend';

/** What the mode needs from a testbed pod (a subset of @shunt/testbed's PodInfo). */
export interface TestbedPodLike {
  name: string;
  namespace: string;
  uid: string;
  node: string;
  ipv4: string;
  ipv6: string;
  netnsPath: string;
  cgroupPath: string;
  hostVeth: string;
}

export interface TestbedLike {
  readonly prefix: string;
  pod(name: string): TestbedPodLike;
  node(name: string): { cgroupPath: string };
}

export interface BenchModePods {
  client: string;
  server: string;
}

/** Istio's sidecar defaults (15001/15006, uid 1337, never capture 15008/15020/15021/15090). */
export function sidecarMeshPod(p: TestbedPodLike, overrides: Partial<MeshPod['traffic']['outbound']> = {}): MeshPod {
  return {
    uid: p.uid,
    namespace: p.namespace,
    name: p.name,
    profile: 'istio-sidecar',
    membership: 'sidecar',
    hostNetwork: false,
    ips: { v4: [p.ipv4], v6: p.ipv6 ? [p.ipv6] : [] },
    netnsPath: p.netnsPath,
    cgroupPath: p.cgroupPath,
    hostVeth: p.hostVeth,
    interceptionMode: 'REDIRECT',
    proxy: { uid: 1337, gid: 1337, outboundPort: 15001, inboundPort: 15006 },
    traffic: {
      inbound: { include: '*', exclude: [15008, 15020, 15021, 15090] },
      outbound: { includePorts: [], excludePorts: [], includeCidrs: '*', excludeCidrs: [], ...overrides },
    },
  };
}

export function sockopsBenchMode(opts: SockopsOptions & { name?: string } = {}) {
  let backend: SockopsBackend | null = null;
  let bpffsRoot = '';
  const splice = opts.splice ?? 'all';
  return {
    name: opts.name ?? 'sockops',
    description: `shunt sockops backend: connect4/6 redirect + getsockopt SO_ORIGINAL_DST, splice=${JSON.stringify(splice)}`,
    expectsProxy: true,
    async setup(tb: TestbedLike, pods: BenchModePods): Promise<void> {
      const client = tb.pod(pods.client);
      const server = tb.pod(pods.server);
      bpffsRoot = `/sys/fs/bpf/${tb.prefix}-sockops`;
      fs.mkdirSync(bpffsRoot, { recursive: true });
      backend = new SockopsBackend({ splice });
      const log = { debug() {}, info() {}, warn() {}, error() {} };
      await backend.start({
        nodeName: client.node,
        profile: 'istio-sidecar',
        caps: {} as NodeCapabilities,
        // The node's cgroup holds every pod of the node, like the node root does in production.
        cgroupRoot: tb.node(client.node).cgroupPath,
        bpffsRoot,
        log,
      });
      await backend.enroll(sidecarMeshPod(client));
      await backend.enroll(sidecarMeshPod(server));
    },
    async teardown(): Promise<void> {
      await backend?.stop({ cleanup: true });
      backend = null;
      if (bpffsRoot) fs.rmSync(bpffsRoot, { recursive: true, force: true });
    },
  };
}
