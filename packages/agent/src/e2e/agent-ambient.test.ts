// The real, built `shunt agent` with profile istio-ambient and the tc backend, pods from a pods
// file, the ztunnel stand-in process (a ZDS client: it only knows what the agent hands it) and
// testbed pods on two nodes (an agent and a stand-in per node). Checked on the path, from the stand-in's per-connection log: app → app
// crosses the client pod's ztunnel (15001, original destination learnt) and the server pod's
// (15008 HBONE, app reached from the client's address), v4 and v6, same node and across nodes; HBONE is not re-captured and
// ztunnel's own connections are not looped; the namespace label enrolls/unenrolls live; a NACK
// fails that pod with ztunnel's error while the others stay enrolled; a restarted stand-in gets
// its pods back; a SIGKILLed agent is replaced during a request stream without losing a request
// and without its redirect being torn down; `shunt cleanup` leaves the pod netns as they were.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startZtunnel, Testbed, type ZtunnelLogEntry, type ZtunnelStandIn } from '@shunt/testbed';
import type { AgentProcess } from '../agent/process';
import { freePort } from '../demo/free-port';
import { removePins } from '../node-state/pins';
import { eventually, metric, podNetnsPrefix, runCli, startBuiltAgent } from './support';

type Conn = Extract<ZtunnelLogEntry, { event: 'conn' }>;
const ECHO = 9000;
// Long enough for the steps between "late" prepared and its enroll on a loaded CI machine (a CLI run among them).
const PREPARE_GRACE_MS = 10_000;
let tb: Testbed;
let dir: string;
let podsFile: string;
let sockPath: string;
let logPath: string;
const run = randomBytes(4).toString('hex');
const bpffs = `/sys/fs/bpf/shunt-e2e-amb-${run}`;
/** node1's agent: its own bpffs dir, state dir, ZDS socket and ztunnel. */
const bpffs2 = `/sys/fs/bpf/shunt-e2e-amb2-${run}`;
let zt2: ZtunnelStandIn;
/** Each ambient pod's netns before any agent ran (rules, routes, sysctls). */
const pristine = new Map<string, string>();
const agents: AgentProcess[] = [];
const standIns: ZtunnelStandIn[] = [];
let zt: ZtunnelStandIn;
let agent: AgentProcess;
let port: number;
/** Pods in the pods file, and the labels of namespace `lbl`. */
let listed = ['a', 'b', 'plain', 'd'];
let lblLabels: Record<string, string> = {};

beforeAll(async () => {
  tb = await Testbed.create({
    nodes: 2,
    pods: [
      { name: 'd', mesh: 'ambient', node: 'node1' },
      { name: 'a', mesh: 'ambient' },
      { name: 'b', mesh: 'ambient' },
      { name: 'plain', namespace: 'lbl' },
      { name: 'c', mesh: 'ambient' },
    ],
  });
  for (const p of ['a', 'b', 'plain', 'c', 'd']) await tb.startEchoServer(p, { port: ECHO });
  dir = mkdtempSync(path.join(tmpdir(), 'shunt-e2e-ambient-'));
  podsFile = path.join(dir, 'pods.json');
  sockPath = path.join(dir, 'ztunnel', 'ztunnel.sock');
  logPath = path.join(dir, 'ztunnel.log');
  mkdirSync(bpffs);
  mkdirSync(bpffs2);
  for (const p of ['a', 'b', 'd']) pristine.set(p, netnsState(p));
  writePods();
  // ztunnel first, as on a node where it starts before the agent: it retries until the socket exists.
  zt = await startZtunnel({ socketPath: sockPath, logPath, name: 'zt-1' });
  standIns.push(zt);
}, 120_000);

afterAll(async () => {
  for (const a of agents) await a.stop().catch(() => undefined);
  for (const z of standIns) await z.stop().catch(() => undefined);
  for (const b of [bpffs, bpffs2]) {
    await removePins(path.join(b, 'shunt')).catch(() => undefined);
    rmSync(b, { recursive: true, force: true });
  }
  await tb?.dispose();
  if (dir) rmSync(dir, { recursive: true, force: true });
}, 60_000);

function writePods(): void {
  const items: unknown[] = [{ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'lbl', labels: lblLabels } }, ...listed.map((n) => tb.kubePod(n))];
  writeFileSync(podsFile, JSON.stringify(items, null, 2));
}

/** The node-local settings of node0's agent (node1's with `second`). */
const nodeArgs = (second = false) => [
  '--bpffs-path', second ? bpffs2 : bpffs,
  '--cgroup-path', tb.cgroupRoot,
  '--state-dir', path.join(dir, second ? 'state2' : 'state'),
  '--netns-prefix', podNetnsPrefix(tb),
];

async function startAgent(second = false): Promise<{ agent: AgentProcess; port: number }> {
  const p = await freePort();
  const a = await startBuiltAgent([
    '--pods-file', podsFile,
    '--node-name', tb.kubePod(second ? 'd' : 'a').spec.nodeName,
    '--profile', 'istio-ambient',
    '--redirect-mode', 'tc',
    '--zds-socket', second ? path.join(dir, 'ztunnel2', 'ztunnel.sock') : sockPath,
    '--metrics-address', `127.0.0.1:${p}`,
    ...nodeArgs(second),
    '--log-level', 'debug',
    // New pod netns are prepared (tc links attached idle) and released after this unless an ambient
    // pod claims them. Off on node1: the testbed's two nodes share one named-netns dir (a real node
    // sees only its own pods' netns), so node1's agent would prepare node0's new netns too.
    '--netns-prepare-grace-ms', second ? '0' : String(PREPARE_GRACE_MS),
  ]);
  agents.push(a);
  return { agent: a, port: p };
}
async function startNode0Agent(): Promise<AgentProcess> {
  const r = await startAgent();
  port = r.port;
  return r.agent;
}

/** The tcx attachments on a pod's eth0, as bpftool (not our code) reads them: program and link ids. */
function tcxAttachments(pod: string): unknown[] {
  const out = execFileSync('nsenter', [`--net=${tb.pod(pod).netnsPath}`, 'bpftool', '-j', 'net', 'show', 'dev', 'eth0'], { encoding: 'utf8', timeout: 10_000 });
  return (JSON.parse(out) as Array<{ tc?: Array<{ kind: string }> }>).flatMap((e) => e.tc ?? []).filter((t) => t.kind.startsWith('tcx/'));
}

const conns = (since: number, pred: (c: Conn) => boolean = () => true): Conn[] =>
  zt.entries().filter((e): e is Conn => e.event === 'conn' && e.at >= since && pred(e));

/** The ztunnel of a pod's node. */
const ztOf = (pod: string): ZtunnelStandIn => (tb.pod(pod).node === 'node1' ? zt2 : zt);

/** One echo exchange from `from` to `to`'s address of `family`; returns both ztunnel legs it produced (each from its node's ztunnel). */
async function viaZtunnel(from: string, to: string, family: 4 | 6): Promise<{ out: Conn; hbone: Conn; all: Conn[] }> {
  const since = Date.now();
  const addr = family === 4 ? tb.pod(to).ipv4 : tb.pod(to).ipv6;
  expect(await tb.echo(from, addr, ECHO, `hi-${family}`)).toBe(`hi-${family}`);
  const [out] = (await ztOf(from).waitFor((e) => e.event === 'conn' && e.at >= since && e.leg === 'outbound' && e.pod === from, { what: `outbound leg in ${from}` })) as Conn[];
  const [hbone] = (await ztOf(to).waitFor((e) => e.event === 'conn' && e.at >= since && e.leg === 'hbone' && e.pod === to, { what: `hbone leg in ${to}` })) as Conn[];
  const all = [...new Set([zt, zt2])].flatMap((z) => z.entries()).filter((e): e is Conn => e.event === 'conn' && e.at >= since);
  return { out: out!, hbone: hbone!, all };
}

it('enrolls the ambient pods: redirect installed, ztunnel told (Add acked), non-members left alone; each node only its own', async () => {
  zt2 = await startZtunnel({ socketPath: path.join(dir, 'ztunnel2', 'ztunnel.sock'), logPath: path.join(dir, 'ztunnel-node1.log'), name: 'zt-node1' });
  standIns.push(zt2);
  const n1 = await startAgent(true);
  expect(await metric(n1.port, 'shunt_pods_enrolled')).toBe(1);
  const [d] = await zt2.waitFor((e) => e.event === 'add' && !e.error, { what: 'd acked' });
  expect(d).toMatchObject({ pod: 'd' });
  agent = await startNode0Agent();
  expect(await metric(port, 'shunt_pods_enrolled')).toBe(2);
  expect(await metric(port, 'shunt_backend_info', { backend: 'tc' })).toBe(1);
  expect(await metric(port, 'shunt_zds_connected')).toBe(1);
  expect(await metric(port, 'shunt_zds_workloads', { state: 'acked' })).toBe(2);
  const adds = await zt.waitFor((e) => e.event === 'add' && !e.error, { count: 2, what: 'two acked adds' });
  expect(adds.map((e) => (e as { pod: string }).pod).sort()).toEqual(['a', 'b']);
  // The stand-in runs in the test runner's cgroup, not under the agent's --cgroup-path: the agent
  // (told ztunnel's pid by SO_PEERCRED on the ZDS connection) keeps tc pairing off, and says why.
  const off = new RegExp(`^tc splicing off: ztunnel pid ${zt.pid} in cgroup \\S+ is not under ${tb.cgroupRoot}$`);
  await agent.waitLog((l) => String(l['msg']).startsWith('tc: splicing off') && off.test(String(l['reason'])), 20_000);
  const doc = JSON.parse(runCli(['doctor', '--json', '--profile', 'istio-ambient', ...nodeArgs()])) as { tcSplice: { on: boolean; reason: string } };
  expect(doc.tcSplice.on).toBe(false);
  expect(doc.tcSplice.reason).toMatch(off);
  expect(runCli(['status', ...nodeArgs()])).toMatch(new RegExp(`^  splicing: off \\(tc splicing off: ztunnel pid ${zt.pid} in cgroup \\S+ is not under ${tb.cgroupRoot} \\(read back: splice_cfg mode none`, 'm'));
  expect(zt.entries().some((e) => e.event === 'add' && e.pod === 'plain')).toBe(false);
  expect(zt2.entries().filter((e) => e.event === 'add').map((e) => (e as { pod: string }).pod)).toEqual(['d']);
  // Non-members (plain: no label; c: not in the pods file yet) get no program on their eth0.
  expect({ plain: tcxAttachments('plain'), c: tcxAttachments('c') }).toEqual({ plain: [], c: [] });
  expect(tcxAttachments('a').length).toBeGreaterThanOrEqual(2);
}, 90_000);

it('a pod netns that appears while the agent runs is prepared (idle links): an ambient pod enrolls on them, a non-ambient one is released after the grace time, untouched', async () => {
  const isLog = (msg: string, pod: string) => (l: Record<string, unknown>) => l['msg'] === msg && String(l['netns'] ?? l['pod']).endsWith(pod);
  await tb.addPod({ name: 'late', mesh: 'ambient' }); // its pod event comes later (listed below)
  await tb.addPod({ name: 'lateplain' }); // never ambient
  try {
    // As the testbed made them: the preparer may have written its (inert) rule and route already,
    // which no fresh pod netns has; the final comparisons are with the whole state.
    const found = { late: withoutOurs(netnsState('late')), lateplain: withoutOurs(netnsState('lateplain')) };
    for (const p of ['late', 'lateplain']) await tb.startEchoServer(p, { port: ECHO });
    await agent.waitLog(isLog('netns prepared: tc links attached, idle until its pod is enrolled', '-pod-late'), 20_000);
    await agent.waitLog(isLog('netns prepared: tc links attached, idle until its pod is enrolled', '-pod-lateplain'), 20_000);
    expect(tcxAttachments('lateplain').map((t) => (t as { name: string }).name).sort()).toEqual(['shunt_tc_egress', 'shunt_tc_ingress']);
    expect(runCli(['status', ...nodeArgs()])).toMatch(/^tc: node ready, 2 pod\(s\) installed, 2 netns prepared \(idle links\)$/m);
    // Prepared, not enrolled: its traffic is untouched (c is not a member either: no ztunnel leg anywhere).
    const since = Date.now();
    expect(await tb.echo('lateplain', tb.pod('c').ipv4, ECHO, 'idle')).toBe('idle');
    expect(await tb.echo('c', tb.pod('lateplain').ipv6, ECHO, 'idle6')).toBe('idle6');
    expect(conns(since)).toEqual([]);

    // The ambient pod's event: enrolled on the prepared links (the backend attached none).
    listed = [...listed, 'late'];
    writePods();
    await zt.waitFor((e) => e.event === 'add' && e.pod === 'late' && !e.error, { what: 'late acked', timeoutMs: 20_000 });
    const enrolled = await agent.waitLog((l) => l['msg'] === 'tc: enrolled' && String(l['pod']).includes('/late '), 10_000);
    expect(enrolled['attached']).toEqual([]);
    expect(enrolled['rtnl']).toBe(0); // rule and route written at prepare time: nothing on the pod event's path takes rtnl_lock
    const { out } = await viaZtunnel('late', 'b', 4);
    expect(out.origDst).toEqual({ address: tb.pod('b').ipv4, port: ECHO });
    await agent.waitLog(isLog('prepared netns claimed: its pod was enrolled on the prepared links', '-pod-late'), 10_000);

    // Nobody claimed lateplain: released after the grace time, its netns as found.
    await agent.waitLog(isLog('prepared netns released: links detached, netns as found', '-pod-lateplain'), PREPARE_GRACE_MS + 15_000);
    expect(tcxAttachments('lateplain')).toEqual([]);
    expect(netnsState('lateplain')).toEqual(found.lateplain);
    expect(await metric(port, 'shunt_netns_prepare_total', { result: 'claimed' })).toBe(1);
    expect(await metric(port, 'shunt_netns_prepare_total', { result: 'released' })).toBe(1);
    expect(await metric(port, 'shunt_netns_prepared')).toBe(0);

    // Unlisted again: unenrolled, as found (as for any pod).
    listed = listed.filter((n) => n !== 'late');
    writePods();
    await zt.waitFor((e) => e.event === 'del' && e.pod === 'late', { what: 'late deleted', timeoutMs: 20_000 });
    await eventually('late unenrolled', async () => (await metric(port, 'shunt_pods_enrolled')) === 2 && tcxAttachments('late').length === 0, 20_000);
    expect(netnsState('late')).toEqual(found.late);
  } finally {
    listed = listed.filter((n) => n !== 'late');
    writePods();
    await eventually('late gone from the agent', async () => (await metric(port, 'shunt_pods_enrolled')) === 2, 20_000).catch(() => undefined);
    await tb.removePod('late');
    await tb.removePod('lateplain');
  }
}, 120_000);

it.each([4, 6] as const)('app → app (IPv%s) goes through both pods\' ztunnel with the right original destination', async (family) => {
  const [a, b] = [tb.pod('a'), tb.pod('b')];
  const dst = family === 4 ? b.ipv4 : b.ipv6;
  const src = family === 4 ? a.ipv4 : a.ipv6;
  const { out, hbone, all } = await viaZtunnel('a', 'b', family);
  // a's 15001 got the app's connection, original destination from the socket (sk_assign keeps it as the local address)
  expect(out).toMatchObject({ client: { address: src }, origDst: { address: dst, port: ECHO }, via: 'hbone' });
  // tc delivers by bpf_sk_assign, no NAT: SO_ORIGINAL_DST has nothing, the local address is the destination (ztunnel's TPROXY path).
  expect(out.how).toBe('local-address');
  expect(out.error).toBeUndefined();
  // b's 15008 got the HBONE tunnel from a's address; the app was reached from a's address
  expect(hbone).toMatchObject({ client: { address: src }, local: { address: dst, port: 15008 }, origDst: { address: dst, port: ECHO }, upstreamSource: { address: src } });
  expect(hbone.error).toBeUndefined();
  // HBONE was not re-captured into b's 15006, and ztunnel's own connection (mark 1337) did not loop into a's 15001.
  expect(all.filter((c) => c.leg === 'inbound')).toEqual([]);
  expect(all.filter((c) => c.leg === 'outbound')).toHaveLength(1);
}, 60_000);

it.each([4, 6] as const)('across nodes (IPv%s): a on node0 → d on node1, each leg in its own node\'s ztunnel', async (family) => {
  const [a, d] = [tb.pod('a'), tb.pod('d')];
  const dst = family === 4 ? d.ipv4 : d.ipv6;
  const src = family === 4 ? a.ipv4 : a.ipv6;
  const { out, hbone, all } = await viaZtunnel('a', 'd', family);
  expect(out).toMatchObject({ zt: 'zt-1', client: { address: src }, origDst: { address: dst, port: ECHO }, via: 'hbone' });
  expect(hbone).toMatchObject({ zt: 'zt-node1', client: { address: src }, local: { address: dst, port: 15008 }, origDst: { address: dst, port: ECHO }, upstreamSource: { address: src } });
  expect([out.error, hbone.error]).toEqual([undefined, undefined]);
  expect(all.filter((c) => c.leg === 'inbound')).toEqual([]);
  expect(all.filter((c) => c.leg === 'outbound')).toHaveLength(1);
}, 60_000);

it('the namespace label enrolls and unenrolls a pod live', async () => {
  lblLabels = { 'istio.io/dataplane-mode': 'ambient' };
  writePods();
  await zt.waitFor((e) => e.event === 'add' && e.pod === 'plain' && !e.error, { what: 'plain added', timeoutMs: 20_000 });
  await eventually('3 pods enrolled', async () => (await metric(port, 'shunt_pods_enrolled')) === 3);
  const { hbone } = await viaZtunnel('a', 'plain', 4);
  expect(hbone.origDst).toEqual({ address: tb.pod('plain').ipv4, port: ECHO });

  lblLabels = {};
  writePods();
  await zt.waitFor((e) => e.event === 'del' && e.pod === 'plain', { what: 'plain deleted', timeoutMs: 20_000 });
  await eventually('2 pods enrolled', async () => (await metric(port, 'shunt_pods_enrolled')) === 2);
  // plain has no ztunnel any more: a's ztunnel passes the connection through.
  const since = Date.now();
  expect(await tb.echo('a', tb.pod('plain').ipv4, ECHO, 'pt')).toBe('pt');
  const [pt] = (await zt.waitFor((e) => e.event === 'conn' && e.at >= since && e.leg === 'outbound')) as Conn[];
  expect(pt).toMatchObject({ via: 'passthrough', origDst: { address: tb.pod('plain').ipv4, port: ECHO } });
}, 90_000);

it.each([4, 6] as const)('plaintext inbound (IPv%s): a non-member client reaches an ambient pod through its ztunnel 15006, app reached from the client address', async (family) => {
  const [plain, b] = [tb.pod('plain'), tb.pod('b')];
  const dst = family === 4 ? b.ipv4 : b.ipv6;
  const src = family === 4 ? plain.ipv4 : plain.ipv6;
  const since = Date.now();
  expect(await tb.echo('plain', dst, ECHO, 'in')).toBe('in');
  const [inb] = (await zt.waitFor((e) => e.event === 'conn' && e.at >= since && e.leg === 'inbound' && e.pod === 'b', { what: 'inbound leg in b' })) as Conn[];
  expect(inb).toMatchObject({ client: { address: src }, origDst: { address: dst, port: ECHO }, via: 'app', upstreamSource: { address: src } });
  expect(inb!.how).toBe('local-address');
  expect(inb!.error).toBeUndefined();
  expect(conns(since, (c) => c.leg !== 'inbound')).toEqual([]); // plain has no ztunnel leg of its own
}, 60_000);

it('a restarted ztunnel gets its pods back; a NACK fails that pod with ztunnel\'s error, the others stay enrolled', async () => {
  await zt.stop();
  await eventually('ztunnel gone from /metrics', async () => (await metric(port, 'shunt_zds_connected')) === 0);
  const logPath2 = path.join(dir, 'ztunnel-2.log');
  zt = await startZtunnel({ socketPath: sockPath, logPath: logPath2, name: 'zt-2', nack: { c: 'injected: cannot create the workload proxy' } });
  standIns.push(zt);
  const snap = await zt.waitFor((e) => e.event === 'snapshot', { what: 'snapshot after reconnect' });
  const adds = zt.entries().filter((e) => e.event === 'add' && !e.error).map((e) => (e as { pod: string }).pod);
  expect(adds.sort()).toEqual(['a', 'b']);
  expect(snap[0]).toMatchObject({ removed: [] });
  await viaZtunnel('a', 'b', 4); // traffic resumes through the new ztunnel
  expect(await metric(port, 'shunt_zds_connected')).toBe(1);

  listed = ['a', 'b', 'plain', 'd', 'c'];
  writePods();
  const failed = await agent.waitLog((l) => l['msg'] === 'pod state changed' && String(l['pod']).endsWith('/c') && l['state'] === 'failed', 30_000);
  expect(String(failed['reason'])).toContain('injected: cannot create the workload proxy');
  expect(await metric(port, 'shunt_pods_enrolled')).toBe(2);
  // `shunt status` (a fresh process) shows the ZDS side: connected, a and b acked, c NACKed.
  await eventually('status shows the NACK', () => {
    const z = JSON.parse(runCli(['status', '--json', ...nodeArgs()])).zds as { connected: boolean; agentRunning: boolean; workloads: { name: string; acked: boolean; error?: string }[] };
    const by = Object.fromEntries(z.workloads.map((w) => [w.name, w]));
    return z.connected && z.agentRunning && by['a']?.acked === true && by['b']?.acked === true && by['c']?.acked === false && by['c']?.error === 'injected: cannot create the workload proxy';
  });
  expect(runCli(['status', ...nodeArgs()])).toMatch(/zds: ztunnel connected .* 2 acked, 1 failed, 0 not acked; agent pid \d+ running[\s\S]*\S+\/c .* NACK: injected: cannot create the workload proxy/);
  await viaZtunnel('b', 'a', 6); // the others are fine
  listed = ['a', 'b', 'plain', 'd'];
  writePods();
  await eventually('c gone from the agent', () => agent.logs.some((l) => l['msg'] === 'pod state changed' && String(l['pod']).endsWith('/c') && l['state'] === 'removed'), 30_000);
}, 120_000);

it('an agent SIGKILLed and replaced during a request stream loses no request and tears no redirect down', async () => {
  const since = Date.now();
  const results: string[] = [];
  let stop = false;
  const stream = (async () => {
    for (let i = 0; i < 200 && !stop; i++) results.push(await tb.echo('a', tb.pod('b').ipv4, ECHO, `r${i}`).catch((e: Error) => `ERR ${e.message}`));
  })();
  await eventually('a few requests', () => results.length >= 3, 30_000);
  const before = { a: tcxAttachments('a'), b: tcxAttachments('b') };
  expect(before.a.length).toBeGreaterThanOrEqual(2); // ingress + egress
  agent.child.kill('SIGKILL');
  await agent.exited;
  const during = results.length;
  agent = await startNode0Agent();
  await zt.waitFor((e) => e.event === 'snapshot' && e.at >= since, { what: 'snapshot from the new agent', timeoutMs: 30_000 });
  await eventually('requests after the restart', () => results.length >= during + 3, 30_000);
  stop = true;
  await stream;
  expect(results.filter((r) => r.startsWith('ERR'))).toEqual([]);
  expect(results.length).toBeGreaterThan(during);
  // The new agent re-announced a and b to the same ztunnel: same netns, sockets kept, nothing removed.
  const after = zt.entries().filter((e) => e.at >= since);
  expect(after.filter((e) => e.event === 'add' && (e.pod === 'a' || e.pod === 'b')).every((e) => (e as { reused: boolean }).reused)).toBe(true);
  expect(after.filter((e) => e.event === 'del')).toEqual([]);
  expect(after.find((e) => e.event === 'snapshot')).toMatchObject({ removed: [] });
  expect(await metric(port, 'shunt_pods_enrolled')).toBe(2);
  // The very same programs and links: the new agent adopted the redirect, it did not re-install it.
  expect({ a: tcxAttachments('a'), b: tcxAttachments('b') }).toEqual(before);
}, 180_000);

it('`shunt cleanup` (agents stopped, redirect left in place) leaves the pod netns as they were: no tcx links, rules or routes of ours', async () => {
  for (const a of agents) await a.stop();
  expect(tcxAttachments('a').length).toBeGreaterThan(0); // SIGTERM kept the redirect
  for (const second of [false, true]) {
    const report = JSON.parse(runCli(['cleanup', '--json', ...nodeArgs(second)]));
    expect(report.errors).toEqual([]);
    expect(report.zdsState).toBe(true); // no later agent re-announces these pods
    expect(existsSync(path.join(dir, second ? 'state2' : 'state', 'zds'))).toBe(false);
  }
  for (const p of ['a', 'b', 'd']) {
    expect({ p, tcx: tcxAttachments(p) }).toEqual({ p, tcx: [] });
    expect(netnsState(p)).toEqual(pristine.get(p));
  }
}, 120_000);

/** ip rules, routing tables and the sysctls a redirect touches, of a pod netns, for "left as found". */
/** A netns state without the tc backend's rule (lookup 1440) and route (table 1440). */
function withoutOurs(state: string): string {
  return state
    .split('\n')
    .filter((l) => !/(lookup|table) 1440\b/.test(l))
    .join('\n');
}

function netnsState(pod: string): string {
  const ns = tb.pod(pod).netnsPath;
  const run = (argv: string[]) => execFileSync('nsenter', [`--net=${ns}`, ...argv], { encoding: 'utf8', timeout: 10_000 });
  return [
    run(['ip', '-4', 'rule', 'show']),
    run(['ip', '-6', 'rule', 'show']),
    run(['ip', '-4', 'route', 'show', 'table', 'all']),
    run(['ip', '-6', 'route', 'show', 'table', 'all']).split('\n').filter((l) => !/^(fe80|multicast|local fe80|anycast fe80)/.test(l)).join('\n'),
    run(['sysctl', 'net.ipv4.conf.eth0.accept_local', 'net.ipv4.conf.all.accept_local', 'net.ipv4.conf.eth0.rp_filter', 'net.ipv4.conf.all.rp_filter']),
  ].join('---\n');
}
