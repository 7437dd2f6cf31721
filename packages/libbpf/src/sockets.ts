/**
 * Inet sockets made inside a given network namespace with the options ztunnel uses
 * (SO_MARK, SO_REUSEPORT, IP(V6)_TRANSPARENT, IPV6_V6ONLY), which Node's net/dgram cannot
 * set. Each call returns a plain fd: hand it to Node (`net.createServer().listen({fd})`,
 * `new net.Socket({fd})`), which then owns and closes it, or to MessageSocket.fromFd for UDP.
 */
import type * as net from 'node:net';
import { invalidArgument } from './errors';
import { native } from './native';

export interface SocketEndpoint {
  family: 4 | 6;
  address: string;
  port: number;
}

export interface InetSocketOptions {
  /** The netns to create the socket in: a path (/var/run/netns/x, /proc/<pid>/ns/net) or an open fd. Default: this thread's. */
  netns?: string | number;
  family: 4 | 6;
  protocol?: 'tcp' | 'udp';
  /** SO_MARK (needs CAP_NET_ADMIN). */
  mark?: number;
  reuseAddr?: boolean;
  reusePort?: boolean;
  /** IP_TRANSPARENT (v4) / IPV6_TRANSPARENT (v6): accept for, or bind to, non-local addresses. */
  transparent?: boolean;
  /** IPV6_V6ONLY; undefined leaves the system default (net.ipv6.bindv6only). */
  v6Only?: boolean;
  noDelay?: boolean;
  bind?: { address?: string; port?: number };
}

function target(opts: InetSocketOptions, what: string): string {
  const ns = opts.netns === undefined ? '' : ` in netns ${String(opts.netns)}`;
  return `${what} ${opts.protocol ?? 'tcp'}${opts.family}${opts.bind ? ` ${opts.bind.address ?? '*'}:${opts.bind.port ?? 0}` : ''}${ns}`;
}

function check(opts: InetSocketOptions, op: string): void {
  if (opts.family !== 4 && opts.family !== 6) throw invalidArgument(op, target(opts, 'socket'), `family must be 4 or 6, got ${String(opts.family)}`);
  if (opts.mark !== undefined && (!Number.isInteger(opts.mark) || opts.mark < 0 || opts.mark > 0x7fffffff))
    throw invalidArgument(op, target(opts, 'socket'), `mark must be an integer 0..2^31-1, got ${String(opts.mark)}`);
  const port = opts.bind?.port;
  if (port !== undefined && (!Number.isInteger(port) || port < 0 || port > 65535)) throw invalidArgument(op, target(opts, 'socket'), `bad bind port ${String(port)}`);
}

function nativeOpts(opts: InetSocketOptions): Record<string, unknown> {
  return {
    netns: opts.netns,
    family: opts.family,
    udp: opts.protocol === 'udp',
    mark: opts.mark,
    reuseAddr: opts.reuseAddr,
    reusePort: opts.reusePort,
    transparent: opts.transparent,
    v6Only: opts.v6Only,
    noDelay: opts.noDelay,
    bindAddress: opts.bind?.address,
    bindPort: opts.bind?.port,
  };
}

/** A listening TCP socket (or a bound UDP socket when protocol is 'udp'); returns its fd. */
export function netnsListen(opts: InetSocketOptions & { backlog?: number }): number {
  check(opts, 'netnsListen');
  const t = target(opts, 'listener');
  const r = native.inetSocket({ ...nativeOpts(opts), listen: opts.protocol === 'udp' ? -1 : (opts.backlog ?? 511) }, t);
  return r.fd;
}

/**
 * A TCP socket connected to `to`, created in the netns with the given options and bind
 * (bind to a non-local address with `transparent: true` to spoof the source, as ztunnel does).
 * The connect runs non-blocking; its completion is awaited on a worker thread for at most
 * timeoutMs (default 5000). Rejects with BpfError (ECONNREFUSED, ETIMEDOUT, ...), fd closed.
 */
export async function netnsConnect(opts: InetSocketOptions & { to: { address: string; port: number }; timeoutMs?: number }): Promise<number> {
  check(opts, 'netnsConnect');
  const t = `${target(opts, 'connection')} to ${opts.to.address}:${opts.to.port}`;
  const r = native.inetSocket({ ...nativeOpts(opts), protocol: undefined, udp: false, connectAddress: opts.to.address, connectPort: opts.to.port }, t);
  if (!r.inProgress) return r.fd;
  try {
    await native.waitConnect(r.fd, opts.timeoutMs ?? 5000, t);
  } catch (err) {
    native.closeRawFd(r.fd);
    throw err;
  }
  return r.fd;
}

/** getsockname(): for a transparently accepted connection this is the original destination. */
export function socketName(fd: number): SocketEndpoint {
  return native.getSockName(fd) as SocketEndpoint;
}
/** getpeername(). */
export function peerName(fd: number): SocketEndpoint {
  return native.getPeerName(fd) as SocketEndpoint;
}

export interface SocketInfo {
  /** 4, 6, or 0 for AF_UNIX. */
  family: number;
  type: 'stream' | 'dgram' | 'seqpacket' | 'other';
  mark?: number;
  reusePort?: boolean;
  transparent?: boolean;
  v6Only?: boolean;
  listening?: boolean;
}
/** The options actually set on a socket, read back with getsockopt. */
export function socketInfo(fd: number): SocketInfo {
  return native.socketInfo(fd) as unknown as SocketInfo;
}

/** Closes a raw fd this process owns (one not yet handed to Node). */
export function closeFd(fd: number): void {
  native.closeRawFd(fd);
}

/** The fd under a Node socket or server (for getsockopt/getsockname); throws when it has none. */
export function fdOf(s: net.Socket | net.Server): number {
  const fd = (s as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) throw invalidArgument('fdOf', 'socket', 'the socket has no fd (closed, or not a TCP/pipe handle)');
  return fd;
}
