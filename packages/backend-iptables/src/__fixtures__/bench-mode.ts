// The `iptables` path for the testbed's bench harness (scripts/bench.js): this backend's REDIRECT
// rules in the client and server pods, whose sidecars then carry the traffic. `shunt bench` runs
// the backend through the real agent instead; this mode exists to bench the backend on its own,
// next to the testbed's hand-written iptables rules.

import { release } from 'node:os';
import { parseKernelRelease, type NodeCapabilities, type NodeContext } from '@shunt/core';
import type { PathMode } from '@shunt/testbed';
import { IptablesBackend } from '../backend';
import type { IptablesBackendOptions, IptablesVariant } from '../options';
import { meshPod } from './mesh';

export interface IptablesBenchModeOptions extends IptablesBackendOptions {
  /** The node probe's answer; without it, `variant` must say which iptables to use. */
  caps?: NodeCapabilities;
  /** Mode name in the report; default `iptables`. */
  name?: string;
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

export function iptablesBenchMode(opts: IptablesBenchModeOptions = {}): PathMode {
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
      for (const name of [which.client, which.server]) await backend.enroll(meshPod(tb, name));
    },
    async teardown() {
      if (!backend) return;
      await backend.stop({ cleanup: true });
      backend = undefined;
    },
  };
}
