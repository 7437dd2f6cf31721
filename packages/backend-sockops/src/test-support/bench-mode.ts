/**
 * The `sockops` path for the manual benchmark (bench.manual.test.ts), a testbed PathMode.
 * `shunt bench` runs the backend through the real agent instead; this mode lets the manual
 * benchmark compare splice settings on one backend instance per round.
 */
import * as fs from 'node:fs';
import type { NodeCapabilities } from '@shunt/core';
import type { ModePods, PathMode, Testbed } from '@shunt/testbed';
import { SockopsBackend, type SockopsOptions } from '../backend';
import { DEFAULT_SPLICE } from '../splice';
import { interpretedMeshPod } from './mesh';

export function sockopsBenchMode(opts: SockopsOptions & { name?: string } = {}): PathMode {
  let backend: SockopsBackend | null = null;
  let bpffsRoot = '';
  const splice = opts.splice ?? DEFAULT_SPLICE;
  return {
    name: opts.name ?? 'sockops',
    description: `shunt sockops backend: connect4/6 redirect + getsockopt SO_ORIGINAL_DST, splice=${JSON.stringify(splice)}${opts.guard ? `, guard=${JSON.stringify(opts.guard)}` : ''}`,
    expectsProxy: true,
    async setup(tb: Testbed, pods: ModePods): Promise<void> {
      const client = tb.pod(pods.client);
      bpffsRoot = `/sys/fs/bpf/${tb.prefix}-sockops`;
      fs.mkdirSync(bpffsRoot, { recursive: true });
      backend = new SockopsBackend({ splice, ...(opts.guard ? { guard: opts.guard } : {}) });
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
      await backend.enroll(interpretedMeshPod(tb, pods.client));
      await backend.enroll(interpretedMeshPod(tb, pods.server));
    },
    async teardown(): Promise<void> {
      await backend?.stop({ cleanup: true });
      backend = null;
      if (bpffsRoot) fs.rmSync(bpffsRoot, { recursive: true, force: true });
    },
  };
}
