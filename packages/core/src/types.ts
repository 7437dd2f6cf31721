// The contracts shared by the pod sources, the reconciler, the backends and the agent.
// Everything here is plain data so it can be logged, compared and written to JSON.

export type BackendName = 'sockops' | 'tc' | 'iptables';
export type RedirectMode = 'auto' | BackendName;
export const BACKEND_ORDER: readonly BackendName[] = ['sockops', 'tc', 'iptables'];

export type Membership = 'sidecar' | 'ambient' | 'none';
export type InterceptionMode = 'REDIRECT' | 'TPROXY' | 'NONE';
export type ProfileName = 'istio-sidecar' | 'istio-ambient';

/** Identifies a pod across its lifetime; `uid` is the key everywhere. */
export interface PodRef {
  uid: string;
  namespace: string;
  name: string;
}

/** A network in canonical form: `address` is the network address (host bits zero). */
export interface Cidr {
  family: 4 | 6;
  address: string;
  prefix: number;
}

/** `'*'` means every port / every destination, as in Istio's annotations. */
export type PortSelection = '*' | number[];
export type CidrSelection = '*' | Cidr[];

export interface TrafficSelection {
  inbound: {
    /** Ports redirected to the proxy's inbound port; `[]` means no inbound capture. */
    include: PortSelection;
    /** Never redirected; already contains the profile's never-capture ports. */
    exclude: number[];
  };
  outbound: {
    /** Redirected whatever the destination address (Istio: includeOutboundPorts). */
    includePorts: number[];
    excludePorts: number[];
    /** Destinations redirected; `[]` means no outbound capture (except includePorts). */
    includeCidrs: CidrSelection;
    /** Excludes win over includes, as in istio-iptables. */
    excludeCidrs: Cidr[];
  };
}

export interface ProxySettings {
  uid: number;
  gid: number;
  outboundPort: number; // 15001
  inboundPort: number; // 15006
  /** HBONE tunnel port of ambient ztunnel (15008); never captured. */
  tunnelPort?: number;
  /** DNS capture to this port when set (Istio: 15053). */
  dnsPort?: number;
  /**
   * Further proxy UIDs/GIDs whose traffic is the proxy's own (istio-iptables `-u`/`-g` take
   * comma lists). Sorted, unique, never containing `uid`/`gid`; absent = none.
   */
  extraUids?: number[];
  extraGids?: number[];
}

/**
 * Which app groups' outbound traffic is captured (Istio ISTIO_OUTBOUND_OWNER_GROUPS[_EXCLUDE]):
 * `include: '*'` captures every group except `exclude`; a list captures only those groups
 * (`exclude` is then ignored, as in Istio; `[]` captures no outbound traffic at all).
 * Numeric GIDs only: names would resolve against whichever /etc/group the agent sees.
 */
export interface OwnerGroups {
  include: '*' | number[];
  exclude: number[];
}

/**
 * The istio-iptables options beyond ports and CIDRs. Every field is optional and absent means
 * Istio's default, so older pod records and fixtures stay valid; `captureOptionsOf` fills them.
 */
export interface CaptureOptions {
  /** `traffic.sidecar.istio.io/excludeInterfaces` (-c): nothing on these NICs is captured. */
  excludeInterfaces?: string[];
  /**
   * `istio.io/reroute-virtual-interfaces` (or the deprecated `traffic.sidecar.istio.io/kubevirtInterfaces`)
   * (-k): TCP entering on these NICs (VM guests) goes to the outbound port, as if the pod sent it.
   */
  rerouteInterfaces?: string[];
  /** ISTIO_OUTBOUND_OWNER_GROUPS / _EXCLUDE; default `{ include: '*', exclude: [] }`. */
  ownerGroups?: OwnerGroups;
  /** INVALID_DROP: conntrack-INVALID packets are dropped (mangle) instead of answered with RST. */
  dropInvalid?: boolean;
  /**
   * ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR: the IPv4 loopback range treated as "localhost" (default
   * 127.0.0.1/32; Istio accepts prefixes 8..32 of a 127.x address). Kept as written (host bits
   * not cleared), as istio-iptables passes it on.
   */
  hostLoopbackCidr?: Cidr;
  /**
   * The pod's DNS servers (its resolv.conf, as kubelet writes it from dnsPolicy/dnsConfig):
   * DNS capture is limited to these. Absent: not known, the backend's node-wide choice applies.
   */
  dnsServers?: { v4: string[]; v6: string[] };
}

/** A pod interpreted by a mesh profile: everything a backend needs, nothing Kubernetes-specific. */
export interface MeshPod extends PodRef {
  profile: ProfileName;
  membership: Membership;
  /** Why the profile decided `membership` (the rule that matched), for logs and `shunt status`. */
  membershipReason?: string;
  hostNetwork: boolean;
  /** spec.serviceAccountName, for ambient's ZDS WorkloadInfo (Kubernetes defaults it to `default`). */
  serviceAccount?: string;
  ips: { v4: string[]; v6: string[] };
  /** Path of the pod's network namespace (e.g. /var/run/netns/x or /proc/<pid>/ns/net). */
  netnsPath?: string;
  /** Kernel netns cookie as a decimal string (bigint does not survive JSON). */
  netnsCookie?: string;
  /** Absolute cgroup v2 directory of the pod. */
  cgroupPath?: string;
  /** Host-side end of the pod's veth (the node's side). */
  hostVeth?: string;
  interceptionMode: InterceptionMode;
  proxy: ProxySettings;
  traffic: TrafficSelection;
  /** Options beyond ports and CIDRs; absent fields are Istio's defaults. */
  capture?: CaptureOptions;
}

/** Events the reconciler consumes. A `reject` is a pod whose annotations could not be honoured. */
export type PodEvent =
  /** `digest`: the source's key of the object the pod came from (see RestartMemoEntry), when it has one. */
  | { type: 'upsert'; pod: MeshPod; digest?: string }
  | { type: 'delete'; pod: PodRef }
  | { type: 'reject'; pod: PodRef; reason: string }
  /**
   * Restart shortcut: the source holds the very object (same `digest`) that, at the previous agent,
   * gave this pod `fingerprint`, so it skipped validating and interpreting it. The reconciler takes
   * it as enrolled only when the kernel holds that fingerprint; the full `upsert` follows soon
   * after the first sync either way (and repairs whatever the shortcut could not).
   */
  | { type: 'unchanged'; pod: PodRef; fingerprint: string; digest: string };

/**
 * What a pod source needs at the next start to vouch for an unchanged pod without reading it: the
 * digest of the object (pods file: its item text and its namespace's labels), the pod, and the
 * backend fingerprint installed from it.
 */
export interface RestartMemoEntry {
  digest: string;
  uid: string;
  namespace: string;
  name: string;
  fingerprint: string;
}

/** Outcome of a probe, with what was tried and what the kernel answered. */
export interface Feature {
  available: boolean;
  evidence: string;
}

export type FeatureName =
  | 'btf'
  | 'cgroup2'
  | 'bpffs'
  | 'prog:sock_ops'
  | 'prog:sk_msg'
  | 'prog:cgroup_sock_addr'
  | 'prog:cgroup_sockopt'
  | 'prog:sched_cls'
  | 'helper:msg_redirect_hash'
  | 'helper:get_netns_cookie'
  | 'helper:sk_assign'
  | 'helper:redirect_peer'
  | 'link:tcx'
  // Added for the sockops backend's full program set (each probed; see probe/bpf-features.ts).
  | 'prog:sk_lookup'
  | 'attach:cgroup_udp_sendmsg'
  | 'attach:cgroup_udp_recvmsg'
  | 'attach:cgroup_getpeername'
  | 'attach:cgroup_sock_release'
  | 'helper:get_socket_cookie'
  | 'helper:get_current_uid_gid'
  | 'helper:sock_hash_update'
  | 'iptables:legacy'
  | 'iptables:nft'
  | 'iptables:tproxy';

export interface KernelVersion {
  major: number;
  minor: number;
  patch: number;
}

export interface NodeCapabilities {
  kernelRelease: string;
  kernel: KernelVersion;
  cgroup2Path: string | null;
  bpffsPath: string | null;
  /** The iptables variant whose rules the kernel actually evaluates, if any works. */
  iptablesVariant: 'legacy' | 'nft' | null;
  features: Record<FeatureName, Feature>;
}

export type Support = { ok: true } | { ok: false; reasons: string[] };

export interface Logger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface NodeContext {
  nodeName: string;
  profile: ProfileName;
  caps: NodeCapabilities;
  /** cgroup v2 directory where node-wide cgroup programs attach (node root, or a test's cgroup). */
  cgroupRoot: string;
  /** Root of our pins; each backend uses `<bpffsRoot>/<backend>/`. */
  bpffsRoot: string;
  log: Logger;
  /**
   * Adopt what is installed and report it, but install, attach or remove nothing: `shunt status`
   * must read the kernel without changing it. enroll/unenroll then throw.
   */
  readOnly?: boolean;
}

/** One pod as the backend finds it in the kernel. */
export interface InstalledPod extends PodRef {
  /** Equals `backend.fingerprint(desired)` when the installed state matches the desired one. */
  fingerprint: string;
  detail?: Record<string, unknown>;
}

export interface InstalledState {
  backend: BackendName;
  /** Node-wide state (programs attached, maps pinned) is complete. */
  nodeReady: boolean;
  nodeDetail: Record<string, unknown>;
  pods: InstalledPod[];
  /** Kernel counters, summed over CPUs (e.g. connects_redirected). */
  counters: Record<string, number>;
}

/**
 * A count-only reading of what is installed (`RedirectBackend.summarize`): what /metrics exports,
 * at a cost flat in the number of pods (entry counts, no per-pod records). The kernel's word, as
 * observe() is; nothing here comes from what the agent remembers writing.
 */
export interface InstalledSummary {
  backend: BackendName;
  nodeReady: boolean;
  nodeDetail: Record<string, unknown>;
  /** Pods installed in the kernel (e.g. entries of the per-pod map). */
  pods: number;
  counters: Record<string, number>;
}

/** The summary of a full reading (a backend without summarize(), or a reading already made). */
export function summaryOf(state: InstalledState): InstalledSummary {
  return { backend: state.backend, nodeReady: state.nodeReady, nodeDetail: state.nodeDetail, pods: state.pods.length, counters: state.counters };
}

export interface RedirectBackend {
  readonly name: BackendName;
  /** Can it run on a node with these capabilities, and if not, why. Pure. */
  support(caps: NodeCapabilities): Support;
  /**
   * Can it capture this pod as the pod's settings ask (optional; absent = every pod). Pure. A pod
   * it cannot serve is reported `rejected` with these reasons instead of being enrolled.
   */
  supportPod?(pod: MeshPod): Support;
  /** Load or adopt node-wide state; idempotent. */
  start(node: NodeContext): Promise<void>;
  /** Make this pod's traffic go via its proxy; idempotent. */
  enroll(pod: MeshPod): Promise<void>;
  unenroll(pod: PodRef): Promise<void>;
  /** What is really in the kernel now. */
  observe(): Promise<InstalledState>;
  /**
   * Optional: the counts of observe() without its per-pod records (for scrapes; absent = the
   * agent derives them from observe()).
   */
  summarize?(): Promise<InstalledSummary>;
  /** Fingerprint of the state `enroll(pod)` installs, compared with `observe()` to find drift. Pure. */
  fingerprint(pod: MeshPod): string;
  /** cleanup=false keeps the redirect alive across restarts. */
  stop(opts: { cleanup: boolean }): Promise<void>;
}

export type PodStatus =
  /**
   * `unchanged`: no backend call was made: the kernel already held this config when the pod was
   * first seen (a pod adopted at start). Loggers may summarise these instead of a line per pod.
   */
  | { pod: PodRef; state: 'enrolled'; at: number; unchanged?: true }
  | { pod: PodRef; state: 'failed'; reason: string; attempts: number; at: number }
  | { pod: PodRef; state: 'rejected'; reason: string; at: number }
  | { pod: PodRef; state: 'removed'; at: number };
