/**
 * A MeshPod translated into exactly what the tc maps hold for it (minus the generation), in
 * canonical order. observe() rebuilds the same shape from the maps, so fingerprint(desired) ===
 * fingerprint(observed) exactly when the kernel holds what we want. Pure: no kernel access.
 */
import { createHash } from 'node:crypto';
import { isIPv4, isIPv6 } from 'node:net';
import type { MeshPod, PodRef } from '@shunt/core';
import { META_SIZES, POD_FLAG, SEL, decodeAddr, encodeAddr, type SelKind } from './abi';

export interface PortEntry {
  kind: SelKind;
  port: number;
}

export interface TcPodConfig {
  ref: PodRef;
  flags: number;
  outPort: number;
  inPort: number;
  tunnelPort: number;
  /** ztunnel's DNS port when the pod asks for DNS capture (proxy.dnsPort), else 0. */
  dnsPort: number;
  ports: PortEntry[];
  /** Canonical pod addresses (IPv4 dotted, IPv6 compressed), sorted. */
  ips: string[];
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

export const podName = (p: PodRef): string => `${p.namespace}/${p.name} (uid ${p.uid})`;

function checkPort(pod: PodRef, field: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 65535)
    throw new PodConfigError(podName(pod), field, v, 'not a port (1..65535)');
  return v;
}

function checkPorts(pod: PodRef, field: string, v: unknown): number[] {
  if (!Array.isArray(v)) throw new PodConfigError(podName(pod), field, v, 'not a list of ports');
  return v.map((p, i) => checkPort(pod, `${field}[${i}]`, p));
}

/** The canonical text of an address (what decodeAddr prints), so sets compare exactly. */
function canonicalIp(pod: PodRef, field: string, ip: unknown): string {
  if (typeof ip !== 'string' || !(isIPv4(ip) || isIPv6(ip))) throw new PodConfigError(podName(pod), field, ip, 'not an IP address');
  return decodeAddr(encodeAddr(ip));
}

/**
 * What the programs need for one ambient pod. Refuses (PodConfigError naming pod, field and value)
 * what the tc programs cannot honour, rather than redirecting differently from what was asked.
 */
export function podConfig(pod: MeshPod): TcPodConfig {
  const ref: PodRef = { uid: pod.uid, namespace: pod.namespace, name: pod.name };
  const who = podName(ref);
  if (Buffer.byteLength(pod.uid) > META_SIZES.uid) throw new PodConfigError(who, 'uid', pod.uid, `longer than ${META_SIZES.uid} bytes`);
  if (Buffer.byteLength(pod.namespace) > META_SIZES.ns) throw new PodConfigError(who, 'namespace', pod.namespace, `longer than ${META_SIZES.ns} bytes`);
  if (Buffer.byteLength(pod.name) > META_SIZES.name) throw new PodConfigError(who, 'name', pod.name, `longer than ${META_SIZES.name} bytes`);
  const proxy = pod.proxy;
  const outPort = checkPort(ref, 'proxy.outboundPort', proxy.outboundPort);
  const inPort = checkPort(ref, 'proxy.inboundPort', proxy.inboundPort);
  const tunnelPort = checkPort(ref, 'proxy.tunnelPort', proxy.tunnelPort ?? 15008);
  const dnsPort = proxy.dnsPort === undefined ? 0 : checkPort(ref, 'proxy.dnsPort', proxy.dnsPort);
  const t = pod.traffic;
  let flags = 0;
  const ports: PortEntry[] = [];
  const add = (kind: SelKind, list: number[]): void => {
    for (const port of new Set(list)) ports.push({ kind, port });
  };
  if (t.inbound.include === '*') flags |= POD_FLAG.IN_ALL;
  else add(SEL.IN_INCLUDE, checkPorts(ref, 'traffic.inbound.include', t.inbound.include));
  add(SEL.IN_EXCLUDE, checkPorts(ref, 'traffic.inbound.exclude', t.inbound.exclude));
  if (t.outbound.includeCidrs === '*') flags |= POD_FLAG.OUT_ALL;
  else if (!Array.isArray(t.outbound.includeCidrs) || t.outbound.includeCidrs.length > 0)
    throw new PodConfigError(who, 'traffic.outbound.includeCidrs', t.outbound.includeCidrs, "the tc backend captures '*' or nothing (no per-CIDR outbound selection)");
  if (t.outbound.excludeCidrs.length > 0)
    throw new PodConfigError(who, 'traffic.outbound.excludeCidrs', t.outbound.excludeCidrs, 'the tc backend has no per-CIDR outbound selection');
  add(SEL.OUT_INCLUDE, checkPorts(ref, 'traffic.outbound.includePorts', t.outbound.includePorts));
  add(SEL.OUT_EXCLUDE, checkPorts(ref, 'traffic.outbound.excludePorts', t.outbound.excludePorts));
  ports.sort((a, b) => a.kind - b.kind || a.port - b.port);
  const ips = [...new Set([...pod.ips.v4.map((ip, i) => canonicalIp(ref, `ips.v4[${i}]`, ip)), ...pod.ips.v6.map((ip, i) => canonicalIp(ref, `ips.v6[${i}]`, ip))])].sort();
  if (ips.length === 0) throw new PodConfigError(who, 'ips', pod.ips, 'the tc programs find a pod by its addresses; it has none yet');
  return { ref, flags, outPort, inPort, tunnelPort, dnsPort, ports, ips };
}

/** Everything but the identity, in a fixed order: equal strings mean equal kernel state. */
export function canonical(c: TcPodConfig): string {
  return JSON.stringify([c.flags, c.outPort, c.inPort, c.tunnelPort, c.dnsPort, c.ports.map((p) => [p.kind, p.port]), c.ips]);
}

export function fingerprintOf(c: TcPodConfig): string {
  return `tc:${createHash('sha256').update(canonical(c)).digest('hex').slice(0, 16)}`;
}
