/**
 * Resets the connection of a spliced socket that was closed with unread data, as TCP does.
 *
 * TCP answers a close() with unread bytes by RST (the sender learns at once that its data was
 * discarded). A spliced socket keeps its unread bytes in its psock queue, which sock_map_close()
 * drops before tcp_close() counts, so the kernel sends FIN; with the receiver's window closed the
 * sender then holds its unsent bytes until the receiver's orphan times out of FIN-WAIT-2
 * (tcp_fin_timeout, 60 s). No BPF hook can turn that FIN into a RST (bpf/sockops/splice_close.bpf.c
 * says why), so cgroup/sock_release reports such a close on the splice_resets ring buffer and this
 * module finishes the job from user space, woken by the ring buffer (milliseconds):
 *   1. the receiver is destroyed (SOCK_DESTROY → tcp_abort): from FIN-WAIT-1/2 it sends RST, the
 *      sender's socket is reset (EPIPE/ECONNRESET) as if TCP had reset at close;
 *   2. the sender (the spliced peer) is destroyed: it is still there only when step 1 had no RST
 *      to send (the receiver had already become a time-wait socket, which tcp_abort just removes);
 *      it then fails with ECONNABORTED and its RST takes the receiver's tuple down.
 * Both by exact 4-tuple and socket cookie, in each socket's own netns. Shared by the backends that
 * splice (sockops: <bpffs>/shunt/sockops/maps/splice_resets; tc: .../tc/maps/splice_resets): the
 * kernel side is bpf/include/shunt_splice_close.h.
 */
import { decodeAddr } from './codec';
import { netnsCookie } from './netns';
import { RingBuffer } from './ringbuf';
import { destroyTcpSocket, type TcpSocketId } from './sock-diag';
import type { BpfMap } from './map';
import type { NetnsPidIndex } from './netns-pids';

/** What the resetter logs through (core's Logger fits; libbpf does not depend on core). */
export interface SpliceResetLog {
  debug(o: object, msg: string): void;
  warn(o: object, msg: string): void;
}

/** struct shunt_splice_reset (bpf/include/shunt_splice.h), as the ring buffer carries it. */
export interface SpliceResetEvent {
  family: 4 | 6;
  local: Buffer;
  localPort: number;
  remote: Buffer;
  remotePort: number;
  netns: bigint;
  cookie: bigint;
  /** 0n: the peer was not (or no longer) spliced. */
  peerNetns: bigint;
  peerCookie: bigint;
  unread: number;
  state: number;
}

export const RESET_EVENT_BYTES = 96;
const AF_INET = 2;
const AF_INET6 = 10;

export function decodeResetEvent(b: Buffer): SpliceResetEvent {
  if (b.length < RESET_EVENT_BYTES) throw new Error(`splice_resets: sample of ${b.length} bytes, expected ${RESET_EVENT_BYTES}`);
  const af = b.readUInt32LE(80);
  if (af !== AF_INET && af !== AF_INET6) throw new Error(`splice_resets: unknown address family ${af}`);
  return {
    // own tuple: netns u64 @0, local @8, remote @24, lport @40, rport @42 (host order)
    family: af === AF_INET ? 4 : 6,
    local: Buffer.from(b.subarray(8, 24)),
    remote: Buffer.from(b.subarray(24, 40)),
    localPort: b.readUInt16LE(40),
    remotePort: b.readUInt16LE(42),
    netns: b.readBigUInt64LE(48),
    cookie: b.readBigUInt64LE(56),
    peerNetns: b.readBigUInt64LE(64),
    peerCookie: b.readBigUInt64LE(72),
    unread: b.readUInt32LE(84),
    state: b.readUInt32LE(88),
  };
}

export interface SpliceResetStats {
  /** closes with unread data reported by the kernel */
  events: number;
  /** receivers destroyed (a RST to the sender unless the receiver was already in time-wait) */
  receiversDestroyed: number;
  /** senders still there after that, destroyed (the receiver had no RST to send) */
  sendersDestroyed: number;
  /** sockets already gone when asked (reset meanwhile, or closed by their app) */
  gone: number;
  /** events whose netns could not be found (no process left in it) */
  unknownNetns: number;
  errors: number;
}

export interface SpliceResetterOptions {
  map: BpfMap;
  /** netns cookie -> a path to that netns (enrolled pods' netns); undefined = not known. */
  netnsPathOf: (cookie: bigint) => string | undefined;
  /** Fallback for a cookie netnsPathOf does not know (an adopted pod not enrolled by this process). */
  pidIndex?: NetnsPidIndex;
  log: SpliceResetLog;
  /** Names the backend in log lines (default 'sockops'). */
  name?: string;
  /** Replaces destroyTcpSocket (tests). */
  destroy?: (netnsPath: string, id: TcpSocketId) => boolean;
}

export class SpliceResetter {
  readonly stats: SpliceResetStats = { events: 0, receiversDestroyed: 0, sendersDestroyed: 0, gone: 0, unknownNetns: 0, errors: 0 };
  private ring: RingBuffer | null = null;
  private readonly destroy: (netnsPath: string, id: TcpSocketId) => boolean;
  /** Netns found through the process index: cookie -> /proc/<pid>/ns/net (checked again on use). */
  private readonly found = new Map<bigint, string>();

  constructor(private readonly opts: SpliceResetterOptions) {
    this.destroy = opts.destroy ?? destroyTcpSocket;
  }

  start(): void {
    if (this.ring) return;
    this.ring = RingBuffer.open(this.opts.map, (samples) => this.onSamples(samples));
    // Closes reported while no agent ran: their senders may still wait.
    this.ring.consume();
  }

  close(): void {
    this.ring?.close();
    this.ring = null;
    this.opts.map.close();
  }

  /** Never throws: it runs as an event-loop callback. */
  onSamples(samples: Buffer[]): void {
    for (const s of samples) {
      try {
        this.handle(decodeResetEvent(s));
      } catch (err) {
        this.stats.errors++;
        this.opts.log.warn({ err: (err as Error).message }, `${this.opts.name ?? 'sockops'}: resetting a spliced connection closed with unread data failed`);
      }
    }
  }

  private handle(ev: SpliceResetEvent): void {
    this.stats.events++;
    const own = this.netnsPath(ev.netns);
    const who = `${decodeAddr(ev.local)}:${ev.localPort} <- ${decodeAddr(ev.remote)}:${ev.remotePort}`;
    if (own === undefined) this.stats.unknownNetns++;
    else if (this.destroy(own, { family: ev.family, localAddress: ev.local, localPort: ev.localPort, remoteAddress: ev.remote, remotePort: ev.remotePort, cookie: ev.cookie }))
      this.stats.receiversDestroyed++;
    else this.stats.gone++;
    if (ev.peerNetns !== 0n) {
      const peer = ev.peerNetns === ev.netns ? own : this.netnsPath(ev.peerNetns);
      if (peer === undefined) this.stats.unknownNetns++;
      else if (
        this.destroy(peer, { family: ev.family, localAddress: ev.remote, localPort: ev.remotePort, remoteAddress: ev.local, remotePort: ev.localPort, cookie: ev.peerCookie })
      )
        this.stats.sendersDestroyed++;
    }
    this.opts.log.debug({ socket: who, unread: ev.unread, state: ev.state }, `${this.opts.name ?? 'sockops'}: spliced socket closed with unread data: connection reset`);
  }

  private netnsPath(cookie: bigint): string | undefined {
    const known = this.opts.netnsPathOf(cookie);
    if (known !== undefined) return known;
    const cached = this.found.get(cookie);
    if (cached !== undefined && sameNetns(cached, cookie)) return cached;
    this.found.delete(cookie);
    const index = this.opts.pidIndex;
    if (!index) return undefined;
    index.refresh();
    for (const ns of index.namespaces()) {
      const p = `/proc/${ns.pid}/ns/net`;
      if (sameNetns(p, cookie)) {
        this.found.set(cookie, p);
        return p;
      }
    }
    return undefined;
  }
}

function sameNetns(p: string, cookie: bigint): boolean {
  try {
    return netnsCookie(p) === cookie;
  } catch {
    return false;
  }
}
