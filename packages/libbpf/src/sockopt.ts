/** Socket options the proxies and their stand-ins need. */
import { invalidArgument } from './errors';
import { native } from './native';

export interface SocketAddress {
  address: string;
  port: number;
}

/**
 * The destination a connection had before it was redirected (SO_ORIGINAL_DST for IPv4,
 * IP6T_SO_ORIGINAL_DST for IPv6): filled by netfilter NAT, or by a getsockopt BPF hook.
 * Throws BpfError (ENOENT when the connection was never redirected).
 */
export function originalDst(fd: number, family: 4 | 6): SocketAddress {
  if (!Number.isInteger(fd) || fd < 0) throw invalidArgument('originalDst', `fd ${String(fd)}`, 'not a file descriptor');
  if (family !== 4 && family !== 6) throw invalidArgument('originalDst', `fd ${fd}`, `family must be 4 or 6, got ${String(family)}`);
  return native.originalDst(fd, family);
}
