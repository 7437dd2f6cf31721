// `shunt cleanup`: removes everything shunt installed on the node. Each eBPF backend with pinned
// state adopts it and stops with cleanup; SHUNT_* chains are removed from every netns; finally
// whatever is left under <bpffs>/shunt (links detached first) is removed.
import { probeNode } from '@shunt/core';
import { createBackends } from '../backends';
import { NetnsDiscovery } from '../netns/discovery';
import { listNetnsIps } from '../netns/ips';
import { hasPinnedState, nodeContext, nodePaths, type NodeStateOptions } from '../node-state/context';
import { removeShuntChains } from '../node-state/iptables-sweep';
import { removePins } from '../node-state/pins';
import { createLogger } from '../observability/log';
import type { Io } from '../program';

export interface CleanupOptions extends NodeStateOptions {
  json?: boolean;
  netnsPrefix?: string;
}

export interface CleanupReport {
  backends: { backend: string; ok: boolean; error?: string }[];
  iptables: { netnsPath: string; tables: string[] }[];
  pins: { links: string[]; others: string[] };
  errors: string[];
}

export async function runCleanup(o: NodeStateOptions & { netnsPrefix?: string }): Promise<CleanupReport> {
  const log = createLogger('warn', process.stderr);
  const paths = nodePaths(o);
  const report: CleanupReport = { backends: [], iptables: [], pins: { links: [], others: [] }, errors: [] };
  const pinned = createBackends().filter((b) => b.name !== 'iptables' && hasPinnedState(paths, b.name));
  if (pinned.length) {
    const caps = await probeNode({ iptablesScratch: true });
    for (const b of pinned) {
      try {
        await b.start(nodeContext(paths, caps, 'cleanup', 'istio-sidecar', log));
        await b.stop({ cleanup: true });
        report.backends.push({ backend: b.name, ok: true });
      } catch (e) {
        // The pin sweep below still removes what this backend pinned.
        report.backends.push({ backend: b.name, ok: false, error: (e as Error).message });
      }
    }
  }
  const d = new NetnsDiscovery({ listIps: listNetnsIps, ...(o.netnsPrefix ? { namePrefix: o.netnsPrefix } : {}) });
  for (const ns of await d.listNamespaces()) {
    try {
      const removed = await removeShuntChains(ns.path);
      if (removed.length) report.iptables.push({ netnsPath: ns.path, tables: removed.flatMap((r) => Object.keys(r.tables).map((t) => `${r.variant}/v${r.family}/${t}`)) });
    } catch (e) {
      report.errors.push(`${ns.path}: ${(e as Error).message}`);
    }
  }
  const pins = await removePins(paths.pinRoot);
  report.pins = { links: pins.links, others: pins.others };
  report.errors.push(...pins.errors);
  return report;
}

export async function cleanupCommand(o: CleanupOptions, io: Io): Promise<number> {
  const r = await runCleanup(o);
  if (o.json) io.out(JSON.stringify(r, null, 2) + '\n');
  else {
    for (const b of r.backends) io.out(`${b.backend}: ${b.ok ? 'stopped with cleanup' : `stop failed (${b.error}); pins removed below`}\n`);
    for (const n of r.iptables) io.out(`iptables: removed SHUNT_* chains from ${n.netnsPath} (${n.tables.join(', ')})\n`);
    io.out(`bpffs: detached ${r.pins.links.length} link(s), removed ${r.pins.links.length + r.pins.others.length} pin(s)\n`);
    for (const e of r.errors) io.err(`error: ${e}\n`);
  }
  return r.errors.length ? 1 : 0;
}
