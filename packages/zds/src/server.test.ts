import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { MessageSocket, UnixListener, closeFd, netnsCookie, type ReceivedMessage } from '@shunt/libbpf';
import { ZdsClient, ZdsError, ZdsServer, encodeRequest, decodeResponse, readZdsStatus, type WorkloadRequest } from './index';

const info = (name: string) => ({ name, namespace: 'ns1', serviceAccount: 'sa1' });

/** A ztunnel-like client that records what it was sent and answers via `answer`. */
function recorder(socketPath: string, answer: (req: WorkloadRequest) => string | Promise<string> = () => '') {
  const seen: { req: WorkloadRequest; netnsIno?: number }[] = [];
  const client = ZdsClient.connect(socketPath, async (req, fd) => {
    const entry: { req: WorkloadRequest; netnsIno?: number } = { req };
    if (fd !== undefined) {
      entry.netnsIno = fs.fstatSync(fd).ino;
      closeFd(fd);
    }
    seen.push(entry);
    return answer(req);
  });
  return { client, seen };
}

async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('ZdsServer with a ZdsClient over a real SEQPACKET socket', () => {
  const ns = [`shuntzds${randomBytes(3).toString('hex')}a`, `shuntzds${randomBytes(3).toString('hex')}b`];
  const nsPath = ns.map((n) => `/var/run/netns/${n}`);
  let dir: string;
  let sockPath: string;
  const cleanups: (() => unknown)[] = [];
  beforeAll(() => {
    for (const n of ns) execFileSync('ip', ['netns', 'add', n]);
  });
  afterAll(() => {
    for (const n of ns) execFileSync('ip', ['netns', 'del', n]);
  });
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'shunt-zds-'));
    sockPath = path.join(dir, 'ztunnel', 'ztunnel.sock');
  });
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const start = (opts: Parameters<typeof ZdsServer.start>[0] = {}) => {
    const s = ZdsServer.start({ socketPath: sockPath, ...opts });
    cleanups.push(() => s.close());
    return s;
  };
  const connect = (answer?: (req: WorkloadRequest) => string | Promise<string>) => {
    const r = recorder(sockPath, answer);
    cleanups.push(() => r.client.close());
    return r;
  };

  test('hello, empty snapshot, then Add with the pod netns fd, acked; Del; the socket file is 0600', async () => {
    const server = start();
    expect(fs.statSync(sockPath).mode & 0o777).toBe(0o600);
    const { seen } = connect();
    await until(() => server.connected && seen.length === 1, 'the snapshot');
    expect(seen[0]!.req).toEqual({ type: 'snapshotSent' });
    await server.add({ uid: 'uid-a', info: info('a'), netnsPath: nsPath[0]! });
    // the handler ran (and saw the right netns) before add() resolved
    expect(seen[1]).toEqual({ req: { type: 'add', uid: 'uid-a', workloadInfo: info('a') }, netnsIno: fs.statSync(nsPath[0]!).ino });
    expect(server.isAcked('uid-a')).toBe(true);
    // same workload again: no second message
    await server.add({ uid: 'uid-a', info: info('a'), netnsPath: nsPath[0]! });
    expect(seen).toHaveLength(2);
    await server.del('uid-a');
    expect(seen[2]!.req).toEqual({ type: 'del', uid: 'uid-a' });
    expect(server.status()).toEqual([]);
  });

  test("ztunnel's process from SO_PEERCRED: a real peer process's pid, on 'connected', ztunnelPeer() and the status file; gone with it", async () => {
    const statusPath = path.join(dir, 'zds-status.json');
    const server = start({ statusPath, statusDelayMs: 5 });
    const peers: Array<{ pid: number } | undefined> = [];
    server.on('connected', (_id: number, peer?: { pid: number }) => peers.push(peer));
    // A separate process (not this one) is the client: its pid is what the kernel must report.
    const script = `const { ZdsClient } = require(${JSON.stringify(path.join(__dirname, '..', 'dist', 'index.js'))}); ZdsClient.connect(process.argv[1], async () => ''); setTimeout(() => process.exit(3), 20000);`;
    const child = spawn(process.execPath, ['-e', script, sockPath], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    cleanups.push(async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    });
    await until(() => server.connected, `the child's connection (${stderr})`);
    expect(child.pid).not.toBe(process.pid);
    expect(peers).toEqual([{ pid: child.pid, uid: process.getuid!(), gid: process.getgid!() }]);
    expect(server.ztunnelPeer()).toEqual(peers[0]);
    await until(() => readZdsStatus(statusPath)?.ztunnel?.pid === child.pid, 'the status file naming the peer');
    child.kill('SIGKILL');
    await exited;
    await until(() => !server.connected, 'the disconnect');
    expect(server.ztunnelPeer()).toBeUndefined();
    await until(() => readZdsStatus(statusPath)?.connected === false && readZdsStatus(statusPath)?.ztunnel === undefined, 'the status file without a peer');
  });

  test("a NACK fails that workload with ztunnel's error; the others are fine", async () => {
    const server = start();
    connect((req) => (req.type === 'add' && req.uid === 'bad' ? 'failed to create proxy: address in use' : ''));
    await until(() => server.connected, 'connection');
    const bad = await server.add({ uid: 'bad', info: info('bad'), netnsPath: nsPath[0]! }).catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(ZdsError);
    expect(bad).toMatchObject({ code: 'NACK', uid: 'bad', reason: 'ztunnel refused the workload: failed to create proxy: address in use' });
    await server.add({ uid: 'good', info: info('good'), netnsPath: nsPath[1]! });
    expect(server.isAcked('good')).toBe(true);
    expect(server.isAcked('bad')).toBe(false);
    expect(server.status().find((s) => s.uid === 'bad')?.error).toBe('failed to create proxy: address in use');
  });

  test('statusPath: other processes read whether ztunnel is connected and each Ack state; closed on close()', async () => {
    const file = path.join(dir, 'zds', 'status.json');
    const server = start({ statusPath: file, statusDelayMs: 10 });
    const read = () => readZdsStatus(file);
    // The NACK comes 100 ms after the Add (well after the Add's own coalesced write): the NACK must
    // cause a write of its own.
    const c = connect((req) => (req.type === 'add' && req.uid === 'bad' ? new Promise<string>((r) => setTimeout(() => r('no room'), 100)) : ''));
    await until(() => server.connected, 'connection');
    await server.add({ uid: 'good', info: info('good'), netnsPath: nsPath[0]! });
    await server.add({ uid: 'bad', info: info('bad'), netnsPath: nsPath[1]! }).catch(() => undefined);
    // The file is written coalesced and may show 'bad' before its NACK: wait for the settled state.
    await until(() => {
      const ws = read()?.workloads ?? [];
      return ws.some((w) => w.uid === 'good' && w.acked) && ws.some((w) => w.uid === 'bad' && w.error !== undefined);
    }, 'both workloads, acked and NACKed, in the status file');
    expect(read()).toMatchObject({
      pid: process.pid,
      socket: sockPath,
      connected: true,
      closed: false,
      connectedSince: expect.any(String),
      workloads: expect.arrayContaining([
        { uid: 'good', name: 'good', namespace: 'ns1', acked: true },
        { uid: 'bad', name: 'bad', namespace: 'ns1', acked: false, error: 'no room' },
      ]),
    });
    c.client.close();
    await until(() => read()?.connected === false, 'ztunnel gone in the status file');
    expect(read()!.workloads.every((w) => !w.acked)).toBe(true);
    await server.close();
    expect(read()).toMatchObject({ connected: false, closed: true });
    fs.writeFileSync(file, '{"not":"it"}');
    expect(() => read()).toThrow(/not a ZDS status file/);
    expect(readZdsStatus(path.join(dir, 'none.json'))).toBeUndefined();
  });

  test('no ztunnel: NOT_CONNECTED; when one connects, the snapshot carries the workload', async () => {
    const server = start();
    const err = await server.add({ uid: 'early', info: info('early'), netnsPath: nsPath[0]! }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'NOT_CONNECTED' });
    expect((err as Error).message).toContain(sockPath);
    const { seen } = connect();
    await until(() => seen.length === 2, 'the snapshot');
    expect(seen.map((s) => s.req.type)).toEqual(['add', 'snapshotSent']);
    expect(seen[0]!.netnsIno).toBe(fs.statSync(nsPath[0]!).ino);
    expect(server.isAcked('early')).toBe(true);
    await server.add({ uid: 'early', info: info('early'), netnsPath: nsPath[0]! }); // the retry: already there
    expect(seen).toHaveLength(2);
  });

  test('a restarted server re-announces the saved workloads in its snapshot, dropping pods whose netns is gone', async () => {
    const statePath = path.join(dir, 'state', 'zds.json');
    const first = start({ statePath });
    const a = connect();
    await until(() => first.connected, 'connection');
    await first.add({ uid: 'live', info: info('live'), netnsPath: nsPath[0]!, netnsCookie: netnsCookie(nsPath[0]!).toString() });
    await first.add({ uid: 'dead', info: info('dead'), netnsPath: path.join(dir, 'no-such-netns') }).catch(() => undefined); // NETNS error
    await first.close(); // like a SIGKILL: the file stays
    await until(() => a.client.isClosed, 'the client to see the close');
    const second = start({ statePath });
    const b = connect();
    await until(() => b.seen.length === 2, 'the snapshot');
    expect(b.seen.map((s) => s.req)).toEqual([{ type: 'add', uid: 'live', workloadInfo: info('live') }, { type: 'snapshotSent' }]);
    expect(b.seen[0]!.netnsIno).toBe(fs.statSync(nsPath[0]!).ino);
    expect(second.isAcked('live')).toBe(true);
    expect(second.status().map((s) => s.uid)).toEqual(['live']);
  });

  test('a saved workload whose netns path now holds another namespace is not re-announced', async () => {
    const statePath = path.join(dir, 'zds.json');
    fs.writeFileSync(statePath, JSON.stringify({ workloads: [{ uid: 'moved', info: info('m'), netnsPath: nsPath[1], netnsCookie: '1' }] }));
    const server = start({ statePath });
    const { seen } = connect();
    await until(() => seen.length === 1, 'the snapshot');
    expect(seen[0]!.req).toEqual({ type: 'snapshotSent' });
    expect(server.status()).toEqual([]);
  });

  test('a saved workload whose netns cannot be opened (but may exist) is kept with KeepWorkload, not dropped', async () => {
    const statePath = path.join(dir, 'zds.json');
    // ENOTDIR: not "gone", just not openable by us now; ztunnel must keep serving it.
    fs.writeFileSync(statePath, JSON.stringify({ workloads: [{ uid: 'kept', info: info('k'), netnsPath: '/proc/self/status/x' }] }));
    const server = start({ statePath });
    const { seen } = connect();
    await until(() => seen.length === 2, 'the snapshot');
    expect(seen.map((s) => s.req)).toEqual([{ type: 'keep', uid: 'kept' }, { type: 'snapshotSent' }]);
    expect(server.status().map((w) => w.uid)).toEqual(['kept']);
  });

  test('no Ack in time: TIMEOUT and the connection is dropped (acks only correlate by order)', async () => {
    const server = start({ ackTimeoutMs: 200 });
    const { client } = connect((req) => (req.type === 'add' ? new Promise<string>(() => undefined) : ''));
    await until(() => server.connected, 'connection');
    await expect(server.add({ uid: 'slow', info: info('s'), netnsPath: nsPath[0]! })).rejects.toMatchObject({ code: 'TIMEOUT' });
    expect(server.connected).toBe(false);
    await until(() => client.isClosed, 'the client to be closed');
  });

  test('a peer that never says hello is dropped; a peer that says garbage too', async () => {
    const server = start({ helloTimeoutMs: 200 });
    const silent = MessageSocket.connect(sockPath);
    cleanups.push(() => silent.close());
    await new Promise((r) => silent.once('end', r));
    const garbage = MessageSocket.connect(sockPath);
    cleanups.push(() => garbage.close());
    garbage.send(Buffer.from('ffff', 'hex'));
    await new Promise((r) => garbage.once('end', r));
    expect(server.connected).toBe(false);
  });

  test('two ztunnels: Add goes to the newest, Del to both', async () => {
    const server = start();
    const old = connect();
    await until(() => old.seen.length === 1, 'first snapshot');
    const neu = connect();
    await until(() => neu.seen.length === 1, 'second snapshot');
    await server.add({ uid: 'w', info: info('w'), netnsPath: nsPath[0]! });
    expect(neu.seen.map((s) => s.req.type)).toEqual(['snapshotSent', 'add']);
    expect(old.seen.map((s) => s.req.type)).toEqual(['snapshotSent']);
    await server.del('w');
    expect(neu.seen.at(-1)!.req).toEqual({ type: 'del', uid: 'w' });
    expect(old.seen.at(-1)!.req).toEqual({ type: 'del', uid: 'w' });
  });
});

describe('ZdsClient checks fds as ztunnel does', () => {
  test('Add without an fd, or Del with one, is NACKed and stray fds are closed', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'shunt-zdsc-'));
    const p = path.join(dir, 's.sock');
    const listener = UnixListener.listen(p);
    try {
      const accepted = new Promise<MessageSocket>((r) => listener.once('connection', r));
      const handled: WorkloadRequest[] = [];
      const client = ZdsClient.connect(p, (req) => (handled.push(req), ''));
      const agent = await accepted;
      const replies: string[] = [];
      agent.on('message', (m: ReceivedMessage) => {
        if (replies.length === 0 && m.data.toString('hex') === '0801') replies.push('hello');
        else replies.push(decodeResponse(m.data).error);
      });
      await until(() => replies.length === 1, 'hello');
      agent.send(encodeRequest({ type: 'add', uid: 'x' }));
      const fd = fs.openSync('/proc/self/ns/net', 'r');
      agent.send(encodeRequest({ type: 'del', uid: 'x' }), [fd]);
      fs.closeSync(fd);
      await until(() => replies.length === 3, 'two acks');
      expect(replies.slice(1)).toEqual(['No control message', 'Unexpected control message']);
      expect(handled).toEqual([]);
      client.close();
      agent.close();
    } finally {
      listener.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
