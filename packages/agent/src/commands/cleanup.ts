// `shunt cleanup`: removes everything shunt installed on the node. Each backend adopts what it
// left (eBPF pins, iptables records under the state dir) and stops with cleanup; then the iptables
// backend's sweep removes SHUNT_* chains no record knows of, in every netns; finally whatever is
// left under <bpffs>/shunt (links detached first) is removed.
import { existsSync, rmSync } from 'node:fs';
import path from 'node:path';
import { IptablesBackend } from '@shunt/backend-iptables';
import { probeNode, removeOrphanedProbeNetns, type NodeCapabilities } from '@shunt/core';
import { createBackends } from '../backends';
import { hasInstalledState, nodeContext, nodePaths, type NodeStateOptions } from '../node-state/context';
import { removePins } from '../node-state/pins';
import { createLogger } from '../observability/log';
import type { Io } from '../program';

export interface CleanupOptions extends NodeStateOptions {
  json?: boolean;
  netnsPrefix?: string;
}

export interface CleanupReport {
  backends: { backend: string; ok: boolean; error?: string }[];
  /** Netns where the sweep found and removed SHUNT_* chains (or our TPROXY routing). */
  iptables: { netnsPath: string; tables: string[]; routing: string[] }[];
  pins: { links: string[]; others: string[] };
  /** The ZDS workloads a restarted agent would re-announce to ztunnel (<state-dir>/zds), removed. */
  zdsState: boolean;
  /** Scratch netns of node probes killed before they could remove them (`shunt-probe-<pid>-…`). */
  probeNetns: string[];
  errors: string[];
}

export async function runCleanup(o: NodeStateOptions & { netnsPrefix?: string }): Promise<CleanupReport> {
  const log = createLogger('warn', process.stderr);
  const paths = nodePaths(o);
  const report: CleanupReport = { backends: [], iptables: [], pins: { links: [], others: [] }, zdsState: false, probeNetns: [], errors: [] };
  // Before the probe below (which would remove them silently): report what a killed agent leaked.
  report.probeNetns = await removeOrphanedProbeNetns();
  const caps: NodeCapabilities = await probeNode({ iptablesScratch: true });
  const backends = createBackends({ stateDir: paths.stateDir });
  // eBPF backends only when they left pins: start() on a node without any would attach programs first.
  const present = backends.filter((b) => b.name === 'iptables' || hasInstalledState(paths, b.name));
  for (const b of present) {
    try {
      await b.start(nodeContext(paths, caps, 'cleanup', 'istio-sidecar', log));
      await b.stop({ cleanup: true });
      report.backends.push({ backend: b.name, ok: true });
    } catch (e) {
      // The sweeps below still remove what this backend left.
      report.backends.push({ backend: b.name, ok: false, error: (e as Error).message });
    }
  }
  const iptables = backends.find((b): b is IptablesBackend => b instanceof IptablesBackend);
  if (iptables) {
    try {
      const swept = await iptables.sweep(o.netnsPrefix ? { netnsPrefix: o.netnsPrefix } : {});
      report.iptables = swept.swept.map((s) => ({ netnsPath: s.netnsPath, tables: s.tables, routing: s.routing }));
      report.errors.push(...swept.errors);
    } catch (e) {
      report.errors.push(`iptables sweep: ${(e as Error).message}`);
    }
  }
  const pins = await removePins(paths.pinRoot);
  report.pins = { links: pins.links, others: pins.others };
  report.errors.push(...pins.errors);
  // With the redirect gone, a later agent must not hand these pods to ztunnel again unasked.
  const zdsDir = path.join(paths.stateDir, 'zds');
  if (existsSync(zdsDir)) {
    try {
      rmSync(zdsDir, { recursive: true, force: true });
      report.zdsState = true;
    } catch (e) {
      report.errors.push(`zds state ${zdsDir}: ${(e as Error).message}`);
    }
  }
  return report;
}

export async function cleanupCommand(o: CleanupOptions, io: Io): Promise<number> {
  const r = await runCleanup(o);
  if (o.json) io.out(JSON.stringify(r, null, 2) + '\n');
  else {
    for (const b of r.backends) io.out(`${b.backend}: ${b.ok ? 'stopped with cleanup' : `stop failed (${b.error}); swept below`}\n`);
    for (const n of r.iptables) io.out(`iptables: removed leftovers from ${n.netnsPath} (${[...n.tables, ...n.routing].join(', ')})\n`);
    io.out(`bpffs: detached ${r.pins.links.length} link(s), removed ${r.pins.links.length + r.pins.others.length} pin(s)\n`);
    if (r.probeNetns.length) io.out(`netns: removed ${r.probeNetns.length} orphaned probe netns (${r.probeNetns.join(', ')})\n`);
    for (const e of r.errors) io.err(`error: ${e}\n`);
  }
  return r.errors.length ? 1 : 0;
}
