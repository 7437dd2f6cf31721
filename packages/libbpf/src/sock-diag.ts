/**
 * TCP listeners of one netns by sock_diag (NETLINK_SOCK_DIAG, as `ss -ltn` does), asked from
 * inside the netns. Unlike /proc/<pid>/net/tcp{,6}, it needs no process in the netns and costs
 * the listeners on one port, not a walk over every socket of the node.
 */
import { invalidArgument } from './errors';
import { native } from './native';
import { withNetns } from './netns';

export interface NetnsListener {
  /** Socket inode: what /proc/<pid>/fd/<n> links show as socket:[inode]. */
  inode: number;
  address: string;
  port: number;
  family: 4 | 6;
}

/**
 * LISTEN sockets on port in the netns at netnsPath, of one family (a dual-stack [::] socket is
 * family 6 — but an IPv4 wildcard query also finds it, as an IPv4 SYN would). With
 * wildcardOnly, only the socket a connection to any address on the port would reach, found by
 * an exact lookup in the kernel's listener hash (cost independent of the node's other sockets);
 * without, every listener on the port (the kernel walks the node's listening hash).
 */
export function netnsTcpListeners(netnsPath: string, port: number, family: 4 | 6, opts: { wildcardOnly?: boolean } = {}): NetnsListener[] {
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw invalidArgument('sock_diag', netnsPath, `port must be 1..65535, got ${String(port)}`);
  if (family !== 4 && family !== 6) throw invalidArgument('sock_diag', netnsPath, `family must be 4 or 6, got ${String(family)}`);
  return withNetns(netnsPath, () => native.tcpListeners(port, family, opts.wildcardOnly === true));
}
