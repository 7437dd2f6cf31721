/**
 * What every splicing backend shares on the user-space side of bpf/include/shunt_splice.h: the
 * codecs of the splice maps (each backend pins its own copies), the guard's decision stats, and
 * the probe that says whether the guard (shunt_splice_guard.h) can load here.
 */
import * as fs from 'node:fs';
import { BpfObject } from './object';
import { bpfObjectPath } from './paths';
import { struct, u16, u32, u64, bytes, pad } from './codec';
import type { TypedMap } from './map';

/** struct shunt_tuple: a TCP connection as one of its sockets sees it (addresses 16 bytes, ports host order). */
export const spliceTuple = struct({
  netns: u64,
  local: bytes(16),
  remote: bytes(16),
  lport: u16,
  rport: u16,
  _pad: pad(4),
});
/** struct shunt_splice_guard. shortConns: 0 = always splice (the field was padding: older pins hold 0). */
export const spliceGuardValue = struct({ queueCap: u32, smallMsg: u32, smallQueue: u32, shortConns: u32 });
/** struct shunt_splice_sock (splice_peer values). */
export const spliceSockValue = struct({ sk: u64, state: u32, flags: u32 });
/** struct shunt_splice_cfg. */
export const spliceCfgValue = struct({ mode: u32 });
/** shunt_splice_cfg.mode */
export const SPLICE_MODE = { NONE: 0, ALL: 1, LISTED: 2 } as const;
/** struct shunt_learn_key / shunt_learn (splice_learn). */
export const learnKey = struct({ netns: u64, port: u16, _pad0: pad(2), _pad1: pad(4) });
export const learnValue = struct({ shortRun: u32, skipped: u32 });

/** Built-in guard defaults (SHUNT_GUARD_*), used when splice_guard holds zeros. */
export const GUARD_DEFAULTS = { queueCap: 4 << 20, smallMsg: 8 << 10, smallQueue: 64 << 10, shortConns: 0 } as const;

/** Same order as enum shunt_splice_stat (the splice guard's decisions). */
export const SPLICE_STAT_NAMES = [
  'splice_msgs',
  'splice_bytes',
  'splice_tcp_msgs',
  'splice_tcp_bytes',
  'splice_to_tcp_queue',
  'splice_to_tcp_small',
  'splice_to_tcp_pressure',
  'splice_to_tcp_no_peer',
  'splice_peer_gone',
  'splice_back_to_splice',
  'splice_no_self',
  'splice_peak_queue_bytes',
  'splice_verdict_bytes',
  'splice_back_two_queues',
  'splice_rx_overlaps',
  'splice_rx_trim_failed',
] as const;
export type SpliceStatName = (typeof SPLICE_STAT_NAMES)[number];
export const SPLICE_STAT_SLOTS = 16;
/** Stats that hold a maximum per CPU (reported as the maximum over CPUs, not the sum). */
export const SPLICE_STAT_MAX: ReadonlySet<SpliceStatName> = new Set(['splice_peak_queue_bytes']);

/** A splice_stats map read back: sums over CPUs, maxima for SPLICE_STAT_MAX. */
export function readSpliceStats(stats: TypedMap<number, bigint>): Record<string, number> {
  const out: Record<string, number> = {};
  SPLICE_STAT_NAMES.forEach((name, i) => {
    if (i >= SPLICE_STAT_SLOTS) return;
    const perCpu = stats.lookupPerCpu(i) ?? [];
    out[name] = SPLICE_STAT_MAX.has(name) ? Number(perCpu.reduce((a, b) => (b > a ? b : a), 0n)) : Number(perCpu.reduce((a, b) => a + b, 0n));
  });
  return out;
}

export interface SpliceGuardProbe {
  available: boolean;
  evidence: string;
}

export const GUARD_PROBE_OBJECT = 'sockops/guard_probe.bpf.o';
let guardProbeCache: SpliceGuardProbe | undefined;

/**
 * Can the splice guard load here? Loads (never attaches) bpf/sockops/guard_probe.bpf.c, which makes
 * the guard's kernel reads with no maps. A refusal names the reason (verifier log or errno), for
 * `shunt doctor` and the log line that says why 'auto' splices nothing. One answer per process.
 */
export function probeSpliceGuard(): SpliceGuardProbe {
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
