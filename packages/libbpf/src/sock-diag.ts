/**
 * TCP listeners of one netns by sock_diag (NETLINK_SOCK_DIAG, as `ss -ltn` does), asked from
 * inside the netns. Unlike /proc/<pid>/net/tcp{,6}, it needs no process in the netns and costs
 * the listeners on one port, not a walk over every socket of the node.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { decodeAddr, encodeAddr } from './codec';
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

export interface TcpSocketId {
  family: 4 | 6;
  /** The socket's own address and port (for IPv4 on a dual-stack socket: family 6, v4-mapped). */
  /** Text, or raw network-order bytes: 4 (IPv4), 16 (IPv6, or IPv4 v4-mapped as BPF maps keep it). */
  localAddress: string | Buffer;
  localPort: number;
  remoteAddress: string | Buffer;
  remotePort: number;
  /** The socket's cookie: only that socket is destroyed (another one on the same tuple is left alone); 0n = any. */
  cookie?: bigint;
}

/**
 * Destroys one TCP socket of the netns at netnsPath, as `ss -K` does (SOCK_DESTROY; needs
 * CONFIG_INET_DIAG_DESTROY and CAP_NET_ADMIN): the kernel's tcp_abort() sends a RST from every
 * state that needs one (ESTABLISHED, CLOSE-WAIT, FIN-WAIT-1/2, SYN-RECV) and closes the socket
 * with ECONNABORTED; a time-wait socket is removed. Returns false when no such socket exists
 * (closed meanwhile, or its cookie differs).
 */
export function destroyTcpSocket(netnsPath: string, id: TcpSocketId): boolean {
  const text = (a: string | Buffer) => (typeof a === 'string' ? a : a.length === 16 ? decodeAddr(a) : a.join('.'));
  const target = `tcp ${text(id.localAddress)}:${id.localPort} -> ${text(id.remoteAddress)}:${id.remotePort} in ${netnsPath}`;
  if (id.family !== 4 && id.family !== 6) throw invalidArgument('sock_diag destroy', target, `family must be 4 or 6, got ${String(id.family)}`);
  const local = addr16(id.family, id.localAddress, target);
  const remote = addr16(id.family, id.remoteAddress, target);
  for (const p of [id.localPort, id.remotePort])
    if (!Number.isInteger(p) || p < 1 || p > 65535) throw invalidArgument('sock_diag destroy', target, `ports must be 1..65535, got ${String(p)}`);
  return withNetns(netnsPath, () => native.tcpDestroy(id.family, local, id.localPort, remote, id.remotePort, id.cookie ?? 0n, target));
}

function addr16(family: 4 | 6, addr: string | Buffer, target: string): Buffer {
  const out = Buffer.alloc(16);
  const bytes = typeof addr !== 'string' ? rawBytes(family, addr) : family === 4 ? ipv4Bytes(addr) : ipv6Bytes(addr);
  if (!bytes) throw invalidArgument('sock_diag destroy', target, `not an IPv${family} address: ${typeof addr === 'string' ? JSON.stringify(addr) : addr.toString('hex')}`);
  bytes.copy(out);
  return out;
}

const V4_MAPPED = Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);

function rawBytes(family: 4 | 6, b: Buffer): Buffer | null {
  if (family === 6) return b.length === 16 ? b : null;
  if (b.length === 4) return b;
  return b.length === 16 && b.subarray(0, 12).equals(V4_MAPPED) ? b.subarray(12) : null;
}

function ipv4Bytes(text: string): Buffer | null {
  if (!isIPv4(text)) return null;
  return Buffer.from(text.split('.').map(Number));
}

function ipv6Bytes(text: string): Buffer | null {
  if (!isIPv6(text)) return null;
  return encodeAddr(text);
}
