// The ambient fallback through the same agent wiring: `shunt agent --profile istio-ambient
// --redirect-mode iptables` (istio-cni's in-pod rules) with the ztunnel stand-in. The ZDS part is
// the same as with tc (see agent-ambient.test.ts); here the path: app → app through both pods'
// ztunnel legs, v4 and v6, the original destination read with SO_ORIGINAL_DST (REDIRECT is NAT),
// and `shunt cleanup` removing every SHUNT_ chain.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startZtunnel, Testbed, type ZtunnelLogEntry, type ZtunnelStandIn } from '@shunt/testbed';
import type { AgentProcess } from '../agent/process';
import { freePort } from '../demo/free-port';
import { readShuntChains } from './iptables-read';
import { metric, podNetnsPrefix, runCli, startBuiltAgent } from './support';

type Conn = Extract<ZtunnelLogEntry, { event: 'conn' }>;
const ECHO = 9000;
let tb: Testbed;
let dir: string;
let zt: ZtunnelStandIn;
let agent: AgentProcess;
let port: number;

const nodeArgs = () => ['--bpffs-path', path.join(dir, 'bpffs'), '--cgroup-path', tb.cgroupRoot, '--state-dir', path.join(dir, 'state'), '--netns-prefix', podNetnsPrefix(tb)];

beforeAll(async () => {
  tb = await Testbed.create({ pods: [{ name: 'a', mesh: 'ambient' }, { name: 'b', mesh: 'ambient' }] });
  for (const p of ['a', 'b']) await tb.startEchoServer(p, { port: ECHO });
  dir = mkdtempSync(path.join(tmpdir(), 'shunt-e2e-ambient-ipt-'));
  const podsFile = path.join(dir, 'pods.json');
  writeFileSync(podsFile, JSON.stringify(['a', 'b'].map((n) => tb.kubePod(n))));
  const sock = path.join(dir, 'ztunnel', 'ztunnel.sock');
  zt = await startZtunnel({ socketPath: sock, logPath: path.join(dir, 'ztunnel.log'), name: 'zt' });
  port = await freePort();
  agent = await startBuiltAgent([
    '--pods-file', podsFile,
    '--node-name', tb.kubePod('a').spec.nodeName,
    '--profile', 'istio-ambient',
    '--redirect-mode', 'iptables',
    '--zds-socket', sock,
    '--metrics-address', `127.0.0.1:${port}`,
    ...nodeArgs(),
  ]);
}, 120_000);

afterAll(async () => {
  await agent?.stop().catch(() => undefined);
  await zt?.stop().catch(() => undefined);
  await tb?.dispose();
  if (dir) rmSync(dir, { recursive: true, force: true });
}, 60_000);

it('enrolls both pods: rules in place, then ztunnel acked each', async () => {
  expect(await metric(port, 'shunt_pods_enrolled')).toBe(2);
  expect(await metric(port, 'shunt_backend_info', { backend: 'iptables' })).toBe(1);
  expect(await metric(port, 'shunt_zds_workloads', { state: 'acked' })).toBe(2);
  for (const p of ['a', 'b']) expect((await readShuntChains(tb.pod(p).netnsPath)).length).toBeGreaterThan(0);
}, 60_000);

it.each([4, 6] as const)('app → app (IPv%s) through both legs; the original destination from SO_ORIGINAL_DST', async (family) => {
  const [a, b] = [tb.pod('a'), tb.pod('b')];
  const dst = family === 4 ? b.ipv4 : b.ipv6;
  const src = family === 4 ? a.ipv4 : a.ipv6;
  const since = Date.now();
  expect(await tb.echo('a', dst, ECHO, 'x')).toBe('x');
  const [out] = (await zt.waitFor((e) => e.event === 'conn' && e.at >= since && e.leg === 'outbound', { what: 'outbound leg' })) as Conn[];
  const [hb] = (await zt.waitFor((e) => e.event === 'conn' && e.at >= since && e.leg === 'hbone', { what: 'hbone leg' })) as Conn[];
  expect(out).toMatchObject({ pod: 'a', how: 'SO_ORIGINAL_DST', client: { address: src }, origDst: { address: dst, port: ECHO }, via: 'hbone' });
  expect(hb).toMatchObject({ pod: 'b', client: { address: src }, origDst: { address: dst, port: ECHO }, upstreamSource: { address: src } });
  expect([out!.error, hb!.error]).toEqual([undefined, undefined]);
  const all = zt.entries().filter((e): e is Conn => e.event === 'conn' && e.at >= since);
  expect(all.map((c) => c.leg).sort()).toEqual(['hbone', 'outbound']); // no re-capture, no loop
}, 60_000);

it('`shunt cleanup` removes every SHUNT_ chain from both pods', async () => {
  await agent.stop();
  const report = JSON.parse(runCli(['cleanup', '--json', ...nodeArgs()]));
  expect(report.errors).toEqual([]);
  for (const p of ['a', 'b']) expect(await readShuntChains(tb.pod(p).netnsPath)).toEqual([]);
}, 120_000);
