// Test support: throwaway netns, and node capabilities from the core's iptables probe.

import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseKernelRelease, probeIptables, type Feature, type FeatureName, type NodeCapabilities, type NodeContext } from '@shunt/core';
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

let cached: Promise<NodeCapabilities> | undefined;

/** Node capabilities with the iptables answers of the core's real probe (the rest is not needed here). */
export function probeCaps(): Promise<NodeCapabilities> {
  cached ??= (async () => {
    const ipt = await probeIptables({ scratch: true });
    const features = {} as Record<FeatureName, Feature>;
    features['iptables:legacy'] = ipt.legacy;
    features['iptables:nft'] = ipt.nft;
    features['iptables:tproxy'] = ipt.tproxy;
    const release = (await runCommand(['uname', '-r'])).trim();
    return {
      kernelRelease: release,
      kernel: parseKernelRelease(release),
      cgroup2Path: null,
      bpffsPath: null,
      iptablesVariant: ipt.variant,
      features,
    };
  })();
  return cached;
}

const quiet = { debug() {}, info() {}, warn() {}, error() {} };

export async function nodeContext(): Promise<NodeContext> {
  return { nodeName: 'test', profile: 'istio-sidecar', caps: await probeCaps(), cgroupRoot: '/', bpffsRoot: '/sys/fs/bpf/shunt', log: quiet };
}

const stateDirs: string[] = [];

/** A fresh state directory for one backend (tests must never use the node's /run/shunt/iptables). */
export function tempStateDir(): string {
  const dir = mkdtempSync(path.join(tmpdir(), `shunt-ipt-${RUN_ID}-state-`));
  stateDirs.push(dir);
  return dir;
}

export function disposeStateDirs(): void {
  for (const d of stateDirs.splice(0)) rmSync(d, { recursive: true, force: true });
}
