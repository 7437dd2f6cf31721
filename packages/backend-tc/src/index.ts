// @shunt/backend-tc: ambient redirect with tcx programs on the pod's eth0 inside its netns,
// handing pod TCP to ztunnel's in-pod sockets with bpf_sk_assign (see README.md).
export { TcBackend, TcBackendError, PROGRAMS, LINKS_MISSING, type TcOptions, type PreparedNetns, type PrepareResult } from './backend';
export { PodConfigError, podConfig, fingerprintOf, type TcPodConfig } from './pod-config';
export { COUNTER_NAMES, TC_MARK, TC_MARK_MASK, TC_TABLE, TC_RULE_PRIORITY, type CounterName } from './abi';
export { readNetnsSetup } from './netns-setup';
export { tcSupport } from './support';
export { DEFAULT_TC_SPLICE, TC_SPLICE_WHY, TcSplice, SPLICE_PROGRAMS, PER_SOCKET_MAPS, effectiveTcSplice, validTcSplice, type TcSpliceSetting, type TcSpliceReading } from './splice';
export { ztunnelPlacement, processCgroupDir, cgroup2Mounts, cgroupV2Path, type ZtunnelPlacement } from './ztunnel-cgroup';
