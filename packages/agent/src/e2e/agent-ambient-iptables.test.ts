// The real, built `shunt agent` with profile istio-ambient and the iptables backend (istio-cni's
// in-pod rules: the fallback where tc cannot run), pods from a pods file, the testbed's ztunnel
// stand-in on the agent's ZDS socket. The ZDS flow: the agent installs the rules, then announces the
// pod (AddWorkload, Ack). Checked on the path: app → app crosses both pods' ztunnel (15001 with the
// original destination, 15008 HBONE not re-captured, no loop), v4 and v6; a pod with a bad ambient
// annotation is rejected by name while the others keep working; cleanup on exit removes the rules.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { runCommand } from '@shunt/netlink';
import { startZtunnel, Testbed, type ZtunnelLogEntry, type ZtunnelStandIn } from '@shunt/testbed';
import type { AgentProcess } from '../agent/process';
import { freePort } from '../demo/free-port';
import { metric, podNetnsPrefix, startBuiltAgent } from './support';

type Conn = Extract<ZtunnelLogEntry, { event: 'conn' }>;
const ECHO = 9000;
let tb: Testbed;
let dir: string;
let zt: ZtunnelStandIn | undefined;
let agent: AgentProcess | undefined;
let port: number;
const unmap = (a: string) => a.replace(/^::ffff:/, '');

async function saveAll(pod: string): Promise<string> {
  const out: string[] = [];
  for (const v of ['legacy', 'nft']) for (const f of ['iptables', 'ip6tables']) out.push(await runCommand([`${f}-${v}-save`], { netns: tb.pod(pod).netnsPath }).catch(() => ''));
  return out.join('\n');
}

beforeAll(async () => {
  tb = await Testbed.create({
    pods: [
      { name: 'a', mesh: 'ambient' },
      { name: 'b', mesh: 'ambient' },
      { name: 'plain', mesh: 'none' },
      { name: 'bad', mesh: 'ambient', annotations: { 'ambient.istio.io/bypass-inbound-capture': 'maybe' } },
    ],
  });
  for (const p of ['a', 'b', 'plain', 'bad']) await tb.startEchoServer(p, { port: ECHO });
  dir = mkdtempSync(path.join(tmpdir(), 'shunt-e2e-amb-ipt-'));
  const podsFile = path.join(dir, 'pods.json');
  writeFileSync(podsFile, JSON.stringify(['a', 'b', 'plain', 'bad'].map((n) => tb.kubePod(n)), null, 2));
  const sockPath = path.join(dir, 'ztunnel.sock');
  zt = await startZtunnel({ socketPath: sockPath, logPath: path.join(dir, 'ztunnel.log'), name: 'zt-ipt' });
  port = await freePort();
  agent = await startBuiltAgent([
    '--pods-file', podsFile,
    '--node-name', tb.kubePod('a').spec.nodeName,
    '--profile', 'istio-ambient',
    '--redirect-mode', 'iptables',
    '--zds-socket', sockPath,
    '--metrics-address', `127.0.0.1:${port}`,
    '--cgroup-path', tb.cgroupRoot,
    '--state-dir', path.join(dir, 'state'),
    '--netns-prefix', podNetnsPrefix(tb),
    '--cleanup-on-exit',
  ]);
}, 120_000);

afterAll(async () => {
  await agent?.stop().catch(() => undefined);
  await zt?.stop().catch(() => undefined);
  await tb?.dispose();
  if (dir) rmSync(dir, { recursive: true, force: true });
}, 60_000);

it('rules first, then AddWorkload: both ambient pods acked by ztunnel; the bad one rejected by name, plain left alone', async () => {
  expect(await metric(port, 'shunt_backend_info', { backend: 'iptables' })).toBe(1);
  const adds = await zt!.waitFor((e) => e.event === 'add' && !e.error, { count: 2, what: 'two acked adds' });
  expect(adds.map((e) => (e as { pod: string }).pod).sort()).toEqual(['a', 'b']);
  expect(await metric(port, 'shunt_pods_enrolled')).toBe(2);
  const rejected = await agent!.waitLog((l) => l['msg'] === 'pod state changed' && String(l['pod']).endsWith('/bad') && l['state'] === 'rejected', 30_000);
  expect(String(rejected['reason'])).toMatch(/annotation ambient\.istio\.io\/bypass-inbound-capture="maybe" rejected: want a boolean/);
  expect(zt!.entries().some((e) => e.event === 'add' && (e.pod === 'bad' || e.pod === 'plain'))).toBe(false);
  for (const p of ['a', 'b']) expect(await saveAll(p)).toMatch(/-A SHUNT_PRERT .*-j REDIRECT --to-ports 15006/);
  for (const p of ['plain', 'bad']) expect(await saveAll(p)).not.toMatch(/SHUNT_/);
}, 60_000);

it.each([4, 6] as const)('a → b (IPv%s) through both ztunnel legs with the original destination; no HBONE re-capture, no loop; the others keep working', async (family) => {
  const dst = family === 4 ? tb.pod('b').ipv4 : tb.pod('b').ipv6;
  const src = family === 4 ? tb.pod('a').ipv4 : tb.pod('a').ipv6;
  const since = Date.now();
  expect(await tb.echo('a', dst, ECHO, `hi-${family}`)).toBe(`hi-${family}`);
  const [out] = (await zt!.waitFor((e) => e.event === 'conn' && e.at >= since && e.leg === 'outbound' && e.pod === 'a', { what: 'outbound leg in a' })) as Conn[];
  const [hbone] = (await zt!.waitFor((e) => e.event === 'conn' && e.at >= since && e.leg === 'hbone' && e.pod === 'b', { what: 'hbone leg in b' })) as Conn[];
  expect(unmap(out!.client.address)).toBe(src);
  expect({ ...out!.origDst, address: unmap(out!.origDst.address) }).toEqual({ address: dst, port: ECHO });
  expect(out!.how).toBe('SO_ORIGINAL_DST');
  expect(out!.error).toBeUndefined();
  expect(hbone!.local.port).toBe(15008);
  expect(unmap(hbone!.origDst.address)).toBe(dst);
  expect(hbone!.error).toBeUndefined();
  const all = zt!.entries().filter((e): e is Conn => e.event === 'conn' && e.at >= since);
  expect(all.filter((c) => c.leg === 'inbound')).toEqual([]);
  expect(all.filter((c) => c.leg === 'outbound')).toHaveLength(1);
  // The rejected pod and the non-member are reached directly.
  expect(await tb.echo('plain', family === 4 ? tb.pod('bad').ipv4 : tb.pod('bad').ipv6, ECHO, 'direct')).toBe('direct');
}, 60_000);

it('the agent exiting with --cleanup-on-exit removes the rules and the connmark route', async () => {
  await agent!.stop();
  agent = undefined;
  for (const p of ['a', 'b']) expect(await saveAll(p)).not.toMatch(/SHUNT_/);
  const rules = await runCommand(['ip', '-4', 'rule'], { netns: tb.pod('a').netnsPath });
  expect(rules).not.toMatch(/0x111/);
}, 60_000);
