/**
 * DNS over TCP and splicing, deliberate (bpf/tc/splice.bpf.c: with DNS capture on, an app's
 * connection to :53 goes to ztunnel's DNS listener, which answers itself and relays nothing, so it
 * is never paired): app in pod a -> b:53 with proxy.dnsPort set reaches the stand-in's TCP DNS
 * listener on 127.0.0.1:15053 (ztunnel's options; the stand-in runs under the node cgroup the
 * pairing program sits on) and is not paired or put into the sockhash; the same connection with DNS
 * capture off is an ordinary outbound one (ztunnel 15001 -> HBONE -> b:53) and is spliced.
 * (No listener of the test's own on 15053: it would join the stand-in's SO_REUSEPORT group, and
 * which of the two takes a connection is the kernel's hash of the 4-tuple.)
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Testbed, ztunnelHarness, type ZtunnelHarness } from '@shunt/testbed';
import { TcBackend } from './backend';
import { meshPod, nodeContext } from './test-support/env';

const ECHO = path.join(__dirname, 'test-support', 'scripts', 'echo.js');
const BYTES = 256 << 10;
let tb: Testbed;
let backend: TcBackend;
let h: ZtunnelHarness;

const counters = async () => (await backend.observe()).counters;
const delta = (a: Record<string, number>, b: Record<string, number>, k: string): number => (b[k] ?? 0) - (a[k] ?? 0);

async function client(): Promise<number> {
  const r = await tb.run('a', [process.execPath, ECHO, 'client', tb.pod('b').ipv4, '53', String(BYTES)], { timeoutMs: 20_000 });
  const out = JSON.parse(r.stdout) as { echoed?: number; error?: string };
  if (out.echoed === undefined) throw new Error(`client: ${out.error ?? r.stdout}`);
  return out.echoed;
}

/** Opens a connection a -> b:53 (nothing more: ztunnel's DNS listener speaks DNS, not echo). */
async function connects(): Promise<void> {
  const r = await tb.run('a', [process.execPath, ECHO, 'connect', tb.pod('b').ipv4, '53'], { timeoutMs: 20_000 });
  const out = JSON.parse(r.stdout || '{}') as { connected?: boolean; error?: string };
  if (out.connected !== true) throw new Error(`connect a -> b:53: ${out.error ?? `no answer (stdout ${JSON.stringify(r.stdout)})`}`);
}

async function listening(pod: string, args: string[]): Promise<void> {
  const p = tb.exec(pod, [process.execPath, ECHO, 'listen', ...args]);
  let out = '';
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`echo listener in ${pod} did not start: ${out}`)), 10_000);
    p.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('listening')) (clearTimeout(t), resolve());
    });
  });
}

beforeAll(async () => {
  tb = await Testbed.create({ pods: [{ name: 'a', mesh: 'ambient' }, { name: 'b', mesh: 'ambient' }] });
  const bpffsRoot = `/sys/fs/bpf/${tb.prefix}-tcdns`;
  fs.mkdirSync(bpffsRoot, { recursive: true });
  tb.track('tc pins', async () => fs.rmSync(bpffsRoot, { recursive: true, force: true }));
  const cgroupRoot = tb.node('node0').cgroupPath;
  backend = new TcBackend({ splice: 'auto' });
  await backend.start(nodeContext(bpffsRoot, { cgroupRoot }));
  tb.track('tc backend', () => backend.stop({ cleanup: true }).catch(() => undefined));
  h = await ztunnelHarness({ socketPath: path.join(tb.stateDir, 'zt.sock'), logPath: path.join(tb.stateDir, 'zt.log'), cgroupPath: cgroupRoot });
  tb.track('ztunnel stand-in', () => h.stop().catch(() => undefined));
  backend.ztunnelConnected(h.server.ztunnelPeer()?.pid);
  await listening('b', ['0.0.0.0', '53']); // the DNS server asked (plain echo)
  for (const name of ['a', 'b']) {
    const pod = meshPod(tb, name);
    await backend.enroll(name === 'a' ? { ...pod, proxy: { ...pod.proxy, dnsPort: 15053 } } : pod);
    await h.add({ uid: pod.uid, name: pod.name, namespace: pod.namespace, netnsPath: pod.netnsPath! });
  }
}, 90_000);

afterAll(async () => {
  await tb?.dispose();
}, 60_000);

test('DNS capture on: TCP :53 goes to the DNS listener and is never paired', async () => {
  const c0 = await counters();
  await connects();
  const c1 = await counters();
  expect(delta(c0, c1, 'dns_tcp_to_proxy')).toBeGreaterThanOrEqual(1);
  expect(delta(c0, c1, 'splice_paired')).toBe(0);
  expect(delta(c0, c1, 'sockets_spliced')).toBe(0);
});

test('DNS capture off: TCP :53 is an ordinary outbound connection through ztunnel, spliced on both legs', async () => {
  await backend.enroll(meshPod(tb, 'a'));
  const c0 = await counters();
  expect(await client()).toBe(BYTES);
  const c1 = await counters();
  expect(delta(c0, c1, 'dns_tcp_to_proxy')).toBe(0);
  expect(delta(c0, c1, 'splice_paired')).toBe(2);
  expect(delta(c0, c1, 'sockets_spliced')).toBe(4);
});
