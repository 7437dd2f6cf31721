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
import { GUARD_PROBE_OBJECT, probeSpliceGuard } from '@shunt/libbpf';
import { DEFAULT_GUARD, MAX_SPLICE_PORTS, validGuard, type GuardProbe, type SpliceGuard } from '@shunt/core';

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

// The guard's bounds and the probe are shared with the tc backend (ambient splicing): core holds
// the policy and its validation, libbpf the probe. Re-exported: this package's API is unchanged.
export { DEFAULT_GUARD, validGuard, type SpliceGuard, type GuardProbe };
export { GUARD_PROBE_OBJECT, probeSpliceGuard };

/** The setting the kernel gets: 'auto' is every port where the guard loads, nothing elsewhere. */
export function effectiveSplice(setting: SpliceSetting, probe: () => GuardProbe = probeSpliceGuard): { splice: EffectiveSplice; reason: string } {
  if (setting === 'none') return { splice: 'none', reason: 'splice none' };
  const p = probe();
  if (setting === 'auto')
    return p.available ? { splice: 'all', reason: `auto: guard loads (${p.evidence})` } : { splice: 'none', reason: `auto: nothing spliced: ${p.evidence}` };
  if (!p.available) throw new Error(`splice ${JSON.stringify(setting)} needs the splice guard, which cannot load here: ${p.evidence}`);
  return { splice: setting, reason: 'guarded' };
}
