/**
 * End to end on the testbed: real HAProxy sidecars (uid 1337) that read SO_ORIGINAL_DST, pods in
 * their own netns and cgroups, the backend attached to the node's cgroup, MeshPods interpreted
 * from the testbed's Kubernetes-shaped pods by the core's istio-sidecar profile. The backend runs
 * with the default splice setting (auto: guarded splicing) except in 'splicing, a port list'. Bulk safety of the
 * default under memory limits, through HAProxy and Node sidecars, is proven in splice-safety.e2e.test.ts.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { APP_UID, Testbed, type ProxyLogRecord } from '@shunt/testbed';
import type { MeshPod } from '@shunt/core';
import { SockopsBackend } from './backend';
import { Helper, SCRIPTS } from './test-support/sandbox';
import { interpretedMeshPod } from './test-support/mesh';
import { testbedBpffs, testbedNodeContext } from './test-support/testbed-node';

const ANN = {
  excludeOutboundPorts: 'traffic.sidecar.istio.io/excludeOutboundPorts',
  excludeOutboundIPRanges: 'traffic.sidecar.istio.io/excludeOutboundIPRanges',
  excludeInboundPorts: 'traffic.sidecar.istio.io/excludeInboundPorts',
};
const NO_RECORDS = { origByCookie: 0, origByTuple: 0, splicedSockets: 0, splicePeers: 0, dnsSockets: 0 };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const MiB = 1 << 20;

/**
 * Bytes for the bulk-transfer test: more than the node's hard TCP memory limit (tcp_mem[2] pages),
 * so that a path without backpressure (unguarded splicing) cannot queue the whole transfer in the
 * lagging reader's socket and must fail; capped to keep the test short on machines with a huge limit.
 */
function bulkBytes(): number {
  const hard = Number(fs.readFileSync('/proc/sys/net/ipv4/tcp_mem', 'utf8').trim().split(/\s+/)[2]);
  const want = Number.isFinite(hard) && hard > 0 ? hard * 4096 + 64 * MiB : 2048 * MiB;
  return Math.min(Math.ceil(want / MiB), 4096) * MiB;
}

interface BulkResult {
  sent: number;
  sha256?: string;
  reply?: { bytes: number; sha256: string };
  /** Bytes handed to the kernel when the sender first made no progress for 500 ms; null: never. */
  blockedAt: number | null;
  error?: string;
}

/** Live per-connection map entries once the last closes have happened (bounded: ~3 s). */
async function settledRecords(backend: SockopsBackend): Promise<ReturnType<SockopsBackend['liveRecords']>> {
  let live = backend.liveRecords();
  for (let i = 0; i < 100 && Object.values(live).some((n) => n > 0); i++) {
    await sleep(30);
    live = backend.liveRecords();
  }
  return live;
}

/** Everything a restarted agent process would do, in a child process of its own (built dist). */
async function startHolder(tb: Testbed, bpffsRoot: string, pods: MeshPod[], children: Set<Helper>): Promise<Helper> {
  const dist = path.resolve(__dirname, '../dist/backend.js');
  const src = path.resolve(__dirname, 'backend.ts');
  if (!fs.existsSync(dist) || fs.statSync(dist).mtimeMs < fs.statSync(src).mtimeMs)
    throw new Error(`${dist} is missing or older than ${src}: run npx tsc -p tsconfig.build.json first`);
  const cfg = path.join(tb.stateDir, `holder-${children.size}.json`);
  // No splice setting: the holder runs the default, as the agent does.
  fs.writeFileSync(cfg, JSON.stringify({ cgroupRoot: tb.node('node0').cgroupPath, bpffsRoot, pods }));
  const child = spawn(process.execPath, [path.join(SCRIPTS, 'holder.js'), cfg], { stdio: ['ignore', 'pipe', 'pipe'] });
  const h = new Helper(child);
  children.add(h);
  await h.ready();
  return h;
}

const outbound = (since: number) => (r: ProxyLogRecord) => r.at >= since - 1 && r.listener === 'outbound';
const inbound = (since: number) => (r: ProxyLogRecord) => r.at >= since - 1 && r.listener === 'inbound';

describe('sockops backend with HAProxy sidecars (testbed)', () => {
  let tb: Testbed;
  let backend: SockopsBackend;
  let bpffsRoot = '';
  const holders = new Set<Helper>();

  beforeAll(async () => {
    tb = await Testbed.create({
      pods: [
        { name: 'client', mesh: 'sidecar' },
        { name: 'server', mesh: 'sidecar' },
        { name: 'plain', mesh: 'none' },
      ],
    });
    const plain = tb.pod('plain');
    const server = tb.pod('server');
    // Annotations name addresses of pods that exist already, so this pod comes second.
    await tb.addPod({
      name: 'excl',
      mesh: 'sidecar',
      annotations: {
        [ANN.excludeOutboundPorts]: '9001',
        [ANN.excludeOutboundIPRanges]: `${server.ipv4}/32`,
        [ANN.excludeInboundPorts]: '9002',
      },
    });
    await Promise.all([
      tb.startEchoServer('server', { port: 9000 }),
      tb.startEchoServer('server', { port: 9100 }),
      ...[15020, 15021, 15090].map((port) => tb.startEchoServer('server', { port })),
      tb.startIperfServer('server'),
      tb.startEchoServer('plain', { port: 9000 }),
      tb.startEchoServer('plain', { port: 9001 }),
      tb.startEchoServer('excl', { port: 9002 }),
      tb.startEchoServer('excl', { port: 9000 }), // positive control for the inbound exclude
    ]);
    expect(plain.ipv4).not.toBe(server.ipv4);
    bpffsRoot = testbedBpffs(tb, 'sockops');
    backend = new SockopsBackend(); // the default: auto (guarded splicing, one receive queue)
    await backend.start(testbedNodeContext(tb, bpffsRoot));
    for (const name of ['client', 'server', 'excl']) await backend.enroll(interpretedMeshPod(tb, name));
  }, 90_000);

  afterAll(async () => {
    for (const h of holders) h.kill();
    await backend?.stop({ cleanup: true }).catch(() => undefined);
    await tb?.dispose();
  });

  it('IPv4: both sidecars see the original destination, no conntrack entries', async () => {
    const server = tb.pod('server');
    const since = Date.now();
    // A failed read is a failed test, never "0 entries".
    const count = async (pod: string): Promise<number> => {
      const n = await tb.conntrackCount(pod);
      if (n === null || !Number.isFinite(n)) throw new Error(`cannot read net.netfilter.nf_conntrack_count in the ${pod} netns (got ${String(n)})`);
      return n;
    };
    const ct0 = [await count('client'), await count('server')];
    expect(await tb.echo('client', server.ipv4, 9000, 'ping4')).toContain('ping4');
    const out = await tb.waitProxyLog('client', outbound(since));
    const inb = await tb.waitProxyLog('server', inbound(since));
    expect(out[0]?.originalDst).toEqual({ address: server.ipv4, port: 9000 });
    expect(inb[0]?.originalDst).toEqual({ address: server.ipv4, port: 9000 });
    const ct1 = [await count('client'), await count('server')];
    expect(ct1.map((c, i) => c - ct0[i]!)).toEqual([0, 0]);
  });

  it('IPv6: the sidecars see the original destination', async () => {
    // The IPv6 stand-in needs only the built addon, no kernel feature: not running is a failure, not a skip.
    expect(tb.sidecarStatus('client').ipv6).toBe('running');
    const server = tb.pod('server');
    const since = Date.now();
    expect(await tb.echo('client', server.ipv6, 9000, 'ping6')).toContain('ping6');
    const out = await tb.waitProxyLog('client', outbound(since));
    const inb = await tb.waitProxyLog('server', inbound(since));
    expect(out[0]?.originalDst).toEqual({ address: server.ipv6, port: 9000 });
    expect(inb[0]?.originalDst).toEqual({ address: server.ipv6, port: 9000 });
  });

  it("never loops the proxy's upstream back into a proxy: one record per hop", async () => {
    const server = tb.pod('server');
    tb.clearProxyLog('client');
    tb.clearProxyLog('server');
    const since = Date.now();
    expect(await tb.echo('client', server.ipv4, 9000, 'once')).toContain('once');
    // The whole log once it stopped growing: a looping upstream keeps producing records.
    const out = await tb.settledProxyLog('client', (r) => r.at >= since - 1);
    const inb = await tb.settledProxyLog('server', (r) => r.at >= since - 1);
    expect(out).toHaveLength(1);
    expect(out[0]).toMatchObject({ listener: 'outbound', upstream: { address: server.ipv4, port: 9000 } });
    expect(inb).toHaveLength(1);
    // The server's sidecar delivers to its own app, not to itself.
    expect(inb[0]).toMatchObject({ listener: 'inbound', upstream: { port: 9000 } });
  });

  it('leaves a pod outside the mesh alone', async () => {
    const plain = tb.pod('plain');
    const since = Date.now();
    expect(await tb.echo('plain', plain.ipv4, 9000, 'self')).toContain('self');
    // Positive control, sent after: once its records are in, any record of the first would be too.
    expect(await tb.echo('client', tb.pod('server').ipv4, 9000, 'control')).toContain('control');
    await tb.settledProxyLog('server', inbound(since));
    expect(tb.proxyLog('client', { since }).filter((r) => r.client.address === plain.ipv4 || r.originalDst.address === plain.ipv4)).toEqual([]);
    expect(tb.proxyLog('server', { since }).filter((r) => r.client.address === plain.ipv4)).toEqual([]);
  });

  it('does not capture inbound 15020/15021/15090 (captured outbound by the caller, as Istio does)', async () => {
    const server = tb.pod('server');
    const since = Date.now();
    for (const port of [15020, 15021, 15090]) expect(await tb.echo('client', server.ipv4, port, `p${port}`)).toContain(`p${port}`);
    const out = await tb.waitProxyLog('client', outbound(since), { count: 3 });
    expect(out.map((r) => r.originalDst.port).sort()).toEqual([15020, 15021, 15090]);
    // Positive control, sent after: once the server's sidecar logged it, it would have logged those.
    expect(await tb.echo('client', server.ipv4, 9000, 'control')).toContain('control');
    expect((await tb.settledProxyLog('server', inbound(since))).map((r) => r.originalDst.port)).toEqual([9000]);
  });

  describe('Istio exclude annotations, as the core interprets them', () => {
    it('the core turned the annotations into the MeshPod the backend enrolled', () => {
      const pod = interpretedMeshPod(tb, 'excl');
      expect(pod.traffic.outbound.excludePorts).toEqual([9001]);
      expect(pod.traffic.outbound.excludeCidrs).toEqual([{ family: 4, address: tb.pod('server').ipv4, prefix: 32 }]);
      expect(pod.traffic.inbound.exclude).toContain(9002);
    });

    it('excludeOutboundPorts bypasses the sidecar; other ports to the same pod do not', async () => {
      const plain = tb.pod('plain');
      const since = Date.now();
      expect(await tb.echo('excl', plain.ipv4, 9001, 'skip')).toContain('skip');
      // The captured one, sent after, is the positive control: the whole log is read once it is in.
      expect(await tb.echo('excl', plain.ipv4, 9000, 'take')).toContain('take');
      const out = await tb.settledProxyLog('excl', outbound(since));
      expect(out.map((r) => r.originalDst)).toEqual([{ address: plain.ipv4, port: 9000 }]);
    });

    it("excludeOutboundIPRanges bypasses the caller's sidecar (the destination still captures inbound)", async () => {
      const server = tb.pod('server');
      const since = Date.now();
      expect(await tb.echo('excl', server.ipv4, 9000, 'cidr')).toContain('cidr');
      const inb = await tb.waitProxyLog('server', inbound(since));
      expect(inb.map((r) => r.originalDst)).toEqual([{ address: server.ipv4, port: 9000 }]);
      // Positive control: a captured destination, sent after; then no excl record for the server.
      expect(await tb.echo('excl', tb.pod('plain').ipv4, 9000, 'control')).toContain('control');
      const out = await tb.settledProxyLog('excl', outbound(since));
      expect(out.map((r) => r.originalDst)).toEqual([{ address: tb.pod('plain').ipv4, port: 9000 }]);
    });

    it("excludeInboundPorts keeps callers off the pod's inbound listener", async () => {
      const excl = tb.pod('excl');
      const since = Date.now();
      expect(await tb.echo('client', excl.ipv4, 9002, 'in')).toContain('in');
      await tb.waitProxyLog('client', outbound(since));
      // Positive control: a captured inbound port, sent after; excl's sidecar logs only that one.
      expect(await tb.echo('client', excl.ipv4, 9000, 'control')).toContain('control');
      const inb = await tb.settledProxyLog('excl', (r) => r.at >= since - 1);
      expect(inb.map((r) => [r.listener, r.originalDst.port])).toEqual([['inbound', 9000]]);
    });
  });

  it('redirects the very first connect of a pod enrolled a moment ago', async () => {
    await tb.addPod({ name: 'late', mesh: 'sidecar' });
    const server = tb.pod('server');
    await backend.enroll(interpretedMeshPod(tb, 'late'));
    const since = Date.now();
    expect(await tb.echo('late', server.ipv4, 9000, 'first')).toContain('first');
    const out = await tb.waitProxyLog('late', outbound(since));
    expect(out.map((r) => r.originalDst)).toEqual([{ address: server.ipv4, port: 9000 }]);
  });

  it('default (guarded splicing): a bulk transfer to a lagging reader pushes back on the sender and arrives whole', async () => {
    expect((await backend.observe()).nodeDetail).toMatchObject({ spliceSetting: 'auto', splice: 'all' });
    const server = tb.pod('server');
    const bytes = bulkBytes();
    // Both scripts run as the app uid: the rendezvous file lives in a directory they can write.
    const dir = fs.mkdtempSync(path.join(tb.stateDir, 'bulk-'));
    fs.chmodSync(dir, 0o777);
    const resume = path.join(dir, 'resume');
    const sink = tb.exec('server', [process.execPath, path.join(SCRIPTS, 'bulk-sink.js'), '9300', resume, '30000'], { uid: APP_UID });
    await tb.waitListening('server', [9300], { watch: sink });
    const c0 = (await backend.observe()).counters;
    const since = Date.now();
    const res = await tb.run('client', [process.execPath, path.join(SCRIPTS, 'bulk-send.js'), server.ipv4, '9300', String(bytes), resume, '100000'], {
      uid: APP_UID,
      timeoutMs: 110_000,
    });
    const r = JSON.parse(res.stdout) as BulkResult;
    // Unguarded splicing fails here: the sender never blocks, the lagging reader's queue outgrows
    // tcp_mem and a send gets ENOMEM (measured: the app's write failed after 2.36 of 2.43 GB).
    expect({ error: r.error, sent: r.sent, received: r.reply?.bytes }).toEqual({ error: undefined, sent: bytes, received: bytes });
    expect(r.reply?.sha256).toBe(r.sha256);
    // Backpressure: the sender stopped after socket and proxy buffers filled, not after gigabytes.
    expect(r.blockedAt).not.toBeNull();
    expect(r.blockedAt!).toBeLessThan(256 * MiB);
    const out = await tb.waitProxyLog('client', (x) => outbound(since)(x) && x.originalDst.port === 9300);
    expect(out.map((x) => x.originalDst)).toEqual([{ address: server.ipv4, port: 9300 }]);
    const c1 = (await backend.observe()).counters;
    const d = (k: string) => (c1[k] ?? 0) - (c0[k] ?? 0);
    // Spliced, the guard moved the flow to TCP while the reader lagged, and the TCP part went
    // through the one receive queue.
    expect(d('sockets_spliced')).toBeGreaterThan(0);
    expect(d('splice_to_tcp_queue')).toBeGreaterThan(0);
    expect(d('splice_verdict_bytes')).toBeGreaterThan(0);
    await sink.kill();
  }, 120_000);

  it('keeps a long transfer going while the process holding the backend is killed and replaced', async () => {
    const server = tb.pod('server');
    const pods = ['client', 'server', 'excl', 'late'].map((n) => interpretedMeshPod(tb, n));
    const spliced0 = (await backend.observe()).counters.sockets_spliced ?? 0;
    // Hand over to an agent-like child process: this one lets go, the child adopts the pins.
    await backend.stop({ cleanup: false });
    const first = await startHolder(tb, bpffsRoot, pods, holders);
    // iperf3's server closes its data socket with bytes in flight: with splicing that close is
    // reset by the agent (splice-reset.ts), as TCP does, so the client sidecar's session ends at
    // once (the kernel alone sends FIN and the session lingered until FIN-WAIT-2 timed out, 60 s).
    const since = Date.now();
    const transfer = tb.iperf('client', server.ipv4, { seconds: 8 });
    await sleep(2000);
    first.kill(); // SIGKILL: no stop(), nothing detached
    await new Promise((r) => first.child.once('exit', r));
    // New connections while no process holds the backend, and after the replacement adopted it:
    // each must go through the client's sidecar to the original destination.
    const viaSidecar = async (msg: string) => {
      const t = Date.now();
      expect(await tb.echo('client', server.ipv4, 9000, msg)).toContain(msg);
      const recs = await tb.waitProxyLog('client', (r) => outbound(t)(r) && r.originalDst.port === 9000);
      expect(recs.map((r) => r.originalDst)).toEqual([{ address: server.ipv4, port: 9000 }]);
    };
    for (let i = 0; i < 3; i++) await viaSidecar(`gap-${i}`);
    const second = await startHolder(tb, bpffsRoot, pods, holders);
    for (let i = 0; i < 3; i++) await viaSidecar(`after-${i}`);
    const result = await transfer;
    expect(result.bitsPerSecond).toBeGreaterThan(0);
    // Control and data connections both went through the client's sidecar.
    const out = await tb.waitProxyLog('client', (r) => outbound(since)(r) && r.originalDst.port === 5201, { count: 2 });
    expect(out.length).toBeGreaterThanOrEqual(2);
    expect(out.every((r) => r.originalDst.address === server.ipv4)).toBe(true);
    // The replacement exits like an upgrade would; this process adopts again for the rest.
    second.child.kill('SIGTERM');
    await new Promise((r) => second.child.once('exit', r));
    backend = new SockopsBackend();
    await backend.start(testbedNodeContext(tb, bpffsRoot));
    const st = await backend.observe();
    expect(st.pods.map((p) => p.name).sort()).toEqual(['client', 'excl', 'late', 'server']);
    // The adopted node kept the default setting, and the transfer's sockets were spliced.
    expect(st.nodeDetail).toMatchObject({ splice: 'all' });
    expect(st.counters.sockets_spliced ?? 0).toBeGreaterThan(spliced0);
  }, 60_000);

  describe('splicing, a port list', () => {
    beforeAll(async () => {
      // An agent restarted with --splice-ports=9000: adopts the pins, changes only the setting.
      await backend.stop({ cleanup: false });
      backend = new SockopsBackend({ splice: [9000] });
      await backend.start(testbedNodeContext(tb, bpffsRoot));
    });

    it('splices only the listed port: loopback flat for 9000, carrying the payload for 9100', async () => {
      expect((await backend.observe()).nodeDetail).toMatchObject({ splice: [9000] });
      const server = tb.pod('server');
      const big = 'x'.repeat(100 * 1024); // argv-sized: one exec argument is at most 128 KiB
      const transfer = async (port: number) => {
        const [k0, c0] = [await tb.counters('client'), (await backend.observe()).counters];
        expect((await tb.echo('client', server.ipv4, port, big)).length).toBeGreaterThanOrEqual(big.length);
        const [k1, c1] = [await tb.counters('client'), (await backend.observe()).counters];
        return {
          loPackets: k1.lo.rxPackets - k0.lo.rxPackets,
          loBytes: k1.lo.rxBytes - k0.lo.rxBytes,
          sockets: (c1.sockets_spliced ?? 0) - (c0.sockets_spliced ?? 0),
          bytes: (c1.bytes_spliced ?? 0) - (c0.bytes_spliced ?? 0),
        };
      };
      const listed = await transfer(9000);
      const unlisted = await transfer(9100);
      // Listed: app and sidecar sockets spliced, one connection's handshake and teardown on lo
      // (~10 packets), not the payload.
      expect(listed.sockets).toBeGreaterThanOrEqual(2);
      expect(listed.bytes).toBeGreaterThan(big.length);
      expect(listed.loPackets).toBeLessThan(40);
      expect(listed.loBytes).toBeLessThan(big.length / 2);
      // Unlisted: plain TCP over lo, the payload both ways.
      expect(unlisted.sockets).toBe(0);
      expect(unlisted.bytes).toBe(0);
      expect(unlisted.loBytes).toBeGreaterThan(2 * big.length);
    });
  });

  it('leaves no original-destination records or spliced sockets behind once connections close', async () => {
    expect(await settledRecords(backend)).toEqual(NO_RECORDS);
    expect((await backend.observe()).counters.orig_dst_released).toBeGreaterThan(0);
  });
});

describe('50 sidecar pods connecting at once (testbed)', () => {
  const CLIENTS = 50;
  let tb: Testbed;
  let backend: SockopsBackend;
  let bpffsRoot = '';
  const names = Array.from({ length: CLIENTS }, (_, i) => `c${i}`);

  beforeAll(async () => {
    // HAProxy sidecars only: 50 extra Node IPv6 stand-ins would only slow the start.
    tb = await Testbed.create({
      ipv6Proxy: 'off',
      pods: [{ name: 'server', mesh: 'sidecar' }, ...names.map((name) => ({ name, mesh: 'sidecar' as const }))],
    });
    await tb.startEchoServer('server', { port: 9000 });
    bpffsRoot = testbedBpffs(tb, 'sockops');
    backend = new SockopsBackend({ splice: 'all' });
    await backend.start(testbedNodeContext(tb, bpffsRoot));
    for (const name of ['server', ...names]) await backend.enroll(interpretedMeshPod(tb, name));
  }, 150_000);

  afterAll(async () => {
    await backend?.stop({ cleanup: true }).catch(() => undefined);
    await tb?.dispose();
  });

  it('every sidecar logs the right original destination, and no record outlives its connection', async () => {
    const server = tb.pod('server');
    const since = Date.now();
    // All clients wait for the same wall-clock moment, then connect.
    const startAt = Date.now() + 4000;
    const replies = await Promise.all(
      names.map(async (name) => {
        const r = await tb.run(name, [process.execPath, path.join(SCRIPTS, 'echo-at.js'), server.ipv4, '9000', `hi-${name}`, String(startAt)], {
          uid: APP_UID,
          timeoutMs: 30_000,
        });
        return JSON.parse(r.stdout) as { reply?: string; error?: string };
      }),
    );
    expect(replies).toEqual(names.map((name) => ({ reply: `hi-${name}` })));
    for (const name of names) {
      const out = await tb.waitProxyLog(name, outbound(since));
      expect({ name, dst: out.map((r) => r.originalDst) }).toEqual({ name, dst: [{ address: server.ipv4, port: 9000 }] });
    }
    const inb = await tb.waitProxyLog('server', inbound(since), { count: CLIENTS });
    expect(inb).toHaveLength(CLIENTS);
    expect(inb.every((r) => r.originalDst.address === server.ipv4 && r.originalDst.port === 9000)).toBe(true);
    // Each client came in from its own pod address, so answers were not mixed up between pods.
    expect(new Set(inb.map((r) => r.client.address)).size).toBe(CLIENTS);
    expect(await settledRecords(backend)).toEqual(NO_RECORDS);
  }, 90_000);
});
