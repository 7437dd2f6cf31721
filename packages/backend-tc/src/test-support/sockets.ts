/**
 * Sockets for the tests, created by this process inside the testbed's pod netns with
 * @shunt/libbpf's netnsListen/netnsConnect (the zds helper's shared primitive):
 *  - ZtunnelSockets: listeners with ztunnel's options (SO_MARK 1337, SO_REUSEPORT,
 *    IP_TRANSPARENT) on 15001/15006/15008, v4 and v6-only, recording every accepted connection's
 *    local and peer address (the local address is the original destination under sk_assign);
 *  - Service: a plain app listener that answers a fixed word, recording its connections;
 *  - talk(): connect from a netns (as the app, or as ztunnel with mark/transparent/spoofed
 *    source), read the answer, bounded in time.
 */
import * as net from 'node:net';
import { netnsConnect, netnsListen, type InetSocketOptions } from '@shunt/libbpf';

export interface Accepted {
  listener: string;
  local: { address: string; port: number };
  peer: { address: string; port: number };
}

const unmap = (a: string | undefined): string => (a ?? '').replace(/^::ffff:/, '');

/** A listener whose every connection is recorded and answered with `${name}\n`. */
export class Service {
  readonly accepted: Accepted[] = [];
  private readonly servers: net.Server[] = [];
  private readonly conns = new Set<net.Socket>();

  /**
   * clientClosesFirst: answer, then close only after the peer's FIN, so the TIME_WAIT stays on the
   * connecting side. (When ztunnel's side of a captured connection closes first, its TIME_WAIT
   * socket has the app connection's 4-tuple in the same netns; a new app connection reusing that
   * source port then takes the slower TIME_WAIT path through sk_lookup: see README "Datapath".)
   */
  constructor(
    readonly name: string,
    private readonly opts: { clientClosesFirst?: boolean } = {},
  ) {}

  async listen(opts: InetSocketOptions & { backlog?: number }): Promise<void> {
    const fd = netnsListen(opts);
    const server = net.createServer((c) => {
      this.conns.add(c);
      c.on('close', () => this.conns.delete(c));
      c.on('error', () => undefined);
      this.accepted.push({
        listener: `${this.name}/${opts.family}`,
        local: { address: unmap(c.localAddress), port: c.localPort ?? 0 },
        peer: { address: unmap(c.remoteAddress), port: c.remotePort ?? 0 },
      });
      if (this.opts.clientClosesFirst) {
        c.write(`${this.name}\n`);
        c.on('end', () => c.end());
      } else c.end(`${this.name}\n`);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ fd }, () => resolve());
    });
    this.servers.push(server);
  }

  async close(): Promise<void> {
    for (const c of this.conns) c.destroy();
    await Promise.all(this.servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
    this.servers.length = 0;
  }
}

export const ZTUNNEL_MARK = 1337;
export const ZTUNNEL_PORTS = { outbound: 15001, inbound: 15006, tunnel: 15008 } as const;

/** ztunnel's in-pod listeners (one Service per port, v4 and v6-only sockets each). */
export class ZtunnelSockets {
  readonly outbound: Service;
  readonly inbound: Service;
  readonly tunnel: Service;

  private constructor(clientClosesFirst: boolean) {
    this.outbound = new Service('ztunnel-15001', { clientClosesFirst });
    this.inbound = new Service('ztunnel-15006', { clientClosesFirst });
    this.tunnel = new Service('ztunnel-15008', { clientClosesFirst });
  }

  /** dualStack: one [::] socket per port taking both families (as ztunnel binds); else v4 + v6-only. */
  static async open(
    netns: string,
    ports: Array<keyof typeof ZTUNNEL_PORTS> = ['outbound', 'inbound', 'tunnel'],
    opts: { dualStack?: boolean; clientClosesFirst?: boolean } = {},
  ): Promise<ZtunnelSockets> {
    const z = new ZtunnelSockets(opts.clientClosesFirst === true);
    for (const which of ports)
      for (const family of opts.dualStack ? ([6] as const) : ([4, 6] as const))
        await z[which].listen({
          netns,
          family,
          mark: ZTUNNEL_MARK,
          reuseAddr: true,
          reusePort: true,
          transparent: true,
          v6Only: family === 6 && !opts.dualStack,
          bind: { port: ZTUNNEL_PORTS[which] },
          backlog: 128,
        });
    return z;
  }

  all(): Accepted[] {
    return [...this.outbound.accepted, ...this.inbound.accepted, ...this.tunnel.accepted];
  }

  async close(): Promise<void> {
    await Promise.all([this.outbound.close(), this.inbound.close(), this.tunnel.close()]);
  }
}

export interface TalkResult {
  reply: string;
  local: { address: string; port: number };
}

/** Connects from a netns and reads the whole answer; rejects on refusal or after timeoutMs. */
export async function talk(opts: InetSocketOptions & { to: { address: string; port: number }; timeoutMs?: number }): Promise<TalkResult> {
  const timeoutMs = opts.timeoutMs ?? 5000;
  const fd = await netnsConnect({ ...opts, timeoutMs });
  const sock = new net.Socket({ fd, readable: true, writable: true });
  const local = { address: unmap(sock.localAddress), port: sock.localPort ?? 0 };
  return new Promise<TalkResult>((resolve, reject) => {
    let data = '';
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`no answer from ${opts.to.address}:${opts.to.port} within ${timeoutMs} ms (got ${JSON.stringify(data)})`));
    }, timeoutMs);
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      data += d;
      // One line is the whole answer: close our side first (a server that waits for it, too).
      if (data.includes('\n')) sock.end();
    });
    sock.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    sock.on('end', () => {
      clearTimeout(timer);
      sock.destroy();
      resolve({ reply: data.trim(), local });
    });
  });
}
