// A minimal in-process stand-in for ztunnel's in-pod sockets, handed pods directly (no ZDS): the
// ambient bench runs every mode with it, and backend-iptables' ambient e2e test uses it to see the
// path. (The ZDS-driven ztunnel stand-in is a separate process.) Per pod netns it opens what
// ztunnel opens (istio/ztunnel src/inpod): 15001 outbound, 15006 plaintext inbound, 15008 HBONE,
// each for v4 and v6, with SO_MARK 1337, SO_REUSEPORT and IP(V6)_TRANSPARENT, and it forwards like
// ztunnel does at L4:
//  - 15001: the original destination from SO_ORIGINAL_DST (else the local address); to an ambient
//    pod over "HBONE" (a plain TCP connection to <dst>:15008 starting with one JSON header line,
//    standing in for HTTP/2 CONNECT), to anything else directly; every upstream socket marked 1337;
//  - 15008: reads the header and connects to the app from the original client's address
//    (transparent bind, the spoofed source whose replies the connmark route must bring back);
//  - 15006: connects to the original destination from the client's address, likewise.
// Every accepted connection is logged with how the original destination was learnt.

import net from 'node:net';
// Loaded on first use, like every @shunt/libbpf use in the testbed: importing the testbed must not need the addon.
type Lib = typeof import('@shunt/libbpf');
let libP: Promise<Lib> | undefined;
const loadLib = (): Promise<Lib> => (libP ??= import('@shunt/libbpf'));
import type { Testbed } from '../testbed';
import type { BenchZtunnel } from './run-bench';

export const ZTUNNEL_MARK = 1337;
export const ZTUNNEL_PORTS = { outbound: 15001, inbound: 15006, hbone: 15008 } as const;

type Addr = { address: string; port: number };

export interface ZtunnelLogRecord {
  pod: string;
  listener: 'outbound' | 'inbound' | 'hbone';
  family: 4 | 6;
  client: Addr;
  local: Addr;
  originalDst: Addr;
  via: 'SO_ORIGINAL_DST' | 'local address' | 'hbone header';
  at: number;
  /** Set when forwarding failed. */
  error?: string;
}

interface PodEntry {
  name: string;
  netnsPath: string;
  ips: string[];
  servers: net.Server[];
  /** Open connections of this pod's sockets (server.close() waits for them). */
  sockets: Set<net.Socket>;
}

function plain(address: string): string {
  return address.startsWith('::ffff:') ? address.slice(7) : address;
}

export class InpodZtunnelLite {
  readonly log: ZtunnelLogRecord[] = [];
  private readonly pods = new Map<string, PodEntry>();
  private readonly sockets = new Set<net.Socket>();
  private lib!: Lib;

  /** Like ztunnel on AddWorkload: opens the pod's sockets in its netns. */
  async add(name: string, netnsPath: string, ips: { v4: string; v6: string }): Promise<void> {
    this.lib = await loadLib();
    const { netnsListen } = this.lib;
    const entry: PodEntry = { name, netnsPath, ips: [ips.v4, ips.v6], servers: [], sockets: new Set() };
    this.pods.set(name, entry);
    for (const family of [4, 6] as const) {
      for (const [listener, port] of Object.entries(ZTUNNEL_PORTS) as [ZtunnelLogRecord['listener'], number][]) {
        const fd = netnsListen({
          netns: netnsPath,
          family,
          mark: ZTUNNEL_MARK,
          reusePort: true,
          reuseAddr: true,
          transparent: true,
          ...(family === 6 ? { v6Only: true } : {}),
          bind: { address: family === 4 ? '0.0.0.0' : '::', port },
        });
        const server = net.createServer((s) => this.accept(entry, listener, family, s));
        await new Promise<void>((resolve, reject) => server.once('error', reject).listen({ fd }, () => resolve()));
        entry.servers.push(server);
      }
    }
  }

  /** Like ztunnel on DelWorkload: closes the pod's listeners. */
  async remove(name: string): Promise<void> {
    const e = this.pods.get(name);
    if (!e) return;
    this.pods.delete(name);
    const closed = Promise.all(e.servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
    for (const s of e.sockets) s.destroy();
    await closed;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    for (const name of [...this.pods.keys()]) await this.remove(name);
  }

  records(pod: string, since = 0): ZtunnelLogRecord[] {
    return this.log.filter((r) => r.pod === pod && r.at >= since);
  }

  /** Polls (bounded) until `want` records of the pod match. */
  async waitRecords(pod: string, filter: (r: ZtunnelLogRecord) => boolean, want = 1, timeoutMs = 5000): Promise<ZtunnelLogRecord[]> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const got = this.log.filter((r) => r.pod === pod && filter(r));
      if (got.length >= want || Date.now() > until) return got;
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  private isAmbient(address: string): boolean {
    return [...this.pods.values()].some((p) => p.ips.includes(address));
  }

  private track(pod: PodEntry, s: net.Socket): net.Socket {
    this.sockets.add(s);
    pod.sockets.add(s);
    s.on('close', () => {
      this.sockets.delete(s);
      pod.sockets.delete(s);
    });
    s.on('error', () => s.destroy());
    return s;
  }

  private accept(pod: PodEntry, listener: ZtunnelLogRecord['listener'], family: 4 | 6, s: net.Socket): void {
    this.track(pod, s).pause();
    const client = { address: plain(s.remoteAddress ?? ''), port: s.remotePort ?? 0 };
    const local = { address: plain(s.localAddress ?? ''), port: s.localPort ?? 0 };
    if (listener === 'hbone') {
      let buf = Buffer.alloc(0);
      const onData = (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        const nl = buf.indexOf(10);
        if (nl < 0) return;
        s.off('data', onData);
        s.pause();
        let header: { dst: Addr; client: Addr };
        try {
          header = JSON.parse(buf.subarray(0, nl).toString('utf8')) as { dst: Addr; client: Addr };
        } catch {
          s.destroy();
          return;
        }
        const rec = this.record({ pod: pod.name, listener, family, client: header.client, local, originalDst: header.dst, via: 'hbone header' });
        if (!pod.ips.includes(header.dst.address)) return this.fail(rec, s, `hbone target ${header.dst.address} is not this pod`);
        void this.forward(rec, s, pod, family, header.dst, header.client.address, buf.subarray(nl + 1));
      };
      s.on('data', onData);
      s.resume();
      return;
    }
    let dst: Addr;
    let via: ZtunnelLogRecord['via'] = 'SO_ORIGINAL_DST';
    try {
      dst = this.lib.originalDst(this.lib.fdOf(s), family);
      dst = { address: plain(dst.address), port: dst.port };
    } catch {
      dst = local;
      via = 'local address';
    }
    const rec = this.record({ pod: pod.name, listener, family, client, local, originalDst: dst, via });
    if (listener === 'inbound') {
      void this.forward(rec, s, pod, family, dst, client.address, Buffer.alloc(0));
    } else if (this.isAmbient(dst.address)) {
      const header = Buffer.from(`${JSON.stringify({ dst, client })}\n`);
      void this.forward(rec, s, pod, family, { address: dst.address, port: ZTUNNEL_PORTS.hbone }, undefined, header);
    } else {
      void this.forward(rec, s, pod, family, dst, undefined, Buffer.alloc(0));
    }
  }

  private record(r: Omit<ZtunnelLogRecord, 'at'>): ZtunnelLogRecord {
    const rec = { ...r, at: Date.now() };
    this.log.push(rec);
    return rec;
  }

  private fail(rec: ZtunnelLogRecord, s: net.Socket, why: string): void {
    rec.error = why;
    s.destroy();
  }

  /** Upstream connection from the pod netns, marked like ztunnel's; from `spoofSource` when given (transparent bind). */
  private async forward(rec: ZtunnelLogRecord, down: net.Socket, pod: PodEntry, family: 4 | 6, to: Addr, spoofSource: string | undefined, first: Buffer): Promise<void> {
    let fd: number;
    try {
      fd = await this.lib.netnsConnect({
        netns: pod.netnsPath,
        family,
        mark: ZTUNNEL_MARK,
        to,
        timeoutMs: 3000,
        ...(spoofSource ? { transparent: true, bind: { address: spoofSource, port: 0 } } : {}),
      });
    } catch (e) {
      return this.fail(rec, down, (e as Error).message);
    }
    if (down.destroyed) {
      this.lib.closeFd(fd);
      return;
    }
    const up = this.track(pod, new net.Socket({ fd, readable: true, writable: true }));
    if (first.length) up.write(first);
    down.pipe(up);
    up.pipe(down);
    down.resume();
  }
}

/** The stand-in as the ambient bench's ztunnel: pods are added after the mode's redirect is in. */
export function createBenchZtunnel(): BenchZtunnel {
  const zt = new InpodZtunnelLite();
  return {
    async add(tb: Testbed, pod: string) {
      const p = tb.pod(pod);
      await zt.add(pod, p.netnsPath, { v4: p.ipv4, v6: p.ipv6 });
    },
    async remove(_tb: Testbed, pod: string) {
      await zt.remove(pod);
    },
    async close() {
      await zt.close();
    },
  };
}
