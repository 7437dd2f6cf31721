/**
 * One ZDS connection from the agent's side: read ZdsHello, then strictly request → Ack, one at a
 * time (acks carry no id, they correlate by order, as in istio-cni's ztunnelserver.go). A missing
 * ack within the timeout closes the connection, since a late ack would otherwise be read as the
 * answer to the next request; ztunnel then reconnects and gets a fresh snapshot.
 */
import { EventEmitter } from 'node:events';
import type { MessageSocket, ReceivedMessage } from '@shunt/libbpf';
import { closeFd } from '@shunt/libbpf';
import { decodeHello, decodeResponse, encodeRequest, type Ack, type WorkloadRequest } from './codec';

let nextId = 1;

export class ZdsConnection extends EventEmitter {
  readonly id = nextId++;
  private queue: Promise<unknown> = Promise.resolve();
  private waiting: { resolve(a: Ack): void; reject(e: Error): void } | undefined;
  private helloWait: { resolve(v: number): void; reject(e: Error): void } | undefined;
  private gotHello = false;
  private closedReason: string | undefined;

  constructor(
    private readonly sock: MessageSocket,
    private readonly ackTimeoutMs: number,
  ) {
    super();
    sock.on('message', (m: ReceivedMessage) => this.onMessage(m));
    sock.on('end', () => this.fail('ztunnel closed the connection'));
    sock.on('error', (e: Error) => this.fail(`connection error: ${e.message}`));
  }

  get closed(): boolean {
    return this.closedReason !== undefined;
  }

  /** Resolves with ztunnel's protocol version once its ZdsHello arrived. */
  hello(timeoutMs: number): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      const t = setTimeout(() => {
        reject(new Error(`no ZdsHello within ${timeoutMs} ms`));
        this.close('no hello');
      }, timeoutMs);
      this.helloWait = {
        resolve: (v) => (clearTimeout(t), resolve(v)),
        reject: (e) => (clearTimeout(t), reject(e)),
      };
    });
  }

  /** Sends one request (fds as SCM_RIGHTS, still owned by the caller) and waits for its Ack. Serialised. */
  request(req: WorkloadRequest, fds: number[] = []): Promise<Ack> {
    const run = (): Promise<Ack> => this.sendAndWait(req, fds);
    const p = this.queue.then(run, run);
    this.queue = p.catch(() => undefined);
    return p;
  }

  /**
   * Runs fn in the request order with the connection to itself (e.g. a whole snapshot before
   * later adds); fn sends through the rpc it is given, never through request() (that would wait
   * for fn itself).
   */
  exclusive<T>(fn: (rpc: (req: WorkloadRequest, fds?: number[]) => Promise<Ack>) => Promise<T>): Promise<T> {
    const rpc = (req: WorkloadRequest, fds: number[] = []): Promise<Ack> => this.sendAndWait(req, fds);
    const run = (): Promise<T> => fn(rpc);
    const p = this.queue.then(run, run);
    this.queue = p.catch(() => undefined);
    return p;
  }

  close(reason = 'closed by the agent'): void {
    this.fail(reason);
  }

  private sendAndWait(req: WorkloadRequest, fds: number[]): Promise<Ack> {
    if (this.closedReason) return Promise.reject(new Error(this.closedReason));
    return new Promise<Ack>((resolve, reject) => {
      const t = setTimeout(() => {
        this.waiting = undefined;
        reject(new AckTimeout(`no Ack within ${this.ackTimeoutMs} ms`));
        this.fail(`no Ack within ${this.ackTimeoutMs} ms for a ${req.type} request`);
      }, this.ackTimeoutMs);
      this.waiting = {
        resolve: (a) => (clearTimeout(t), resolve(a)),
        reject: (e) => (clearTimeout(t), reject(e)),
      };
      try {
        this.sock.send(encodeRequest(req), fds);
      } catch (err) {
        const w = this.waiting;
        this.waiting = undefined;
        w.reject(err as Error);
        this.fail(`send failed: ${(err as Error).message}`);
      }
    });
  }

  private onMessage(m: ReceivedMessage): void {
    // ztunnel never sends fds; drop any so they cannot leak.
    for (const fd of m.fds) closeFd(fd);
    try {
      if (!this.gotHello) {
        const { version } = decodeHello(m.data);
        this.gotHello = true;
        this.helloWait?.resolve(version);
        return;
      }
      const ack = decodeResponse(m.data);
      const w = this.waiting;
      if (!w) throw new Error('an Ack nobody asked for');
      this.waiting = undefined;
      w.resolve(ack);
    } catch (err) {
      this.fail(`protocol error: ${(err as Error).message}`);
    }
  }

  private fail(reason: string): void {
    if (this.closedReason) return;
    this.closedReason = reason;
    this.helloWait?.reject(new Error(reason));
    this.waiting?.reject(new Error(reason));
    this.waiting = undefined;
    this.sock.close();
    this.emit('close', reason);
  }
}

export class AckTimeout extends Error {}
