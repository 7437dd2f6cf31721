import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import {
  BpfError,
  BpfLink,
  BpfObject,
  bpfObjectPath,
  listeningSockets,
  NetnsPidIndex,
  netnsTcpListeners,
  pidfdGetfd,
  probeProgType,
  probeSkLookup,
  struct,
  u16,
  u32,
  u64,
  u8,
  pad,
} from './index';
import { FIXTURES, ipIn, makeNetns, removeNetns, runId, runNode } from './__fixtures__/env';

const PROXY_PORT = 15006;
const APP_PORT = 8080;
const AF_INET = 2;
const listenerKey = struct({ port: u16, family: u8, pad: pad(1) });
const SKL = { tcpLookups: 0, assigned: 1, noListener: 2, assignFailed: 3 } as const;

interface ConnectResult {
  ok: boolean;
  code?: string;
  reply?: { local: { address: string; port: number }; remote: { address: string; port: number } };
}

// The "pod" netns (a) holds the proxy's listener on 15006 in its own process; a client in
// a second netns (b, "another node") connects over a veth to a:8080, where nothing listens.
describe('sk_lookup on a netns: inbound connections for 8080 reach the 15006 listener', () => {
  const nsA = runId('ka');
  const nsB = runId('kb');
  const vethA = runId('va');
  const vethB = runId('vb');
  const pinDir = `/sys/fs/bpf/${runId('skl')}`;
  let pathA: string;
  let pathB: string;
  let obj: BpfObject;
  let listener: ChildProcess | undefined;
  let listenerInfo: { pid: number; fd: number; port: number };
  const links: BpfLink[] = [];

  beforeAll(async () => {
    pathA = makeNetns(nsA);
    pathB = makeNetns(nsB);
    execFileSync('ip', ['link', 'add', vethA, 'netns', nsA, 'type', 'veth', 'peer', 'name', vethB, 'netns', nsB]);
    ipIn(pathA, ['addr', 'add', '198.18.0.9/30', 'dev', vethA]);
    ipIn(pathB, ['addr', 'add', '198.18.0.10/30', 'dev', vethB]);
    ipIn(pathA, ['link', 'set', vethA, 'up']);
    ipIn(pathB, ['link', 'set', vethB, 'up']);
    fs.mkdirSync(pinDir);
    obj = BpfObject.open(bpfObjectPath('selftest/selftest_sklookup.bpf.o'));
    listenerInfo = await startListener(pathA);
  });

  afterAll(() => {
    for (const l of links) l.close();
    obj?.close();
    listener?.kill('SIGKILL');
    fs.rmSync(pinDir, { recursive: true, force: true }); // a pinned link detaches with its pin
    removeNetns(nsA);
    removeNetns(nsB);
  });

  /** Runs listener.js inside netns; resolves with the pid and fd it reports once listening. */
  function startListener(netns: string): Promise<{ pid: number; fd: number; port: number }> {
    const child = spawn('nsenter', [`--net=${netns}`, process.execPath, path.join(FIXTURES, 'listener.js'), String(PROXY_PORT)], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    listener = child;
    return new Promise((resolve, reject) => {
      let out = '';
      let err = '';
      const timer = setTimeout(() => reject(new Error(`listener not ready after 10 s: ${err}`)), 10000);
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (!out.includes('\n')) return;
        clearTimeout(timer);
        resolve(JSON.parse(out.split('\n')[0] ?? '') as { pid: number; fd: number; port: number });
      });
      child.on('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`listener exited ${code}: ${err}`));
      });
    });
  }

  const connect = (port: number): Promise<ConnectResult> => runNode<ConnectResult>('connect.js', ['198.18.0.9', String(port)], { netns: pathB });
  const counter = (slot: number): bigint => obj.map('sklookup_counters').typed(u32, u64).lookup(slot) ?? 0n;
  const proxyKey = listenerKey.encode({ port: PROXY_PORT, family: AF_INET });

  test('the kernel has sk_lookup, bpf_sk_assign from it and netns links for it', () => {
    expect(probeProgType('sk_lookup')).toMatchObject({ available: true, evidence: expect.stringContaining('sk_lookup') });
    const p = probeSkLookup();
    expect(p.available).toBe(true);
    expect(p.evidence).toMatch(/bpf_sk_assign #\d+ from sk_lookup/);
    expect(p.evidence).toMatch(/netns fd -1, sk_lookup\): EBADF/);
  });

  test('sock_diag inside the netns names the listener; the pid index finds its process', () => {
    const found = listeningSockets({ pids: [listenerInfo.pid], port: PROXY_PORT, family: 4 });
    expect(netnsTcpListeners(pathA, PROXY_PORT, 4)).toEqual([{ inode: found[0]!.inode, address: '0.0.0.0', port: PROXY_PORT, family: 4 }]);
    expect(netnsTcpListeners(pathA, PROXY_PORT, 6)).toEqual([]);
    expect(netnsTcpListeners(pathA, PROXY_PORT + 1, 4)).toEqual([]);
    // The other netns has no listener: the dump is per netns, not node-wide.
    expect(netnsTcpListeners(pathB, PROXY_PORT, 4)).toEqual([]);
    // The exact lookup (what enroll asks first) finds the same socket, and nothing where none listens.
    expect(netnsTcpListeners(pathA, PROXY_PORT, 4, { wildcardOnly: true })).toEqual(netnsTcpListeners(pathA, PROXY_PORT, 4));
    expect(netnsTcpListeners(pathB, PROXY_PORT, 4, { wildcardOnly: true })).toEqual([]);
    expect(netnsTcpListeners(pathA, PROXY_PORT + 1, 4, { wildcardOnly: true })).toEqual([]);
    expect(() => netnsTcpListeners(pathA, 0, 4)).toThrow(/port must be 1..65535/);
    const index = new NetnsPidIndex();
    expect(index.pidsIn(pathA)).toEqual([listenerInfo.pid]);
    expect(index.pidsIn(pathB)).toEqual([]);
  });

  test('the listener process is found from /proc and its socket borrowed with pidfd_getfd', () => {
    const pids = [listenerInfo.pid];
    const found = listeningSockets({ pids, port: PROXY_PORT, family: 4 });
    expect(found).toEqual([{ pid: listenerInfo.pid, fd: listenerInfo.fd, inode: expect.any(Number), family: 4, address: '0.0.0.0', port: PROXY_PORT }]);
    expect(listeningSockets({ pids, port: PROXY_PORT, family: 6 })).toEqual([]);
    expect(listeningSockets({ pids, port: PROXY_PORT + 1 })).toEqual([]);

    const fd = pidfdGetfd(listenerInfo.pid, found[0]!.fd);
    try {
      expect(fs.fstatSync(fd).ino).toBe(found[0]!.inode); // the very same socket, now ours too
      obj.map('listeners').updateSocket(proxyKey, fd, 'noexist');
    } finally {
      fs.closeSync(fd); // the sockhash keeps its own reference
    }
    expect(obj.map('listeners').socketCookie(proxyKey)).toBeGreaterThan(0n);
  });

  test('attached: a SYN for :8080 lands on the 15006 listener, which sees :8080 as its local address', async () => {
    const steer = obj.map('steer_ports').typed(u16, listenerKey);
    expect(await connect(APP_PORT)).toEqual({ ok: false, code: 'ECONNREFUSED' });

    const link = obj.program('selftest_sk_lookup').attachNetns(pathA);
    links.push(link);
    expect(link.info()).toMatchObject({ type: 'netns', attachType: 'sk_lookup', netnsIno: fs.statSync(pathA).ino });

    // Not steered yet: the program runs, changes nothing.
    const lookups = counter(SKL.tcpLookups);
    expect(await connect(APP_PORT)).toEqual({ ok: false, code: 'ECONNREFUSED' });
    expect(counter(SKL.tcpLookups)).toBeGreaterThan(lookups);

    steer.update(APP_PORT, { port: PROXY_PORT, family: AF_INET });
    const assigned = counter(SKL.assigned);
    const r = await connect(APP_PORT);
    expect(r).toEqual({
      ok: true,
      reply: { local: { address: '198.18.0.9', port: APP_PORT }, remote: { address: '198.18.0.10', port: expect.any(Number) } },
    });
    expect(counter(SKL.assigned) - assigned).toBe(1n);
    // The listener's own port still answers directly.
    expect((await connect(PROXY_PORT)).reply?.local).toEqual({ address: '198.18.0.9', port: PROXY_PORT });
    expect(counter(SKL.assignFailed)).toBe(0n);

    link.detach();
    links.splice(links.indexOf(link), 1);
    expect(await connect(APP_PORT)).toEqual({ ok: false, code: 'ECONNREFUSED' });
  });

  test('a pinned link keeps steering after its handle is closed; another process adopts and detaches it', async () => {
    const link = obj.program('selftest_sk_lookup').attachNetns(pathA);
    const pin = path.join(pinDir, 'sk_lookup');
    link.pin(pin);
    const id = link.info().id;
    link.close();
    expect((await connect(APP_PORT)).reply?.local.port).toBe(APP_PORT);

    const seen = await runNode('adopt-netns-link.js', [pin]);
    expect(seen).toEqual({ id, type: 'netns', attachType: 'sk_lookup', netnsIno: fs.statSync(pathA).ino });
    expect(fs.existsSync(pin)).toBe(false);
    expect(await connect(APP_PORT)).toEqual({ ok: false, code: 'ECONNREFUSED' });
  });

  test('a steered port whose listener is not in the map is left to the normal lookup', async () => {
    const link = obj.program('selftest_sk_lookup').attachNetns(pathA);
    links.push(link);
    const missing = listenerKey.encode({ port: PROXY_PORT + 1, family: AF_INET });
    obj.map('steer_ports').typed(u16, listenerKey).update(APP_PORT + 1, { port: PROXY_PORT + 1, family: AF_INET });
    const before = counter(SKL.noListener);
    expect(await connect(APP_PORT + 1)).toEqual({ ok: false, code: 'ECONNREFUSED' });
    expect(counter(SKL.noListener) - before).toBe(1n);
    expect(obj.map('listeners').socketCookie(missing)).toBeNull();
    link.detach();
    links.splice(links.indexOf(link), 1);
  });

  test('flow_dissector programs attach to a netns the same way', () => {
    const link = obj.program('selftest_flow_dissector').attachNetns(pathB);
    links.push(link);
    expect(link.info()).toMatchObject({ type: 'netns', attachType: 'flow_dissector', netnsIno: fs.statSync(pathB).ino });
    link.detach();
    links.splice(links.indexOf(link), 1);
  });

  test('bad targets are typed errors naming the program, path, pid or fd', () => {
    const prog = obj.program('selftest_sk_lookup');
    expect(() => prog.attachNetns('/var/run/netns/shunt-missing')).toThrow(
      /attach sk_lookup program selftest_sk_lookup: ENOENT .*cannot open netns \/var\/run\/netns\/shunt-missing/,
    );
    expect(() => prog.attachNetns(bpfObjectPath('selftest/selftest_sklookup.bpf.o'))).toThrow(/EINVAL.*is the path a network namespace/);
    const other = BpfObject.open(bpfObjectPath('selftest/selftest.bpf.o'));
    try {
      expect(() => other.program('selftest_connect4').attachNetns(pathA)).toThrow(
        /program type cgroup_sock_addr .*cannot attach to a netns; only sk_lookup and flow_dissector can/,
      );
    } finally {
      other.close();
    }

    const pidMax = Number(fs.readFileSync('/proc/sys/kernel/pid_max', 'utf8'));
    expect(() => pidfdGetfd(pidMax + 1, 3)).toThrow(new RegExp(`pidfd_open fd 3 of pid ${pidMax + 1}: ESRCH`));
    expect(() => pidfdGetfd(listenerInfo.pid, 100000)).toThrow(/pidfd_getfd fd 100000 of pid \d+: EBADF.*no such open fd/);
    expect(() => pidfdGetfd(0, 3)).toThrow(/pid must be a positive integer/);
    expect(listeningSockets({ pids: [pidMax + 1], port: 1 })).toEqual([]); // a process that is gone holds nothing
    expect(() => listeningSockets({ pids: [listenerInfo.pid], port: 70000 })).toThrow(/port must be 1..65535, got 70000/);

    const file = fs.openSync(bpfObjectPath('selftest/selftest_sklookup.bpf.o'), 'r');
    try {
      const err = captureError(() => obj.map('listeners').updateSocket(proxyKey, file));
      expect(err).toBeInstanceOf(BpfError);
      expect(err).toMatchObject({ code: 'ENOTSOCK', target: 'map listeners' });
      expect((err as Error).message).toMatch(new RegExp(`fd ${file} is not a socket`));
    } finally {
      fs.closeSync(file);
    }
    expect(() => obj.map('steer_ports').updateSocket(Buffer.alloc(2), 0)).toThrow(/map type hash holds no sockets/);
  });

  test('/proc addresses are decoded in the right byte order (loopback listeners of this process)', async () => {
    const servers = [net.createServer(), net.createServer()];
    try {
      await new Promise<void>((r) => servers[0]!.listen(0, '127.0.0.1', r));
      const port = (servers[0]!.address() as net.AddressInfo).port;
      await new Promise<void>((r) => servers[1]!.listen({ port, host: '::1', ipv6Only: true }, r));
      const found = listeningSockets({ pids: [process.pid], port });
      expect(found.map((s) => [s.family, s.address, s.port])).toEqual(
        expect.arrayContaining([
          [4, '127.0.0.1', port],
          [6, '::1', port],
        ]),
      );
      expect(found).toHaveLength(2);
      expect(listeningSockets({ pids: [process.pid], port, family: 4 }).map((s) => s.address)).toEqual(['127.0.0.1']);
    } finally {
      for (const s of servers) if (s.listening) await new Promise((r) => s.close(r));
    }
  });

  test('the sockhash entry goes away by itself when the listener process exits', async () => {
    expect(obj.map('listeners').socketCookie(proxyKey)).toBeGreaterThan(0n);
    const exited = new Promise((r) => listener!.once('exit', r));
    listener!.stdin!.end();
    await exited;
    listener = undefined;
    expect(obj.map('listeners').socketCookie(proxyKey)).toBeNull();
  });
});

function captureError(fn: () => void): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error('expected an error');
}
