/**
 * The compiled addon (build/Release/shunt_libbpf.node, built by `node-gyp rebuild`) and
 * its raw signatures. Only this package's modules import it; everyone else uses the
 * classes in index.ts.
 */
import * as path from 'node:path';
import { BpfError } from './errors';

/** Opaque handle owning a kernel fd (closed on closeFd or when collected). */
export interface FdHandle {
  readonly __fdHandle: unique symbol;
}
/** Opaque handle owning a bpf_object (closed on closeObject or when collected). */
/** Opaque handle owning a libbpf ring_buffer and its event-loop poll (closed on ringbufClose or when collected). */
export interface RingbufHandle {
  readonly __ringbufHandle: unique symbol;
}
export interface ObjectHandle {
  readonly __objectHandle: unique symbol;
}

export interface NativeProgramInfo {
  name: string;
  section: string;
  type: string;
  expectedAttachType: string;
  fd: number;
}

export interface NativeMapInfo {
  name: string;
  type: string;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
  fd: number;
  internal: boolean;
  pinPath?: string;
  btfKeyType: string;
  btfValueType: string;
}

export interface KernelMapInfo {
  id: number;
  name: string;
  type: string;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
  btfId: number;
}

export interface KernelProgInfo {
  id: number;
  name: string;
  type: string;
}

export interface KernelLinkInfo {
  id: number;
  type: string;
  progId: number;
  attachType?: string;
  cgroupId?: bigint;
  ifindex?: number;
  mapId?: number;
  /** netns links: inode of the netns (as in `stat <netns path>`); 0 once the netns is gone. */
  netnsIno?: number;
}

/** One rtnetlink request of rtnlApply (see src/rtnl.ts). */
export interface RtnlOp {
  kind: 'rule' | 'route';
  op: 'add' | 'del';
  family: 4 | 6;
  table: number;
  priority?: number;
  mark?: number;
  mask?: number;
  /** rule only: match packets arriving on this interface only (FRA_IIFNAME). */
  iif?: string;
}

export interface ProbeResult {
  available: boolean;
  evidence: string;
}

export interface NativeAddon {
  libbpfVersion: string;
  numPossibleCpus(): number;
  setErrorFactory(fn: (...args: unknown[]) => Error): void;
  closeFd(h: FdHandle): void;
  fdOf(h: FdHandle): number;
  dupFd(fd: number, target: string): FdHandle;

  openObject(path: string, pinRoot?: string, maxEntries?: Record<string, number>): ObjectHandle;
  closeObject(h: ObjectHandle): void;
  objectPrograms(h: ObjectHandle): NativeProgramInfo[];
  objectMaps(h: ObjectHandle): NativeMapInfo[];

  mapLookup(fd: number, key: Buffer, valueBytes: number, target: string): Buffer | null;
  mapUpdate(fd: number, key: Buffer, value: Buffer, flags: number, target: string): void;
  mapDelete(fd: number, key: Buffer, target: string): boolean;
  mapKeys(fd: number, keySize: number, limit: number, target: string): Buffer[];
  mapLookupBatch(
    fd: number,
    keySize: number,
    valueBytes: number,
    maxEntries: number,
    target: string,
  ): { keys: Buffer; values: Buffer; count: number };
  mapCount(fd: number, keySize: number, valueBytes: number, limit: number, chunk: number, target: string): number;
  mapUpdateBatch(fd: number, keys: Buffer, values: Buffer, count: number, flags: number, target: string): number;
  mapDeleteBatch(fd: number, keys: Buffer, count: number, target: string): number;
  mapInfo(fd: number, target: string): KernelMapInfo;
  progInfo(fd: number, target: string): KernelProgInfo;
  objPin(fd: number, path: string, target: string): void;
  objGet(path: string): FdHandle;

  linkCgroup(progFd: number, cgroupPath: string, attachType: string, target: string): FdHandle;
  linkMap(progFd: number, mapFd: number, attachType: string, target: string): FdHandle;
  progAttachLegacy(progFd: number, targetFd: number, attachType: string, target: string): void;
  progDetachLegacy(progFd: number, targetFd: number, attachType: string, target: string): void;
  linkTcx(progFd: number, ifindex: number, direction: string, target: string): FdHandle;
  linkNetns(progFd: number, netnsPath: string, attachType: string, target: string): FdHandle;
  tcAttachLegacy(
    progFd: number,
    ifindex: number,
    direction: string,
    target: string,
  ): { handle: number; priority: number; createdQdisc: boolean };
  tcDetachLegacy(ifindex: number, direction: string, handle: number, priority: number, target: string): void;
  tcQueryLegacy(ifindex: number, direction: string, handle: number, priority: number, target: string): number;
  linkDetach(fd: number, target: string): void;
  linkInfo(fd: number, target: string): KernelLinkInfo;
  ifNameToIndex(name: string, context: string): number;

  probeProgType(name: string): ProbeResult;
  probeMapType(name: string): ProbeResult;
  probeHelper(progType: string, helper: string): ProbeResult;
  probeAttachType(progType: string, attachType: string): ProbeResult;
  probeTcx(): ProbeResult;
  probeSockmapLink(): ProbeResult;
  probeNetnsLink(progType: string, attachType: string): ProbeResult;

  netnsEnter(path: string): number;
  netnsRestore(origFd: number): void;
  netnsCookie(path: string): bigint;
  originalDst(fd: number, family: number): { address: string; port: number };
  pidfdGetfd(pid: number, targetFd: number): number;

  rtnlApply(netnsPath: string, ops: RtnlOp[]): number[];
  linkTcxAt(progFd: number, ifindex: number, dir: string, position: 'first' | 'last', expectedRevision: number, target: string): FdHandle;
  tcxQuery(ifindex: number, dir: string, target: string): { revision: number; progIds: number[]; linkIds: number[] };
  tcAttachLegacyAt(progFd: number, ifindex: number, dir: string, handle: number, priority: number, target: string): { createdQdisc: boolean };
  tcHookDestroy(ifindex: number, target: string): void;
  linkDetachAsync(linkFd: number, target: string): Promise<void>;
  linkTcxAtAsync(progFd: number, netnsPath: string, ifname: string, dir: string, position: 'first' | 'last', target: string): Promise<FdHandle>;

  inetSocket(opts: Record<string, unknown>, target: string): { fd: number; inProgress: boolean };
  waitConnect(fd: number, timeoutMs: number, target: string): Promise<void>;
  getSockName(fd: number): { family: number; address: string; port: number };
  getPeerName(fd: number): { family: number; address: string; port: number };
  socketInfo(fd: number): Record<string, unknown>;
  closeRawFd(fd: number): void;

  FdReader: new (
    fd: number,
    mode: number,
    cb: (ev: never) => void,
    target: string,
  ) => { stop(): void; send(data: Buffer, fds: number[], target: string, to?: { family: number; address: string; port: number }): number; ref(): void; unref(): void };
  sendMsg(fd: number, data: Buffer, fds: number[], target: string, to?: { family: number; address: string; port: number }): number;
  unixListen(path: string, type: string, backlog: number, mode: number): number;
  unixConnect(path: string, type: string): number;
  unixSocketPair(type: string): [number, number];
  unixPeerCred(fd: number, target: string): { pid: number; uid: number; gid: number };
  tcpListeners(port: number, family: number, wildcardOnly?: boolean): Array<{ inode: number; address: string; port: number; family: 4 | 6 }>;
  tcpDestroy(family: number, local: Buffer, localPort: number, remote: Buffer, remotePort: number, cookie: bigint, target: string): boolean;
  ringbufOpen(mapFd: number, onSamples: (samples: Buffer[]) => void, target: string): RingbufHandle;
  ringbufConsume(h: RingbufHandle, target: string): number;
  ringbufClose(h: RingbufHandle): void;
}

function load(): NativeAddon {
  // src/ and dist/ both sit one level below the package root, next to build/.
  const file = path.resolve(__dirname, '..', 'build', 'Release', 'shunt_libbpf.node');
  let addon: NativeAddon;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    addon = require(file) as NativeAddon;
  } catch (err) {
    throw new Error(
      `@shunt/libbpf: cannot load the native addon ${file} (${(err as Error).message}); ` +
        'build it with `npm run build -w @shunt/libbpf` (node-gyp rebuild)',
    );
  }
  addon.setErrorFactory(
    (errno, code, description, op, target, detail, verifierLog) =>
      new BpfError({
        errno: errno as number,
        code: code as string,
        description: description as string,
        op: op as string,
        target: target as string,
        detail: (detail as string) || undefined,
        verifierLog: (verifierLog as string | undefined) || undefined,
      }),
  );
  return addon;
}

export const native: NativeAddon = load();
