// Mesh profiles are data: who is a member, which proxy identity and ports, which ports are never captured,
// and which backends may serve the mesh. `interpretPod` is the one piece of code that reads them, so a
// further mesh is a new profile object, not a new code path.
import { ISTIO_ANNOTATIONS, ISTIO_LABELS, parseGoBool, readSidecarAnnotations } from './annotations';
import {
  CAPTURE_ANNOTATIONS,
  CAPTURE_ENV,
  DEFAULT_MESH_CAPTURE,
  parseIdList,
  parseInterfaceList,
  parseLoopbackCidr,
  parseOwnerGroups,
  parseStrictBool,
  podDnsServers,
  type MeshCaptureDefaults,
} from './capture-options';
import type { ListResult } from './annotations';
import { PodRejectedError, errorMessage } from './errors';
import { podRefOf } from './kube/normalise';
import type { KubeContainer, KubePod, PodExtras } from './kube/types';
import { canonicalPorts, formatIp, parseIp } from './netaddr';
import type { BackendName, CaptureOptions, MeshPod, OwnerGroups, PodRef, ProfileName, ProxySettings, TrafficSelection } from './types';

/** A fact about a pod that a membership rule can test. */
export type PodCondition =
  /** A container (or init container, for native sidecars) with this name. */
  | { kind: 'container'; name: string }
  | { kind: 'annotationPresent'; key: string }
  | { kind: 'annotationEquals'; key: string; value: string }
  /** The annotation parses as Go's `true` (strconv.ParseBool: 1, t, T, TRUE, true, True). */
  | { kind: 'annotationTrue'; key: string }
  | { kind: 'podLabel'; key: string; value: string }
  | { kind: 'namespaceLabel'; key: string; value: string }
  /** The label, else the annotation, parses as Go's `false` (the label wins when both are set, as in Istio). */
  | { kind: 'labelOrAnnotationFalse'; key: string }
  | { kind: 'containerEnvTrue'; container: string; env: string }
  /** The container runs `proxy <type>` with a type other than `allowed` (Istio gateways run `proxy router`). */
  | { kind: 'proxyTypeOtherThan'; container: string; allowed: string };

export interface MeshProfile {
  name: ProfileName;
  membership: 'sidecar' | 'ambient';
  /** A pod is a member when any of these holds… */
  memberWhen: PodCondition[];
  /** …and none of these. Host-network and finished pods are never members, whatever the profile. */
  notMemberWhen: PodCondition[];
  proxy: ProxySettings;
  /** Inbound ports never captured (already part of every member's inbound exclude list). */
  neverCaptureInbound: number[];
  /** Honour `traffic.sidecar.istio.io/*` and `sidecar.istio.io/interceptionMode`. */
  trafficAnnotations: boolean;
  /** Container whose securityContext runAsUser/runAsGroup (when non-zero) is the proxy's identity. */
  proxyIdentityContainer?: string;
  /** Any of these turns DNS capture to `dnsCapturePort` on. */
  dnsCaptureWhen: PodCondition[];
  dnsCapturePort: number;
  /** Annotation that, when Go's `true`, turns inbound capture off. */
  inboundBypassAnnotation?: string;
  /**
   * Annotations a member may carry only with a Go boolean value (strconv.ParseBool). Istio logs
   * and ignores any other value; we reject the pod naming the annotation, so a typo never silently
   * changes what is captured.
   */
  booleanAnnotations?: string[];
  /** Backends able to serve this mesh, in the order `redirectMode=auto` tries them. */
  backendOrder: BackendName[];
}

export const ISTIO_SIDECAR: MeshProfile = {
  name: 'istio-sidecar',
  membership: 'sidecar',
  memberWhen: [
    { kind: 'container', name: 'istio-proxy' },
    { kind: 'annotationPresent', key: ISTIO_ANNOTATIONS.sidecarStatus },
  ],
  notMemberWhen: [
    { kind: 'labelOrAnnotationFalse', key: ISTIO_LABELS.inject },
    // istio-init programs the pod's iptables itself; capturing again would loop (istio-cni skips these too).
    { kind: 'container', name: 'istio-init' },
    { kind: 'containerEnvTrue', container: 'istio-proxy', env: 'DISABLE_ENVOY' },
    { kind: 'proxyTypeOtherThan', container: 'istio-proxy', allowed: 'sidecar' },
  ],
  proxy: { uid: 1337, gid: 1337, outboundPort: 15001, inboundPort: 15006 },
  neverCaptureInbound: [15008, 15020, 15021, 15090],
  trafficAnnotations: true,
  proxyIdentityContainer: 'istio-proxy',
  dnsCaptureWhen: [{ kind: 'containerEnvTrue', container: 'istio-proxy', env: 'ISTIO_META_DNS_CAPTURE' }],
  dnsCapturePort: 15053,
  backendOrder: ['sockops', 'iptables'],
};

export const ISTIO_AMBIENT: MeshProfile = {
  name: 'istio-ambient',
  membership: 'ambient',
  memberWhen: [
    { kind: 'podLabel', key: ISTIO_LABELS.dataplaneMode, value: 'ambient' },
    { kind: 'namespaceLabel', key: ISTIO_LABELS.dataplaneMode, value: 'ambient' },
  ],
  notMemberWhen: [
    { kind: 'podLabel', key: ISTIO_LABELS.dataplaneMode, value: 'none' },
    // A pod with a sidecar is served by its sidecar, never by ztunnel.
    { kind: 'container', name: 'istio-proxy' },
    { kind: 'annotationPresent', key: ISTIO_ANNOTATIONS.sidecarStatus },
  ],
  proxy: { uid: 1337, gid: 1337, outboundPort: 15001, inboundPort: 15006, tunnelPort: 15008 },
  neverCaptureInbound: [15008],
  trafficAnnotations: false,
  dnsCaptureWhen: [{ kind: 'annotationTrue', key: ISTIO_ANNOTATIONS.ambientDnsCapture }],
  dnsCapturePort: 15053,
  inboundBypassAnnotation: ISTIO_ANNOTATIONS.ambientBypassInboundCapture,
  booleanAnnotations: [ISTIO_ANNOTATIONS.ambientBypassInboundCapture, ISTIO_ANNOTATIONS.ambientDnsCapture],
  // tc (tcx + sk_assign in the pod) first; iptables (istio-cni's in-pod rules) where tc cannot run.
  backendOrder: ['tc', 'iptables'],
};

export const PROFILES: Record<ProfileName, MeshProfile> = {
  'istio-sidecar': ISTIO_SIDECAR,
  'istio-ambient': ISTIO_AMBIENT,
};

export function profileByName(name: ProfileName): MeshProfile {
  return PROFILES[name];
}

export type Interpretation = { ok: true; pod: MeshPod } | { ok: false; ref: PodRef; error: PodRejectedError };

function allContainers(pod: KubePod): KubeContainer[] {
  return [...(pod.spec?.containers ?? []), ...(pod.spec?.initContainers ?? [])];
}

function findContainer(pod: KubePod, name: string): KubeContainer | undefined {
  return allContainers(pod).find((c) => c.name === name);
}

function holds(c: PodCondition, pod: KubePod, nsLabels: Record<string, string>): boolean {
  const labels = pod.metadata?.labels ?? {};
  const annotations = pod.metadata?.annotations ?? {};
  switch (c.kind) {
    case 'container':
      return findContainer(pod, c.name) !== undefined;
    case 'annotationPresent':
      return Object.prototype.hasOwnProperty.call(annotations, c.key);
    case 'podLabel':
      return labels[c.key] === c.value;
    case 'annotationEquals':
      return annotations[c.key] === c.value;
    case 'annotationTrue':
      return annotations[c.key] !== undefined && parseGoBool(annotations[c.key]!) === true;
    case 'namespaceLabel':
      return nsLabels[c.key] === c.value;
    case 'labelOrAnnotationFalse': {
      const v = labels[c.key] ?? annotations[c.key];
      return v !== undefined && parseGoBool(v) === false;
    }
    case 'containerEnvTrue': {
      const env = findContainer(pod, c.container)?.env?.find((e) => e.name === c.env);
      return env?.value !== undefined && parseGoBool(env.value) === true;
    }
    case 'proxyTypeOtherThan': {
      const args = findContainer(pod, c.container)?.args ?? [];
      return args.length >= 2 && args[0] === 'proxy' && args[1] !== '' && args[1] !== c.allowed;
    }
  }
}

export function describeCondition(c: PodCondition): string {
  switch (c.kind) {
    case 'container':
      return `container ${c.name}`;
    case 'annotationPresent':
      return `annotation ${c.key}`;
    case 'annotationTrue':
      return `annotation ${c.key}=true`;
    case 'annotationEquals':
      return `annotation ${c.key}=${c.value}`;
    case 'podLabel':
      return `pod label ${c.key}=${c.value}`;
    case 'namespaceLabel':
      return `namespace label ${c.key}=${c.value}`;
    case 'labelOrAnnotationFalse':
      return `${c.key}=false`;
    case 'containerEnvTrue':
      return `${c.container} env ${c.env}=true`;
    case 'proxyTypeOtherThan':
      return `${c.container} proxy type other than ${c.allowed}`;
  }
}

/** Decides membership; the reason names the rule that decided it. */
export function decideMembership(
  pod: KubePod,
  nsLabels: Record<string, string>,
  profile: MeshProfile,
): { member: boolean; reason: string } {
  if (pod.spec?.hostNetwork === true) return { member: false, reason: 'hostNetwork pod: shares the node netns' };
  const phase = pod.status?.phase;
  if (phase === 'Succeeded' || phase === 'Failed') return { member: false, reason: `pod phase ${phase} is final` };
  const matched = profile.memberWhen.find((c) => holds(c, pod, nsLabels));
  if (!matched) {
    return { member: false, reason: `none of: ${profile.memberWhen.map(describeCondition).join(', ')}` };
  }
  const vetoed = profile.notMemberWhen.find((c) => holds(c, pod, nsLabels));
  if (vetoed) return { member: false, reason: `excluded by ${describeCondition(vetoed)}` };
  return { member: true, reason: `matched ${describeCondition(matched)}` };
}

function readIps(pod: KubePod, label: string): { v4: string[]; v6: string[] } {
  const listed = pod.status?.podIPs?.map((p) => p?.ip) ?? [];
  const raw = listed.length > 0 ? listed : pod.status?.podIP ? [pod.status.podIP] : [];
  const v4 = new Set<string>();
  const v6 = new Set<string>();
  for (const text of raw) {
    const field = listed.length > 0 ? 'status.podIPs' : 'status.podIP';
    if (typeof text !== 'string') throw new PodRejectedError(label, field, String(text), 'not an IP address');
    const ip = parseIp(text);
    if (!ip.ok) throw new PodRejectedError(label, field, text, ip.error);
    (ip.value.family === 4 ? v4 : v6).add(formatIp(ip.value));
  }
  return { v4: [...v4].sort(), v6: [...v6].sort() };
}

function proxyIdentity(pod: KubePod, profile: MeshProfile): { uid: number; gid: number } {
  const sc = profile.proxyIdentityContainer ? findContainer(pod, profile.proxyIdentityContainer)?.securityContext : undefined;
  // Zero means "root", which Istio treats as "not set" (TPROXY runs the proxy as root but still owner-matches 1337).
  const uid = sc?.runAsUser && sc.runAsUser > 0 ? sc.runAsUser : profile.proxy.uid;
  const gid = sc?.runAsGroup && sc.runAsGroup > 0 ? sc.runAsGroup : profile.proxy.gid;
  return { uid, gid };
}

function defaultTraffic(profile: MeshProfile): TrafficSelection {
  return {
    inbound: { include: '*', exclude: canonicalPorts(profile.neverCaptureInbound) },
    outbound: { includePorts: [], excludePorts: [], includeCidrs: '*', excludeCidrs: [] },
  };
}

function validExtras(label: string, extras: PodExtras): PodExtras {
  const out: PodExtras = {};
  for (const key of ['netnsPath', 'cgroupPath', 'hostVeth', 'netnsCookie'] as const) {
    const v = extras[key];
    if (v === undefined || v === null) continue;
    if (typeof v !== 'string' || v.length === 0) throw new PodRejectedError(label, `shunt.${key}`, String(v), 'must be a non-empty string');
    if ((key === 'netnsPath' || key === 'cgroupPath') && !v.startsWith('/')) {
      throw new PodRejectedError(label, `shunt.${key}`, v, 'must be an absolute path');
    }
    if (key === 'netnsCookie' && !/^[0-9]+$/.test(v)) throw new PodRejectedError(label, `shunt.${key}`, v, 'must be a decimal number');
    out[key] = v;
  }
  return out;
}

function formatGroups(g: OwnerGroups): { include: string; exclude: string } {
  return { include: g.include === '*' ? '*' : g.include.join(','), exclude: g.exclude.join(',') };
}

/**
 * The istio-iptables options beyond ports and CIDRs (capture-options.ts says where Istio reads each),
 * from the pod's annotations and its proxy container's env, else the mesh-wide defaults. Only the
 * fields that differ from Istio's defaults are set, so a pod that uses none keeps its old shape.
 */
function readCaptureOptions(
  label: string,
  pod: KubePod,
  profile: MeshProfile,
  mesh: MeshCaptureDefaults,
  proxy: ProxySettings,
): CaptureOptions {
  const annotations = pod.metadata?.annotations ?? {};
  const A = CAPTURE_ANNOTATIONS;
  const E = CAPTURE_ENV;
  const fromAnnotation = <T>(key: string, parse: (v: string) => ListResult<T>): T | undefined => {
    const raw = annotations[key];
    if (raw === undefined) return undefined;
    const r = parse(raw);
    if (!r.ok) throw new PodRejectedError(label, key, raw, r.error);
    return r.value;
  };
  const container = profile.proxyIdentityContainer ? findContainer(pod, profile.proxyIdentityContainer) : undefined;
  const envOf = (name: string): string | undefined => container?.env?.find((e) => e.name === name)?.value;
  const fromEnv = <T>(name: string, parse: (v: string) => ListResult<T>): T | undefined => {
    const raw = envOf(name);
    if (raw === undefined) return undefined;
    const r = parse(raw);
    if (!r.ok) throw new PodRejectedError(label, `${container!.name} env ${name}`, raw, r.error);
    return r.value;
  };

  const out: CaptureOptions = {};
  const exclude = fromAnnotation(A.excludeInterfaces, parseInterfaceList);
  if (exclude && exclude.length > 0) out.excludeInterfaces = exclude;
  // Both are validated; the newer annotation wins when both are set (sidecar_redirect.go, injection template).
  const kubevirt = fromAnnotation(A.kubevirtInterfaces, parseInterfaceList);
  const reroute = fromAnnotation(A.rerouteVirtualInterfaces, parseInterfaceList) ?? kubevirt;
  if (reroute && reroute.length > 0) out.rerouteInterfaces = reroute;

  const meshGroups = formatGroups(mesh.ownerGroups);
  const incText = envOf(E.ownerGroups);
  const excText = envOf(E.ownerGroupsExclude);
  let groups = mesh.ownerGroups;
  if (incText !== undefined || excText !== undefined) {
    const g = parseOwnerGroups(incText ?? meshGroups.include, excText ?? meshGroups.exclude);
    if (!g.ok) {
      const field = g.error.startsWith(E.ownerGroupsExclude) ? E.ownerGroupsExclude : E.ownerGroups;
      const value = field === E.ownerGroups ? (incText ?? meshGroups.include) : (excText ?? meshGroups.exclude);
      throw new PodRejectedError(label, `${container!.name} env ${field}`, value, g.error);
    }
    groups = g.value;
  }
  if (groups.include !== '*' || groups.exclude.length > 0) out.ownerGroups = groups;

  const drop = fromEnv(E.invalidDrop, parseStrictBool) ?? mesh.dropInvalid;
  if (drop) out.dropInvalid = true;
  const loopback = fromEnv(E.loopbackCidr, parseLoopbackCidr) ?? mesh.hostLoopbackCidr;
  if (loopback.address !== '127.0.0.1' || loopback.prefix !== 32) out.hostLoopbackCidr = loopback;

  const uids = fromEnv(E.proxyUid, (v) => parseIdList(v, 'uid')) ?? [];
  const gids = fromEnv(E.proxyGid, (v) => parseIdList(v, 'gid')) ?? [];
  const extraUids = uids.filter((u) => u !== proxy.uid).sort((a, b) => a - b);
  const extraGids = gids.filter((g) => g !== proxy.gid).sort((a, b) => a - b);
  if (extraUids.length > 0) proxy.extraUids = extraUids;
  if (extraGids.length > 0) proxy.extraGids = extraGids;

  if (proxy.dnsPort !== undefined) {
    const servers = podDnsServers(label, pod.spec, mesh.clusterDnsServers);
    if (servers) out.dnsServers = servers;
  }
  return out;
}

/**
 * A Kubernetes pod seen through a mesh profile. Bad annotations reject only member pods (as istio-cni
 * does: a non-member's annotations are never applied, so they cannot be wrong).
 */
export function interpretPod(
  pod: KubePod,
  namespaceLabels: Record<string, string>,
  profile: MeshProfile,
  extras: PodExtras = {},
  mesh: MeshCaptureDefaults = DEFAULT_MESH_CAPTURE,
): Interpretation {
  const ref = podRefOf(pod);
  const label = `${ref.namespace}/${ref.name || '<unnamed>'}`;
  try {
    if (!ref.name) throw new PodRejectedError(label, 'metadata.name', '', 'a pod needs a name');
    const { member, reason } = decideMembership(pod, namespaceLabels, profile);
    const ips = readIps(pod, label);
    const ext = validExtras(label, extras);
    const traffic = defaultTraffic(profile);
    const identity = proxyIdentity(pod, profile);
    const proxy: ProxySettings = { ...profile.proxy, ...identity };
    let interceptionMode: MeshPod['interceptionMode'] = 'REDIRECT';
    let capture: CaptureOptions = {};
    if (member) {
      if (profile.trafficAnnotations) {
        const a = readSidecarAnnotations(label, pod.metadata?.annotations ?? {});
        interceptionMode = a.interceptionMode ?? 'REDIRECT';
        if (a.includeInboundPorts !== undefined) traffic.inbound.include = a.includeInboundPorts;
        const statusPort = a.statusPort !== undefined && a.statusPort > 0 ? [a.statusPort] : [];
        traffic.inbound.exclude = canonicalPorts([...traffic.inbound.exclude, ...(a.excludeInboundPorts ?? []), ...statusPort]);
        if (a.includeOutboundPorts !== undefined) traffic.outbound.includePorts = a.includeOutboundPorts;
        if (a.excludeOutboundPorts !== undefined) traffic.outbound.excludePorts = a.excludeOutboundPorts;
        if (a.includeOutboundIPRanges !== undefined) traffic.outbound.includeCidrs = a.includeOutboundIPRanges;
        if (a.excludeOutboundIPRanges !== undefined) traffic.outbound.excludeCidrs = a.excludeOutboundIPRanges;
      }
      const annotations = pod.metadata?.annotations ?? {};
      for (const key of profile.booleanAnnotations ?? []) {
        const v = annotations[key];
        if (v !== undefined && parseGoBool(v) === undefined) throw new PodRejectedError(label, `annotation ${key}`, v, 'want a boolean (true or false)');
      }
      const bypass = profile.inboundBypassAnnotation;
      if (bypass && annotations[bypass] !== undefined && parseGoBool(annotations[bypass]!) === true) traffic.inbound.include = [];
      if (profile.dnsCaptureWhen.some((c) => holds(c, pod, namespaceLabels))) proxy.dnsPort = profile.dnsCapturePort;
      if (profile.trafficAnnotations) capture = readCaptureOptions(label, pod, profile, mesh, proxy);
    }
    const meshPod: MeshPod = {
      ...ref,
      profile: profile.name,
      membership: member ? profile.membership : 'none',
      membershipReason: reason,
      hostNetwork: pod.spec?.hostNetwork === true,
      ...(pod.spec?.serviceAccountName ? { serviceAccount: pod.spec.serviceAccountName } : {}),
      ips,
      ...ext,
      interceptionMode,
      proxy,
      traffic,
      ...(Object.keys(capture).length > 0 ? { capture } : {}),
    };
    return { ok: true, pod: meshPod };
  } catch (err) {
    if (err instanceof PodRejectedError) return { ok: false, ref, error: err };
    return { ok: false, ref, error: new PodRejectedError(label, 'pod', '', errorMessage(err)) };
  }
}

/** True when a backend has work to do for this pod (a member whose traffic is intercepted). */
export function wantsRedirect(pod: MeshPod): boolean {
  return pod.membership !== 'none' && pod.interceptionMode !== 'NONE' && !pod.hostNetwork;
}
