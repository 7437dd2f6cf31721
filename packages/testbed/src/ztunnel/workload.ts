// One workload's in-pod proxy, as ztunnel opens it in the netns it was handed by ZDS
// (istio/ztunnel src/inpod/, src/proxy.rs, src/socket.rs): listeners on [::]:15001 (outbound),
// [::]:15006 (plaintext inbound), [::]:15008 (HBONE) and DNS on localhost:15053; every socket
// SO_MARK 1337 and SO_REUSEPORT, listeners IP(V6)_TRANSPARENT. The original destination comes
// from SO_ORIGINAL_DST, else from the accepted socket's local address (sk_assign/TPROXY delivery).
// Forwarding, at L4 like ztunnel:
//  - 15001 → HTTP/2 CONNECT to <original dst>:15008 carrying the original destination as
//    :authority (HBONE without mTLS), socket marked 1337; no HBONE listener there → passthrough.
//  - 15008 → the app at the CONNECT authority, from the client's address (transparent bind).
//  - 15006 → the app at the original destination, from the client's address.
// Runs inside the stand-in process only (it needs @shunt/libbpf's addon).
import * as fs from 'node:fs';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import type * as LibNs from '@shunt/libbpf';
import type { OrigDstHow, ZtEndpoint, ZtunnelLeg, ZtunnelLogEntry, ZtunnelLogInput } from './log';

type Lib = typeof LibNs;

export const ZTUNNEL_MARK = 1337;
export const ZTUNNEL_INPOD_PORTS = { outbound: 15001, inbound: 15006, hbone: 15008, dns: 15053 } as const;

type ConnLog = Omit<Extract<ZtunnelLogEntry, { event: 'conn' }>, 'at' | 'zt' | 'event' | 'pod' | 'uid'>;

// Large HTTP/2 windows so one tunnel is not flow-control bound on a bulk transfer.
const H2_SETTINGS: http2.Settings = { initialWindowSize: 4 * 1024 * 1024 };
const H2_SESSION_WINDOW = 32 * 1024 * 1024;

const plain = (a: string): string => (a.startsWith('::ffff:') && a.includes('.') ? a.slice(7) : a);
const fam = (a: string): 4 | 6 => (net.isIPv4(a) ? 4 : 6);
const bracket = (a: string): string => (fam(a) === 6 ? `[${a}]` : a);
const ep = (e: { address: string; port: number }): ZtEndpoint => ({ address: plain(e.address), port: e.port });

/** "1.2.3.4:80" / "[2001:db8::1]:80" → endpoint, or undefined. */
export function parseAuthority(s: string | undefined): ZtEndpoint | undefined {
  const m = /^\[([0-9a-fA-F:.]+)\]:(\d+)$/.exec(s ?? '') ?? /^([0-9.]+):(\d+)$/.exec(s ?? '');
  if (!m || !net.isIP(m[1]!)) return undefined;
  const port = Number(m[2]);
  return port > 0 && port < 65536 ? { address: m[1]!, port } : undefined;
}

/** A DNS REFUSED answer to a query (the stand-in does not resolve; real ztunnel would forward). */
function refused(q: Buffer): Buffer | undefined {
  if (q.length < 12) return undefined;
  let off = 12;
  for (let i = 0; i < 128 && off < q.length && q[off] !== 0; i++) off += q[off]! + 1;
  off += 5; // root label + qtype + qclass
  if (off > q.length) return undefined;
  const r = Buffer.from(q.subarray(0, off));
  r[2] = 0x80 | (q[2]! & 0x79); // QR, opcode, RD
  r[3] = 0x05; // REFUSED
  r.writeUInt16BE(1, 4);
  r.fill(0, 6, 12);
  return r;
}

export class WorkloadProxy {
  private readonly servers: net.Server[] = [];
  private readonly dns: LibNs.MessageSocket[] = [];
  private readonly live = new Set<{ destroy(): void }>();
  /** Pooled HBONE sessions by destination address. */
  private readonly sessions = new Map<string, Promise<{ session: http2.ClientHttp2Session; upstreamSource: ZtEndpoint }>>();
  private closed = false;
  readonly netnsIno: number;

  constructor(
    private readonly lib: Lib,
    readonly uid: string,
    readonly pod: string,
    /** The netns fd from AddWorkload; owned here, closed on close(). */
    readonly netnsFd: number,
    private readonly log: (e: ZtunnelLogInput) => void,
  ) {
    this.netnsIno = fs.fstatSync(netnsFd).ino;
  }

  /** Opens every socket; on any failure closes what it opened and throws (→ a NACK). */
  async start(): Promise<void> {
    try {
      const sockets: Extract<ZtunnelLogEntry, { event: 'listening' }>['sockets'] = [];
      const listen = async (leg: ZtunnelLeg, port: number, server: net.Server) => {
        const fd = this.listenerFd(port);
        const info = this.lib.socketInfo(fd);
        sockets.push({ leg, address: this.lib.socketName(fd).address, port, mark: info.mark!, reusePort: !!info.reusePort, transparent: !!info.transparent });
        this.servers.push(server);
        await new Promise<void>((resolve, reject) => {
          server.once('error', reject);
          server.listen({ fd }, () => {
            server.off('error', reject);
            resolve();
          });
        });
        server.on('error', () => undefined); // accept errors (EMFILE…) must not kill the process
      };
      await listen('outbound', ZTUNNEL_INPOD_PORTS.outbound, net.createServer((s) => void this.outbound(s)));
      await listen('inbound', ZTUNNEL_INPOD_PORTS.inbound, net.createServer((s) => void this.inbound(s)));
      const h2 = http2.createServer({ settings: H2_SETTINGS });
      h2.on('stream', (stream, headers) => void this.hbone(stream, headers));
      // The raw socket, before HTTP/2 wraps it (the session's socket proxy refuses setNoDelay).
      h2.on('connection', (c: net.Socket) => c.setNoDelay(true));
      h2.on('session', (s) => {
        s.once('connect', () => s.setLocalWindowSize(H2_SESSION_WINDOW));
        this.live.add(s);
        s.on('close', () => this.live.delete(s));
        s.on('error', () => undefined);
      });
      await listen('hbone', ZTUNNEL_INPOD_PORTS.hbone, h2);
      for (const [family, address] of [
        [4, '127.0.0.1'],
        [6, '::1'],
      ] as const) {
        const fd = this.lib.netnsListen({ netns: this.netnsFd, family, protocol: 'udp', mark: ZTUNNEL_MARK, reusePort: true, bind: { address, port: ZTUNNEL_INPOD_PORTS.dns } });
        const sock = this.lib.MessageSocket.fromFd(fd, 'datagram', `dns ${address} in ${this.pod}`);
        sock.on('message', (m: LibNs.ReceivedMessage) => this.dnsQuery(sock, m, { address, port: ZTUNNEL_INPOD_PORTS.dns }));
        sock.on('error', () => undefined);
        this.dns.push(sock);
        sockets.push({ leg: 'dns', address, port: ZTUNNEL_INPOD_PORTS.dns, mark: ZTUNNEL_MARK, reusePort: true, transparent: false });
      }
      this.log({ event: 'listening', uid: this.uid, pod: this.pod, sockets });
    } catch (err) {
      this.close();
      throw err;
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const s of this.servers) s.close();
    for (const d of this.dns) d.close();
    for (const l of this.live) l.destroy();
    try {
      fs.closeSync(this.netnsFd);
    } catch {
      /* already closed */
    }
  }

  /** Dual-stack [::]:port like ztunnel's in-pod listeners. */
  private listenerFd(port: number): number {
    return this.lib.netnsListen({
      netns: this.netnsFd,
      family: 6,
      v6Only: false,
      mark: ZTUNNEL_MARK,
      reusePort: true,
      transparent: true,
      bind: { address: '::', port },
    });
  }

  private track<T extends { destroy(): void; once(ev: 'close', f: () => void): unknown }>(s: T): T {
    this.live.add(s);
    s.once('close', () => this.live.delete(s));
    return s;
  }

  private accepted(sock: net.Socket): { client: ZtEndpoint; local: ZtEndpoint; origDst: ZtEndpoint; how: OrigDstHow } {
    const fd = this.lib.fdOf(sock);
    const local = ep(this.lib.socketName(fd));
    const client = ep(this.lib.peerName(fd));
    try {
      return { client, local, origDst: ep(this.lib.originalDst(fd, fam(local.address))), how: 'SO_ORIGINAL_DST' };
    } catch {
      // No NAT entry: delivered as is (sk_assign / TPROXY): the local address is the destination.
      return { client, local, origDst: local, how: 'local-address' };
    }
  }

  private emit(leg: ZtunnelLeg, c: ConnLog): void {
    this.log({ event: 'conn', pod: this.pod, uid: this.uid, ...c, leg });
  }

  /** A socket in the pod netns, marked, optionally from a spoofed (non-local) source. */
  private async connectOut(to: ZtEndpoint, from?: string): Promise<net.Socket> {
    const fd = await this.lib.netnsConnect({
      netns: this.netnsFd,
      family: fam(to.address),
      mark: ZTUNNEL_MARK,
      noDelay: true,
      ...(from ? { transparent: true, bind: { address: from, port: 0 } } : {}),
      to,
      timeoutMs: 3000,
    });
    return new net.Socket({ fd, readable: true, writable: true }).setNoDelay(true);
  }

  private async outbound(sock: net.Socket): Promise<void> {
    // A proxy forwards what it has at once (Nagle + delayed ACKs would add ~40 ms per exchange).
    sock.setNoDelay(true);
    this.track(sock);
    sock.on('error', () => undefined);
    sock.pause();
    let a;
    try {
      a = this.accepted(sock);
    } catch (err) {
      sock.destroy();
      return;
    }
    const base: ConnLog = { leg: 'outbound', ...a };
    let tunnel: { session: http2.ClientHttp2Session; upstreamSource: ZtEndpoint } | undefined;
    try {
      tunnel = await this.hboneSession(a.origDst.address);
    } catch (err) {
      if ((err as { code?: string }).code !== 'ECONNREFUSED') return this.fail(sock, base, err);
      // Not a mesh workload (nothing on 15008): ztunnel passes such traffic through.
      let tcp: net.Socket;
      try {
        tcp = await this.connectOut(a.origDst);
      } catch (e2) {
        return this.fail(sock, { ...base, via: 'passthrough' }, e2);
      }
      this.track(tcp);
      tcp.on('error', () => sock.destroy());
      this.emit('outbound', { ...base, via: 'passthrough', upstreamSource: ep({ address: tcp.localAddress ?? '', port: tcp.localPort ?? 0 }) });
      // On close, end (not destroy) the other side: what it still has to send must arrive.
      sock.on('close', () => tcp.destroy());
      tcp.on('close', () => sock.end());
      sock.pipe(tcp).pipe(sock);
      sock.resume();
      return;
    }
    this.connectStream(sock, base, tunnel, true);
  }

  /**
   * One CONNECT stream on the pooled HBONE session to the destination (ztunnel pools its HBONE
   * connections per destination too). A session that died before answering is replaced once.
   */
  private connectStream(sock: net.Socket, base: ConnLog, tunnel: { session: http2.ClientHttp2Session; upstreamSource: ZtEndpoint }, retry: boolean): void {
    const { session, upstreamSource } = tunnel;
    let answered = false;
    let req: http2.ClientHttp2Stream;
    const retryOrFail = (why: string): void => {
      if (answered) return void sock.destroy();
      answered = true;
      this.sessions.delete(base.origDst.address);
      if (!retry) return this.fail(sock, { ...base, via: 'hbone', upstreamSource }, new Error(why));
      this.hboneSession(base.origDst.address).then(
        (t) => this.connectStream(sock, base, t, false),
        (e: Error) => this.fail(sock, { ...base, via: 'hbone', upstreamSource }, e),
      );
    };
    try {
      req = session.request({ ':method': 'CONNECT', ':authority': `${bracket(base.origDst.address)}:${base.origDst.port}` }, { endStream: false });
    } catch (err) {
      return retryOrFail((err as Error).message);
    }
    req.on('error', (e: Error) => retryOrFail(e.message));
    req.once('response', (h) => {
      answered = true;
      const status = Number(h[':status']);
      if (status !== 200) {
        this.emit('outbound', { ...base, via: 'hbone', upstreamSource, error: `HBONE CONNECT answered ${status}` });
        sock.destroy();
        req.close();
        return;
      }
      this.emit('outbound', { ...base, via: 'hbone', upstreamSource });
      sock.pipe(req).pipe(sock);
      sock.resume();
    });
    req.on('close', () => {
      if (!answered) retryOrFail('HBONE stream closed before an answer');
      else sock.end();
    });
    sock.on('close', () => req.close());
  }

  /** The HBONE session to <dst>:15008 from this pod's netns (mark 1337), opened on first use. */
  private hboneSession(dst: string): Promise<{ session: http2.ClientHttp2Session; upstreamSource: ZtEndpoint }> {
    let p = this.sessions.get(dst);
    if (!p) {
      p = this.connectOut({ address: dst, port: ZTUNNEL_INPOD_PORTS.hbone }).then(
        (tcp) =>
          new Promise((resolve, reject) => {
            const upstreamSource = ep({ address: tcp.localAddress ?? '', port: tcp.localPort ?? 0 });
            const session = http2.connect(`http://${bracket(dst)}:${ZTUNNEL_INPOD_PORTS.hbone}`, { createConnection: () => tcp, settings: H2_SETTINGS });
            this.track(session);
            const drop = (): void => {
              if (this.sessions.get(dst) === p) this.sessions.delete(dst);
            };
            session.on('close', drop);
            session.on('goaway', drop);
            session.on('error', (e: Error) => {
              drop();
              reject(e);
            });
            session.once('connect', () => {
              session.setLocalWindowSize(H2_SESSION_WINDOW);
              resolve({ session, upstreamSource });
            });
          }),
      );
      const mine = p;
      this.sessions.set(dst, mine);
      mine.catch(() => {
        if (this.sessions.get(dst) === mine) this.sessions.delete(dst);
      });
    }
    return p;
  }

  private async hbone(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): Promise<void> {
    stream.on('error', () => undefined);
    const s = stream.session?.socket;
    const client = ep({ address: s?.remoteAddress ?? '', port: s?.remotePort ?? 0 });
    const local = ep({ address: s?.localAddress ?? '', port: s?.localPort ?? 0 });
    const target = parseAuthority(headers[':authority']);
    if (headers[':method'] !== 'CONNECT' || !target) {
      stream.respond({ ':status': 400 });
      stream.end();
      this.emit('hbone', { leg: 'hbone', client, local, origDst: target ?? local, how: 'hbone-authority', error: `bad HBONE request ${String(headers[':method'])} ${String(headers[':authority'])}` });
      return;
    }
    const base: ConnLog = { leg: 'hbone', client, local, origDst: target, how: 'hbone-authority', via: 'app' };
    let app: net.Socket;
    try {
      // From the client's address, as ztunnel does (the backend brings the replies back to us).
      app = await this.connectOut(target, fam(client.address) === fam(target.address) ? client.address : undefined);
    } catch (err) {
      stream.respond({ ':status': 503 });
      stream.end();
      this.emit('hbone', { ...base, error: (err as Error).message });
      return;
    }
    this.track(app);
    app.on('error', () => stream.destroy());
    this.emit('hbone', { ...base, upstreamSource: ep({ address: app.localAddress ?? '', port: app.localPort ?? 0 }) });
    stream.respond({ ':status': 200 });
    stream.pipe(app).pipe(stream);
    stream.on('close', () => app.destroy());
    app.on('close', () => {
      if (!stream.destroyed) stream.end();
    });
  }

  private async inbound(sock: net.Socket): Promise<void> {
    sock.setNoDelay(true);
    this.track(sock);
    sock.on('error', () => undefined);
    sock.pause();
    let a;
    try {
      a = this.accepted(sock);
    } catch {
      sock.destroy();
      return;
    }
    const base: ConnLog = { leg: 'inbound', ...a, via: 'app' };
    let app: net.Socket;
    try {
      app = await this.connectOut(a.origDst, fam(a.client.address) === fam(a.origDst.address) ? a.client.address : undefined);
    } catch (err) {
      return this.fail(sock, base, err);
    }
    this.track(app);
    app.on('error', () => sock.destroy());
    this.emit('inbound', { ...base, upstreamSource: ep({ address: app.localAddress ?? '', port: app.localPort ?? 0 }) });
    sock.on('close', () => app.destroy());
    app.on('close', () => sock.end());
    sock.pipe(app).pipe(sock);
    sock.resume();
  }

  private dnsQuery(sock: LibNs.MessageSocket, m: LibNs.ReceivedMessage, local: ZtEndpoint): void {
    if (!m.from) return;
    this.emit('dns', { leg: 'dns', client: ep(m.from), local, origDst: local, how: 'local-address', via: 'dns-reply' });
    const r = refused(m.data);
    try {
      if (r) sock.send(r, [], m.from);
    } catch {
      /* client gone */
    }
  }

  private fail(sock: net.Socket, base: ConnLog, err: unknown): void {
    this.emit(base.leg, { ...base, error: (err as Error).message });
    sock.destroy();
  }
}
