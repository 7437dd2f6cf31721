// Test support: throwaway netns and node capabilities found by really trying each iptables
// variant in a scratch netns (what the core's probe does; used until tests can call it).

import { randomBytes } from 'node:crypto';
import type { Feature, FeatureName, NodeCapabilities, NodeContext } from '@shunt/core';
import { createNetns, deleteNetns, Netlink, runCommand } from '@shunt/netlink';

export const RUN_ID = randomBytes(3).toString('hex');
let counter = 0;

/** Unique netns names per test file run: shunt-ipt-<run>-<n>. */
export function netnsName(tag: string): string {
  return `shunt-ipt-${RUN_ID}-${tag}-${counter++}`;
}

export class Netnses {
  private readonly names: string[] = [];

  async create(tag: string): Promise<string> {
    const name = netnsName(tag);
    const path = await createNetns(name);
    this.names.push(name);
    await Netlink.at(path).setUp('lo');
    return path;
  }

  async disposeAll(): Promise<void> {
    for (const n of this.names.splice(0)) await deleteNetns(n, { ignoreMissing: true });
  }
}

async function tryIn(netns: string, argv: string[]): Promise<Feature> {
  try {
    await runCommand(argv, { netns, timeoutMs: 10_000 });
    return { available: true, evidence: `${argv.join(' ')}: ok` };
  } catch (e) {
    return { available: false, evidence: (e as Error).message };
  }
}

let cached: Promise<NodeCapabilities> | undefined;

export function probeCaps(): Promise<NodeCapabilities> {
  cached ??= (async () => {
    const name = netnsName('probe');
    const ns = await createNetns(name);
    try {
      const features = {} as Record<FeatureName, Feature>;
      for (const v of ['legacy', 'nft'] as const) {
        const add = await tryIn(ns, [`iptables-${v}`, '-t', 'nat', '-A', 'INPUT', '-p', '255', '-j', 'RETURN']);
        if (add.available) await tryIn(ns, [`iptables-${v}`, '-t', 'nat', '-D', 'INPUT', '-p', '255', '-j', 'RETURN']);
        features[`iptables:${v}`] = add;
      }
      const tp = ['-t', 'mangle', 'PREROUTING', '-p', 'tcp', '-j', 'TPROXY', '--on-port', '1', '--tproxy-mark', '1'];
      const tpAdd = await tryIn(ns, ['iptables-nft', tp[0]!, tp[1]!, '-A', ...tp.slice(2)]);
      features['iptables:tproxy'] = tpAdd;
      const kernel = (await runCommand(['uname', '-r'])).trim();
      const [major = 0, minor = 0, patch = 0] = kernel.split(/[.-]/).map(Number);
      return {
        kernelRelease: kernel,
        kernel: { major, minor, patch },
        cgroup2Path: null,
        bpffsPath: null,
        iptablesVariant: features['iptables:nft'].available ? 'nft' : features['iptables:legacy'].available ? 'legacy' : null,
        features,
      };
    } finally {
      await deleteNetns(name, { ignoreMissing: true });
    }
  })();
  return cached;
}

const quiet = { debug() {}, info() {}, warn() {}, error() {} };

export async function nodeContext(): Promise<NodeContext> {
  return { nodeName: 'test', profile: 'istio-sidecar', caps: await probeCaps(), cgroupRoot: '/', bpffsRoot: '/sys/fs/bpf/shunt', log: quiet };
}
