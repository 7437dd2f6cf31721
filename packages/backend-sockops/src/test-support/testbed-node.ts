/**
 * The sockops backend's node on a testbed (the *.e2e tests): its NodeContext — the node's cgroup
 * as cgroup root (it holds every pod of the node, like the node root does in production) — and a
 * bpffs pin root of this testbed in the machine's bpffs (/sys/fs/bpf/<testbed prefix>-<tag>,
 * never /sys/fs/bpf/shunt). The pin root is removed by the testbed's dispose() (tb.track), so an
 * afterAll that stops the backend and disposes the testbed leaves nothing, also after a failure.
 */
import * as fs from 'node:fs';
import type { NodeCapabilities, NodeContext } from '@shunt/core';
import type { Testbed } from '@shunt/testbed';
import { silentLog } from './sandbox';

export function testbedNodeContext(tb: Testbed, bpffsRoot: string, node = 'node0'): NodeContext {
  return { nodeName: node, profile: 'istio-sidecar', caps: {} as NodeCapabilities, cgroupRoot: tb.node(node).cgroupPath, bpffsRoot, log: silentLog };
}

/** Makes /sys/fs/bpf/<tb.prefix>-<tag>; tb.dispose() removes it (with any pin a failing test left). */
export function testbedBpffs(tb: Testbed, tag: string): string {
  const dir = `/sys/fs/bpf/${tb.prefix}-${tag}`;
  fs.mkdirSync(dir, { recursive: true });
  tb.track(`bpffs ${dir}`, async () => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}
