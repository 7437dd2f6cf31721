// `shunt doctor`: exit 0 when the mode can run here, 1 when no backend can.
import { probeNode, selectBackend, type ProfileName, type RedirectMode } from '@shunt/core';
import { DEFAULT_SPLICE, SPLICE_DEFAULT_WHY, effectiveSplice, probeSpliceGuard } from '@shunt/backend-sockops';
import { DEFAULT_TC_SPLICE, TC_SPLICE_WHY, effectiveTcSplice, ztunnelPlacement } from '@shunt/backend-tc';
import { createBackends } from '../backends';
import { buildDoctorReport, formatDoctor } from '../doctor/report';
import { capacityOf, formatCapacity, type CapacityView } from '../observability/capacity';
import { collectStatus, readZdsState } from './status';
import { DEFAULT_STATE_DIR, nodePaths } from '../node-state/context';
import type { NodeStateOptions } from '../node-state/context';
import type { Io } from '../program';

export interface DoctorOptions extends NodeStateOptions {
  profile: ProfileName;
  redirectMode: RedirectMode;
  json?: boolean;
}

export async function doctorCommand(o: DoctorOptions, io: Io): Promise<number> {
  // The probe finds cgroup2 and bpffs itself and reports them missing, which is what doctor is for.
  const caps = await probeNode({ iptablesScratch: true });
  const backends = createBackends({ profile: o.profile, stateDir: o.stateDir ?? DEFAULT_STATE_DIR });
  const report = buildDoctorReport(caps, o.redirectMode, o.profile, backends, () => selectBackend(o.redirectMode, caps, backends, { profile: o.profile }));
  // The default splice setting, and what it ('auto') becomes on this node.
  const guard = probeSpliceGuard();
  const auto = effectiveSplice('auto', () => guard);
  report.splice = {
    setting: Array.isArray(DEFAULT_SPLICE) ? DEFAULT_SPLICE.join(',') : DEFAULT_SPLICE,
    why: SPLICE_DEFAULT_WHY,
    auto: Array.isArray(auto.splice) ? auto.splice.join(',') : auto.splice,
    guard,
  };
  // Ambient (tc) splicing: the same guard, plus the node cgroup its pairing program attaches to.
  let cgroupRoot = '';
  try {
    cgroupRoot = nodePaths(o).cgroupRoot;
  } catch {
    cgroupRoot = ''; // no cgroup v2 found: reported by the feature list, and here as the reason
  }
  let tc = effectiveTcSplice(DEFAULT_TC_SPLICE, cgroupRoot, () => guard);
  // The ztunnel an ambient agent here last saw connected (ZDS status file): splicing also needs
  // its process under that cgroup (backend-tc ztunnel-cgroup.ts).
  const zds = readZdsState(o.stateDir ?? DEFAULT_STATE_DIR);
  const zt = zds && !('error' in zds) && zds.connected ? zds.ztunnel : undefined;
  if (tc.on && zt) {
    const p = ztunnelPlacement(zt.pid, cgroupRoot);
    tc = p.under === true ? { on: true, reason: `${tc.reason}; ${p.reason}` } : { on: false, reason: `tc splicing off: ${p.reason}` };
  }
  report.tcSplice = { setting: DEFAULT_TC_SPLICE, why: TC_SPLICE_WHY, on: tc.on, reason: tc.reason, cgroupRoot };
  // Capacity used/left, read back (read-only) from what a running or earlier agent installed.
  let capacity: CapacityView | null = null;
  try {
    capacity = capacityOf((await collectStatus({ ...o, backend: 'sockops' })).backends[0]?.state);
  } catch {
    capacity = null; // nothing readable installed: doctor is about the node first
  }
  if (o.json) io.out(JSON.stringify({ ...report, capacity }, null, 2) + '\n');
  else io.out(formatDoctor(report) + (capacity ? `\nsockops ${formatCapacity(capacity)}\n` : ''));
  return report.choice ? 0 : 1;
}
