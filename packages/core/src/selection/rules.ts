// Support rules for the backends: the one source of truth for the kernel floor and the probed features
// each backend needs, with what it needs each for. Backends implement `support()` by calling
// `supportFromRules(name, caps)` (adding checks of their own only for per-instance settings), so
// `shunt doctor`, `auto`, the selection tests and the running agent agree.
import { compareKernel, formatKernel, kernel } from '../kernel';
import { BPF_FEATURE_PROBES, type BpfFeatureName, type BpfProbePart } from '../probe/bpf-features';
import type { BackendName, FeatureName, KernelVersion, NodeCapabilities, Support } from '../types';

/** Newest part of a feature's probe: the upstream release by which all of it exists. */
function newestPart(parts: readonly BpfProbePart[]): KernelVersion {
  return parts.map((p) => p.since).reduce((a, b) => (compareKernel(a, b) >= 0 ? a : b));
}

/**
 * The upstream release in which each feature (all of its probed parts) appeared, for reasons and
 * fixtures. BPF features take it from their probe parts (probe/bpf-features.ts). Distro kernels may
 * have them earlier (backports) or lack them (config), which is why probes decide, not these numbers.
 */
export const FEATURE_SINCE: Record<FeatureName, KernelVersion> = {
  btf: kernel('5.4'), // /sys/kernel/btf/vmlinux
  cgroup2: kernel('4.5'),
  bpffs: kernel('4.4'),
  'iptables:legacy': kernel('2.6.0'),
  'iptables:nft': kernel('3.13'),
  'iptables:tproxy': kernel('2.6.28'),
  ...(Object.fromEntries(Object.entries(BPF_FEATURE_PROBES).map(([f, parts]) => [f, newestPart(parts)])) as Record<BpfFeatureName, KernelVersion>),
};

/** A required feature and what the backend needs it for (shown with the reason when it is missing). */
export interface RequiredFeature {
  feature: FeatureName;
  why: string;
}

export interface SupportRule {
  /**
   * Never chosen below this release, whatever the probes say: where the backend's oldest building
   * block appeared upstream (sockhash/sk_msg: 4.18), which is also the oldest line we expect
   * backports in (RHEL 8). Above it, the probes decide.
   */
  minKernel: KernelVersion;
  /** Every one must be available. */
  features: readonly RequiredFeature[];
  /** In each group at least one must be available. */
  anyOf: FeatureName[][];
  /** Used when available, not required (e.g. tcx links instead of clsact). */
  optional: FeatureName[];
}

export const SUPPORT_RULES: Record<BackendName, SupportRule> = {
  sockops: {
    minKernel: kernel('4.18'),
    features: [
      { feature: 'btf', why: 'CO-RE objects need the kernel BTF' },
      { feature: 'cgroup2', why: 'the cgroup programs attach to a cgroup v2 directory' },
      { feature: 'bpffs', why: 'maps and links are pinned so a restarted agent adopts them' },
      { feature: 'prog:cgroup_sock_addr', why: 'cgroup/connect4/6 redirect outbound connects' },
      { feature: 'prog:sock_ops', why: 'sockops carries original destinations to established sockets' },
      { feature: 'prog:cgroup_sockopt', why: 'cgroup/getsockopt answers SO_ORIGINAL_DST' },
      { feature: 'prog:sk_msg', why: 'sk_msg splices app<->proxy sockets' },
      { feature: 'prog:sk_lookup', why: 'sk_lookup steers inbound connections from other nodes to the proxy listener' },
      { feature: 'attach:cgroup_getpeername', why: 'cgroup/getpeername4/6 show a redirected socket its original peer' },
      { feature: 'attach:cgroup_udp_sendmsg', why: 'cgroup/sendmsg4/6 capture DNS queries' },
      { feature: 'attach:cgroup_udp_recvmsg', why: 'cgroup/recvmsg4/6 restore the DNS server address on replies' },
      { feature: 'attach:cgroup_sock_release', why: 'cgroup/sock_release forgets captured DNS sockets' },
      { feature: 'helper:msg_redirect_hash', why: 'sk_msg redirects through the sockhash' },
      { feature: 'helper:sock_hash_update', why: 'sockops adds established sockets to the sockhash' },
      { feature: 'helper:get_netns_cookie', why: 'every program identifies the pod by its netns cookie' },
      { feature: 'helper:get_socket_cookie', why: 'per-socket records are keyed by socket cookie' },
      { feature: 'helper:get_current_uid_gid', why: "the proxy's own connects are told apart by uid/gid" },
    ],
    anyOf: [],
    optional: [],
  },
  tc: {
    // bpf_sk_assign refused SO_REUSEPORT listeners before 6.6, and ztunnel's in-pod listeners are
    // all SO_REUSEPORT (INPOD_PORT_REUSE defaults to true). No probe can show that without a live
    // listener and a packet, so the release decides here; tcx (also 6.6) is probed on top.
    minKernel: kernel('6.6'),
    features: [
      { feature: 'btf', why: 'CO-RE objects need the kernel BTF' },
      { feature: 'bpffs', why: 'maps and links are pinned so a restarted agent adopts them' },
      { feature: 'prog:sched_cls', why: "TC programs on the pod's eth0 inside its netns" },
      { feature: 'helper:sk_assign', why: "hands captured packets to ztunnel's in-pod sockets" },
      { feature: 'prog:sk_lookup', why: "hands SYNs that meet a TIME_WAIT of their 4-tuple to ztunnel's listener" },
    ],
    anyOf: [],
    // tcx links chain with a CNI's programs and are pinned for adoption; without them the backend
    // falls back to clsact + cls_bpf filters at a fixed priority in the pod netns.
    optional: ['link:tcx'],
  },
  iptables: {
    minKernel: kernel('3.10'),
    features: [],
    anyOf: [['iptables:legacy', 'iptables:nft']],
    optional: ['iptables:tproxy'],
  },
};

/** Upstream release by which every required feature of a backend exists (informational, for docs and doctor). */
export function upstreamSince(name: BackendName, rules: Record<BackendName, SupportRule> = SUPPORT_RULES): KernelVersion {
  const rule = rules[name];
  return [rule.minKernel, ...rule.features.map((r) => FEATURE_SINCE[r.feature]), ...rule.anyOf.map((g) => g.map((f) => FEATURE_SINCE[f]).reduce((a, b) => (compareKernel(a, b) <= 0 ? a : b)))].reduce(
    (a, b) => (compareKernel(a, b) >= 0 ? a : b),
  );
}

function missing(caps: NodeCapabilities, { feature, why }: RequiredFeature): string {
  const feat = caps.features[feature];
  const since = formatKernel(FEATURE_SINCE[feature]);
  return `${feature} unavailable (upstream since ${since}; ${why}): ${feat ? feat.evidence : 'not probed'}`;
}

/** Support decided by the kernel floor and the probed features in `SUPPORT_RULES[name]`. */
export function supportFromRules(name: BackendName, caps: NodeCapabilities, rules: Record<BackendName, SupportRule> = SUPPORT_RULES): Support {
  const rule = rules[name];
  const reasons: string[] = [];
  if (compareKernel(caps.kernel, rule.minKernel) < 0) {
    reasons.push(`kernel ${caps.kernelRelease} is below the ${name} floor ${formatKernel(rule.minKernel)}`);
  }
  for (const r of rule.features) if (!caps.features[r.feature]?.available) reasons.push(missing(caps, r));
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
