/**
 * Which connections the sockops backend splices (sk_msg hands data straight to the peer socket's
 * receive queue), by the port of the destination the app asked for, and the probe for the guard
 * that makes splicing safe.
 *
 * An unguarded splice has no backpressure: sk_msg with BPF_F_INGRESS charges the data to the peer's
 * receive memory (net/ipv4/tcp_bpf.c bpf_tcp_ingress) and releases the sender's at once, so a sender
 * faster than the peer's reader never blocks; the peer's queue grows until the memory cgroup or
 * tcp_mem refuses and the send fails with ENOMEM (the proxy drops the connection). Every spliced
 * message therefore passes the guard in bpf/sockops/redir.bpf.c: redirect only while the peer's
 * queue stays within the cap (queueCap; the peer's sk_rcvbuf when the app set SO_RCVBUF) and there is no TCP memory pressure, else the flow
 * takes the TCP path and returns when that is order-safe. An sk_skb verdict program on the same
 * sockhash keeps ONE receive queue per spliced socket: TCP-path skbs are queued behind the spliced
 * messages in the psock queue, so a read returns everything available and EOF comes after all data
 * (without it, one read returned from one of two queues and readers that stop on a short read plus
 * EPOLLRDHUP, HAProxy 2.6, lost the tail). All settings that splice are guarded; there is no
 * unguarded mode.
 *
 *  - 'auto' (the default, see DEFAULT_SPLICE): every captured connection, where probeSpliceGuard()
 *    says the guard and its verdict load (bpf_rdonly_cast: CAP_BPF + CAP_PERFMON, BTF, kernel >= 6.2
 *    kfuncs); elsewhere nothing, and `shunt doctor` says why.
 *  - 'none': nothing is spliced.
 *  - 'all': every captured connection; refused at start where the guard cannot load.
 *  - a port list: only connections to those ports (same guard).
 */
import * as fs from 'node:fs';
import { BpfObject, bpfObjectPath } from '@shunt/libbpf';
import { MAX_SPLICE_PORTS } from '@shunt/core';

export type SpliceSetting = 'auto' | 'all' | 'none' | number[];
/** What the kernel is told: 'auto' resolved by the probe. */
export type EffectiveSplice = 'all' | 'none' | number[];

/**
 * 'auto': guarded splicing with one receive queue is safe for every reader (splice-safety and
 * splice-short-read e2e suites), so it is on wherever the guard loads; elsewhere 'auto' is 'none'.
 */
export const DEFAULT_SPLICE: SpliceSetting = 'auto';
/** Why DEFAULT_SPLICE is what it is, in one sentence (`shunt doctor`; the probe says whether it splices here). */
export const SPLICE_DEFAULT_WHY =
  'every captured connection is spliced behind the guard (the peer\'s queue stays within the cap, or the receive buffer the app set, else the flow continues over TCP with TCP\'s backpressure) ' +
  'and one receive queue per socket (an sk_skb verdict queues TCP-path data behind the spliced data, so a read returns everything and EOF comes last), where the guard can load; nothing elsewhere.';

/** Checks a splice setting and returns it canonical (ports sorted and unique; no ports = 'none'). */
export function validSplice(setting: unknown): SpliceSetting {
  if (setting === 'all' || setting === 'none' || setting === 'auto') return setting;
  if (!Array.isArray(setting)) throw new Error(`splice ${JSON.stringify(setting)} is not 'auto', 'all', 'none' or a list of ports`);
  for (const p of setting as unknown[])
    if (typeof p !== 'number' || !Number.isInteger(p) || p < 1 || p > 65535)
      throw new Error(`splice port ${JSON.stringify(p)} is not a port (1-65535)`);
  const ports = [...new Set(setting as number[])].sort((a, b) => a - b);
  // The splice_ports map (bpf/include/shunt_sockops.h) holds this many.
  if (ports.length > MAX_SPLICE_PORTS) throw new Error(`${ports.length} splice ports, at most ${MAX_SPLICE_PORTS}`);
  return ports.length === 0 ? 'none' : ports;
}

/** The guard's bounds (bytes). queueCap is min'd in the kernel with a peer sk_rcvbuf the app set, else with tcp_rmem[2]. */
export interface SpliceGuard {
  /** Most bytes a peer may have queued (plus the message) for a message to be spliced. */
  queueCap: number;
  /** Messages smaller than this are spliced only onto a near-empty queue (small bulk writes lose spliced). */
  smallMsg: number;
  /** "Near-empty" for small messages. */
  smallQueue: number;
  /**
   * After this many short connections in a row to a port of a pod (each end sent 1-2 messages, or
   * data segments when not spliced), its connections are not spliced until a longer one comes (one
   * in 64 is spliced anyway); 0 = always splice. Default 4: a spliced connection pays a psock per
   * socket, ~60 of ~360 µs of machine CPU per proxied HTTP/1.1 `Connection: close` request here
   * (perf record -a), for one request and one response (README "Short connections").
   */
  shortConns: number;
}

/** Defaults, from measurements (reference/splice-backpressure.md; README "Splicing"). */
export const DEFAULT_GUARD: SpliceGuard = { queueCap: 4 << 20, smallMsg: 8 << 10, smallQueue: 64 << 10, shortConns: 4 };

export function validGuard(g: Partial<SpliceGuard> | undefined): SpliceGuard {
  const out = { ...DEFAULT_GUARD, ...(g ?? {}) };
  const { shortConns, ...bytes } = out;
  for (const [k, v] of Object.entries(bytes))
    if (!Number.isInteger(v) || v < 1 || v > 0xffffffff) throw new Error(`splice guard ${k} ${JSON.stringify(v)} is not a byte count (1-4294967295)`);
  if (!Number.isInteger(shortConns) || shortConns < 0 || shortConns > 255)
    throw new Error(`splice guard shortConns ${JSON.stringify(shortConns)} is not a connection count (0-255, 0 = always splice)`);
  if (out.smallQueue > out.queueCap) throw new Error(`splice guard smallQueue ${out.smallQueue} exceeds queueCap ${out.queueCap}`);
  return out;
}

export interface GuardProbe {
  available: boolean;
  evidence: string;
}

export const GUARD_PROBE_OBJECT = 'sockops/guard_probe.bpf.o';
let guardProbeCache: GuardProbe | undefined;

/**
 * Can the splice guard load here? Loads (never attaches) bpf/sockops/guard_probe.bpf.c, which makes
 * the guard's kernel reads with no maps. A refusal names the reason (verifier log or errno), for
 * `shunt doctor` and the log line that says why 'auto' splices nothing.
 */
export function probeSpliceGuard(): GuardProbe {
  if (guardProbeCache) return guardProbeCache;
  const file = bpfObjectPath(GUARD_PROBE_OBJECT);
  if (!fs.existsSync(file)) return (guardProbeCache = { available: false, evidence: `${file} missing (bpf not built?)` });
  try {
    BpfObject.open(file).close();
    guardProbeCache = { available: true, evidence: 'sk_msg program with bpf_rdonly_cast of sockets, psock and sk_prot/memcg reads, and an sk_skb verdict program loaded' };
  } catch (err) {
    const msg = (err as Error).message.split('\n').slice(0, 3).join(' ');
    guardProbeCache = {
      available: false,
      evidence: `guard probe refused: ${msg} (the guard reads peer sockets through bpf_rdonly_cast: needs CAP_BPF + CAP_PERFMON and kernel BTF/kfuncs, >= 6.2)`,
    };
  }
  return guardProbeCache;
}

/** The setting the kernel gets: 'auto' is every port where the guard loads, nothing elsewhere. */
export function effectiveSplice(setting: SpliceSetting, probe: () => GuardProbe = probeSpliceGuard): { splice: EffectiveSplice; reason: string } {
  if (setting === 'none') return { splice: 'none', reason: 'splice none' };
  const p = probe();
  if (setting === 'auto')
    return p.available ? { splice: 'all', reason: `auto: guard loads (${p.evidence})` } : { splice: 'none', reason: `auto: nothing spliced: ${p.evidence}` };
  if (!p.available) throw new Error(`splice ${JSON.stringify(setting)} needs the splice guard, which cannot load here: ${p.evidence}`);
  return { splice: setting, reason: 'guarded' };
}
