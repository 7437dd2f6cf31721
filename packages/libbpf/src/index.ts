// @shunt/libbpf: N-API addon over the system libbpf and its typed TypeScript face:
// objects, programs, maps, links, pins, feature probes, netns cookies, SO_ORIGINAL_DST and
// taking a listening socket out of another process.
export { BpfError } from './errors';
export { BpfObject, type OpenOptions } from './object';
export { BpfProgram, type AttachTcOptions, type BpfProgramDescription } from './program';
export { BpfMap, TypedMap, type UpdateFlag, type BpfMapDescription } from './map';
export { BpfLink, type TcDirection } from './link';
export {
  struct,
  u8,
  u16,
  u32,
  i32,
  u64,
  be16,
  be32,
  ipv4,
  ipv6,
  bytes,
  pad,
  encodeAddr,
  decodeAddr,
  encodeText,
  decodeText,
  type Codec,
  type Field,
  type StructCodec,
  type StructValue,
} from './codec';
export {
  probeProgType,
  probeMapType,
  probeHelper,
  probeAttachType,
  probeTcx,
  probeSockmapLink,
  probeSkLookup,
  type ProbeResult,
} from './probe';
export { ifIndexIn, netnsCookie, withNetns } from './netns';
export { rtnlApply, type RtnlOp, type RtnlResult } from './rtnl';
export {
  tcxQuery,
  attachTcxAt,
  attachTcxAsync,
  attachClsactAt,
  clsactProgId,
  clsactLink,
  destroyClsact,
  detachLinkAsync,
  type TcxHook,
  type TcxAttachOptions,
  type ClsactPlace,
} from './tcx';
export { originalDst, type SocketAddress } from './sockopt';
export {
  netnsListen,
  netnsConnect,
  socketName,
  peerName,
  socketInfo,
  closeFd,
  fdOf,
  type InetSocketOptions,
  type SocketEndpoint,
  type SocketInfo,
} from './sockets';
export { MessageSocket, UnixListener, type PeerCred, type ReceivedMessage, type UnixListenOptions, type UnixSocketType } from './unix';
export { NetnsPidIndex, type NetnsPidIndexOptions } from './netns-pids';
export { netnsTcpListeners, destroyTcpSocket, type NetnsListener, type TcpSocketId } from './sock-diag';
export { RingBuffer } from './ringbuf';
export { pidfdGetfd, listeningSockets, socketFds, type ListeningSocket, type ListeningSocketQuery } from './proc-sockets';
export { bpfObjectPath, cgroup2Mount } from './paths';
export { attachSpecs, type AttachSpec, type AttachSpecsOptions } from './attach-specs';
export { type KernelLinkInfo } from './native';

import { native } from './native';
/** Version of the libbpf the addon was built against ("1.4"). */
export function libbpfVersion(): string {
  return native.libbpfVersion;
}
/** Number of possible CPUs (the length of per-CPU map values). */
export function numPossibleCpus(): number {
  return native.numPossibleCpus();
}
export {
  spliceTuple,
  spliceGuardValue,
  spliceSockValue,
  spliceCfgValue,
  learnKey,
  learnValue,
  SPLICE_MODE,
  GUARD_DEFAULTS,
  SPLICE_STAT_NAMES,
  SPLICE_STAT_SLOTS,
  SPLICE_STAT_MAX,
  readSpliceStats,
  probeSpliceGuard,
  GUARD_PROBE_OBJECT,
  type SpliceStatName,
  type SpliceGuardProbe,
} from './splice';
export { RESET_EVENT_BYTES, SpliceResetter, decodeResetEvent, type SpliceResetEvent, type SpliceResetStats, type SpliceResetterOptions, type SpliceResetLog } from './splice-reset';
