// One workload's in-pod proxy, as ztunnel opens it in the netns it was handed by ZDS
// (istio/ztunnel src/inpod/, src/proxy.rs, src/socket.rs): listeners on [::]:15001 (outbound),
// [::]:15006 (plaintext inbound), [::]:15008 (HBONE) and DNS on localhost:15053; every socket
// SO_MARK 1337 and SO_REUSEPORT, listeners IP(V6)_TRANSPARENT. The original destination comes
// from SO_ORIGINAL_DST, else from the accepted socket's local address (sk_assign/TPROXY delivery).
// The TCP legs run in a native relay engine (relay-engine.ts, the testbed's own addon: one thread inside the pod
// netns, as ztunnel's workers run natively), so that the stand-in is not what bounds a benchmark:
//  - 15001 → a tunnel to <original dst>:15008 carrying the original destination (an HBONE-like
//    CONNECT with a light framing instead of HTTP/2, no mTLS; tunnels pooled per destination, as
//    ztunnel pools its HBONE connections), socket marked 1337; nothing on 15008 there → passthrough;
//  - 15008 → the app at the CONNECT authority, from the client's address (transparent bind);
//  - 15006 → the app at the original destination, from the client's address.
// It logs one JSON line per connection (client, original destination, how it was learnt, where
// it went). DNS (light) stays here in Node.
// Runs inside the stand-in process only (it needs @shunt/libbpf's addon).
import * as fs from 'node:fs';
import * as net from 'node:net';
import type * as LibNs from '@shunt/libbpf';
import { startRelay, type Relay, type RelayListener } from './relay-engine';
import type { ZtEndpoint, ZtunnelLeg, ZtunnelLogEntry, ZtunnelLogInput } from './log';

type Lib = typeof LibNs;

export const ZTUNNEL_MARK = 1337;
export const ZTUNNEL_INPOD_PORTS = { outbound: 15001, inbound: 15006, hbone: 15008, dns: 15053 } as const;

const plain = (a: string): string => (a.startsWith('::ffff:') && a.includes('.') ? a.slice(7) : a);
const ep = (e: { address: string; port: number }): ZtEndpoint => ({ address: plain(e.address), port: e.port });

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
  private relay: Relay | undefined;
  private readonly dns: LibNs.MessageSocket[] = [];
  private readonly servers: net.Server[] = [];
  private closed = false;
  readonly netnsIno: number;

  constructor(
    private readonly lib: Lib,
    readonly uid: string,
    readonly pod: string,
    /** The netns fd from AddWorkload; owned here, closed on close(). */
    readonly netnsFd: number,
    private readonly log: (e: ZtunnelLogInput) => void,
    /** Where the relay engine appends its per-connection lines (the stand-in's log). */
    private readonly logPath: string,
    private readonly zt: string,
  ) {
    this.netnsIno = fs.fstatSync(netnsFd).ino;
  }

  /** Opens every socket; on any failure closes what it opened and throws (→ a NACK). */
  async start(): Promise<void> {
    const fds: number[] = [];
    try {
      const sockets: Extract<ZtunnelLogEntry, { event: 'listening' }>['sockets'] = [];
      const listeners: RelayListener[] = [];
      for (const [leg, port] of [
        ['outbound', ZTUNNEL_INPOD_PORTS.outbound],
        ['inbound', ZTUNNEL_INPOD_PORTS.inbound],
        ['hbone', ZTUNNEL_INPOD_PORTS.hbone],
      ] as const) {
        const fd = this.listenerFd(port);
        fds.push(fd);
        const info = this.lib.socketInfo(fd);
        sockets.push({ leg, address: this.lib.socketName(fd).address, port, mark: info.mark!, reusePort: !!info.reusePort, transparent: !!info.transparent });
        listeners.push({ fd, leg, port });
      }
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
      // DNS over TCP (captured to the same port): loopback listeners, transparent like ztunnel's
      // other listeners (a captured connection keeps the server it asked as its local address).
      for (const [family, address] of [
        [4, '127.0.0.1'],
        [6, '::1'],
      ] as const) {
        const fd = this.lib.netnsListen({ netns: this.netnsFd, family, mark: ZTUNNEL_MARK, reusePort: true, transparent: true, v6Only: family === 6, bind: { address, port: ZTUNNEL_INPOD_PORTS.dns } });
        fds.push(fd);
        const server = net.createServer((c) => this.dnsTcp(c));
        this.servers.push(server);
        await new Promise<void>((resolve, reject) => {
          server.once('error', reject);
          server.listen({ fd }, () => {
            server.off('error', reject);
            resolve();
          });
        });
        fds.pop(); // Node owns it now
        server.on('error', () => undefined);
        sockets.push({ leg: 'dns', address, port: ZTUNNEL_INPOD_PORTS.dns, mark: ZTUNNEL_MARK, reusePort: true, transparent: true });
      }
      // From here the engine owns the listener fds.
      this.relay = startRelay({
        netns: this.netnsFd,
        listeners,
        logPath: this.logPath,
        zt: this.zt,
        pod: this.pod,
        uid: this.uid,
        mark: ZTUNNEL_MARK,
        tunnelPort: ZTUNNEL_INPOD_PORTS.hbone,
        connectTimeoutMs: 3000,
      });
      fds.length = 0;
      this.log({ event: 'listening', uid: this.uid, pod: this.pod, sockets });
    } catch (err) {
      for (const fd of fds) this.lib.closeFd(fd);
      this.close();
      throw err;
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.relay?.stop();
    for (const d of this.dns) d.close();
    for (const srv of this.servers) srv.close();
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

  private emit(leg: ZtunnelLeg, c: Omit<Extract<ZtunnelLogEntry, { event: 'conn' }>, 'at' | 'zt' | 'event' | 'pod' | 'uid'>): void {
    this.log({ event: 'conn', pod: this.pod, uid: this.uid, ...c, leg });
  }

  /** DNS over TCP: 2-byte length-prefixed messages, each answered REFUSED. */
  private dnsTcp(c: net.Socket): void {
    c.on('error', () => undefined);
    const local = ep({ address: c.localAddress ?? '', port: c.localPort ?? 0 });
    this.emit('dns', { leg: 'dns', client: ep({ address: c.remoteAddress ?? '', port: c.remotePort ?? 0 }), local, origDst: local, how: 'local-address', via: 'dns-reply' });
    let buf = Buffer.alloc(0);
    c.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const q = buf.subarray(2, 2 + buf.readUInt16BE(0));
        buf = buf.subarray(2 + q.length);
        const r = refused(Buffer.from(q));
        if (!r) return void c.destroy();
        const len = Buffer.alloc(2);
        len.writeUInt16BE(r.length);
        c.write(Buffer.concat([len, r]));
      }
      if (buf.length > 65537) c.destroy();
    });
    c.on('end', () => c.end());
    c.setTimeout(10_000, () => c.destroy());
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
}
