// `shunt doctor`: the node's capability table, the backend a mode would choose, and why every
// other backend was not chosen. Pure: built from the probe result and the backends' support().
import { profileByName, type BackendName, type FeatureName, type NodeCapabilities, type ProfileName, type RedirectMode, type Support } from '@shunt/core';

export interface DoctorReport {
  node: { kernelRelease: string; cgroup2Path: string | null; bpffsPath: string | null; iptablesVariant: string | null };
  features: { name: FeatureName; available: boolean; evidence: string }[];
  mode: RedirectMode;
  profile: ProfileName;
  /** Backends that serve the profile, in the order `auto` tries them (istio-ambient: tc → iptables). */
  order: BackendName[];
  /** The backend the mode selects here, or null when none can run. */
  choice: BackendName | null;
  /** Why the selection failed, when it did. */
  error?: string;
  backends: { name: BackendName; ok: boolean; chosen: boolean; reasons: string[] }[];
  /** sockops splicing: the default setting and why, what 'auto' (the default) becomes here, and the guard probe behind it. */
  splice?: { setting: string; why: string; auto: string; guard: { available: boolean; evidence: string } };
  /** Ambient (tc) app <-> ztunnel splicing: what the default becomes here, and why. */
  tcSplice?: { setting: string; why: string; on: boolean; reason: string; cgroupRoot: string };
}

export interface SupportSourceLike {
  name: BackendName;
  support(caps: NodeCapabilities): Support;
}

export interface SelectionLike {
  chosen: { name: BackendName };
  rejected: { name: BackendName | string; reasons: string[] }[];
}

export function buildDoctorReport(
  caps: NodeCapabilities,
  mode: RedirectMode,
  profile: ProfileName,
  backends: readonly SupportSourceLike[],
  select: () => SelectionLike,
): DoctorReport {
  let choice: BackendName | null = null;
  let error: string | undefined;
  let rejected: { name: string; reasons: string[] }[] = [];
  try {
    const s = select();
    choice = s.chosen.name;
    rejected = s.rejected;
  } catch (e) {
    error = (e as Error).message;
    rejected = ((e as { rejected?: { name: string; reasons: string[] }[] }).rejected ?? []).slice();
  }
  const rows = backends.map((b) => {
    let support: Support;
    try {
      support = b.support(caps);
    } catch (e) {
      support = { ok: false, reasons: [`support() threw: ${(e as Error).message}`] };
    }
    const why = rejected.find((r) => r.name === b.name)?.reasons;
    const reasons = b.name === choice ? [] : why ?? (support.ok ? [] : support.reasons);
    return { name: b.name, ok: support.ok, chosen: b.name === choice, reasons };
  });
  // Backends selection knows of but this build does not ship (e.g. not yet implemented).
  for (const r of rejected) {
    if (!rows.some((row) => row.name === r.name)) rows.push({ name: r.name as BackendName, ok: false, chosen: false, reasons: r.reasons });
  }
  // The profile's own order first (what `auto` tries), then the backends that do not serve it.
  const order = profileByName(profile).backendOrder;
  const rank = (n: BackendName) => (order.includes(n) ? order.indexOf(n) : order.length + ['sockops', 'tc', 'iptables'].indexOf(n));
  rows.sort((a, b) => rank(a.name) - rank(b.name));
  return {
    node: { kernelRelease: caps.kernelRelease, cgroup2Path: caps.cgroup2Path, bpffsPath: caps.bpffsPath, iptablesVariant: caps.iptablesVariant },
    features: (Object.entries(caps.features) as [FeatureName, { available: boolean; evidence: string }][]).map(([name, f]) => ({
      name,
      available: f.available,
      evidence: f.evidence,
    })),
    mode,
    profile,
    order: [...order],
    choice,
    ...(error ? { error } : {}),
    backends: rows,
  };
}

function pad(s: string, n: number): string {
  return s.length >= n ? s : s + ' '.repeat(n - s.length);
}

/** The report as people read it in a terminal. */
export function formatDoctor(r: DoctorReport): string {
  const lines: string[] = [];
  lines.push(`node: kernel ${r.node.kernelRelease}, cgroup2 ${r.node.cgroup2Path ?? 'not mounted'}, bpffs ${r.node.bpffsPath ?? 'not mounted'}, iptables ${r.node.iptablesVariant ?? 'not working'}`);
  lines.push('');
  lines.push('capabilities:');
  const w = Math.max(...r.features.map((f) => f.name.length));
  for (const f of r.features) lines.push(`  ${f.available ? 'yes' : 'NO '}  ${pad(f.name, w)}  ${f.evidence}`);
  lines.push('');
  lines.push(`backends (redirectMode=${r.mode}, profile=${r.profile}, auto order ${r.order.join(' → ')}):`);
  for (const b of r.backends) {
    // Supported by the kernel yet passed over (order, profile) reads as 'not chosen', never 'can run'.
    const verdict = b.chosen ? 'CHOSEN' : !b.ok ? 'cannot run' : b.reasons.length > 0 ? 'not chosen' : 'can run';
    lines.push(`  ${pad(b.name, 9)} ${pad(verdict, 11)} ${b.reasons.join('; ')}`.trimEnd());
  }
  if (r.splice) {
    lines.push('');
    lines.push(`sockops splicing: default ${r.splice.setting}: ${r.splice.why}`);
    lines.push(
      r.splice.guard.available
        ? `  here: auto → ${r.splice.auto} (the splice guard loads: ${r.splice.guard.evidence})`
        : `  here: auto → none, nothing is spliced: the splice guard cannot load (${r.splice.guard.evidence})`,
    );
  }
  if (r.tcSplice) {
    lines.push(`tc splicing (ambient): default ${r.tcSplice.setting}: ${r.tcSplice.why}`);
    lines.push(`  here: ${r.tcSplice.on ? `splices, pairing program on cgroup ${r.tcSplice.cgroupRoot}` : 'nothing is spliced'} (${r.tcSplice.reason})`);
  }
  lines.push('');
  lines.push(r.choice ? `redirectMode=${r.mode} → ${r.choice}` : `no backend can run: ${r.error ?? 'unknown reason'}`);
  return lines.join('\n') + '\n';
}
