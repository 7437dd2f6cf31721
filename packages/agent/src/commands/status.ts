// `shunt status`: what is installed on this node, read back by a fresh process. Every backend
// that left state here (pins under <bpffs>/shunt/<backend>, records under <state-dir>/<backend>)
// is started read-only (NodeContext.readOnly: it adopts and reports, and attaches, installs or
// removes nothing) and answers observe(). status never changes the node.
import { probeNode, type BackendName, type InstalledState } from '@shunt/core';
import { readZdsStatus, type ZdsStatusFile } from '@shunt/zds';
import { zdsStatusPath } from '../zds/paths';
import { createBackends } from '../backends';
import { hasInstalledState, nodeContext, nodePaths, type NodeStateOptions } from '../node-state/context';
import { capacityOf, formatCapacity } from '../observability/capacity';
import { createLogger } from '../observability/log';
import type { Io } from '../program';
import { processAlive } from '@shunt/netlink';

export interface StatusOptions extends NodeStateOptions {
  backend?: BackendName;
  json?: boolean;
}

export interface StatusReport {
  backends: { backend: BackendName; state: InstalledState | null; error?: string }[];
  /** The ZDS side (ambient): as the agent last wrote it, and whether that agent still runs. */
  zds?: (ZdsStatusFile & { agentRunning: boolean }) | { error: string };
}


/** The agent's last ZDS status, if an ambient agent ran here. */
export function readZdsState(stateDir: string): StatusReport['zds'] {
  const file = zdsStatusPath(stateDir);
  try {
    const st = readZdsStatus(file);
    return st ? { ...st, agentRunning: !st.closed && processAlive(st.pid) } : undefined;
  } catch (err) {
    return { error: `${file}: ${(err as Error).message}` };
  }
}

export function formatZds(z: NonNullable<StatusReport['zds']>): string[] {
  if ('error' in z) return [`zds: status unreadable: ${z.error}`];
  const acked = z.workloads.filter((w) => w.acked).length;
  const failed = z.workloads.filter((w) => !w.acked && w.error).length;
  const pending = z.workloads.length - acked - failed;
  const who = z.closed
    ? `agent pid ${z.pid} stopped`
    : z.agentRunning
      ? `agent pid ${z.pid} running`
      : `agent pid ${z.pid} NOT running (state as it left it)`;
  const conn = z.connected ? `ztunnel connected${z.connectedSince ? ` since ${z.connectedSince}` : ''}${z.ztunnel ? ` (pid ${z.ztunnel.pid})` : ''}` : 'ztunnel NOT connected';
  const lines = [`zds: ${conn} on ${z.socket}; ${z.workloads.length} workload(s): ${acked} acked, ${failed} failed, ${pending} not acked; ${who}, as of ${z.updatedAt}`];
  for (const w of z.workloads) lines.push(`  ${w.namespace}/${w.name}  ${w.uid}  ${w.acked ? 'acked' : w.error ? `NACK: ${w.error}` : 'not acked'}`);
  return lines;
}

export async function collectStatus(o: StatusOptions): Promise<StatusReport> {
  const log = createLogger('warn', process.stderr);
  const paths = nodePaths(o);
  const report: StatusReport = { backends: [] };
  const zds = readZdsState(paths.stateDir);
  if (zds) report.zds = zds;
  const present = createBackends({ stateDir: paths.stateDir }).filter(
    (b) => (!o.backend || o.backend === b.name) && hasInstalledState(paths, b.name),
  );
  if (!present.length) return report;
  // No iptables functional test: it would create a scratch netns and rules; reading needs none.
  const caps = await probeNode({ iptablesScratch: false });
  for (const b of present) {
    try {
      await b.start({ ...nodeContext(paths, caps, 'status', 'istio-sidecar', log), readOnly: true });
      // tc: a splicing off because of where ztunnel runs is explained with the pid the agent saw.
      const zt = zds && !('error' in zds) && zds.connected ? zds.ztunnel : undefined;
      const hook = (b as { ztunnelConnected?: (pid: number | undefined) => unknown }).ztunnelConnected;
      if (zt && typeof hook === 'function') hook.call(b, zt.pid);
      report.backends.push({ backend: b.name, state: await b.observe() });
    } catch (e) {
      report.backends.push({ backend: b.name, state: null, error: (e as Error).message });
    } finally {
      await b.stop({ cleanup: false }).catch(() => undefined);
    }
  }
  return report;
}

export function formatStatus(r: StatusReport): string {
  const lines: string[] = [];
  for (const b of r.backends) {
    if (!b.state) {
      lines.push(`${b.backend}: state found but unreadable: ${b.error}`);
      continue;
    }
    const prepared = Number(b.state.nodeDetail['prepared'] ?? 0); // tc: netns with idle links, awaiting their pod
    lines.push(`${b.backend}: node ${b.state.nodeReady ? 'ready' : 'NOT ready'}, ${b.state.pods.length} pod(s) installed${prepared > 0 ? `, ${prepared} netns prepared (idle links)` : ''}`);
    const cap = capacityOf(b.state);
    if (cap) lines.push(`  ${formatCapacity(cap)}`);
    const sp = b.state.nodeDetail['splice'] as { on?: boolean; reason?: string; entries?: Record<string, number> | null } | undefined;
    // tc: whether app <-> ztunnel sockets are spliced, why not, and how many are now.
    if (b.backend === 'tc' && sp && typeof sp.on === 'boolean')
      lines.push(`  splicing: ${sp.on ? 'on' : 'off'} (${sp.reason ?? ''})${sp.entries ? `; now ${sp.entries['splice_socks'] ?? 0} socket(s) spliced, ${sp.entries['tc_splice_pending'] ?? 0} learning` : ''}`);
    for (const p of b.state.pods) lines.push(`  ${p.namespace}/${p.name}  ${p.uid}`);
    const counters = Object.entries(b.state.counters);
    if (counters.length) lines.push(`  counters: ${counters.map(([k, v]) => `${k}=${v}`).join(' ')}`);
  }
  if (r.zds) lines.push(...formatZds(r.zds));
  if (!lines.length) lines.push('nothing installed by shunt on this node');
  return lines.join('\n') + '\n';
}

export async function statusCommand(o: StatusOptions, io: Io): Promise<number> {
  const report = await collectStatus(o);
  io.out(o.json ? JSON.stringify(report, null, 2) + '\n' : formatStatus(report));
  return report.backends.some((b) => b.error) || (report.zds && 'error' in report.zds) ? 1 : 0;
}
