// Istio's pod annotations, read with the rules Istio itself applies (pkg/kube/inject/validate.go and
// cni/pkg/plugin/sidecar_redirect.go): port lists are trimmed and parsed like strconv.ParseUint(…, 10, 16),
// CIDR lists are split on "," without trimming and parsed like netip.ParsePrefix, modes are case-sensitive.
// Where the injector and the CNI plugin disagree we take the stricter injector rule, because a pod that the
// injector would have refused cannot exist in an Istio cluster and accepting it here would hide a mistake.
import { PodRejectedError } from './errors';
import { canonicalCidrs, canonicalPorts, parseCidr, parsePort } from './netaddr';
import type { Cidr, CidrSelection, InterceptionMode, PortSelection } from './types';

export const ISTIO_ANNOTATIONS = {
  interceptionMode: 'sidecar.istio.io/interceptionMode',
  includeInboundPorts: 'traffic.sidecar.istio.io/includeInboundPorts',
  excludeInboundPorts: 'traffic.sidecar.istio.io/excludeInboundPorts',
  includeOutboundPorts: 'traffic.sidecar.istio.io/includeOutboundPorts',
  excludeOutboundPorts: 'traffic.sidecar.istio.io/excludeOutboundPorts',
  includeOutboundIPRanges: 'traffic.sidecar.istio.io/includeOutboundIPRanges',
  excludeOutboundIPRanges: 'traffic.sidecar.istio.io/excludeOutboundIPRanges',
  statusPort: 'status.sidecar.istio.io/port',
  sidecarStatus: 'sidecar.istio.io/status',
  inject: 'sidecar.istio.io/inject',
  ambientBypassInboundCapture: 'ambient.istio.io/bypass-inbound-capture',
  ambientDnsCapture: 'ambient.istio.io/dns-capture',
} as const;

export const ISTIO_LABELS = {
  inject: 'sidecar.istio.io/inject',
  dataplaneMode: 'istio.io/dataplane-mode',
} as const;

export type ListResult<T> = { ok: true; value: T } | { ok: false; error: string };

/** A comma-separated port list; `wildcard` allows the exact text "*" (not trimmed, as in Istio). */
export function parsePortList(value: string, opts: { wildcard: boolean }): ListResult<PortSelection> {
  if (value === '*') {
    return opts.wildcard ? { ok: true, value: '*' } : { ok: false, error: 'a wildcard is not allowed here' };
  }
  const trimmed = value.trim();
  if (trimmed.length === 0) return { ok: true, value: [] };
  const ports: number[] = [];
  for (const item of trimmed.split(',')) {
    const p = parsePort(item);
    if (!p.ok) return { ok: false, error: `failed parsing port ${JSON.stringify(item)}: ${p.error}` };
    ports.push(p.value);
  }
  return { ok: true, value: canonicalPorts(ports) };
}

/** A comma-separated CIDR list (v4 and v6); `wildcard` allows the exact text "*". Items are not trimmed. */
export function parseCidrList(value: string, opts: { wildcard: boolean }): ListResult<CidrSelection> {
  if (value === '*') {
    return opts.wildcard ? { ok: true, value: '*' } : { ok: false, error: 'a wildcard is not allowed in an exclude list' };
  }
  if (value.length === 0) return { ok: true, value: [] };
  const cidrs: Cidr[] = [];
  for (const item of value.split(',')) {
    const c = parseCidr(item);
    if (!c.ok) return { ok: false, error: `failed parsing cidr ${JSON.stringify(item)}: ${c.error}` };
    cidrs.push(c.value);
  }
  return { ok: true, value: canonicalCidrs(cidrs) };
}

export function parseInterceptionMode(value: string): ListResult<InterceptionMode> {
  if (value === 'REDIRECT' || value === 'TPROXY' || value === 'NONE') return { ok: true, value };
  return { ok: false, error: 'interceptionMode invalid, use REDIRECT, TPROXY or NONE (case-sensitive)' };
}

/** What a sidecar pod's annotations ask for; `undefined` where the annotation is absent. */
export interface SidecarAnnotations {
  interceptionMode?: InterceptionMode;
  includeInboundPorts?: PortSelection;
  excludeInboundPorts?: number[];
  includeOutboundPorts?: number[];
  excludeOutboundPorts?: number[];
  includeOutboundIPRanges?: CidrSelection;
  excludeOutboundIPRanges?: Cidr[];
  statusPort?: number;
}

/**
 * Reads and validates every Istio traffic annotation of one pod.
 * Throws PodRejectedError naming the pod, the annotation and its value on the first bad one.
 */
export function readSidecarAnnotations(podName: string, annotations: Record<string, string>): SidecarAnnotations {
  const A = ISTIO_ANNOTATIONS;
  const out: SidecarAnnotations = {};
  const take = <T>(key: string, parse: (v: string) => ListResult<T>): T | undefined => {
    const raw = annotations[key];
    if (raw === undefined) return undefined;
    if (typeof raw !== 'string') throw new PodRejectedError(podName, key, String(raw), 'annotation values must be strings');
    const r = parse(raw);
    if (!r.ok) throw new PodRejectedError(podName, key, raw, r.error);
    return r.value;
  };
  const portsOnly = (v: string): ListResult<number[]> => parsePortList(v, { wildcard: false }) as ListResult<number[]>;

  out.interceptionMode = take(A.interceptionMode, parseInterceptionMode);
  out.includeInboundPorts = take(A.includeInboundPorts, (v) => parsePortList(v, { wildcard: true }));
  // The injector refuses "*" for the exclude lists; includeOutboundPorts "*" would make istio-iptables
  // emit `--dport *`, which iptables refuses, so it is no valid value either.
  out.excludeInboundPorts = take(A.excludeInboundPorts, portsOnly);
  out.includeOutboundPorts = take(A.includeOutboundPorts, portsOnly);
  out.excludeOutboundPorts = take(A.excludeOutboundPorts, portsOnly);
  out.includeOutboundIPRanges = take(A.includeOutboundIPRanges, (v) => parseCidrList(v, { wildcard: true }));
  out.excludeOutboundIPRanges = take(A.excludeOutboundIPRanges, (v) => parseCidrList(v, { wildcard: false }) as ListResult<Cidr[]>);
  out.statusPort = take(A.statusPort, (v) => {
    const p = parsePort(v);
    return p.ok ? p : { ok: false, error: `failed parsing port: ${p.error}` };
  });
  for (const k of Object.keys(out) as (keyof SidecarAnnotations)[]) if (out[k] === undefined) delete out[k];
  return out;
}

/** Go's strconv.ParseBool; `undefined` when the text is not a boolean (Istio then ignores it). */
export function parseGoBool(value: string): boolean | undefined {
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(value)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(value)) return false;
  return undefined;
}
