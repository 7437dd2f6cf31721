/**
 * Feature probes against the running kernel. Each returns whether the feature works and
 * the evidence (the call made and what the kernel answered), for `shunt doctor`.
 */
import { native, type ProbeResult } from './native';

export type { ProbeResult } from './native';

/** e.g. 'sock_ops', 'cgroup_sock_addr', 'sk_msg', 'sched_cls', 'cgroup_sockopt'. */
export function probeProgType(name: string): ProbeResult {
  return native.probeProgType(name);
}

/** e.g. 'hash', 'lru_hash', 'lpm_trie', 'sockhash', 'percpu_array'. */
export function probeMapType(name: string): ProbeResult {
  return native.probeMapType(name);
}

/** Whether programs of progType may call the helper ('msg_redirect_hash' or 'bpf_msg_redirect_hash'). */
export function probeHelper(progType: string, helperName: string): ProbeResult {
  return native.probeHelper(progType, helperName);
}

/** Whether the kernel accepts a program of progType for attachType (e.g. 'cgroup_sock_addr', 'cgroup_inet6_connect'). */
export function probeAttachType(progType: string, attachType: string): ProbeResult {
  return native.probeAttachType(progType, attachType);
}

let tcxCache: ProbeResult | undefined;
/** tcx links (kernel >= 6.6): TC programs that coexist with others instead of replacing. */
export function probeTcx(): ProbeResult {
  tcxCache ??= native.probeTcx();
  return tcxCache;
}

/** bpf_link for sk_msg verdicts on a sockmap/sockhash (kernel >= 6.10); older kernels need prog_attach. */
let sockmapLinkCache: ProbeResult | undefined;
export function probeSockmapLink(): ProbeResult {
  sockmapLinkCache ??= native.probeSockmapLink();
  return sockmapLinkCache;
}

let skLookupCache: ProbeResult | undefined;
/**
 * Everything sk_lookup steering needs (kernel >= 5.9): the sk_lookup program type,
 * bpf_sk_assign from it, and netns links for it. Nothing is attached while probing.
 */
export function probeSkLookup(): ProbeResult {
  if (skLookupCache) return skLookupCache;
  const parts = [
    native.probeProgType('sk_lookup'),
    native.probeHelper('sk_lookup', 'sk_assign'),
    native.probeNetnsLink('sk_lookup', 'sk_lookup'),
  ];
  skLookupCache = { available: parts.every((p) => p.available), evidence: parts.map((p) => p.evidence).join('; ') };
  return skLookupCache;
}
