/** Per-workload ZDS failures: always a value with a reason, never a crash of the server. */
export type ZdsErrorCode =
  /** No ztunnel has connected (or the one connected is gone). */
  | 'NOT_CONNECTED'
  /** ztunnel answered with Ack{error}: its own reason is in `reason`. */
  | 'NACK'
  /** No Ack within the timeout (the connection is closed: acks only correlate by order). */
  | 'TIMEOUT'
  /** The connection broke while the request was in flight. */
  | 'DISCONNECTED'
  /** The pod's netns could not be opened to hand it over. */
  | 'NETNS'
  | 'CLOSED';

export class ZdsError extends Error {
  override readonly name = 'ZdsError';
  constructor(
    readonly code: ZdsErrorCode,
    readonly uid: string,
    readonly reason: string,
  ) {
    super(`ZDS ${code} for workload ${uid}: ${reason}`);
  }
}
