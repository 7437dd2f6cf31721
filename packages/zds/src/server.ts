/**
 * The agent's side of ZDS (what istio-cni's node agent does towards ztunnel): listen on the unix
 * SEQPACKET socket, take ztunnel's connection and ZdsHello, send it a snapshot of the workloads
 * we announce (AddWorkload + the netns fd, KeepWorkload when a netns cannot be handed over,
 * then SnapshotSent), and from then on AddWorkload / DelWorkload as pods come and go, each
 * waiting for its Ack.
 *
 * - add() goes to the newest connection; del() to every connection (as istio-cni: an old
 *   ztunnel that is draining must also drop the pod).
 * - Every failure of one workload (no ztunnel, NACK, timeout, netns gone) is a ZdsError with a
 *   reason for that pod; nothing here throws past the caller or crashes the process.
 * - The announced set survives an agent restart in `statePath` (a tmpfs file), so the restarted
 *   agent's snapshot re-announces every live pod at once when ztunnel reconnects, instead of a
 *   partial one that would make ztunnel drop the pods not listed yet.
 */
import { EventEmitter } from 'node:events';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { UnixListener, netnsCookie, type MessageSocket, type PeerCred } from '@shunt/libbpf';
import type { Ack, WorkloadInfo, WorkloadRequest } from './codec';

type Rpc = (req: WorkloadRequest, fds?: number[]) => Promise<Ack>;
import { ZdsConnection, AckTimeout } from './connection';
import { ZdsError } from './errors';

export const DEFAULT_ZDS_SOCKET = '/var/run/ztunnel/ztunnel.sock';

export interface ZdsLogger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface ZdsWorkload {
  uid: string;
  info: WorkloadInfo;
  /** The pod's netns, opened for each AddWorkload (the fd is ours, ztunnel gets a copy). */
  netnsPath: string;
  /** When known, checked before re-announcing from the saved state (a reused /proc/<pid> path is another pod). */
  netnsCookie?: string;
}

export interface ZdsServerOptions {
  socketPath?: string;
  /** Wait for each Ack this long (istio-cni: 5 s). */
  ackTimeoutMs?: number;
  helloTimeoutMs?: number;
  /** Where the announced workloads are kept across restarts; none: not kept. */
  statePath?: string;
  /**
   * Where the live state is written for other processes (`shunt status`): ztunnel connected or
   * not, and each workload's Ack state. Rewritten (coalesced, at most every statusDelayMs) on
   * every change; none: not written.
   */
  statusPath?: string;
  statusDelayMs?: number;
  /** File mode of the socket (ztunnel runs as root; default 0o600). */
  socketMode?: number;
  log?: ZdsLogger;
}

interface Entry {
  w: ZdsWorkload;
  /** Connection id whose Ack made this workload live in ztunnel; undefined: not (yet) acked there. */
  ackedOn?: number;
  /** ztunnel's last NACK reason. */
  nack?: string;
}

export interface ZdsWorkloadStatus {
  uid: string;
  name: string;
  namespace: string;
  acked: boolean;
  error?: string;
}

/** The file ZdsServerOptions.statusPath holds (readZdsStatus reads it back). */
export interface ZdsStatusFile {
  /** The agent process that wrote it, and when. */
  pid: number;
  updatedAt: string;
  socket: string;
  /** false also after the server closed (then `closed` is true). */
  connected: boolean;
  closed: boolean;
  /** When the current ztunnel connection came (past its hello), if any. */
  connectedSince?: string;
  /** The current ztunnel's process (SO_PEERCRED at connect), if connected and readable. */
  ztunnel?: PeerCred;
  workloads: ZdsWorkloadStatus[];
}

/** Reads a status file written by a ZdsServer; undefined if there is none. Throws on a corrupt one, naming it. */
export function readZdsStatus(file: string): ZdsStatusFile | undefined {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  const v = JSON.parse(text) as ZdsStatusFile;
  if (typeof v?.pid !== 'number' || typeof v.connected !== 'boolean' || !Array.isArray(v.workloads)) throw new Error(`${file}: not a ZDS status file`);
  return v;
}

const silent: ZdsLogger = { debug() {}, info() {}, warn() {}, error() {} };

export class ZdsServer extends EventEmitter {
  readonly socketPath: string;
  private readonly ackTimeoutMs: number;
  private readonly helloTimeoutMs: number;
  private readonly log: ZdsLogger;
  private readonly entries = new Map<string, Entry>();
  /** Connections past their hello, oldest first; adds go to the last. */
  private readonly conns: ZdsConnection[] = [];
  private listener: UnixListener | undefined;
  private closed = false;
  private statusTimer: NodeJS.Timeout | undefined;
  private connectedSince = new Map<number, string>();
  /** SO_PEERCRED of each connection, read when it was accepted (the socket may close later). */
  private peers = new Map<number, PeerCred>();

  private constructor(private readonly opts: ZdsServerOptions) {
    super();
    this.socketPath = opts.socketPath ?? DEFAULT_ZDS_SOCKET;
    this.ackTimeoutMs = opts.ackTimeoutMs ?? 5000;
    this.helloTimeoutMs = opts.helloTimeoutMs ?? 5000;
    this.log = opts.log ?? silent;
  }

  /** Loads the saved workloads, then listens (replacing a stale socket file, creating its directory). */
  static start(opts: ZdsServerOptions = {}): ZdsServer {
    const s = new ZdsServer(opts);
    s.loadState();
    fs.mkdirSync(path.dirname(s.socketPath), { recursive: true });
    s.listener = UnixListener.listen(s.socketPath, { mode: opts.socketMode ?? 0o600 });
    s.listener.on('connection', (sock: MessageSocket) => void s.onConnection(sock));
    s.listener.on('error', (e: Error) => s.log.error({ err: e.message, socket: s.socketPath }, 'ZDS listener error'));
    s.log.info({ socket: s.socketPath, saved: s.entries.size }, 'ZDS server listening for ztunnel');
    return s;
  }

  /** A ztunnel is connected and past its hello. */
  get connected(): boolean {
    return this.conns.some((c) => !c.closed);
  }

  /**
   * The process of the current ztunnel connection (SO_PEERCRED, read at accept): where ztunnel
   * runs, e.g. for the tc backend to decide whether its sockets can be spliced. undefined: none
   * connected, or its credentials could not be read (logged).
   */
  ztunnelPeer(): PeerCred | undefined {
    const latest = this.latest();
    return latest ? this.peers.get(latest.id) : undefined;
  }

  status(): ZdsWorkloadStatus[] {
    const latest = this.latest();
    return [...this.entries.values()].map((e) => ({
      uid: e.w.uid,
      name: e.w.info.name,
      namespace: e.w.info.namespace,
      acked: latest !== undefined && e.ackedOn === latest.id,
      ...(e.nack ? { error: e.nack } : {}),
    }));
  }

  /** Whether ztunnel (the current connection) has acked this workload. */
  isAcked(uid: string): boolean {
    const latest = this.latest();
    return latest !== undefined && this.entries.get(uid)?.ackedOn === latest.id;
  }

  /**
   * Announces a workload and waits for ztunnel's Ack. Rejects with ZdsError: NOT_CONNECTED (it is
   * kept, and goes out in the snapshot when ztunnel connects), NACK (ztunnel's error), TIMEOUT,
   * DISCONNECTED, NETNS. Already acked on the current connection with the same netns: no message.
   */
  async add(w: ZdsWorkload): Promise<void> {
    if (this.closed) throw new ZdsError('CLOSED', w.uid, 'the ZDS server is closed');
    const prev = this.entries.get(w.uid);
    const same = prev && prev.w.netnsPath === w.netnsPath && prev.w.netnsCookie === w.netnsCookie;
    // Saved only on change: a restarted agent re-adds every pod, unchanged (no O(pods²) writes).
    const changed = !same || JSON.stringify(prev.w.info) !== JSON.stringify(w.info);
    const entry: Entry = same ? prev : { w };
    entry.w = w;
    this.entries.set(w.uid, entry);
    if (changed) this.saveState();
    const conn = this.latest();
    if (!conn) throw new ZdsError('NOT_CONNECTED', w.uid, `no ztunnel is connected to ${this.socketPath}`);
    await conn.exclusive(async (rpc) => {
      if (this.entries.get(w.uid) !== entry) throw new ZdsError('CLOSED', w.uid, 'removed while waiting to be sent');
      if (entry.ackedOn === conn.id && !entry.nack) return;
      await this.sendAdd(conn, rpc, entry);
    });
  }

  /** Tells every connected ztunnel to drop the workload; forgets it. Never throws for ztunnel's sake. */
  async del(uid: string): Promise<void> {
    const had = this.entries.delete(uid);
    if (had) this.saveState();
    await Promise.all(
      this.conns
        .filter((c) => !c.closed)
        .map(async (c) => {
          try {
            const ack = await c.request({ type: 'del', uid });
            if (ack.error) this.log.warn({ uid, error: ack.error }, 'ztunnel NACKed DelWorkload');
          } catch (err) {
            this.log.warn({ uid, err: (err as Error).message }, 'DelWorkload not acked');
          }
        }),
    );
  }

  /** Drops every announced workload whose uid is not in keep (after the agent's first full sync). */
  async retainOnly(keep: Set<string>): Promise<string[]> {
    const gone = [...this.entries.keys()].filter((uid) => !keep.has(uid));
    for (const uid of gone) await this.del(uid);
    return gone;
  }

  /** Stops listening and closes the connections; the saved state stays for the next agent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.listener?.close();
    for (const c of this.conns) c.close('the agent is stopping');
    this.conns.length = 0;
    if (this.statusTimer) clearTimeout(this.statusTimer);
    this.writeStatus();
  }

  /** Coalesces status writes: many Acks in a burst (an agent start) give one write. */
  private statusChanged(): void {
    if (!this.opts.statusPath || this.statusTimer || this.closed) return;
    this.statusTimer = setTimeout(() => {
      this.statusTimer = undefined;
      this.writeStatus();
    }, this.opts.statusDelayMs ?? 100);
    this.statusTimer.unref();
  }

  private writeStatus(): void {
    const file = this.opts.statusPath;
    if (!file) return;
    const latest = this.latest();
    const since = latest ? this.connectedSince.get(latest.id) : undefined;
    const peer = latest ? this.peers.get(latest.id) : undefined;
    const st: ZdsStatusFile = {
      pid: process.pid,
      updatedAt: new Date().toISOString(),
      socket: this.socketPath,
      connected: !this.closed && this.connected,
      closed: this.closed,
      ...(since ? { connectedSince: since } : {}),
      ...(peer ? { ztunnel: peer } : {}),
      workloads: this.status(),
    };
    try {
      fs.mkdirSync(path.dirname(file), { recursive: true });
      const tmp = `${file}.tmp`;
      fs.writeFileSync(tmp, JSON.stringify(st));
      fs.renameSync(tmp, file);
    } catch (err) {
      this.log.warn({ file, err: (err as Error).message }, 'cannot write the ZDS status file');
    }
  }

  private latest(): ZdsConnection | undefined {
    for (let i = this.conns.length - 1; i >= 0; i--) if (!this.conns[i]!.closed) return this.conns[i];
    return undefined;
  }

  private async onConnection(sock: MessageSocket): Promise<void> {
    const conn = new ZdsConnection(sock, this.ackTimeoutMs);
    try {
      this.peers.set(conn.id, sock.peerCred());
    } catch (err) {
      this.log.warn({ conn: conn.id, err: (err as Error).message }, 'cannot read the ztunnel connection\'s SO_PEERCRED');
    }
    conn.on('close', (reason: string) => {
      this.peers.delete(conn.id);
      const i = this.conns.indexOf(conn);
      if (i >= 0) this.conns.splice(i, 1);
      this.connectedSince.delete(conn.id);
      this.statusChanged();
      this.log.info({ conn: conn.id, reason, connected: this.conns.length }, 'ztunnel disconnected');
      this.emit('disconnected', conn.id, reason);
    });
    let version: number;
    try {
      version = await conn.hello(this.helloTimeoutMs);
    } catch (err) {
      this.log.warn({ conn: conn.id, err: (err as Error).message }, 'ztunnel connection without a valid hello; closed');
      return;
    }
    if (this.closed) return conn.close('the agent is stopping');
    this.conns.push(conn);
    this.connectedSince.set(conn.id, new Date().toISOString());
    this.statusChanged();
    const peer = this.peers.get(conn.id);
    this.log.info({ conn: conn.id, version, workloads: this.entries.size, ...(peer ? { pid: peer.pid, uid: peer.uid } : {}) }, 'ztunnel connected; sending snapshot');
    // Listeners run before the snapshot goes out (synchronously): e.g. the tc backend turns
    // pairing on or off for this ztunnel before it opens its sockets in the pods.
    this.emit('connected', conn.id, peer);
    try {
      const sent = await conn.exclusive((rpc) => this.sendSnapshot(conn, rpc));
      this.log.info({ conn: conn.id, ...sent }, 'snapshot sent to ztunnel');
      this.emit('snapshot', conn.id, sent);
    } catch (err) {
      this.log.warn({ conn: conn.id, err: (err as Error).message }, 'snapshot to ztunnel failed');
    }
  }

  /** Every known workload (Add with its netns, Keep if that cannot be opened), then SnapshotSent. */
  private async sendSnapshot(conn: ZdsConnection, rpc: Rpc): Promise<{ added: number; kept: number; nacked: number; dropped: number }> {
    const out = { added: 0, kept: 0, nacked: 0, dropped: 0 };
    for (const entry of [...this.entries.values()]) {
      if (this.entries.get(entry.w.uid) !== entry) continue;
      try {
        await this.sendAdd(conn, rpc, entry);
        out.added++;
      } catch (err) {
        if (!(err instanceof ZdsError)) throw err;
        if (err.code === 'NACK') out.nacked++;
        else if (err.code === 'NETNS' && err.reason.includes('ENOENT')) {
          // The pod's netns is gone: the pod is dead. Leave it out; SnapshotSent makes ztunnel drop it.
          this.entries.delete(entry.w.uid);
          this.saveState();
          out.dropped++;
        } else if (err.code === 'NETNS') {
          const ack = await rpc({ type: 'keep', uid: entry.w.uid });
          if (ack.error) this.log.warn({ uid: entry.w.uid, error: ack.error }, 'ztunnel NACKed KeepWorkload');
          out.kept++;
        } else throw err;
      }
    }
    const ack = await rpc({ type: 'snapshotSent' });
    if (ack.error) this.log.warn({ error: ack.error }, 'ztunnel NACKed SnapshotSent');
    return out;
  }

  private async sendAdd(conn: ZdsConnection, rpc: Rpc, entry: Entry): Promise<void> {
    const { w } = entry;
    const fd = this.openNetns(w);
    let ack;
    try {
      ack = await rpc({ type: 'add', uid: w.uid, workloadInfo: w.info }, [fd]);
    } catch (err) {
      const e = err as Error;
      throw new ZdsError(e instanceof AckTimeout ? 'TIMEOUT' : 'DISCONNECTED', w.uid, `AddWorkload to ztunnel: ${e.message}`);
    } finally {
      fs.closeSync(fd);
    }
    if (ack.error) {
      entry.nack = ack.error;
      entry.ackedOn = undefined;
      this.statusChanged();
      this.log.warn({ uid: w.uid, pod: `${w.info.namespace}/${w.info.name}`, error: ack.error }, 'ztunnel NACKed AddWorkload');
      throw new ZdsError('NACK', w.uid, `ztunnel refused the workload: ${ack.error}`);
    }
    entry.nack = undefined;
    entry.ackedOn = conn.id;
    this.statusChanged();
    this.log.debug({ uid: w.uid, pod: `${w.info.namespace}/${w.info.name}`, conn: conn.id }, 'ztunnel acked AddWorkload');
  }

  private openNetns(w: ZdsWorkload): number {
    let fd: number;
    try {
      fd = fs.openSync(w.netnsPath, 'r') // libuv opens with O_CLOEXEC;
    } catch (err) {
      throw new ZdsError('NETNS', w.uid, `cannot open netns ${w.netnsPath}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    if (w.netnsCookie !== undefined) {
      let cookie: string;
      try {
        cookie = netnsCookie(w.netnsPath).toString();
      } catch (err) {
        fs.closeSync(fd);
        throw new ZdsError('NETNS', w.uid, `cannot read the cookie of netns ${w.netnsPath}: ${(err as Error).message}`);
      }
      if (cookie !== w.netnsCookie) {
        fs.closeSync(fd);
        throw new ZdsError('NETNS', w.uid, `netns ${w.netnsPath} is another namespace now (cookie ${cookie}, expected ${w.netnsCookie}): ENOENT`);
      }
    }
    return fd;
  }

  private loadState(): void {
    const file = this.opts.statePath;
    if (!file || !fs.existsSync(file)) return;
    try {
      const saved = JSON.parse(fs.readFileSync(file, 'utf8')) as { workloads?: ZdsWorkload[] };
      for (const w of saved.workloads ?? []) {
        if (typeof w?.uid === 'string' && typeof w.netnsPath === 'string' && w.info && typeof w.info.name === 'string') this.entries.set(w.uid, { w });
      }
    } catch (err) {
      // A corrupt file loses the re-announcement, not the agent: pods are re-added as they re-enroll.
      this.log.warn({ file, err: (err as Error).message }, 'cannot read saved ZDS workloads; starting empty');
    }
  }

  private saveState(): void {
    this.statusChanged();
    const file = this.opts.statePath;
    if (!file) return;
    try {
      fs.mkdirSync(path.dirname(file), { recursive: true });
      const tmp = `${file}.tmp`;
      fs.writeFileSync(tmp, JSON.stringify({ workloads: [...this.entries.values()].map((e) => e.w) }));
      fs.renameSync(tmp, file);
    } catch (err) {
      this.log.warn({ file, err: (err as Error).message }, 'cannot save ZDS workloads');
    }
  }
}
