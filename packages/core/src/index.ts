// @shunt/core: the contract every backend and the agent share.
export * from './types';
export * from './errors';
export type { KubePod, KubeNamespace, KubeContainer, KubeObjectMeta, PodExtras } from './kube/types';
export { pickPod, pickNamespace, pickExtras, podRefOf } from './kube/normalise';
export { parseIp, formatIp, parseCidr, formatCidr, canonicalCidrs, parsePort, canonicalPorts, toCidr, type IpAddress } from './netaddr';
export { ISTIO_ANNOTATIONS, ISTIO_LABELS, parsePortList, parseCidrList, parseInterceptionMode, readSidecarAnnotations, parseGoBool, type SidecarAnnotations } from './annotations';
export {
  ISTIO_SIDECAR,
  ISTIO_AMBIENT,
  PROFILES,
  profileByName,
  interpretPod,
  decideMembership,
  describeCondition,
  wantsRedirect,
  type MeshProfile,
  type PodCondition,
  type Interpretation,
} from './profiles';
export {
  CAPTURE_ANNOTATIONS,
  CAPTURE_ENV,
  DEFAULT_MESH_CAPTURE,
  DEFAULT_HOST_LOOPBACK,
  MAX_OWNER_GROUPS_INCLUDE,
  captureOptionsOf,
  parseInterfaceList,
  parseIdList,
  parseOwnerGroups,
  parseLoopbackCidr,
  parseStrictBool,
  podDnsServers,
  splitAddresses,
  type MeshCaptureDefaults,
  type ResolvedCapture,
} from './capture-options';
export { stableStringify, meshPodFingerprint } from './fingerprint';
export { InternPool, deepFreeze } from './intern';
export { backoffDelay, type BackoffPolicy } from './backoff';
export { parseKernelRelease, compareKernel, formatKernel } from './kernel';
export { SYNCED, isPodEvent, type RawPodEvent, type SyncedEvent, type ReconcilerInput } from './sources/events';
export { PodNamespaceJoin } from './sources/join';
export { interpret } from './sources/interpret';
export { podsFileSource, parsePodsFile, type PodsFileSourceOptions, type PodsFileContent } from './sources/pods-file';
export { kubernetesSource, type KubernetesSourceOptions } from './sources/kubernetes';
export { KubeApiError, type KubeApi, type KubeConnection, type KubeconfigOptions, type KubeListPage } from './sources/kube-client';
export { probeNode, type ProbeNodeOptions } from './probe/node';
export { probeIptables, chooseVariant, removeOrphanedProbeNetns, PROBE_NETNS_PREFIX, type IptablesProbe, type IptablesVariant } from './probe/iptables';
export { parseMounts, findMount, type MountEntry } from './probe/mounts';
export { SUPPORT_RULES, FEATURE_SINCE, supportFromRules, optionalFeatures, upstreamSince, type SupportRule, type RequiredFeature } from './selection/rules';
export { BPF_FEATURE_PROBES, describeProbeCall, type BpfFeatureName, type BpfProbeCall, type BpfProbePart } from './probe/bpf-features';
export { selectBackend, rulesBackend, type Selection, type SupportSource } from './selection/select';
export { rejectPodsBackendCannotServe } from './selection/pod-support';
export { CAPABILITY_FIXTURES, capabilitiesFor, type CapabilityFixtureName } from './selection/fixtures';
export {
  Reconciler,
  type ReconcilerOptions,
  type ReconcilerSnapshot,
  type ReconcilerStats,
  type PodSnapshot,
  type PodView,
  type ResyncReport,
} from './reconciler/reconciler';
export { loadConfig, parseListenAddress, parseSplicePorts, pinRoot, MAX_SPLICE_PORTS, DEFAULT_MAX_PODS, MAX_MAX_PODS, CONFIG_ENV, CONFIG_DEFAULTS, LOG_LEVELS, type ShuntConfig, type LoadedConfig, type ConfigInputs, type ConfigKey, type ConfigOrigin, type LogLevel, type PodSourceConfig, type SpliceMode } from './config';
export { RecordingBackend, type RecordedCall } from './testing/recording-backend';
export { testMeshPod } from './testing/mesh-pod';
export { collect, eventually, type Collector } from './testing/collect';
export { DEFAULT_GUARD, validGuard, type SpliceGuard, type GuardProbe } from './splice-guard';
