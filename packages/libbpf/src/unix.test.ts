import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { MessageSocket, UnixListener, closeFd, socketInfo, BpfError, type ReceivedMessage } from './index';

function next<T>(em: NodeJS.EventEmitter, event: string, ms = 5000): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no '${event}' within ${ms} ms`)), ms);
    em.once(event, (v: T) => {
      clearTimeout(t);
      resolve(v);
    });
  });
}

function messages(sock: MessageSocket, count: number, ms = 5000): Promise<ReceivedMessage[]> {
  const got: ReceivedMessage[] = [];
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`only ${got.length}/${count} messages within ${ms} ms`)), ms);
    const on = (m: ReceivedMessage) => {
      got.push(m);
      if (got.length === count) {
        clearTimeout(t);
        sock.off('message', on);
        resolve(got);
      }
    };
    sock.on('message', on);
  });
}

describe('seqpacket socketpair', () => {
  test('keeps message boundaries and passes fds with SCM_RIGHTS', async () => {
    const [a, b] = MessageSocket.pair();
    const file = path.join(os.tmpdir(), `shunt-unix-test-${process.pid}`);
    try {
      fs.writeFileSync(file, 'x');
      const fd = fs.openSync(file, 'r');
      const got = messages(b, 2);
      a.send(Buffer.from('first'), [fd]);
      a.send(Buffer.from('second'));
      const [m1, m2] = await got;
      if (!m1 || !m2) throw new Error('expected two messages');
      const passed = m1.fds[0];
      if (passed === undefined) throw new Error('expected a passed fd');
      expect(m1.data.toString()).toBe('first');
      expect(m1.fds).toHaveLength(1);
      expect(m1.fds[0]).not.toBe(fd); // a new descriptor for the same open file
      expect(fs.fstatSync(passed).ino).toBe(fs.statSync(file).ino);
      expect(m2.data.toString()).toBe('second');
      expect(m2.fds).toEqual([]);
      expect(m1.truncated).toBe(false);
      closeFd(passed);
      fs.closeSync(fd);
      expect(socketInfo(a.fd).type).toBe('seqpacket');
    } finally {
      fs.rmSync(file, { force: true });
      a.close();
      b.close();
    }
  });

  test('the peer sees end when one side closes, and sending afterwards is an error', async () => {
    const [a, b] = MessageSocket.pair();
    const ended = next(b, 'end');
    a.close();
    await ended;
    expect(b.isClosed).toBe(true);
    expect(() => a.send(Buffer.from('late'))).toThrow(/socket is closed/);
  });
});

describe('UnixListener', () => {
  let dir: string;
  beforeAll(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'shunt-unix-'))));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('accepts seqpacket clients, both ways, with the requested file mode; close removes the file', async () => {
    const sockPath = path.join(dir, 'zds.sock');
    fs.writeFileSync(sockPath, 'stale'); // a leftover from a crashed server is replaced
    const server = UnixListener.listen(sockPath, { mode: 0o600 });
    try {
      expect(fs.statSync(sockPath).isSocket()).toBe(true);
      expect(fs.statSync(sockPath).mode & 0o777).toBe(0o600);
      const accepted = next<MessageSocket>(server, 'connection');
      const client = MessageSocket.connect(sockPath);
      const peer = await accepted;
      const atServer = messages(peer, 1);
      client.send(Buffer.from('hello'));
      expect((await atServer)[0]?.data.toString()).toBe('hello');
      const atClient = messages(client, 1);
      peer.send(Buffer.from('ack'));
      expect((await atClient)[0]?.data.toString()).toBe('ack');
      const ended = next(peer, 'end');
      client.close();
      await ended;
    } finally {
      server.close();
    }
    expect(fs.existsSync(sockPath)).toBe(false);
  });

  test('connecting to a path nobody serves is a BpfError naming the path', () => {
    const p = path.join(dir, 'nobody.sock');
    let err: unknown;
    try {
      MessageSocket.connect(p);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(BpfError);
    expect((err as BpfError).code).toBe('ENOENT');
    expect((err as BpfError).message).toContain(p);
  });
});
