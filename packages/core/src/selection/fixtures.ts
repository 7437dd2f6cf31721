// Capability fixtures for selection tests (ours and the backends'): what the probe would report on
// typical kernels. Upstream kernels have exactly the features that existed in their release; the
// distro fixtures show why probes, not version numbers, decide.
import { compareKernel, parseKernelRelease } from '../kernel';
import type { Feature, FeatureName, NodeCapabilities } from '../types';
import { FEATURE_SINCE } from './rules';

/** Capabilities of an upstream kernel `release`, with `overrides` for backports or disabled config. */
export function capabilitiesFor(release: string, overrides: Partial<Record<FeatureName, boolean>> = {}): NodeCapabilities {
  const k = parseKernelRelease(release);
  const features = {} as Record<FeatureName, Feature>;
  for (const name of Object.keys(FEATURE_SINCE) as FeatureName[]) {
    const byVersion = compareKernel(k, FEATURE_SINCE[name]) >= 0;
    const available = overrides[name] ?? byVersion;
    const why = overrides[name] !== undefined ? 'fixture override' : byVersion ? 'fixture: in this release' : 'fixture: not in this release';
    features[name] = { available, evidence: `${why} (${release})` };
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

export const CAPABILITY_FIXTURES = {
  '4.19': capabilitiesFor('4.19.0-27-amd64'),
  '5.4': capabilitiesFor('5.4.0-150-generic'),
  '5.7': capabilitiesFor('5.7.19'),
  '5.10': capabilitiesFor('5.10.0-28-amd64'),
  '6.1': capabilitiesFor('6.1.0-18-amd64'),
  '6.6': capabilitiesFor('6.6.30'),
  '6.18': capabilitiesFor('6.18.44'),
  /** An old release with newer BPF backported (as RHEL 8 does): the version alone would refuse it. */
  'backport-4.18': capabilitiesFor('4.18.0-553.el8_10.x86_64', {
    btf: true,
    'prog:cgroup_sockopt': true,
    'helper:get_netns_cookie': true,
    'helper:sk_assign': true,
    'helper:redirect_peer': true,
  }),
  /** A new release built without cgroup sockopt hooks (or locked down): the version alone would accept it. */
  'nosockopt-6.1': capabilitiesFor('6.1.0-custom', { 'prog:cgroup_sockopt': false }),
  /** Below every eBPF floor even if the probes claimed otherwise. */
  'backport-3.10': capabilitiesFor('3.10.0-1160.el7.x86_64', {
    btf: true,
    'prog:sock_ops': true,
    'prog:sk_msg': true,
    'prog:cgroup_sock_addr': true,
    'prog:cgroup_sockopt': true,
    'helper:msg_redirect_hash': true,
    'helper:get_netns_cookie': true,
  }),
} satisfies Record<string, NodeCapabilities>;

export type CapabilityFixtureName = keyof typeof CAPABILITY_FIXTURES;
