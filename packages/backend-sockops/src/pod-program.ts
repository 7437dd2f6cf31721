/**
 * A MeshPod translated into exactly what the BPF maps hold for it (minus the generation
 * number), in canonical order. The same shape is rebuilt from the maps by observe(), so
 * fingerprint(desired) === fingerprint(observed) exactly when the kernel holds what we want.
 */
import { hash } from 'node:crypto';
import { isIPv4, isIPv6 } from 'node:net';
import { captureOptionsOf, type Cidr, type MeshPod, type PodRef } from '@shunt/core';
import { socketLayerGaps } from './pod-support';
import { OWNER, POD_FLAG, POD_FLAG_INBOUND_ALL, POD_META_SIZES, SEL, decodeAddr, encodeAddr, type OwnerKind, type SelKind } from './abi';

export interface PortEntry {
  kind: SelKind;
  port: number;
}

export interface CidrEntry {
  kind: SelKind;
  family: 4 | 6;
  /** Canonical network address (host bits zero), as decodeAddr prints it. */
  address: string;
  prefix: number;
}

export interface OwnerEntry {
  kind: OwnerKind;
  id: number;
}

export interface PodProgram {
  ref: PodRef;
  netnsCookie: bigint;
  flags: number;
  proxyUid: number;
  proxyGid: number;
  outPort: number;
  inPort: number;
  dnsPort: number;
  ports: PortEntry[];
  cidrs: CidrEntry[];
  /** Canonical pod addresses (IPv4 dotted, IPv6 compressed). */
  ips: string[];
  /** Host loopback network (ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR) as a host-order u32, and its prefix. */
  loNet4: number;
  loPrefix4: number;
  tunnelPort: number;
  /** owner_sel entries: extra proxy uids/gids, the owner-group list. */
  owners: OwnerEntry[];
}

export class PodConfigError extends Error {
  constructor(
    readonly pod: string,
    readonly field: string,
    readonly value: unknown,
    reason: string,
  ) {
    super(`pod ${pod}: ${field}=${JSON.stringify(value)}: ${reason}`);
    this.name = 'PodConfigError';
  }
}

const podName = (p: PodRef): string => `${p.namespace}/${p.name} (uid ${p.uid})`;

function checkPort(pod: PodRef, field: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 65535)
    throw new PodConfigError(podName(pod), field, v, 'not a port (1..65535)');
  return v;
}

function checkId(pod: PodRef, field: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xfffffffe)
    throw new PodConfigError(podName(pod), field, v, 'not a uid/gid (0..4294967294)');
  return v;
}

function canonicalCidr(pod: PodRef, field: string, kind: SelKind, c: Cidr): CidrEntry {
  const okFamily = c.family === 4 ? isIPv4(c.address) : c.family === 6 ? isIPv6(c.address) : false;
  const max = c.family === 4 ? 32 : 128;
  if (!okFamily) throw new PodConfigError(podName(pod), field, c, `address does not match family ${String(c.family)}`);
  if (!Number.isInteger(c.prefix) || c.prefix < 0 || c.prefix > max)
    throw new PodConfigError(podName(pod), field, c, `prefix must be 0..${max}`);
  // Zero the host bits so equal networks encode (and fingerprint) equally.
  const raw = encodeAddr(c.address);
  const bits = (c.family === 4 ? 96 : 0) + c.prefix;
  for (let i = 0; i < 16; i++) {
    const keep = Math.max(0, Math.min(8, bits - i * 8));
    raw[i] = (raw[i] ?? 0) & ((0xff << (8 - keep)) & 0xff);
  }
  return { kind, family: c.family, address: decodeAddr(raw), prefix: c.prefix };
}

function textField(pod: PodRef, field: keyof typeof POD_META_SIZES, v: string): void {
  if (Buffer.byteLength(v, 'utf8') > POD_META_SIZES[field])
    throw new PodConfigError(podName(pod), field, v, `longer than ${POD_META_SIZES[field]} bytes`);
}

const DEFAULT_TUNNEL_PORT = 15008;

function checkIds(pod: PodRef, field: string, v: unknown): number[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) throw new PodConfigError(podName(pod), field, v, 'not a list of ids');
  return v.map((id, i) => checkId(pod, `${field}[${i}]`, id));
}

/**
 * Pure: the kernel encoding of a sidecar pod. Throws PodConfigError naming pod/field/value. Options
 * the socket layer cannot honour are not encoded; enroll refuses those pods (assertPodSupported).
 */
/** Throws PodConfigError naming the first option of the pod the socket layer cannot honour. */
export function assertPodSupported(pod: MeshPod): void {
  const gap = socketLayerGaps(pod)[0];
  if (gap) throw new PodConfigError(podName({ uid: pod.uid, namespace: pod.namespace, name: pod.name }), gap.setting, gap.value, gap.reason);
}

export function podProgram(pod: MeshPod, netnsCookie: bigint): PodProgram {
  const ref: PodRef = { uid: pod.uid, namespace: pod.namespace, name: pod.name };
  textField(ref, 'uid', pod.uid);
  textField(ref, 'ns', pod.namespace);
  textField(ref, 'name', pod.name);
  const t = pod.traffic;
  const ports: PortEntry[] = [];
  const addPorts = (field: string, kind: SelKind, list: readonly number[]): void => {
    if (!Array.isArray(list)) throw new PodConfigError(podName(ref), field, list, 'not a port list');
    list.forEach((p, i) => ports.push({ kind, port: checkPort(ref, `${field}[${i}]`, p) }));
  };
  let flags = 0;
  if (t.inbound.include === '*') flags |= POD_FLAG_INBOUND_ALL;
  else addPorts('traffic.inbound.include', SEL.IN_INCLUDE, t.inbound.include);
  addPorts('traffic.inbound.exclude', SEL.IN_EXCLUDE, t.inbound.exclude);
  addPorts('traffic.outbound.includePorts', SEL.OUT_INCLUDE, t.outbound.includePorts);
  addPorts('traffic.outbound.excludePorts', SEL.OUT_EXCLUDE, t.outbound.excludePorts);

  const cidrs: CidrEntry[] = [];
  const inc = t.outbound.includeCidrs;
  if (inc === '*') {
    cidrs.push({ kind: SEL.OUT_INCLUDE, family: 4, address: '0.0.0.0', prefix: 0 });
    cidrs.push({ kind: SEL.OUT_INCLUDE, family: 6, address: '::', prefix: 0 });
  } else {
    inc.forEach((c, i) => cidrs.push(canonicalCidr(ref, `traffic.outbound.includeCidrs[${i}]`, SEL.OUT_INCLUDE, c)));
  }
  t.outbound.excludeCidrs.forEach((c, i) =>
    cidrs.push(canonicalCidr(ref, `traffic.outbound.excludeCidrs[${i}]`, SEL.OUT_EXCLUDE, c)),
  );

  const cap = captureOptionsOf(pod);
  const owners: OwnerEntry[] = [];
  const proxy = pod.proxy;
  for (const id of checkIds(ref, 'proxy.extraUids', proxy.extraUids)) owners.push({ kind: OWNER.PROXY_UID, id });
  for (const id of checkIds(ref, 'proxy.extraGids', proxy.extraGids)) owners.push({ kind: OWNER.PROXY_GID, id });
  if (owners.length > 0) flags |= POD_FLAG.EXTRA_IDS;
  const groups = cap.ownerGroups;
  if (groups.include !== '*') {
    flags |= POD_FLAG.GROUPS_ONLY;
    for (const id of checkIds(ref, 'capture.ownerGroups.include', groups.include)) owners.push({ kind: OWNER.GROUP, id });
  } else if (groups.exclude.length > 0) {
    flags |= POD_FLAG.GROUPS_EXCEPT;
    for (const id of checkIds(ref, 'capture.ownerGroups.exclude', groups.exclude)) owners.push({ kind: OWNER.GROUP, id });
  }
  // Istio's HasLoopBackIP: an include CIDR whose address is loopback drops the app's `-o lo RETURN`.
  if (cidrs.some((c) => c.kind === SEL.OUT_INCLUDE && (c.family === 4 ? c.address.startsWith('127.') : c.address === '::1')))
    flags |= POD_FLAG.LO_INCLUDED;
  if (cap.dnsServers !== undefined && proxy.dnsPort !== undefined) {
    flags |= POD_FLAG.DNS_LISTED;
    cap.dnsServers.v4.forEach((a, i) =>
      cidrs.push(canonicalCidr(ref, `capture.dnsServers.v4[${i}]`, SEL.DNS_SERVER, { family: 4, address: a, prefix: 32 })),
    );
    cap.dnsServers.v6.forEach((a, i) =>
      cidrs.push(canonicalCidr(ref, `capture.dnsServers.v6[${i}]`, SEL.DNS_SERVER, { family: 6, address: a, prefix: 128 })),
    );
  }
  const lo = cap.hostLoopbackCidr;
  const loParts = lo.family === 4 && isIPv4(lo.address) ? lo.address.split('.').map(Number) : [];
  if (loParts[0] !== 127 || !Number.isInteger(lo.prefix) || lo.prefix < 8 || lo.prefix > 32)
    throw new PodConfigError(podName(ref), 'capture.hostLoopbackCidr', lo, 'not an IPv4 loopback network with 8..32 bits');
  const loNet4 = (((loParts[0]! << 24) | (loParts[1]! << 16) | (loParts[2]! << 8) | loParts[3]!) >>> 0) & (lo.prefix === 32 ? 0xffffffff : ~((1 << (32 - lo.prefix)) - 1)) >>> 0;

  const ips = [...pod.ips.v4, ...pod.ips.v6].map((ip) => {
    try {
      return decodeAddr(encodeAddr(ip));
    } catch {
      throw new PodConfigError(podName(ref), 'ips', ip, 'not an IP address');
    }
  });

  return {
    ref,
    netnsCookie,
    flags,
    proxyUid: checkId(ref, 'proxy.uid', proxy.uid),
    proxyGid: checkId(ref, 'proxy.gid', proxy.gid),
    outPort: checkPort(ref, 'proxy.outboundPort', proxy.outboundPort),
    inPort: checkPort(ref, 'proxy.inboundPort', proxy.inboundPort),
    // 0 = DNS capture off (the profile sets a port only when the pod asks for capture).
    dnsPort: proxy.dnsPort === undefined ? 0 : checkPort(ref, 'proxy.dnsPort', proxy.dnsPort),
    ports: dedupe(ports, (p) => `${p.kind}:${p.port}`),
    cidrs: dedupe(cidrs, (c) => `${c.kind}:${c.address}/${c.prefix}`),
    ips: [...new Set(ips)].sort(),
    loNet4: loNet4 >>> 0,
    loPrefix4: lo.prefix,
    tunnelPort: proxy.tunnelPort === undefined ? DEFAULT_TUNNEL_PORT : checkPort(ref, 'proxy.tunnelPort', proxy.tunnelPort),
    owners: dedupe(owners, (o) => `${o.kind}:${o.id}`),
  };
}

function dedupe<T>(items: T[], key: (t: T) => string): T[] {
  const m = new Map<string, T>();
  for (const it of items) m.set(key(it), it);
  // The default sort orders strings by UTF-16 code units, as `<` does.
  return [...m.keys()].sort().map((k) => m.get(k)!);
}

/** The distinct keys of items, sorted: dedupe(items, key).map(key) without the intermediate objects. */
function sortedKeys<T>(items: readonly T[], key: (t: T) => string): string[] {
  return [...new Set(items.map(key))].sort();
}

/**
 * Canonical text of everything the kernel holds for a pod; hashed for fingerprints. The
 * netns cookie is left out so fingerprint() stays pure (a cookie needs the kernel); a pod
 * whose sandbox is replaced comes back as a new upsert and is re-keyed by enroll().
 */
export function canonical(p: PodProgram): string {
  return JSON.stringify({
    pod: [p.ref.uid, p.ref.namespace, p.ref.name],
    cfg: [p.flags, p.proxyUid, p.proxyGid, p.outPort, p.inPort, p.dnsPort, p.loNet4 >>> 0, p.loPrefix4, p.tunnelPort],
    owners: sortedKeys(p.owners, (o) => `${o.kind}:${o.id}`),
    ports: sortedKeys(p.ports, (x) => `${x.kind}:${x.port}`),
    cidrs: sortedKeys(p.cidrs, (c) => `${c.kind}:${c.address}/${c.prefix}`),
    ips: [...p.ips].sort(),
  });
}

export function fingerprintOf(p: PodProgram): string {
  // One-shot hash (no Hash object): computed for every pod at every start and observe.
  return 'sockops:' + hash('sha256', canonical(p), 'hex').slice(0, 16);
}
