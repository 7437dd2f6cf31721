/**
 * Measurements (not pass/fail tests): run only with SHUNT_SOCKOPS_BENCH=1.
 *   SHUNT_SOCKOPS_BENCH=1 npx jest --testPathIgnorePatterns=/node_modules/ src/bench.manual.test.ts
 * 1. Same two sidecar pods, same run, modes one after the other: hand-written iptables REDIRECT
 *    (the baseline), sockops with splicing on every port, sockops without splicing.
 * 2. Enroll latency: enroll() called -> first connect redirected, seen by a prober that keeps
 *    connecting from inside the pod (SHUNT_SOCKOPS_ENROLLS enrolls, default 300, with
 *    SHUNT_SOCKOPS_ENROLL_BG other pods enrolled, default 100).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { MeshPod } from '@shunt/core';
import { Testbed, iptablesHandwrittenMode, runBench } from '@shunt/testbed';
import { sockopsBenchMode } from './test-support/bench-mode';
import { SockopsBackend } from './backend';
import { Sandbox, SCRIPTS, type Helper } from './test-support/sandbox';

const run = process.env.SHUNT_SOCKOPS_BENCH === '1' ? describe : describe.skip;
const SECONDS = Number(process.env.SHUNT_SOCKOPS_BENCH_SECONDS ?? 4);
const ROUNDS = Number(process.env.SHUNT_SOCKOPS_BENCH_ROUNDS ?? 3);

interface Row {
  mode: string;
  p50Us: number;
  p99Us: number;
  gbps: number;
  connPerS: number;
  conntrack: number | null;
}

run('sockops vs iptables (manual benchmark)', () => {
  let tb: Testbed;
  beforeAll(async () => {
    tb = await Testbed.create({ pods: [{ name: 'client', mesh: 'sidecar' }, { name: 'server', mesh: 'sidecar' }], ipv6Proxy: 'off' });
    await tb.startSidecar('client');
    await tb.startSidecar('server');
    await tb.startSockperfServer('server');
    await tb.startIperfServer('server');
    await tb.startHttpServer('server', { port: 8080 });
  }, 60_000);
  afterAll(async () => {
    await tb?.dispose();
  });

  it('measures', async () => {
    const server = tb.pod('server').ipv4;
    const pods = { client: 'client', server: 'server' };
    const modes = [
      // No redirect at all: the floor this machine's scheduling gives two processes.
      { name: 'direct (no proxies)', setup: async () => undefined, teardown: async () => undefined },
      {
        name: 'iptables',
        setup: async () => {
          await tb.applyHandwrittenRedirect('client');
          await tb.applyHandwrittenRedirect('server');
        },
        teardown: async () => {
          await tb.removeHandwrittenRedirect('client');
          await tb.removeHandwrittenRedirect('server');
        },
      },
      // 'listed': the request/response ports (sockperf 11111, HTTP 8080), not iperf3's 5201.
      ...([['all', 'all'], ['none', 'none'], ['listed', [11111, 8080]]] as const).map(([label, splice]) => {
        const m = sockopsBenchMode({ splice: splice === 'all' || splice === 'none' ? splice : [...splice], name: `sockops-splice-${label}` });
        return { name: m.name, setup: () => m.setup(tb, pods), teardown: () => m.teardown(tb, pods) };
      }),
    ];
    // Modes interleaved round by round, so a noisy neighbour hurts every mode alike; median per mode.
    const byMode = new Map<string, Row[]>();
    for (let round = 0; round < ROUNDS; round++) {
      for (const m of modes) {
        await m.setup();
        try {
          await tb.conntrackFlush('client').catch(() => undefined);
          const sp = await tb.sockperfPingPong('client', server, { seconds: SECONDS });
          const ip = await tb.iperf('client', server, { seconds: SECONDS });
          const wrk = await tb.wrk('client', `http://${server}:8080/`, { seconds: SECONDS, connections: 8, keepAlive: false });
          const conntrack = await tb.conntrackCount('client');
          const row = { mode: m.name, p50Us: sp.p50Us, p99Us: sp.p99Us, gbps: ip.bitsPerSecond / 1e9, connPerS: wrk.requestsPerSecond, conntrack };
          byMode.set(m.name, [...(byMode.get(m.name) ?? []), row]);
        } finally {
          await m.teardown();
        }
      }
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)] ?? NaN;
    const rows: Row[] = modes.map((m) => {
      const rs = byMode.get(m.name) ?? [];
      return {
        mode: m.name,
        p50Us: median(rs.map((r) => r.p50Us)),
        p99Us: median(rs.map((r) => r.p99Us)),
        gbps: median(rs.map((r) => r.gbps)),
        connPerS: median(rs.map((r) => r.connPerS)),
        conntrack: rs[rs.length - 1]?.conntrack ?? null,
      };
    });
    const base = rows.find((r) => r.mode === 'iptables') as Row;
    const x = (v: number, b: number) => `(${(v / b).toFixed(2)}×)`;
    const table = [
      `| mode (median of ${ROUNDS} rounds, ${SECONDS} s per tool) | sockperf p50 | p99 | iperf3 | wrk conn/s (no keep-alive) | conntrack |`,
      '|---|---|---|---|---|---|',
      ...rows.map(
        (r) =>
          `| ${r.mode} | ${r.p50Us.toFixed(0)} µs ${x(r.p50Us, base.p50Us)} | ${r.p99Us.toFixed(0)} µs ${x(r.p99Us, base.p99Us)} | ` +
          `${r.gbps.toFixed(2)} Gbit/s ${x(r.gbps, base.gbps)} | ${r.connPerS.toFixed(0)} ${x(r.connPerS, base.connPerS)} | ${String(r.conntrack)} |`,
      ),
    ];
    const raw = [...byMode.values()].flat().map((r) => `${r.mode}: p50 ${r.p50Us.toFixed(0)} p99 ${r.p99Us.toFixed(0)} ${r.gbps.toFixed(2)}G ${r.connPerS.toFixed(0)}/s`);
    console.log(table.join('\n') + '\n\nper round:\n' + raw.join('\n'));
    expect(rows).toHaveLength(modes.length);
  }, 900_000);
});

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
}

run('enroll latency (manual benchmark)', () => {
  const ENROLLS = Number(process.env.SHUNT_SOCKOPS_ENROLLS ?? 300);
  const BACKGROUND = Number(process.env.SHUNT_SOCKOPS_ENROLL_BG ?? 100);
  let sb: Sandbox;
  let backend: SockopsBackend;
  let prober: Helper;

  const pod = (name: string, ips: string[], where: { netnsPath?: string; netnsCookie?: string }): MeshPod => ({
    uid: `uid-${name}`,
    namespace: 'bench',
    name,
    profile: 'istio-sidecar',
    membership: 'sidecar',
    hostNetwork: false,
    ips: { v4: ips, v6: [] },
    ...where,
    interceptionMode: 'REDIRECT',
    proxy: { uid: 1337, gid: 1337, outboundPort: 15001, inboundPort: 15006 },
    traffic: {
      inbound: { include: '*', exclude: [15008, 15020, 15021, 15090] },
      outbound: { includePorts: [], excludePorts: [], includeCidrs: '*', excludeCidrs: [] },
    },
  });

  beforeAll(async () => {
    sb = new Sandbox();
    const a = sb.addNetns('a');
    const s = sb.addNetns('s');
    sb.link(a, ['198.18.0.1/24'], s, ['198.18.0.2/24'], 'A');
    // The proxy stand-in only has to accept the redirected connects.
    await sb.start(a, 1337, 'proxy.js', ['15001', '15006']);
    prober = await sb.startArgv(a, 1000, [fs.existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3', `${SCRIPTS}/connect-probe.py`, '15001'], { stdin: true });
    backend = new SockopsBackend();
    await backend.start(sb.node());
    // Other pods of a busy node: enroll() must not get slower with them.
    for (let i = 0; i < BACKGROUND; i++)
      await backend.enroll(pod(`bg${i}`, [`198.19.${i >> 8}.${i & 255}`], { netnsCookie: String(1_000_000_000 + i) }));
    (globalThis as { benchPod?: MeshPod }).benchPod = pod('measured', ['198.18.0.1'], { netnsPath: a.path });
  }, 120_000);

  afterAll(async () => {
    await backend?.stop({ cleanup: true }).catch(() => undefined);
    await sb?.dispose();
  });

  it('measures', async () => {
    const measured = (globalThis as { benchPod?: MeshPod }).benchPod as MeshPod;
    const latency: number[] = [];
    const call: number[] = [];
    let ev = 0;
    for (let i = 0; i < ENROLLS; i++) {
      await backend.unenroll(measured);
      // No route to it in the pod netns: an unredirected connect fails at once, without a packet.
      prober.send('probe 198.18.99.1 80');
      const spin = await prober.event(ev++);
      expect(spin).toEqual({ event: 'spinning', already: false });
      const t0 = process.hrtime.bigint();
      await backend.enroll(measured);
      const t1 = process.hrtime.bigint();
      const hit = await prober.event(ev++);
      expect(typeof hit.tNs).toBe('number');
      latency.push(Number(BigInt(hit.tNs as number) - t0) / 1e6);
      call.push(Number(t1 - t0) / 1e6);
    }
    latency.sort((x, y) => x - y);
    call.sort((x, y) => x - y);
    const fmt = (xs: number[]) => `p50 ${percentile(xs, 50).toFixed(3)} ms  p99 ${percentile(xs, 99).toFixed(3)} ms  max ${xs[xs.length - 1]?.toFixed(3)} ms`;
    console.log(
      `enroll latency over ${ENROLLS} enrolls (${BACKGROUND} other pods enrolled)\n` +
        `  enroll() called -> first redirected connect: ${fmt(latency)}\n` +
        `  enroll() call itself:                        ${fmt(call)}`,
    );
    expect(latency).toHaveLength(ENROLLS);
  }, 300_000);
});

/**
 * 3. Short connections (`-t 'short connections'`): the testbed's bench (runBench: fresh pods per
 *    round, modes alternated, every metric incl. CPU/conn) with sockops in-process: the default
 *    (shortConns 4: short connections not spliced), the same with shortConns 0 (every connection
 *    spliced), without splicing, and hand-written iptables.
 */
run('short connections (manual benchmark)', () => {
  it('measures', async () => {
    const all = [
      sockopsBenchMode({ name: 'sockops' }),
      sockopsBenchMode({ name: 'sockops-always', guard: { shortConns: 0 } }),
      sockopsBenchMode({ name: 'sockops-nosplice', splice: 'none' }),
      iptablesHandwrittenMode,
    ];
    // SHUNT_SOCKOPS_BENCH_MODES=sockops,sockops-always: a subset, more rounds in the same time.
    const want = process.env.SHUNT_SOCKOPS_BENCH_MODES?.split(',');
    const modes = want ? all.filter((m) => want.includes(m.name)) : all;
    const result = await runBench({
      modes,
      rounds: ROUNDS,
      seconds: SECONDS,
      // Not into the package: the report's files go next to the other bench results.
      outDir: path.resolve(__dirname, '../../../bench/results'),
    });
    expect(result.report.modes).toHaveLength(modes.length);
  }, 900_000);
});
