/**
 * Message sockets Node has no handle for: AF_UNIX SOCK_SEQPACKET with SCM_RIGHTS fd passing
 * (ZDS), and datagram fds made natively (UDP from netnsListen). Each open socket has one native
 * reader thread that polls it and delivers messages here (see src/native/unix.cc for why a
 * thread, not libuv's pool). Received fds belong to the receiver: close them (closeFd) or pass
 * them on.
 */
import { EventEmitter } from 'node:events';
import * as fs from 'node:fs';
import { invalidArgument } from './errors';
import { native } from './native';
import type { SocketEndpoint } from './sockets';

export type UnixSocketType = 'seqpacket' | 'stream' | 'dgram';

export interface ReceivedMessage {
  data: Buffer;
  /** fds from SCM_RIGHTS, owned by the receiver now. */
  fds: number[];
  /** MSG_TRUNC / MSG_CTRUNC: the message or its fds did not fit (64 KiB, 16 fds). */
  truncated: boolean;
  /** Sender of a datagram. */
  from?: SocketEndpoint;
}

export interface PeerCred {
  pid: number;
  uid: number;
  gid: number;
}

type ReaderEvent =
  | { type: 'accept'; fd: number }
  | { type: 'message'; data: Buffer; fds: number[]; truncated: boolean; from?: SocketEndpoint }
  | { type: 'end' }
  | { type: 'error'; error: Error };

const MODE = { accept: 0, seqpacket: 1, datagram: 2 } as const;

/**
 * A connected seqpacket socket or a datagram socket.
 * Events: 'message' (ReceivedMessage), 'end' (peer closed; seqpacket), 'error' (Error), 'close'.
 */
export class MessageSocket extends EventEmitter {
  private reader: NativeReader | undefined;
  private closed = false;

  private constructor(
    readonly fd: number,
    kind: 'seqpacket' | 'datagram',
    readonly label: string,
  ) {
    super();
    this.reader = new native.FdReader(fd, MODE[kind], (ev: ReaderEvent) => this.onEvent(ev), label);
  }

  /** Connects to a unix socket path (a unix connect completes or fails at once). */
  static connect(path: string, type: 'seqpacket' | 'dgram' = 'seqpacket'): MessageSocket {
    return new MessageSocket(native.unixConnect(path, type), type === 'dgram' ? 'datagram' : 'seqpacket', `unix ${path}`);
  }
  /** Takes ownership of an fd (closed on close()). */
  static fromFd(fd: number, kind: 'seqpacket' | 'datagram', label = `fd ${fd}`): MessageSocket {
    if (!Number.isInteger(fd) || fd < 0) throw invalidArgument('MessageSocket.fromFd', label, `not an fd: ${String(fd)}`);
    return new MessageSocket(fd, kind, label);
  }
  /** A connected pair (socketpair(AF_UNIX, SOCK_SEQPACKET)), for tests and in-process links. */
  static pair(): [MessageSocket, MessageSocket] {
    const [a, b] = native.unixSocketPair('seqpacket');
    return [new MessageSocket(a, 'seqpacket', 'socketpair[0]'), new MessageSocket(b, 'seqpacket', 'socketpair[1]')];
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /**
   * The peer process as the kernel recorded it when it connected (SO_PEERCRED): pid, uid, gid.
   * pid is in the agent's pid namespace (0 if the peer's is not visible from it). Throws BpfError.
   */
  peerCred(): PeerCred {
    if (this.closed) throw invalidArgument('getsockopt(SO_PEERCRED)', this.label, 'socket is closed');
    return native.unixPeerCred(this.fd, this.label);
  }

  /**
   * Sends one message, with fds as SCM_RIGHTS (the kernel duplicates them: the caller still
   * owns its copies). Never blocks; throws BpfError (EPIPE, EAGAIN when the peer stopped
   * reading, ...). `to` addresses a datagram.
   */
  send(data: Buffer | Uint8Array, fds: number[] = [], to?: SocketEndpoint): number {
    if (this.closed) throw invalidArgument('sendmsg', this.label, 'socket is closed');
    if (!this.reader) throw invalidArgument('sendmsg', this.label, 'socket is closed');
    return this.reader.send(Buffer.isBuffer(data) ? data : Buffer.from(data), fds, this.label, to);
  }

  /** Stops the reader and closes the fd; idempotent. 'close' is emitted once. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.reader?.stop();
    this.reader = undefined;
    setImmediate(() => this.emit('close'));
  }

  /** Whether this socket keeps the event loop alive (it does by default). */
  ref(): this {
    this.reader?.ref();
    return this;
  }
  unref(): this {
    this.reader?.unref();
    return this;
  }

  private onEvent(ev: ReaderEvent): void {
    if (this.closed) {
      if (ev.type === 'message') for (const fd of ev.fds) native.closeRawFd(fd);
      return;
    }
    switch (ev.type) {
      case 'message':
        if (this.listenerCount('message') === 0) for (const fd of ev.fds) native.closeRawFd(fd);
        else this.emit('message', { data: ev.data, fds: ev.fds, truncated: ev.truncated, from: ev.from } satisfies ReceivedMessage);
        return;
      case 'end':
        this.emit('end');
        this.close();
        return;
      case 'error':
        this.emit('error', ev.error);
        this.close();
        return;
      case 'accept':
        native.closeRawFd(ev.fd);
        return;
    }
  }
}

export interface UnixListenOptions {
  type?: 'seqpacket';
  /** File mode of the socket (default 0o600: only root may connect, as istio-cni's). */
  mode?: number;
  backlog?: number;
  /** Remove a stale file at the path first (default true; a socket left by a crashed agent). */
  replace?: boolean;
}

/** A listening unix seqpacket socket. Events: 'connection' (MessageSocket), 'error', 'close'. */
export class UnixListener extends EventEmitter {
  private reader: NativeReader | undefined;
  private closed = false;
  readonly fd: number;

  private constructor(
    readonly path: string,
    opts: UnixListenOptions,
  ) {
    super();
    if (opts.replace !== false) fs.rmSync(path, { force: true });
    this.fd = native.unixListen(path, 'seqpacket', opts.backlog ?? 16, opts.mode ?? 0o600);
    this.reader = new native.FdReader(this.fd, MODE.accept, (ev: ReaderEvent) => this.onEvent(ev), `unix ${path}`);
  }

  static listen(path: string, opts: UnixListenOptions = {}): UnixListener {
    return new UnixListener(path, opts);
  }

  /** Stops accepting, closes the socket and removes its file (connections stay open). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.reader?.stop();
    this.reader = undefined;
    fs.rmSync(this.path, { force: true });
    setImmediate(() => this.emit('close'));
  }

  ref(): this {
    this.reader?.ref();
    return this;
  }
  unref(): this {
    this.reader?.unref();
    return this;
  }

  private onEvent(ev: ReaderEvent): void {
    if (ev.type === 'accept') {
      if (this.closed) return void native.closeRawFd(ev.fd);
      this.emit('connection', MessageSocket.fromFd(ev.fd, 'seqpacket', `unix ${this.path} peer fd ${ev.fd}`));
    } else if (ev.type === 'error' && !this.closed) {
      this.emit('error', ev.error);
    }
  }
}

interface NativeReader {
  stop(): void;
  send(data: Buffer, fds: number[], target: string, to?: SocketEndpoint): number;
  ref(): void;
  unref(): void;
}
