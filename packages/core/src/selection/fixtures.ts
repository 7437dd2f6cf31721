// Capability fixtures for selection tests (ours and the backends'): what the probe would report on
// typical kernels. Upstream kernels have exactly the features that existed in their release; the
// distro fixtures show why probes, not version numbers, decide.
import { compareKernel, formatKernel, parseKernelRelease } from '../kernel';
import { BPF_FEATURE_PROBES, describeProbeCall, type BpfProbePart } from '../probe/bpf-features';
import type { Feature, FeatureName, KernelVersion, NodeCapabilities } from '../types';
import { FEATURE_SINCE } from './rules';

/** What a probe of each part would have said on an upstream `release` (the evidence a real probe gives per part). */
function partsEvidence(k: KernelVersion, parts: readonly BpfProbePart[]): string {
  return parts.map((p) => `${describeProbeCall(p.call)}: ${compareKernel(k, p.since) >= 0 ? 'yes' : 'NO'} (since ${formatKernel(p.since)})`).join('; ');
}

/** Capabilities of an upstream kernel `release`, with `overrides` for backports or disabled config. */
export function capabilitiesFor(release: string, overrides: Partial<Record<FeatureName, boolean>> = {}): NodeCapabilities {
  const k = parseKernelRelease(release);
  const features = {} as Record<FeatureName, Feature>;
  for (const name of Object.keys(FEATURE_SINCE) as FeatureName[]) {
    const byVersion = compareKernel(k, FEATURE_SINCE[name]) >= 0;
    const available = overrides[name] ?? byVersion;
    const why = overrides[name] !== undefined ? 'fixture override' : byVersion ? 'fixture: in this release' : 'fixture: not in this release';
    const parts = (BPF_FEATURE_PROBES as Partial<Record<FeatureName, readonly BpfProbePart[]>>)[name];
    const detail = parts && parts.length > 1 && overrides[name] === undefined ? `: ${partsEvidence(k, parts)}` : '';
    features[name] = { available, evidence: `${why} (${release})${detail}` };
  }
  const nft = features['iptables:nft'].available;
  return {
    kernelRelease: release,
    kernel: k,
    cgroup2Path: features.cgroup2.available ? '/sys/fs/cgroup' : null,
    bpffsPath: features.bpffs.available ? '/sys/fs/bpf' : null,
    iptablesVariant: nft ? 'nft' : features['iptables:legacy'].available ? 'legacy' : null,
    features,
  };
}

/** Every BPF feature the sockops backend needs, claimed present: what a full backport reports. */
const SOCKOPS_BPF_BACKPORT: Partial<Record<FeatureName, boolean>> = {
  btf: true,
  'prog:cgroup_sockopt': true,
  'prog:sk_lookup': true,
  'attach:cgroup_udp_recvmsg': true,
  'attach:cgroup_getpeername': true,
  'attach:cgroup_sock_release': true,
  'helper:get_netns_cookie': true,
  'helper:get_socket_cookie': true,
};

export const CAPABILITY_FIXTURES = {
  '4.19': capabilitiesFor('4.19.0-27-amd64'),
  '5.4': capabilitiesFor('5.4.0-150-generic'),
  /** get_netns_cookie only in cgroup hooks; no getpeername hooks (5.8), no sk_lookup (5.9). */
  '5.7': capabilitiesFor('5.7.19'),
  /** Everything but get_netns_cookie from sock_ops, sk_msg and cgroup_sockopt (5.15). */
  '5.10': capabilitiesFor('5.10.0-28-amd64'),
  '5.15': capabilitiesFor('5.15.0-157-generic'),
  '6.1': capabilitiesFor('6.1.0-18-amd64'),
  '6.6': capabilitiesFor('6.6.30'),
  '6.18': capabilitiesFor('6.18.44'),
  /** An old release with newer BPF backported (as RHEL 8 does): the version alone would refuse it. */
  'backport-4.18': capabilitiesFor('4.18.0-553.el8_10.x86_64', {
    ...SOCKOPS_BPF_BACKPORT,
    'helper:sk_assign': true,
    'helper:redirect_peer': true,
  }),
  /** A new release built without cgroup sockopt hooks (or locked down): the version alone would accept it. */
  'nosockopt-6.1': capabilitiesFor('6.1.0-custom', { 'prog:cgroup_sockopt': false }),
  /** sockops impossible, tc possible: the global order's second choice. */
  'nosockopt-6.6': capabilitiesFor('6.6.0-custom', { 'prog:cgroup_sockopt': false }),
  /** Below every eBPF floor even if the probes claimed otherwise. */
  'backport-3.10': capabilitiesFor('3.10.0-1160.el7.x86_64', {
    ...SOCKOPS_BPF_BACKPORT,
    'prog:sock_ops': true,
    'prog:sk_msg': true,
    'prog:cgroup_sock_addr': true,
    'attach:cgroup_udp_sendmsg': true,
    'helper:msg_redirect_hash': true,
    'helper:sock_hash_update': true,
    'helper:get_current_uid_gid': true,
  }),
} satisfies Record<string, NodeCapabilities>;

export type CapabilityFixtureName = keyof typeof CAPABILITY_FIXTURES;
