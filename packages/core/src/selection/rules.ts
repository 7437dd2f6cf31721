// Reference support rules for the backends: one source of truth for the kernel floor and the probed
// features each backend needs. Backends implement `support()` by calling `supportFromRules(name, caps)`
// (adding checks of their own if they must), so `shunt doctor`, `auto` and the docs agree.
import { compareKernel, formatKernel, kernel } from '../kernel';
import type { BackendName, FeatureName, KernelVersion, NodeCapabilities, Support } from '../types';

/**
 * The upstream release in which each feature appeared (for the probe's evidence and for reasons).
 * Sources: the kernel's bpf.h history and docs.ebpf.io. Distro kernels may have them earlier
 * (backports) or lack them (config), which is why support is decided by probes, not by these numbers.
 */
export const FEATURE_SINCE: Record<FeatureName, KernelVersion> = {
  btf: kernel('5.4'), // /sys/kernel/btf/vmlinux
  cgroup2: kernel('4.5'),
  bpffs: kernel('4.4'),
  'prog:sock_ops': kernel('4.13'),
  'prog:sk_msg': kernel('4.17'),
  'prog:cgroup_sock_addr': kernel('4.17'),
  'prog:cgroup_sockopt': kernel('5.3'),
  'prog:sched_cls': kernel('4.1'),
  'helper:msg_redirect_hash': kernel('4.18'), // with BPF_MAP_TYPE_SOCKHASH
  'helper:get_netns_cookie': kernel('5.7'), // cgroup sock/sock_addr hooks; sock_ops and sk_msg only from 5.15
  'helper:sk_assign': kernel('5.7'),
  'helper:redirect_peer': kernel('5.10'),
  'link:tcx': kernel('6.6'),
  'iptables:legacy': kernel('2.6.0'),
  'iptables:nft': kernel('3.13'),
  'iptables:tproxy': kernel('2.6.28'),
};

export interface SupportRule {
  /** Never chosen below this release, whatever the probes say: the oldest line we expect backports in (RHEL 8 = 4.18). */
  minKernel: KernelVersion;
  /** Upstream release by which every required feature exists (informational). */
  upstreamSince: KernelVersion;
  /** Every one must be available. */
  features: FeatureName[];
  /** In each group at least one must be available. */
  anyOf: FeatureName[][];
  /** Used when available, not required (e.g. tcx links instead of clsact). */
  optional: FeatureName[];
}

export const SUPPORT_RULES: Record<BackendName, SupportRule> = {
  sockops: {
    minKernel: kernel('4.18'),
    upstreamSince: kernel('5.7'),
    features: [
      'btf',
      'cgroup2',
      'bpffs',
      'prog:cgroup_sock_addr',
      'prog:cgroup_sockopt',
      'prog:sock_ops',
      'prog:sk_msg',
      'helper:msg_redirect_hash',
      'helper:get_netns_cookie',
    ],
    anyOf: [],
    optional: [],
  },
  tc: {
    minKernel: kernel('4.18'),
    upstreamSince: kernel('5.10'),
    features: ['btf', 'bpffs', 'prog:sched_cls', 'helper:sk_assign', 'helper:redirect_peer'],
    anyOf: [],
    optional: ['link:tcx'],
  },
  iptables: {
    minKernel: kernel('3.10'),
    upstreamSince: kernel('3.13'),
    features: [],
    anyOf: [['iptables:legacy', 'iptables:nft']],
    optional: ['iptables:tproxy'],
  },
};

function missing(caps: NodeCapabilities, f: FeatureName): string {
  const feat = caps.features[f];
  const since = formatKernel(FEATURE_SINCE[f]);
  return `${f} unavailable (upstream since ${since})${feat?.evidence ? `: ${feat.evidence}` : ''}`;
}

/** Support decided by the kernel floor and the probed features in `SUPPORT_RULES[name]`. */
export function supportFromRules(name: BackendName, caps: NodeCapabilities, rules: Record<BackendName, SupportRule> = SUPPORT_RULES): Support {
  const rule = rules[name];
  const reasons: string[] = [];
  if (compareKernel(caps.kernel, rule.minKernel) < 0) {
    reasons.push(`kernel ${caps.kernelRelease} is below the ${name} floor ${formatKernel(rule.minKernel)}`);
  }
  for (const f of rule.features) if (!caps.features[f]?.available) reasons.push(missing(caps, f));
  for (const group of rule.anyOf) {
    if (group.some((f) => caps.features[f]?.available)) continue;
    reasons.push(`none of ${group.join(', ')} works: ${group.map((f) => `${f}: ${caps.features[f]?.evidence ?? 'not probed'}`).join('; ')}`);
  }
  return reasons.length === 0 ? { ok: true } : { ok: false, reasons };
}

/** Optional features a backend would use on this node (e.g. tcx links). */
export function optionalFeatures(name: BackendName, caps: NodeCapabilities): FeatureName[] {
  return SUPPORT_RULES[name].optional.filter((f) => caps.features[f]?.available);
}
