/**
 * Upgrade from a version without splicing: a tc pin set with no splice maps or links (made here
 * by a backend with splice 'none', stopped without cleanup, its splice map pins then removed, so
 * only what the earlier version pinned is left) is adopted by a backend with splice 'auto': the
 * enrolled pods keep their redirect through the restart (traffic through the stand-in checked,
 * same link ids, no enroll), and new connections are spliced after it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PATTERN_SCRIPTS, Testbed, ztunnelHarness, type ZtunnelHarness } from '@shunt/testbed';
import { MAP_NAMES } from './abi';
import { TcBackend } from './backend';
import { SPLICE_PROGRAMS, type TcSpliceReading } from './splice';
import { meshPod, nodeContext } from './test-support/env';

const FLOW = path.join(__dirname, 'test-support', 'scripts', 'flow.js');
const PORT = 9402;
const ROUNDS = 50;

let tb: Testbed;
let backend: TcBackend;
let h: ZtunnelHarness;
let bpffsRoot: string;
let cgroupRoot: string;

const reading = async () => {
  const o = await backend.observe();
  return { o, counters: o.counters, splice: (o.nodeDetail as { splice: TcSpliceReading }).splice };
};
const delta = (a: Record<string, number>, b: Record<string, number>, k: string): number => (b[k] ?? 0) - (a[k] ?? 0);

async function flow(): Promise<void> {
  const res = await tb.run('a', [process.execPath, FLOW, 'client', tb.pod('b').ipv4, String(PORT), JSON.stringify([{ mode: 'rr', rrSize: 16 << 10, rounds: ROUNDS }]), '20000'], { timeoutMs: 25_000 });
  const out = JSON.parse(res.stdout) as { flows?: Array<{ received: number; error?: string }>; error?: string };
  if (!out.flows) throw new Error(`client: ${out.error ?? res.stdout}`);
  expect(out.flows[0]!.error ?? null).toBeNull();
  expect(out.flows[0]!.received).toBe(ROUNDS * (16 << 10));
}

beforeAll(async () => {
  tb = await Testbed.create({ pods: [{ name: 'a', mesh: 'ambient' }, { name: 'b', mesh: 'ambient' }] });
  bpffsRoot = `/sys/fs/bpf/${tb.prefix}-tcadopt`;
  fs.mkdirSync(bpffsRoot, { recursive: true });
  tb.track('tc pins', async () => fs.rmSync(bpffsRoot, { recursive: true, force: true }));
  cgroupRoot = tb.node('node0').cgroupPath;
  const server = tb.exec('b', [process.execPath, PATTERN_SCRIPTS.server, String(PORT)]);
  await tb.waitListening('b', [PORT], { watch: server });
  backend = new TcBackend({ splice: 'none' });
  await backend.start(nodeContext(bpffsRoot, { cgroupRoot }));
  tb.track('tc backend', () => backend.stop({ cleanup: true }).catch(() => undefined));
  h = await ztunnelHarness({ socketPath: path.join(tb.stateDir, 'zt.sock'), logPath: path.join(tb.stateDir, 'zt.log'), cgroupPath: cgroupRoot });
  tb.track('ztunnel stand-in', () => h.stop().catch(() => undefined));
  for (const name of ['a', 'b']) {
    const pod = meshPod(tb, name);
    await backend.enroll(pod);
    await h.add({ uid: pod.uid, name: pod.name, namespace: pod.namespace, netnsPath: pod.netnsPath! });
  }
}, 90_000);

afterAll(async () => {
  await tb?.dispose();
}, 60_000);

test("a pin set without splicing is adopted by splice 'auto': redirect kept through the restart, new connections spliced", async () => {
  const before = await reading();
  expect(before.splice.on).toBe(false);
  await flow();
  const linkIds = Object.fromEntries(before.o.pods.map((p) => [p.name, p.detail!['links']]));
  await backend.stop({ cleanup: false });
  // What the version before splicing pinned: the tc maps, the pod links; no splice maps, no splice links.
  const dir = path.join(bpffsRoot, 'tc');
  for (const m of fs.readdirSync(path.join(dir, 'maps'))) if (!(MAP_NAMES as readonly string[]).includes(m)) fs.rmSync(path.join(dir, 'maps', m));
  expect(fs.readdirSync(path.join(dir, 'maps')).sort()).toEqual([...MAP_NAMES].sort());
  expect(fs.existsSync(path.join(dir, 'links')) ? fs.readdirSync(path.join(dir, 'links')) : []).toEqual([]);
  // Nothing of ours between the stop and the new start: the redirect is the pinned links' alone.
  await flow();
  backend = new TcBackend({ splice: 'auto' });
  await backend.start(nodeContext(bpffsRoot, { cgroupRoot }));
  const r0 = await reading();
  expect(r0.splice.on).toBe(true);
  expect(Object.values(r0.splice.links)).toEqual(SPLICE_PROGRAMS.map(() => true));
  // Both flows (before the stop, and while no backend ran) were hairpinned to ztunnel, not spliced.
  expect(delta(before.counters, r0.counters, 'outbound_hairpinned_new')).toBeGreaterThanOrEqual(2);
  expect(delta(before.counters, r0.counters, 'sockets_spliced')).toBe(0);
  // Adopted as they were: same pods, same fingerprints as desired (no enroll needed), same link ids.
  expect(r0.o.pods.map((p) => [p.name, p.fingerprint]).sort()).toEqual(['a', 'b'].map((n) => [n, backend.fingerprint(meshPod(tb, n))]));
  expect(Object.fromEntries(r0.o.pods.map((p) => [p.name, p.detail!['links']]))).toEqual(linkIds);
  backend.ztunnelConnected(h.server.ztunnelPeer()?.pid);
  await flow();
  const r1 = await reading();
  expect(delta(r0.counters, r1.counters, 'splice_paired')).toBe(2);
  expect(delta(r0.counters, r1.counters, 'sockets_spliced')).toBe(4);
  expect(delta(r0.counters, r1.counters, 'bytes_spliced')).toBeGreaterThan(2 * 2 * ROUNDS * (16 << 10) * 0.9);
}, 60_000);
