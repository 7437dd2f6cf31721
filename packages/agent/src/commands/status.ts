// `shunt status`: what is installed on this node, read back by a fresh process. Every backend
// that left state here (pins under <bpffs>/shunt/<backend>, records under <state-dir>/<backend>)
// is started read-only (NodeContext.readOnly: it adopts and reports, and attaches, installs or
// removes nothing) and answers observe(). status never changes the node.
import { probeNode, type BackendName, type InstalledState } from '@shunt/core';
import { createBackends } from '../backends';
import { hasInstalledState, nodeContext, nodePaths, type NodeStateOptions } from '../node-state/context';
import { capacityOf, formatCapacity } from '../observability/capacity';
import { createLogger } from '../observability/log';
import type { Io } from '../program';

export interface StatusOptions extends NodeStateOptions {
  backend?: BackendName;
  json?: boolean;
}

export interface StatusReport {
  backends: { backend: BackendName; state: InstalledState | null; error?: string }[];
}

export async function collectStatus(o: StatusOptions): Promise<StatusReport> {
  const log = createLogger('warn', process.stderr);
  const paths = nodePaths(o);
  const report: StatusReport = { backends: [] };
  const present = createBackends({ stateDir: paths.stateDir }).filter(
    (b) => (!o.backend || o.backend === b.name) && hasInstalledState(paths, b.name),
  );
  if (!present.length) return report;
  // No iptables functional test: it would create a scratch netns and rules; reading needs none.
  const caps = await probeNode({ iptablesScratch: false });
  for (const b of present) {
    try {
      await b.start({ ...nodeContext(paths, caps, 'status', 'istio-sidecar', log), readOnly: true });
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
    lines.push(`${b.backend}: node ${b.state.nodeReady ? 'ready' : 'NOT ready'}, ${b.state.pods.length} pod(s) installed`);
    const cap = capacityOf(b.state);
    if (cap) lines.push(`  ${formatCapacity(cap)}`);
    for (const p of b.state.pods) lines.push(`  ${p.namespace}/${p.name}  ${p.uid}`);
    const counters = Object.entries(b.state.counters);
    if (counters.length) lines.push(`  counters: ${counters.map(([k, v]) => `${k}=${v}`).join(' ')}`);
  }
  if (!lines.length) lines.push('nothing installed by shunt on this node');
  return lines.join('\n') + '\n';
}

export async function statusCommand(o: StatusOptions, io: Io): Promise<number> {
  const report = await collectStatus(o);
  io.out(o.json ? JSON.stringify(report, null, 2) + '\n' : formatStatus(report));
  return report.backends.some((b) => b.error) ? 1 : 0;
}
