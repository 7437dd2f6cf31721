// The istio-iptables options beyond ports and CIDRs: where Istio reads each one, how it parses it,
// and the defaults. Sources (istio/istio HEAD):
//  - excludeInterfaces, kubevirtInterfaces, reroute-virtual-interfaces: pod annotations, checked with
//    pkg/util/net ValidateInterfaceNames (cni/pkg/plugin/sidecar_redirect.go, pkg/kube/inject/validate.go);
//    reroute-virtual-interfaces wins over the deprecated kubevirtInterfaces when both are set.
//  - ISTIO_OUTBOUND_OWNER_GROUPS (default "*"), ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE, ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR
//    (default 127.0.0.1/32): env-only settings of istio-iptables (tools/istio-iptables/pkg/constants). The
//    injector copies proxyMetadata to the env of both istio-init and istio-proxy, and istio-cni reads them
//    from its own (node-wide) environment, so shunt takes them from the istio-proxy container, else from the
//    agent's mesh-wide config. Validation as tools/common/config/validation.go (at most 64 include groups;
//    loopback CIDR must be an IPv4 127.x prefix of length 8..32).
//  - INVALID_DROP: istio-proxy env (istio-cni reads it there; istio-init via --drop-invalid/INVALID_DROP),
//    else the mesh-wide config.
//  - PROXY_UID / PROXY_GID: istio-iptables' -u/-g take comma lists (env PROXY_UID/PROXY_GID); the first id
//    comes from the istio-proxy securityContext as before, these add more.
// Istio logs and ignores some bad values (a non-boolean INVALID_DROP); shunt rejects the pod instead, naming
// the field and the value, like every other annotation here: a silently ignored setting hides a mistake.
import { PodRejectedError } from './errors';
import type { ListResult } from './annotations';
import { formatIp, parseCidr, parseIp } from './netaddr';
import type { CaptureOptions, Cidr, MeshPod, OwnerGroups } from './types';

export const CAPTURE_ANNOTATIONS = {
  excludeInterfaces: 'traffic.sidecar.istio.io/excludeInterfaces',
  kubevirtInterfaces: 'traffic.sidecar.istio.io/kubevirtInterfaces',
  rerouteVirtualInterfaces: 'istio.io/reroute-virtual-interfaces',
} as const;

export const CAPTURE_ENV = {
  ownerGroups: 'ISTIO_OUTBOUND_OWNER_GROUPS',
  ownerGroupsExclude: 'ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE',
  loopbackCidr: 'ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR',
  invalidDrop: 'INVALID_DROP',
  proxyUid: 'PROXY_UID',
  proxyGid: 'PROXY_GID',
} as const;

/** tools/common/config/validation.go maxOwnerGroupsInclude: all includes become one iptables rule. */
export const MAX_OWNER_GROUPS_INCLUDE = 64;

export const DEFAULT_HOST_LOOPBACK: Cidr = { family: 4, address: '127.0.0.1', prefix: 32 };

/** Mesh-wide defaults (agent config) for the options a pod's proxy env may override. */
export interface MeshCaptureDefaults {
  ownerGroups: OwnerGroups;
  dropInvalid: boolean;
  hostLoopbackCidr: Cidr;
  /** kubelet's --cluster-dns: lets the profile know a ClusterFirst pod's resolv.conf. Empty = unknown. */
  clusterDnsServers: string[];
}

export const DEFAULT_MESH_CAPTURE: MeshCaptureDefaults = {
  ownerGroups: { include: '*', exclude: [] },
  dropInvalid: false,
  hostLoopbackCidr: DEFAULT_HOST_LOOPBACK,
  clusterDnsServers: [],
};

/** Every capture option with Istio's default filled in. */
export interface ResolvedCapture {
  excludeInterfaces: string[];
  rerouteInterfaces: string[];
  ownerGroups: OwnerGroups;
  dropInvalid: boolean;
  hostLoopbackCidr: Cidr;
  dnsServers: { v4: string[]; v6: string[] } | undefined;
}

export function captureOptionsOf(pod: Pick<MeshPod, 'capture'>): ResolvedCapture {
  const c: CaptureOptions = pod.capture ?? {};
  return {
    excludeInterfaces: c.excludeInterfaces ?? [],
    rerouteInterfaces: c.rerouteInterfaces ?? [],
    ownerGroups: c.ownerGroups ?? { include: '*', exclude: [] },
    dropInvalid: c.dropInvalid ?? false,
    hostLoopbackCidr: c.hostLoopbackCidr ?? DEFAULT_HOST_LOOPBACK,
    dnsServers: c.dnsServers,
  };
}

const IFACE = /^[a-zA-Z][a-zA-Z0-9_.-]*$/;

/** pkg/util/net ValidateInterfaceNames: items trimmed, none empty, at most 15 chars (IFNAMSIZ-1). Order kept, duplicates dropped. */
export function parseInterfaceList(value: string): ListResult<string[]> {
  if (value.length === 0) return { ok: true, value: [] };
  const out: string[] = [];
  for (const raw of value.split(',')) {
    const name = raw.trim();
    if (name.length === 0) return { ok: false, error: 'empty interface name' };
    if (name.length > 15) return { ok: false, error: `interface name ${JSON.stringify(name)} too long (max 15 chars)` };
    if (!IFACE.test(name)) return { ok: false, error: `interface name ${JSON.stringify(name)} contains invalid characters` };
    if (!out.includes(name)) out.push(name);
  }
  return { ok: true, value: out };
}

/** A comma list of numeric ids (empty items skipped, as Istio's config.Split does). */
export function parseIdList(value: string, what: 'group' | 'uid' | 'gid'): ListResult<number[]> {
  const out: number[] = [];
  for (const raw of value.split(',')) {
    const t = raw.trim();
    if (t === '') continue;
    if (!/^[0-9]{1,10}$/.test(t) || Number(t) > 0xfffffffe) {
      const hint =
        what === 'group' && /^[a-z_][a-z0-9_-]*\$?$/i.test(t)
          ? ': group names are not supported (they would resolve against the agent\'s /etc/group, not the pod\'s); use the numeric GID'
          : '';
      return { ok: false, error: `${JSON.stringify(t)} is not a numeric ${what} (0..4294967294)${hint}` };
    }
    if (!out.includes(Number(t))) out.push(Number(t));
  }
  return { ok: true, value: out };
}

/** tools/common/config: ParseInterceptFilter + ValidateOwnerGroups. */
export function parseOwnerGroups(include: string, exclude: string): ListResult<OwnerGroups> {
  if (include === '*') {
    const ex = parseIdList(exclude, 'group');
    return ex.ok ? { ok: true, value: { include: '*', exclude: ex.value } } : { ok: false, error: `${CAPTURE_ENV.ownerGroupsExclude}: ${ex.error}` };
  }
  const inc = parseIdList(include, 'group');
  if (!inc.ok) return { ok: false, error: `${CAPTURE_ENV.ownerGroups}: ${inc.error}` };
  if (inc.value.length > MAX_OWNER_GROUPS_INCLUDE) {
    return { ok: false, error: `${CAPTURE_ENV.ownerGroups}: at most ${MAX_OWNER_GROUPS_INCLUDE} groups can be included, got ${inc.value.length}` };
  }
  // Istio ignores the exclude list unless include is "*"; so do we, but a bad one is still an error.
  const ex = parseIdList(exclude, 'group');
  if (!ex.ok) return { ok: false, error: `${CAPTURE_ENV.ownerGroupsExclude}: ${ex.error}` };
  return { ok: true, value: { include: inc.value, exclude: [] } };
}

/** tools/common/config ValidateIPv4LoopbackCidr: an IPv4 loopback prefix with 8..32 bits. */
export function parseLoopbackCidr(value: string): ListResult<Cidr> {
  const c = parseCidr(value);
  if (!c.ok) return { ok: false, error: `failed to parse CIDR: ${c.error}` };
  const ip = parseIp(value.slice(0, value.lastIndexOf('/')));
  if (!ip.ok || ip.value.family !== 4 || ip.value.bytes[0] !== 127) {
    return { ok: false, error: 'expected an IPv4 loopback address (127.x.x.x)' };
  }
  if (c.value.prefix < 8 || c.value.prefix > 32) return { ok: false, error: `expected a mask in range [8, 32], found ${c.value.prefix}` };
  return { ok: true, value: c.value };
}

/** Go's strconv.ParseBool, but an error instead of "ignore". */
export function parseStrictBool(value: string): ListResult<boolean> {
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(value)) return { ok: true, value: true };
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(value)) return { ok: true, value: false };
  return { ok: false, error: 'not a boolean (Go strconv.ParseBool: 1, t, true, 0, f, false, ...)' };
}

/** Canonical IPv4/IPv6 address lists (for DNS servers), split by family, order kept. */
export function splitAddresses(list: readonly string[]): ListResult<{ v4: string[]; v6: string[] }> {
  const out = { v4: [] as string[], v6: [] as string[] };
  for (const s of list) {
    const ip = parseIp(typeof s === 'string' ? s.trim() : String(s));
    if (!ip.ok) return { ok: false, error: `${JSON.stringify(s)} is not an IP address: ${ip.error}` };
    const t = formatIp(ip.value);
    const fam = ip.value.family === 4 ? out.v4 : out.v6;
    if (!fam.includes(t)) fam.push(t);
  }
  return { ok: true, value: out };
}

/** kubelet keeps at most this many nameservers in a pod's resolv.conf (validation.MaxDNSNameservers). */
export const MAX_DNS_NAMESERVERS = 3;

/**
 * The nameservers kubelet writes into the pod's resolv.conf, when they are knowable from the pod and
 * the agent config (pkg/kubelet/network/dns): `None` → dnsConfig.nameservers; `ClusterFirst` (the
 * default) → cluster DNS + dnsConfig.nameservers, known only when the agent was told the cluster DNS;
 * `Default` → the node's resolv.conf, unknown here. Unknown → undefined (capture all port-53 traffic, as
 * istio-cni does). Host-network pods are never members, so ClusterFirstWithHostNet acts as ClusterFirst.
 */
export function podDnsServers(
  label: string,
  spec: { dnsPolicy?: string; dnsConfig?: { nameservers?: string[] } } | undefined,
  clusterDns: readonly string[],
): { v4: string[]; v6: string[] } | undefined {
  const policy = spec?.dnsPolicy ?? 'ClusterFirst';
  const extra = spec?.dnsConfig?.nameservers ?? [];
  if (!Array.isArray(extra)) throw new PodRejectedError(label, 'spec.dnsConfig.nameservers', String(extra), 'not a list');
  let servers: string[];
  if (policy === 'None') servers = [...extra];
  else if (policy === 'ClusterFirst' || policy === 'ClusterFirstWithHostNet') {
    if (clusterDns.length === 0) return undefined;
    servers = [...clusterDns, ...extra];
  } else if (policy === 'Default') return undefined;
  else throw new PodRejectedError(label, 'spec.dnsPolicy', policy, 'want ClusterFirst, ClusterFirstWithHostNet, Default or None');
  const seen: string[] = [];
  for (const s of servers) if (!seen.includes(s)) seen.push(s);
  const split = splitAddresses(seen.slice(0, MAX_DNS_NAMESERVERS));
  if (!split.ok) throw new PodRejectedError(label, 'spec.dnsConfig.nameservers', extra.join(','), split.error);
  return split.value;
}
