/**
 * Ambient splicing on the real kernel, through the testbed's ztunnel stand-in (a separate process
 * started in the testbed node's cgroup, where the tc backend attaches its pairing program), with
 * apps as processes in their pods (netns + cgroup): app in a -> a's ztunnel 15001 (spliced with
 * the app's socket) -> HBONE -> b's ztunnel 15008 -> its inbound leg to the app in b (spliced with
 * the app's accepted socket). Checked on the path: the splice counters and the guard's stats move,
 * the hairpin (a's eth0 egress -> ingress) and b's lo carry ~no packets of a spliced transfer
 * while they carry it all with splicing 'none', the stand-in logged the right original
 * destination; every byte arrives in order (pattern checked by the receiver), a paused receiver
 * blocks the sender without a send error; short connections stop being spliced; the per-socket
 * maps are empty once the connections closed; cleanup detaches and unpins everything.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { Testbed, startPatternServer, ztunnelHarness, type PatternServerRecord, type ZtunnelLogEntry } from '@shunt/testbed';
import { TcBackend } from './backend';
import { SPLICE_PROGRAMS, type TcSpliceReading } from './splice';
import { meshPod, nodeContext } from './test-support/env';

type Conn = Extract<ZtunnelLogEntry, { event: 'conn' }>;
type ProcessHandle = ReturnType<Testbed['exec']>;
const FLOW = path.join(__dirname, 'test-support', 'scripts', 'flow.js');
const PORT = 9400;
const MiB = 1 << 20;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const RR_LONG = { mode: 'rr', rrSize: 16 << 10, rounds: 1000 };
const RR_BYTES = (16 << 10) * 1000;

interface FlowResult {
  sent: number;
  received: number;
  bad: number | null;
  error?: string;
  maxStallMs: number;
  stallAt: number | null;
  local: number | null;
  ms: number;
}
type ServerRecord = PatternServerRecord;

/** A testbed with pods a and b (ambient, one node), the app server in b, the stand-in, the backend. */
async function setUp(splice: 'auto' | 'none') {
  const tb = await Testbed.create({ pods: [{ name: 'a', mesh: 'ambient' }, { name: 'b', mesh: 'ambient' }] });
  const bpffsRoot = `/sys/fs/bpf/${tb.prefix}-tcsplice`;
  fs.mkdirSync(bpffsRoot, { recursive: true });
  tb.track('tc pins', async () => fs.rmSync(bpffsRoot, { recursive: true, force: true }));
  const serverLines = (await startPatternServer(tb, 'b', PORT)).records;
  const cgroupRoot = tb.node('node0').cgroupPath;
  const backend = new TcBackend({ splice });
  await backend.start(nodeContext(bpffsRoot, { cgroupRoot }));
  // Through env (a test restarts the backend): whichever backend is current at the end cleans up.
  tb.track('tc backend', () => env.backend.stop({ cleanup: true }).catch(() => undefined));
  const h = await ztunnelHarness({ socketPath: path.join(tb.stateDir, 'ztunnel.sock'), logPath: path.join(tb.stateDir, 'ztunnel.log'), cgroupPath: cgroupRoot });
  tb.track('ztunnel stand-in', () => h.stop().catch(() => undefined));
  for (const name of ['a', 'b']) {
    const pod = meshPod(tb, name);
    await backend.enroll(pod); // redirect first, then AddWorkload (istio-cni's order)
    await h.add({ uid: pod.uid, name: pod.name, namespace: pod.namespace, netnsPath: pod.netnsPath! });
  }
  const env = { tb, bpffsRoot, backend, h, serverLines, cgroupRoot };
  return env;
}

type Env = Awaited<ReturnType<typeof setUp>>;

async function reading(e: Env): Promise<{ counters: Record<string, number>; splice: TcSpliceReading }> {
  const o = await e.backend.observe();
  return { counters: o.counters, splice: (o.nodeDetail as { splice: TcSpliceReading }).splice };
}

const delta = (a: Record<string, number>, b: Record<string, number>, k: string): number => (b[k] ?? 0) - (a[k] ?? 0);

/** Packets received on an interface of a pod (rtnetlink stats from inside its netns; sysfs would show the mounter's netns). */
function rxPackets(tb: Testbed, pod: string, ifname: string): number {
  const out = execFileSync('nsenter', [`--net=${tb.pod(pod).netnsPath}`, 'ip', '-j', '-s', 'link', 'show', 'dev', ifname], { encoding: 'utf8' });
  const n = (JSON.parse(out) as Array<{ stats64?: { rx?: { packets?: number } } }>)[0]?.stats64?.rx?.packets;
  if (typeof n !== 'number') throw new Error(`no rx packet count for ${ifname} in pod ${pod}: ${out}`);
  return n;
}

/** Runs flows from a to b's app; returns the client's per-flow results and the server's records of them. */
async function run(e: Env, family: 4 | 6, flows: object[], timeoutMs = 40_000, from = 'a'): Promise<{ flows: FlowResult[]; server: ServerRecord[] }> {
  const dst = family === 4 ? e.tb.pod('b').ipv4 : e.tb.pod('b').ipv6;
  const before = e.serverLines.length;
  const res = await e.tb.run(from, [process.execPath, FLOW, 'client', dst, String(PORT), JSON.stringify(flows), String(timeoutMs)], { timeoutMs: timeoutMs + 5000 });
  const out = JSON.parse(res.stdout) as { flows?: FlowResult[]; error?: string };
  if (!out.flows) throw new Error(`client: ${out.error ?? res.stdout}`);
  const want = flows.filter((f) => (f as { mode: string }).mode !== 'short').length;
  for (let i = 0; i < 200 && e.serverLines.length - before < want; i++) await sleep(25);
  return { flows: out.flows, server: e.serverLines.slice(before) };
}

/** An established TCP socket of a pod: queued bytes (ss), charged memory and buffer sizes (skmem). */
interface PodSocket {
  pod: string;
  local: number;
  peer: number;
  recvQ: number;
  sendQ: number;
  rmem: number;
  rcvbuf: number;
  sndbuf: number;
}

function podSockets(tb: Testbed, pod: string): PodSocket[] {
  const out = execFileSync('nsenter', [`--net=${tb.pod(pod).netnsPath}`, 'ss', '-tnmH'], { encoding: 'utf8' });
  const re = /^(\S+)\s+(\d+)\s+(\d+)\s+\S+:(\d+)\s+\S+:(\d+)[^\n]*\n\s*skmem:\(r(\d+),rb(\d+),t\d+,tb(\d+)/gm;
  const socks: PodSocket[] = [];
  for (const m of out.matchAll(re))
    if (m[1] === 'ESTAB') socks.push({ pod, local: +m[4]!, peer: +m[5]!, recvQ: +m[2]!, sendQ: +m[3]!, rmem: +m[6]!, rcvbuf: +m[7]!, sndbuf: +m[8]! });
  return socks;
}

/** net.ipv4.tcp_rmem / tcp_wmem [min, default, max] in a pod's netns. */
function tcpMem(tb: Testbed, pod: string, which: 'rmem' | 'wmem'): number[] {
  return execFileSync('nsenter', [`--net=${tb.pod(pod).netnsPath}`, 'sysctl', '-n', `net.ipv4.tcp_${which}`], { encoding: 'utf8' }).trim().split(/\s+/).map(Number);
}

// Bytes a stand-in relay holds in userspace per direction: it stops reading a side while the other
// has HIGH (256 KiB) unsent, after at most one more read of 16 x 64 KiB (testbed native/relay.cc).
const RELAY_HELD = 2 * MiB;
// A queue's charge over its limit: one message or skb past the check (truesize).
const SKB_SLACK = 256 << 10;

/**
 * The most the ambient path can hold of one flow a -> b while b's app does not read, by TCP's and
 * the guard's rules: three sending sockets (the app in a, a's HBONE, b's inbound leg), each at most
 * tcp_wmem[2] (send autotuning); three receiving ones (a's ztunnel, spliced; b's HBONE; the app in
 * b, spliced), each at most max(cap, tcp_rmem[2]) (spliced bytes only while the queue stays under
 * the cap, TCP bytes only into the window, whose rcvbuf autotunes up to tcp_rmem[2]); two relays.
 * With tcp_rmem[2] = 32 MiB (as on the CI hosts) a single HBONE receiver buffered 31 MiB: a fixed
 * flow size and bound (48 MiB, 40 MiB) held only when autotuning happened to stay low.
 */
function pathCapacity(tb: Testbed, cap: number): number {
  const rmax = Math.max(...['a', 'b'].map((p) => tcpMem(tb, p, 'rmem')[2]!));
  const wmax = Math.max(...['a', 'b'].map((p) => tcpMem(tb, p, 'wmem')[2]!));
  return 3 * wmax + 3 * (Math.max(cap, rmax) + SKB_SLACK) + 2 * RELAY_HELD;
}

interface Stalled {
  event: 'stalled';
  at: number;
  ms: number;
  local: number;
}

/**
 * One sink flow a -> b whose reader stays paused until the sender has been blocked (one wait for
 * 'drain') for flow.stallReportMs, bounded by waitMs; then the sockets of both pods are read (the
 * path is still and full) and the reader resumes. stalled is null when the sender never blocked.
 */
async function runPausedUntilStalled(
  e: Env,
  flow: { bytes: number; stallReportMs: number; pauseFile: string },
  waitMs: number,
): Promise<{ stalled: Stalled | null; sockets: PodSocket[]; r: { flows: FlowResult[]; server: ServerRecord[] } }> {
  const before = e.serverLines.length;
  fs.rmSync(flow.pauseFile, { force: true });
  const client = e.tb.exec('a', [process.execPath, FLOW, 'client', e.tb.pod('b').ipv4, String(PORT), JSON.stringify([flow]), '60000'], { timeoutMs: 65_000 });
  let exited = false;
  void client.exited.finally(() => (exited = true));
  const stalledLine = (): Stalled | null => {
    const l = client.stdoutText().split('\n').find((x) => x.startsWith('{"event":"stalled"'));
    return l ? (JSON.parse(l) as Stalled) : null;
  };
  let stalled: Stalled | null = null;
  for (const end = Date.now() + waitMs; !(stalled = stalledLine()) && !exited && Date.now() < end; ) await sleep(20);
  const sockets = stalled ? [...podSockets(e.tb, 'a'), ...podSockets(e.tb, 'b')] : [];
  fs.writeFileSync(flow.pauseFile, '');
  const st = await client.exited;
  fs.rmSync(flow.pauseFile, { force: true });
  const last = client.stdoutText().trim().split('\n').pop() ?? '';
  const out = (last.startsWith('{"flows"') ? JSON.parse(last) : {}) as { flows?: FlowResult[] };
  if (!out.flows) throw new Error(`client (exit ${st.code ?? st.signal}): ${client.stdoutText().slice(-1000)}${client.stderrText().slice(-1000)}`);
  for (let i = 0; i < 200 && e.serverLines.length - before < 1; i++) await sleep(25);
  return { stalled, sockets, r: { flows: out.flows, server: e.serverLines.slice(before) } };
}

/** Every flow: no error, all bytes arrived in order at the server (and replies at the client). */
function expectIntact(r: { flows: FlowResult[]; server: ServerRecord[] }, flows: Array<{ bytes?: number; replyBytes?: number }>): void {
  expect(r.flows.map((f) => f.error ?? null)).toEqual(flows.map(() => null));
  expect(r.server.map((s) => s.error ?? null)).toEqual(flows.map(() => null));
  expect(r.server.map((s) => s.bad)).toEqual(flows.map(() => null));
  expect(r.server.map((s) => s.bytes).sort()).toEqual(flows.map((f) => f.bytes).sort());
  expect(r.flows.map((f) => f.bad)).toEqual(flows.map(() => null));
  expect(r.flows.map((f) => f.received)).toEqual(flows.map((f) => f.replyBytes ?? 0));
}

/** Waits (bounded) until the per-socket maps are empty: every spliced or learning socket closed. */
async function entriesSettled(e: Env): Promise<Record<string, number>> {
  let last: Record<string, number> = {};
  for (let i = 0; i < 100; i++) {
    last = (await reading(e)).splice.entries ?? { unreadable: 1 };
    if (Object.values(last).every((n) => n === 0)) return last;
    await sleep(50);
  }
  return last;
}

describe('tc splice: app <-> ztunnel sockets in the pod netns (default splice)', () => {
  let e: Env;

  beforeAll(async () => {
    e = await setUp('auto');
  }, 90_000);

  afterAll(async () => {
    await e?.tb.dispose();
  }, 60_000);

  test('the stand-in and the pods are under the cgroup the pairing program is attached to', async () => {
    const { splice } = await reading(e);
    expect(splice).toMatchObject({ setting: 'auto', on: true, cgroupRoot: e.cgroupRoot });
    expect(Object.values(splice.links)).toEqual(SPLICE_PROGRAMS.map(() => true));
    const procs = (dir: string): number[] => fs.readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
    expect(procs(e.cgroupRoot)).toContain(e.h.zt.pid);
    const attached = execFileSync('bpftool', ['cgroup', 'show', e.cgroupRoot], { encoding: 'utf8' });
    expect(attached).toMatch(/sock_ops\s+.*shunt_tc_splice/);
  });

  test.each([4, 6] as const)('v%i: both legs spliced, the stand-in learnt the original destination, hairpin and lo stay ~flat', async (family) => {
    const dst = family === 4 ? e.tb.pod('b').ipv4 : e.tb.pod('b').ipv6;
    const r0 = await reading(e);
    const lo0 = rxPackets(e.tb, 'b', 'lo');
    // A long request/response transfer (16 MiB each way): each message finds the peer's queue
    // empty, so the guard keeps it spliced (a bulk sink faster than the HBONE leg fills the cap and
    // goes over TCP for part of the way, by design: the bulk-safety test below).
    const r = await run(e, family, [RR_LONG]);
    expect(r.flows[0]!.error ?? null).toBeNull();
    expect(r.flows[0]!.bad).toBeNull();
    expect(r.flows[0]!.received).toBe(RR_BYTES);
    expect(r.server.map((x) => [x.bytes, x.bad])).toEqual([[RR_BYTES, null]]);
    const r1 = await reading(e);
    const lo1 = rxPackets(e.tb, 'b', 'lo');
    if (delta(r0.counters, r1.counters, 'bytes_spliced') < 2 * 32 * MiB * 0.8)
      console.log(JSON.stringify({ counters: Object.fromEntries(Object.keys(r1.counters).map((k) => [k, delta(r0.counters, r1.counters, k)])), stats: Object.fromEntries(Object.keys(r1.splice.stats!).map((k) => [k, delta(r0.splice.stats!, r1.splice.stats!, k)])) }));
    // Exactly two sockets per leg, two legs (a: app + ztunnel 15001; b: ztunnel's inbound leg +
    // app), each pair complete; nothing else (not ztunnel's HBONE sockets) spliced.
    expect(delta(r0.counters, r1.counters, 'sockets_spliced')).toBe(4);
    expect(delta(r0.counters, r1.counters, 'splice_paired')).toBe(2);
    expect(delta(r0.splice.stats!, r1.splice.stats!, 'splice_to_tcp_no_peer')).toBe(0);
    expect(delta(r0.splice.stats!, r1.splice.stats!, 'splice_no_self')).toBe(0);
    // Both legs carried both directions through sk_msg.
    expect(delta(r0.counters, r1.counters, 'bytes_spliced')).toBeGreaterThan(2 * 2 * RR_BYTES * 0.95);
    expect(delta(r0.splice.stats!, r1.splice.stats!, 'splice_bytes')).toBeGreaterThan(2 * 2 * RR_BYTES * 0.95);
    // Not through the hairpin in a or b (1000 round trips over TCP are > 2000 segments) nor b's lo.
    expect(delta(r0.counters, r1.counters, 'outbound_hairpinned_flow')).toBeLessThan(100);
    expect(lo1 - lo0).toBeLessThan(100);
    // The path: ztunnel in a saw the connection with b's address as original destination.
    const legs = (await e.h.zt.waitFor((x) => x.event === 'conn' && (x as Conn).leg === 'outbound' && (x as Conn).client?.port === r.flows[0]!.local, { what: 'outbound leg' })) as Conn[];
    expect(legs[0]).toMatchObject({ pod: 'a', origDst: { address: dst, port: PORT }, how: 'local-address', via: 'hbone' });
  }, 60_000);

  test('a connection not through ztunnel (the app to its own pod address, over lo) is not spliced', async () => {
    const r0 = await reading(e);
    const r = await run(e, 4, [{ mode: 'rr', rrSize: 1024, rounds: 20 }], 20_000, 'b');
    expect(r.flows[0]!.error ?? null).toBeNull();
    expect(r.flows[0]!.received).toBe(20 * 1024);
    const r1 = await reading(e);
    expect(delta(r0.counters, r1.counters, 'sockets_spliced')).toBe(0);
    expect(delta(r0.counters, r1.counters, 'outbound_to_listener')).toBe(0); // not captured either
  });

  test('an app connection its pod does not capture (outbound port excluded) is not spliced on its side', async () => {
    const a = meshPod(e.tb, 'a');
    await e.backend.enroll({ ...a, traffic: { ...a.traffic, outbound: { ...a.traffic.outbound, excludePorts: [PORT] } } });
    try {
      const r0 = await reading(e);
      const r = await run(e, 4, [{ mode: 'rr', rrSize: 1024, rounds: 20 }]);
      expect(r.flows[0]!.received).toBe(20 * 1024);
      const r1 = await reading(e);
      expect(delta(r0.counters, r1.counters, 'outbound_bypassed')).toBe(1); // not hairpinned in a
      // Only b's inbound leg (its ztunnel 15006 -> the app) is a pair; a's app socket has no ztunnel peer.
      expect(delta(r0.counters, r1.counters, 'sockets_spliced')).toBe(2);
      expect(delta(r0.splice.stats!, r1.splice.stats!, 'splice_to_tcp_no_peer')).toBe(0);
    } finally {
      await e.backend.enroll(a);
    }
  });

  test('bulk safety on the ambient path: paused reader blocks the sender, slow reader, bidirectional, all in order', async () => {
    const r0 = await reading(e);
    const cap = r0.splice.guard!.queueCap;
    // A flow well past what the path can hold (pathCapacity): only a sender that blocks stalls.
    const capacity = pathCapacity(e.tb, cap);
    const bytes = Math.ceil((capacity + 16 * MiB) / MiB) * MiB;
    const pauseFile = path.join(e.tb.stateDir, 'tcsplice-resume');
    const paused = [{ mode: 'sink', bytes, writeSize: 64 << 10, pauseMs: 20_000, pauseFile, stallReportMs: 1000 }];
    const { stalled, sockets, r: p } = await runPausedUntilStalled(e, paused[0]!, 15_000);
    const diag = JSON.stringify({ capacity, bytes, stalled, flow: p.flows[0], sockets });
    expectIntact(p, paused);
    // The sender blocked for 1 s while the reader was paused (TCP's window, after the guard left
    // the splice), having written less than the path can hold, far less than the flow.
    expect({ stalled: stalled !== null, diag }).toEqual({ stalled: true, diag });
    expect(p.flows[0]!.maxStallMs).toBeGreaterThanOrEqual(1000);
    expect(stalled!.at).toBeLessThanOrEqual(capacity); // = the flow less 16 MiB or more
    // Where the written bytes were at that moment: the path's sockets (the flow's pair in a, both
    // HBONE ends, b's leg and the app's socket; PORT or 15008 on one side), the relays, the client's
    // one pending write (Node's stream) and the server's first read.
    const onPath = sockets.filter((s) => [PORT, 15008].includes(s.local) || [PORT, 15008].includes(s.peer));
    const held = onPath.reduce((n, s) => n + s.sendQ + Math.max(s.recvQ, s.rmem), 0);
    expect({ at: stalled!.at, diag }).toEqual({ at: Math.min(stalled!.at, held + 2 * RELAY_HELD + 2 * (64 << 10)), diag });
    // The guard: it redirected a message only onto a queue that stayed within the cap (its own
    // record of peer queue + message, a max over all redirects), and each spliced receiver (a's
    // ztunnel, the app in b: local port PORT) holds no more than the cap beyond its TCP-path bytes
    // (Recv-Q; their skbs' truesize is allowed half again). Not rcvbuf: TCP raises it to the queue
    // (tcp_clamp_window) when a segment finds the queue over it, spliced bytes included.
    const rp = await reading(e);
    expect(rp.splice.stats!['splice_peak_queue_bytes']).toBeLessThanOrEqual(cap);
    const spliced = onPath.filter((s) => s.local === PORT);
    expect(spliced.length).toBe(2);
    for (const s of spliced) expect({ beyondTcp: s.rmem - s.recvQ, diag }).toEqual({ beyondTcp: Math.min(s.rmem - s.recvQ, cap + SKB_SLACK + s.recvQ / 2), diag });
    const mixed = [
      { mode: 'sink', bytes: 16 * MiB, writeSize: 64 << 10, slowMs: 2 },
      { mode: 'sink', bytes: 8 * MiB, writeSize: 4 << 10 },
      { mode: 'bidi', bytes: 16 * MiB, writeSize: 64 << 10, replyBytes: 16 * MiB, slowMs: 1 },
      { mode: 'rr', rrSize: 1024, rounds: 1000 },
    ];
    const m = await run(e, 6, mixed);
    expect(m.flows.map((f) => f.error ?? null)).toEqual(mixed.map(() => null));
    expect(m.server.map((s) => s.bad)).toEqual(mixed.map(() => null));
    expect(m.flows.map((f) => f.bad)).toEqual(mixed.map(() => null));
    expect(m.server.map((s) => s.bytes).sort((x, y) => x - y)).toEqual([1024 * 1000, 8 * MiB, 16 * MiB, 16 * MiB]);
    expect(m.flows[2]!.received).toBe(16 * MiB);
    expect(m.flows[3]!.received).toBe(1024 * 1000);
    const r1 = await reading(e);
    // The guard switched flows to TCP (queue cap / small messages) and back, the verdict queued the TCP part.
    const s = (k: string) => delta(r0.splice.stats!, r1.splice.stats!, k);
    expect(s('splice_to_tcp_queue') + s('splice_to_tcp_small')).toBeGreaterThanOrEqual(1);
    expect(s('splice_back_to_splice')).toBeGreaterThanOrEqual(1);
    expect(s('splice_verdict_bytes')).toBeGreaterThan(0);
  }, 120_000);

  test('a spliced receiver closing with unread data resets the connection (as TCP), the sender does not hang', async () => {
    const r0 = await reading(e);
    // The app in b never reads and closes after 1 s with its queue full; 48 MiB would never fit.
    const r = await run(e, 4, [{ mode: 'drop', bytes: 48 * MiB, writeSize: 64 << 10, closeMs: 1000 }], 15_000);
    expect(r.flows[0]!.error).toMatch(/ECONNRESET|EPIPE|ECONNABORTED/);
    expect(r.flows[0]!.ms).toBeLessThan(8000); // not the fin timeout (60 s) of a FIN into a closed window
    const r1 = await reading(e);
    expect(delta(r0.counters, r1.counters, 'splice_close_unread')).toBeGreaterThanOrEqual(1);
    expect(r1.splice.resets!.receiversDestroyed - r0.splice.resets!.receiversDestroyed).toBeGreaterThanOrEqual(1);
    expect(await entriesSettled(e)).toEqual({ splice_socks: 0, splice_peer: 0, tc_splice_pending: 0 });
  }, 30_000);

  test('short connections stop being spliced after the learn run; the per-socket maps empty after close', async () => {
    const r0 = await reading(e);
    const r = await run(e, 4, [{ mode: 'short', count: 12 }]);
    expect((r.flows[0] as unknown as { ok: number }).ok).toBe(12);
    const r1 = await reading(e);
    // 4 short ones teach each leg's accepting socket; most of the rest are not spliced (both legs).
    expect(delta(r0.counters, r1.counters, 'splice_skipped_short')).toBeGreaterThanOrEqual(8);
    expect(delta(r0.counters, r1.counters, 'sockets_spliced')).toBeLessThanOrEqual(4 * 6);
    expect(await entriesSettled(e)).toEqual({ splice_socks: 0, splice_peer: 0, tc_splice_pending: 0 });
    // A long connection ends the run: the next one splices again.
    const long = [{ mode: 'sink', bytes: 4 * MiB, writeSize: 16 << 10 }];
    expectIntact(await run(e, 4, long), long);
    const r2 = await reading(e);
    const again = await run(e, 4, [{ mode: 'rr', rrSize: 1024, rounds: 50 }]);
    expect(again.flows[0]!.error ?? null).toBeNull();
    expect(delta(r2.counters, (await reading(e)).counters, 'sockets_spliced')).toBeGreaterThanOrEqual(4);
  }, 60_000);

  test('nothing leaks per connection: splice maps empty again after many connections', async () => {
    const flows = Array.from({ length: 24 }, () => ({ mode: 'rr', rrSize: 512, rounds: 20 }));
    const r = await run(e, 4, flows);
    expect(r.flows.map((f) => f.error ?? null)).toEqual(flows.map(() => null));
    expect(await entriesSettled(e)).toEqual({ splice_socks: 0, splice_peer: 0, tc_splice_pending: 0 });
  }, 60_000);

  test('a restarted backend adopts the pinned splice links and maps: a spliced flow keeps splicing across the restart', async () => {
    const dst = e.tb.pod('b').ipv4;
    const r0 = await reading(e);
    const rounds = 4000;
    const flow = e.tb.exec('a', [process.execPath, FLOW, 'client', dst, String(PORT), JSON.stringify([{ mode: 'rr', rrSize: 16 << 10, rounds }]), '40000']);
    // Mid-flow (bounded wait for the first spliced bytes): the agent goes away and comes back.
    for (let i = 0; i < 200 && delta(r0.counters, (await reading(e)).counters, 'bytes_spliced') < 4 * MiB; i++) await sleep(10);
    const links0 = (await reading(e)).splice.linkIds;
    expect(Object.values(links0).every((id) => id > 0)).toBe(true);
    await e.backend.stop({ cleanup: false });
    const restarted = new TcBackend();
    await restarted.start(nodeContext(e.bpffsRoot, { cgroupRoot: e.cgroupRoot }));
    e.backend = restarted;
    const mid = await reading(e);
    expect(mid.splice.linkIds).toEqual(links0); // adopted, not attached again
    const out = await flow.exited;
    expect(out.code).toBe(0);
    const res = JSON.parse(flow.stdoutText()) as { flows: FlowResult[] };
    expect(res.flows[0]!.error ?? null).toBeNull();
    expect(res.flows[0]!.bad).toBeNull();
    expect(res.flows[0]!.received).toBe(rounds * (16 << 10));
    const r1 = await reading(e);
    // The whole flow went through sk_msg, before and after the restart (the counters are the pinned maps').
    expect(delta(r0.counters, r1.counters, 'bytes_spliced')).toBeGreaterThan(2 * 2 * rounds * (16 << 10) * 0.95);
    expect(delta(r0.counters, r1.counters, 'outbound_hairpinned_flow')).toBeLessThan(100);
    // New connections pair and splice under the adopted programs.
    const again = await run(e, 4, [{ mode: 'rr', rrSize: 16 << 10, rounds: 50 }]);
    expect(again.flows[0]!.received).toBe(50 * (16 << 10));
    expect(delta(r1.counters, (await reading(e)).counters, 'splice_paired')).toBe(2);
  }, 60_000);

  test('stop({cleanup}) detaches and unpins the splice programs: the node cgroup has none of ours', async () => {
    const dir = path.join(e.bpffsRoot, 'tc');
    expect(fs.readdirSync(path.join(dir, 'links')).sort()).toEqual(SPLICE_PROGRAMS.map((s) => s.program).sort());
    await e.h.stop();
    await e.backend.stop({ cleanup: true });
    expect(fs.existsSync(dir)).toBe(false);
    expect(execFileSync('bpftool', ['cgroup', 'show', e.cgroupRoot], { encoding: 'utf8' })).not.toMatch(/shunt_tc/);
  }, 60_000);
});

describe("tc splice 'none': the same transfer goes through the hairpin and lo", () => {
  let e: Env;

  beforeAll(async () => {
    e = await setUp('none');
  }, 90_000);

  afterAll(async () => {
    await e?.tb.dispose();
  }, 60_000);

  test('nothing spliced, the hairpin and b lo carry the stream', async () => {
    const r0 = await reading(e);
    expect(r0.splice).toMatchObject({ setting: 'none', on: false, reason: 'splice none' });
    const lo0 = rxPackets(e.tb, 'b', 'lo');
    const r = await run(e, 4, [RR_LONG]);
    expect(r.flows[0]!.received).toBe(RR_BYTES);
    expect(r.server.map((x) => [x.bytes, x.bad])).toEqual([[RR_BYTES, null]]);
    const r1 = await reading(e);
    expect(delta(r0.counters, r1.counters, 'sockets_spliced')).toBe(0);
    expect(delta(r0.counters, r1.counters, 'outbound_hairpinned_flow')).toBeGreaterThan(100);
    expect(rxPackets(e.tb, 'b', 'lo') - lo0).toBeGreaterThan(100);
    expect(execFileSync('bpftool', ['cgroup', 'show', e.cgroupRoot], { encoding: 'utf8' })).not.toMatch(/shunt_tc/);
  }, 60_000);
});
