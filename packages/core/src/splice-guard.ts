/**
 * The splice guard's bounds, shared by every backend that splices sockets with sk_msg (sockops for
 * sidecars, tc for ambient): one guard in the kernel (bpf/include/shunt_splice_guard.h), one
 * policy and its validation here. Why the guard exists: an unguarded sk_msg redirect has no
 * backpressure (the data is charged to the peer's receive memory, the sender never blocks), so a
 * message is spliced only while the peer's queue stays within these bounds, else the flow takes
 * the TCP path with TCP's own window.
 */

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

/** Defaults, from measurements (reference/splice-backpressure.md; backend-sockops README "Splicing"). */
export const DEFAULT_GUARD: SpliceGuard = { queueCap: 4 << 20, smallMsg: 8 << 10, smallQueue: 64 << 10, shortConns: 4 };

/** Fills in the defaults and checks every bound; throws naming the field and value. */
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

/** Whether the guard can load on this node, and the evidence (`shunt doctor`, the "splicing off" log line). */
export interface GuardProbe {
  available: boolean;
  evidence: string;
}
