/**
 * Splicing only with a ztunnel whose process is under the cgroup the pairing program sits on, on
 * the real kernel with the testbed's stand-in (a real process; its pid comes from SO_PEERCRED on
 * its ZDS connection, as the agent gets it). First the stand-in runs in a cgroup next to the node's
 * (not under it): the backend turns pairing off with the reason, and an app connection through
 * ztunnel is neither paired nor put into the sockhash (no psock set-up for nothing). Then a new
 * stand-in connects from inside the node cgroup: re-decided, pairing on, the same connection is
 * spliced on both legs.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PATTERN_SCRIPTS, Testbed, ztunnelHarness, type ZtunnelHarness } from '@shunt/testbed';
import { TcBackend } from './backend';
import type { TcSpliceReading } from './splice';
import { meshPod, nodeContext } from './test-support/env';

const FLOW = path.join(__dirname, 'test-support', 'scripts', 'flow.js');
const PORT = 9401;
const ROUNDS = 50;
const RR = { mode: 'rr', rrSize: 16 << 10, rounds: ROUNDS };

let tb: Testbed;
let backend: TcBackend;
let h: ZtunnelHarness | undefined;
let cgroupRoot: string;
let outside: string;

async function reading(): Promise<{ counters: Record<string, number>; splice: TcSpliceReading }> {
  const o = await backend.observe();
  return { counters: o.counters, splice: (o.nodeDetail as { splice: TcSpliceReading }).splice };
}
const delta = (a: Record<string, number>, b: Record<string, number>, k: string): number => (b[k] ?? 0) - (a[k] ?? 0);

/** A stand-in in cgroup dir, connected to its own ZDS server; the backend told its pid (as the agent's wiring does); pods announced. */
async function standIn(dir: string, tag: string): Promise<ZtunnelHarness> {
  const harness = await ztunnelHarness({ socketPath: path.join(tb.stateDir, `zt-${tag}.sock`), logPath: path.join(tb.stateDir, `zt-${tag}.log`), cgroupPath: dir });
  h = harness;
  const peer = harness.server.ztunnelPeer();
  // The kernel's word on who connected: the stand-in process itself.
  expect(peer?.pid).toBe(harness.zt.pid);
  backend.ztunnelConnected(peer?.pid);
  for (const name of ['a', 'b']) {
    const pod = meshPod(tb, name);
    await harness.add({ uid: pod.uid, name: pod.name, namespace: pod.namespace, netnsPath: pod.netnsPath! });
  }
  return harness;
}

async function flow(): Promise<number> {
  const res = await tb.run('a', [process.execPath, FLOW, 'client', tb.pod('b').ipv4, String(PORT), JSON.stringify([RR]), '20000'], { timeoutMs: 25_000 });
  const out = JSON.parse(res.stdout) as { flows?: Array<{ received: number; error?: string }>; error?: string };
  if (!out.flows) throw new Error(`client: ${out.error ?? res.stdout}`);
  expect(out.flows[0]!.error ?? null).toBeNull();
  return out.flows[0]!.received;
}

beforeAll(async () => {
  tb = await Testbed.create({ pods: [{ name: 'a', mesh: 'ambient' }, { name: 'b', mesh: 'ambient' }] });
  const bpffsRoot = `/sys/fs/bpf/${tb.prefix}-tcplace`;
  fs.mkdirSync(bpffsRoot, { recursive: true });
  tb.track('tc pins', async () => fs.rmSync(bpffsRoot, { recursive: true, force: true }));
  cgroupRoot = tb.node('node0').cgroupPath;
  // Next to the node's cgroup, under the run's (removed with it; rmdir here once empty).
  outside = path.join(tb.cgroupRoot, 'zt-outside');
  fs.mkdirSync(outside);
  tb.track('outside cgroup', async () => {
    try {
      fs.rmdirSync(outside);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  });
  const server = tb.exec('b', [process.execPath, PATTERN_SCRIPTS.server, String(PORT)]);
  await tb.waitListening('b', [PORT], { watch: server });
  backend = new TcBackend({ splice: 'auto' });
  await backend.start(nodeContext(bpffsRoot, { cgroupRoot }));
  tb.track('tc backend', () => backend.stop({ cleanup: true }).catch(() => undefined));
  tb.track('ztunnel stand-in', () => (h ? h.stop().catch(() => undefined) : Promise.resolve()));
  for (const name of ['a', 'b']) await backend.enroll(meshPod(tb, name));
}, 90_000);

afterAll(async () => {
  await tb?.dispose();
}, 60_000);

test('ztunnel outside the node cgroup: pairing off with the reason, the connection works over TCP, no socket enters the sockhash', async () => {
  const before = await reading();
  expect(before.splice.on).toBe(true); // auto, guard loads, no ztunnel seen yet
  const harness = await standIn(outside, 'out');
  const r0 = await reading();
  expect(r0.splice.on).toBe(false);
  expect(r0.splice.reason).toBe(`tc splicing off: ztunnel pid ${harness.zt.pid} in cgroup ${outside} is not under ${cgroupRoot}`);
  expect(r0.splice.ztunnel).toMatchObject({ pid: harness.zt.pid, cgroup: outside, under: false });
  expect(await flow()).toBe(ROUNDS * (16 << 10));
  const r1 = await reading();
  expect(delta(r0.counters, r1.counters, 'splice_paired')).toBe(0);
  expect(delta(r0.counters, r1.counters, 'sockets_spliced')).toBe(0);
  expect(delta(r0.counters, r1.counters, 'bytes_spliced')).toBe(0);
  // Not even learning: the app's sockets never reached the pairing step.
  expect(delta(r0.splice.stats!, r1.splice.stats!, 'splice_to_tcp_no_peer')).toBe(0);
  // The traffic did go through ztunnel: the hairpin to its 15001 socket carried it.
  expect(delta(r0.counters, r1.counters, 'outbound_hairpinned_flow')).toBeGreaterThan(0);
}, 60_000);

test('a ztunnel reconnecting from inside the node cgroup: re-decided, both legs spliced', async () => {
  await h!.stop();
  h = undefined;
  const harness = await standIn(cgroupRoot, 'in');
  const r0 = await reading();
  expect(r0.splice.on).toBe(true);
  expect(r0.splice.reason).toContain(`ztunnel pid ${harness.zt.pid} in cgroup ${cgroupRoot} is under ${cgroupRoot}`);
  expect(await flow()).toBe(ROUNDS * (16 << 10));
  const r1 = await reading();
  expect(delta(r0.counters, r1.counters, 'splice_paired')).toBe(2);
  expect(delta(r0.counters, r1.counters, 'sockets_spliced')).toBe(4);
}, 60_000);
