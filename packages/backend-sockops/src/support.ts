/**
 * Can the sockops backend run on this node? Pure: reads the probed capabilities only.
 * The floor is 5.15: bpf_get_netns_cookie() became callable from sock_ops, sk_msg and
 * cgroup sockopt programs then, and every program here keys its state by netns cookie.
 * Probes are checked as well, since distro kernels backport (or leave out) features.
 */
import type { FeatureName, NodeCapabilities, Support } from '@shunt/core';

export const KERNEL_FLOOR = { major: 5, minor: 15 } as const;

export const REQUIRED_FEATURES: ReadonlyArray<[FeatureName, string]> = [
  ['btf', 'CO-RE objects need the kernel BTF (/sys/kernel/btf/vmlinux)'],
  ['cgroup2', 'the connect/sockops/getsockopt programs attach to a cgroup v2 directory'],
  ['bpffs', 'maps and links are pinned in bpffs so a restarted agent adopts them'],
  ['prog:cgroup_sock_addr', 'connect4/connect6 redirect outbound connects'],
  ['prog:sock_ops', 'sockops carries original destinations to established sockets'],
  ['prog:cgroup_sockopt', 'cgroup/getsockopt answers SO_ORIGINAL_DST'],
  ['prog:sk_msg', 'sk_msg splices app<->proxy sockets'],
  ['helper:msg_redirect_hash', 'sk_msg redirects with bpf_msg_redirect_hash'],
  ['helper:get_netns_cookie', 'pods are identified by netns cookie in every program'],
];

export function sockopsSupport(caps: NodeCapabilities): Support {
  const reasons: string[] = [];
  const k = caps.kernel;
  if (k.major < KERNEL_FLOOR.major || (k.major === KERNEL_FLOOR.major && k.minor < KERNEL_FLOOR.minor))
    reasons.push(
      `kernel ${caps.kernelRelease} is older than ${KERNEL_FLOOR.major}.${KERNEL_FLOOR.minor} ` +
        '(bpf_get_netns_cookie in sock_ops/sk_msg/sockopt programs)',
    );
  if (!caps.cgroup2Path) reasons.push('no cgroup v2 mount found');
  if (!caps.bpffsPath) reasons.push('no bpffs mount found');
  for (const [name, why] of REQUIRED_FEATURES) {
    const f = caps.features[name];
    if (!f) reasons.push(`feature ${name} was not probed (${why})`);
    else if (!f.available) reasons.push(`feature ${name} unavailable: ${f.evidence} (${why})`);
  }
  return reasons.length === 0 ? { ok: true } : { ok: false, reasons };
}
