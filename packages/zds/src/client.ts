/**
 * ztunnel's side of ZDS, for the testbed's stand-in: connect, say ZdsHello, then for every request
 * call the handler (one at a time, in order) and answer with its Ack. Fd checks follow ztunnel's
 * src/inpod/protocol.rs: an Add must carry exactly one fd, anything else none; a violation is a
 * NACK and the stray fds are closed.
 */
import { EventEmitter } from 'node:events';
import { MessageSocket, closeFd, type ReceivedMessage } from '@shunt/libbpf';
import { decodeRequest, encodeAck, encodeHello, ZDS_VERSION_V1, type WorkloadRequest } from './codec';

/**
 * Returns '' to ACK or an error text to NACK. For 'add', `netnsFd` is the pod's netns: the
 * handler owns it (keep it, or close it).
 */
export type ZdsRequestHandler = (req: WorkloadRequest, netnsFd?: number) => Promise<string> | string;

export class ZdsClient extends EventEmitter {
  private chain: Promise<void> = Promise.resolve();
  private ended = false;

  private constructor(
    private readonly sock: MessageSocket,
    private readonly handler: ZdsRequestHandler,
  ) {
    super();
    sock.on('message', (m: ReceivedMessage) => {
      this.chain = this.chain.then(() => this.handle(m));
    });
    sock.on('end', () => this.end('the agent closed the connection'));
    sock.on('error', (e: Error) => this.end(`connection error: ${e.message}`));
  }

  /** Connects and sends the hello. Throws BpfError (ENOENT, ECONNREFUSED) when nobody serves the path. */
  static connect(socketPath: string, handler: ZdsRequestHandler, version = ZDS_VERSION_V1): ZdsClient {
    const sock = MessageSocket.connect(socketPath, 'seqpacket');
    const c = new ZdsClient(sock, handler);
    sock.send(encodeHello(version));
    return c;
  }

  get isClosed(): boolean {
    return this.ended;
  }

  close(): void {
    this.end('closed');
  }

  private end(reason: string): void {
    if (this.ended) return;
    this.ended = true;
    this.sock.close();
    this.emit('close', reason);
  }

  private async handle(m: ReceivedMessage): Promise<void> {
    if (this.ended) {
      for (const fd of m.fds) closeFd(fd);
      return;
    }
    let error: string;
    try {
      if (m.truncated) throw new Error('received truncated message');
      const req = decodeRequest(m.data);
      if (req.type === 'add' && m.fds.length !== 1) throw new Error(m.fds.length === 0 ? 'No control message' : `Expected 1 FD, got ${m.fds.length}`);
      if (req.type !== 'add' && m.fds.length > 0) throw new Error('Unexpected control message');
      const fd = req.type === 'add' ? m.fds[0] : undefined;
      m.fds.length = 0; // the handler owns the fd now
      this.emit('request', req);
      error = await this.handler(req, fd);
    } catch (err) {
      for (const fd of m.fds) closeFd(fd);
      error = (err as Error).message || String(err);
    }
    try {
      this.sock.send(encodeAck(error));
    } catch (err) {
      this.end(`cannot send Ack: ${(err as Error).message}`);
    }
  }
}
