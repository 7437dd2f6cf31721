// @shunt/backend-sockops: Merbridge-style redirect: cgroup connect4/6 + getsockopt(SO_ORIGINAL_DST) + sockops + sk_msg socket splicing.
export { SockopsBackend, SockopsBackendError, PROGRAMS, type SockopsOptions } from './backend';
export {
  DEFAULT_SPLICE,
  DEFAULT_GUARD,
  SPLICE_DEFAULT_WHY,
  effectiveSplice,
  probeSpliceGuard,
  validGuard,
  validSplice,
  type EffectiveSplice,
  type GuardProbe,
  type SpliceGuard,
  type SpliceSetting,
} from './splice';
export { sockopsSupport } from './support';
export { podProgram, fingerprintOf, PodConfigError, type PodProgram } from './pod-program';
export { COUNTER_NAMES, SPLICE_STAT_NAMES, type CounterName, type SpliceStatName } from './abi';
export { sockopsPodSupport, socketLayerGaps, type SocketLayerGap } from './pod-support';
export { CapacityError, DEFAULT_MAX_PODS, MAX_MAX_PODS, PER_POD, mapSizes, type Capacity, type MapSizes } from './capacity';
