/**
 * Side-by-side measurement (not a pass/fail test): runs only with SHUNT_SOCKOPS_BENCH=1.
 *   SHUNT_SOCKOPS_BENCH=1 npx jest src/bench.manual.test.ts
 * Same two sidecar pods, same run, modes one after the other: hand-written iptables REDIRECT
 * (the baseline), sockops with splicing on every port, sockops without splicing.
 */
import { Testbed } from '@shunt/testbed';
import { sockopsBenchMode } from './bench-mode';

const run = process.env.SHUNT_SOCKOPS_BENCH === '1' ? describe : describe.skip;
const SECONDS = Number(process.env.SHUNT_SOCKOPS_BENCH_SECONDS ?? 5);

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
      ...(['all', 'none'] as const).map((splice) => {
        const m = sockopsBenchMode({ splice, name: `sockops-splice-${splice}` });
        return { name: m.name, setup: () => m.setup(tb, pods), teardown: () => m.teardown() };
      }),
    ];
    const rows: Row[] = [];
    for (const m of modes) {
      await m.setup();
      try {
        await tb.conntrackFlush('client').catch(() => undefined);
        const sp = await tb.sockperfPingPong('client', server, { seconds: SECONDS });
        const ip = await tb.iperf('client', server, { seconds: SECONDS });
        const wrk = await tb.wrk('client', `http://${server}:8080/`, { seconds: SECONDS, connections: 8, keepAlive: false });
        const conntrack = await tb.conntrackCount('client');
        rows.push({ mode: m.name, p50Us: sp.p50Us, p99Us: sp.p99Us, gbps: ip.bitsPerSecond / 1e9, connPerS: wrk.requestsPerSecond, conntrack });
      } finally {
        await m.teardown();
      }
    }
    const base = rows[0] as Row;
    const table = rows.map(
      (r) =>
        `${r.mode.padEnd(20)} p50 ${r.p50Us.toFixed(1)}us (${(r.p50Us / base.p50Us).toFixed(2)}x)  p99 ${r.p99Us.toFixed(1)}us (${(r.p99Us / base.p99Us).toFixed(2)}x)  ` +
        `iperf ${r.gbps.toFixed(2)} Gbit/s (${(r.gbps / base.gbps).toFixed(2)}x)  conn/s ${r.connPerS.toFixed(0)} (${(r.connPerS / base.connPerS).toFixed(2)}x)  conntrack ${String(r.conntrack)}`,
    );
    console.log(table.join('\n'));
    expect(rows).toHaveLength(3);
  }, 300_000);
});
