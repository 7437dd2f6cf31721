// `shunt status`: what is installed on this node, read back from the kernel by a fresh process:
// each eBPF backend adopts its pins and answers observe(); iptables state is found by scanning
// every network namespace for SHUNT_* chains.
import { probeNode, type BackendName, type InstalledState } from '@shunt/core';
import { createBackends } from '../backends';
import { NetnsDiscovery } from '../netns/discovery';
import { listNetnsIps } from '../netns/ips';
import { hasPinnedState, nodeContext, nodePaths, type NodeStateOptions } from '../node-state/context';
import { readShuntChains, type ShuntChains } from '../node-state/iptables-read';
import { createLogger } from '../observability/log';
import type { Io } from '../program';

export interface StatusOptions extends NodeStateOptions {
  backend?: BackendName;
  netnsPrefix?: string;
  json?: boolean;
}

export interface StatusReport {
  bpf: { backend: BackendName; state: InstalledState | null; error?: string }[];
  iptables: { netnsPath: string; chains: ShuntChains[] }[];
}

export async function collectStatus(o: StatusOptions): Promise<StatusReport> {
  const log = createLogger('warn', process.stderr);
  const paths = nodePaths(o);
  const report: StatusReport = { bpf: [], iptables: [] };
  const wanted = (n: BackendName): boolean => !o.backend || o.backend === n;
  const pinned = createBackends({ stateDir: paths.stateDir }).filter((b) => b.name !== 'iptables' && wanted(b.name) && hasPinnedState(paths, b.name));
  if (pinned.length) {
    const caps = await probeNode({ iptablesScratch: true });
    for (const b of pinned) {
      try {
        await b.start(nodeContext(paths, caps, 'status', 'istio-sidecar', log));
        report.bpf.push({ backend: b.name, state: await b.observe() });
      } catch (e) {
        report.bpf.push({ backend: b.name, state: null, error: (e as Error).message });
      } finally {
        await b.stop({ cleanup: false }).catch(() => undefined);
      }
    }
  }
  if (wanted('iptables')) {
    const d = new NetnsDiscovery({ listIps: listNetnsIps, ...(o.netnsPrefix ? { namePrefix: o.netnsPrefix } : {}) });
    for (const ns of await d.listNamespaces()) {
      const chains = await readShuntChains(ns.path);
      if (chains.length) report.iptables.push({ netnsPath: ns.path, chains });
    }
  }
  return report;
}

export function formatStatus(r: StatusReport): string {
  const lines: string[] = [];
  for (const b of r.bpf) {
    if (!b.state) {
      lines.push(`${b.backend}: pinned state found but unreadable: ${b.error}`);
      continue;
    }
    lines.push(`${b.backend}: node ${b.state.nodeReady ? 'ready' : 'NOT ready'}, ${b.state.pods.length} pod(s) enrolled`);
    for (const p of b.state.pods) lines.push(`  ${p.namespace}/${p.name}  ${p.uid}`);
    const counters = Object.entries(b.state.counters);
    if (counters.length) lines.push(`  counters: ${counters.map(([k, v]) => `${k}=${v}`).join(' ')}`);
  }
  if (r.iptables.length) {
    lines.push(`iptables: SHUNT_* chains in ${r.iptables.length} network namespace(s)`);
    for (const n of r.iptables) {
      const detail = n.chains.map((c) => `${c.variant}/v${c.family} ${Object.keys(c.tables).join('+')} redirected=${c.redirectedPackets}`).join(', ');
      lines.push(`  ${n.netnsPath}  ${detail}`);
    }
  }
  if (!lines.length) lines.push('nothing installed by shunt on this node');
  return lines.join('\n') + '\n';
}

export async function statusCommand(o: StatusOptions, io: Io): Promise<number> {
  const report = await collectStatus(o);
  io.out(o.json ? JSON.stringify(report, null, 2) + '\n' : formatStatus(report));
  return report.bpf.some((b) => b.error) ? 1 : 0;
}
