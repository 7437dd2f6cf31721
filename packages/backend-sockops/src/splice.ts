/**
 * Which connections the sockops backend splices (sk_msg hands data straight to the peer socket's
 * receive queue), by the port of the destination the app asked for.
 *
 * Default: none. A spliced socket has no backpressure: sk_msg with BPF_F_INGRESS charges the data
 * to the peer's receive memory (net/ipv4/tcp_bpf.c bpf_tcp_ingress, __sk_rmem_schedule) and
 * releases the sender's at once, so a sender faster than the peer's reader — app -> sidecar whose
 * upstream is slower, or sidecar -> an app that reads slowly — never blocks. The peer's queue grows
 * until the node's TCP memory limit (tcp_mem) is reached; then sends fail with ENOMEM and the proxy
 * drops the connection: data loss for the app, and memory pressure for every TCP socket on the
 * node. backend.e2e.test.ts reproduces it: 2.43 GB (more than tcp_mem's hard limit) to a reader that
 * lags — spliced, the app's write failed with ENOMEM after 2.36 GB (another run: EPIPE after 1.57 GB,
 * the proxy's send had failed); default, the sender blocked after 14 MiB and every byte arrived.
 * Moving a live connection between the spliced and the TCP path is not an option either
 * (tcp_bpf_recvmsg reads the psock queue before sk_receive_queue: reordering).
 * Splicing wins latency for request/response ports, so it is an opt-in per port list; 'all' is
 * only for nodes whose flows are all known to be small.
 */
import { MAX_SPLICE_PORTS } from '@shunt/core';

export type SpliceSetting = 'all' | 'none' | number[];

export const DEFAULT_SPLICE: SpliceSetting = 'none';

/** Checks a splice setting and returns it canonical (ports sorted and unique; no ports = 'none'). */
export function validSplice(setting: unknown): SpliceSetting {
  if (setting === 'all' || setting === 'none') return setting;
  if (!Array.isArray(setting)) throw new Error(`splice ${JSON.stringify(setting)} is not 'all', 'none' or a list of ports`);
  for (const p of setting as unknown[])
    if (typeof p !== 'number' || !Number.isInteger(p) || p < 1 || p > 65535)
      throw new Error(`splice port ${JSON.stringify(p)} is not a port (1-65535)`);
  const ports = [...new Set(setting as number[])].sort((a, b) => a - b);
  // The splice_ports map (bpf/include/shunt_sockops.h) holds this many.
  if (ports.length > MAX_SPLICE_PORTS) throw new Error(`${ports.length} splice ports, at most ${MAX_SPLICE_PORTS}`);
  return ports.length === 0 ? 'none' : ports;
}
