// Chaos suite, bulk (bounded): the built agent SIGKILLed in the middle of enrolling 150 pods and in
// the middle of unenrolling them, both backends, while a request stream runs through the two meshed
// testbed pods (real HAProxy sidecars). The 150 are cheap: a netns each with a listener stand-in on
// the sidecar's inbound port (packages/agent/scripts/listeners.py, as bench:scale uses), no proxy.
// After each kill a new agent must converge to what the pods file says, checked in the kernel
// (sockops: the pinned pod_cfg / pod_by_ip maps hold exactly the listed pods' netns cookies and IPs;
// iptables: SHUNT_* chains in exactly the listed pods' netns), the stream has 0 failed / 0 bypassed,
// the stream pods never change state, and a scoped `shunt cleanup` leaves nothing.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { BpfMap, netnsCookie } from '@shunt/libbpf';
import { runCommand } from '@shunt/netlink';
import { Testbed, type KubePod } from '@shunt/testbed';
import type { AgentProcess } from '../../packages/agent/src/agent/process';
import { freePort } from '../../packages/agent/src/demo/free-port';
import { readShuntChains } from '../../packages/agent/src/e2e/iptables-read';
import { metric, podNetnsPrefix, runCli, startBuiltAgent } from '../../packages/agent/src/e2e/support';
import { removePins } from '../../packages/agent/src/node-state/pins';
import { orphanedProbeNetns } from './probe-orphans';
import { requestStream } from './request-stream';

const HTTP_PORT = 8080;
const BULK = 150;
const IN_PORT = 15006;
const LISTENERS = path.resolve(__dirname, '../../packages/agent/scripts/listeners.py');
let tb: Testbed;
let dir: string;
let standIns: ChildProcess | undefined;
let bulkNetns: string[] = [];
let netnsMade = 0;
const bpffs = `/sys/fs/bpf/shunt-chaos-bulk-${randomBytes(4).toString('hex')}`;
const agents: AgentProcess[] = [];
const table: { backend: string; scenario: string; sent: number; failed: number; bypassed: number; stateChanges: number; atKill: string }[] = [];

beforeAll(async () => {
  tb = await Testbed.create({ pods: [{ name: 'client', mesh: 'sidecar' }, { name: 'server', mesh: 'sidecar' }] });
  await tb.startHttpServer('server', { port: HTTP_PORT, body: 'hello' });
  dir = mkdtempSync(path.join(tmpdir(), 'shunt-chaos-bulk-'));
  mkdirSync(bpffs);
  // Named under the testbed's pod prefix, so the scoped cleanup and sweep cover them.
  const names = Array.from({ length: BULK }, (_, i) => `${podNetnsPrefix(tb)}bulk${i}`);
  netnsMade = BULK; // a partial batch is removed with -force
  await runCommand(['ip', '-batch', '-'], { input: names.map((n) => `netns add ${n}`).join('\n') + '\n', timeoutMs: 120_000 });
  bulkNetns = names.map((n) => `/run/netns/${n}`);
  standIns = spawn('python3', [LISTENERS, String(IN_PORT)], { stdio: ['pipe', 'pipe', 'inherit'] });
  const ready = new Promise<void>((resolve, reject) => {
    standIns!.stdout!.setEncoding('utf8').on('data', (d: string) => (d.startsWith('ready') ? resolve() : undefined));
    standIns!.once('exit', (c) => reject(new Error(`listener stand-ins exited ${c}`)));
  });
  standIns.stdin!.write(bulkNetns.join('\n') + '\n\n');
  await Promise.race([ready, new Promise((_, reject) => setTimeout(() => reject(new Error('listener stand-ins not ready in 60 s')), 60_000))]);
}, 180_000);

afterAll(async () => {
  for (const a of agents) await a.stop().catch(() => undefined);
  standIns?.stdin?.end();
  standIns?.kill('SIGTERM');
  await removePins(path.join(bpffs, 'shunt')).catch(() => undefined);
  rmSync(bpffs, { recursive: true, force: true });
  if (netnsMade > 0) {
    const lines = Array.from({ length: netnsMade }, (_, i) => `netns delete ${podNetnsPrefix(tb)}bulk${i}`).join('\n') + '\n';
    await runCommand(['ip', '-force', '-batch', '-'], { input: lines, timeoutMs: 120_000 }).catch(() => undefined);
  }
  await tb?.dispose();
  if (dir) rmSync(dir, { recursive: true, force: true });
  // eslint-disable-next-line no-console
  console.log(
    ['backend   scenario                                  sent  failed  bypassed  pod-state-changes  at kill (first agent)', ...table.map((r) => `${r.backend.padEnd(9)} ${r.scenario.padEnd(41)} ${String(r.sent).padStart(4)}  ${String(r.failed).padStart(6)}  ${String(r.bypassed).padStart(8)}  ${String(r.stateChanges).padStart(17)}  ${r.atKill}`)].join('\n'),
  );
}, 180_000);

/** Octets of the run's own /24 (the testbed's pods use .2–.63 of it on node 0; .64+ are free with one node). */
const blockOf = (ip: string) => ip.split('.').slice(0, 3).join('.');

/** A pods-file entry: a KubePod whose `shunt:` key has only the netns (no cgroup, no host veth: optional). */
function bulkPod(i: number): Omit<KubePod, 'shunt'> & { shunt: { netnsPath: string } } {
  const ip = `${blockOf(tb.pod('client').ipv4)}.${64 + i}`;
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: `bulk${i}`, namespace: 'bulk', uid: `${tb.prefix}-bulk-${i}`, labels: {}, annotations: { 'sidecar.istio.io/status': '{"containers":["istio-proxy"]}' } },
    spec: { nodeName: tb.kubePod('client').spec.nodeName, hostNetwork: false, containers: [{ name: 'app', image: 'bulk/app' }, { name: 'istio-proxy', image: 'bulk/sidecar', securityContext: { runAsUser: 1337, runAsGroup: 1337 } }] },
    status: { phase: 'Running', podIP: ip, podIPs: [{ ip }] },
    shunt: { netnsPath: bulkNetns[i]! },
  };
}

/** Runs `fn` over `items`, `limit` at a time. */
async function pooled<T, R>(items: T[], limit: number, fn: (t: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(Array.from({ length: limit }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  }));
  return out;
}

describe.each(['sockops', 'iptables'] as const)('%s backend', (backend) => {
  const podsFile = () => path.join(dir, `pods-${backend}.json`);
  const stream = ['client', 'server'];
  const streamUids = () => new Set(stream.map((p) => tb.pod(p).uid));
  const writePods = (bulk: boolean) =>
    writeFileSync(podsFile(), JSON.stringify([...stream.map((p) => tb.kubePod(p)), ...(bulk ? Array.from({ length: BULK }, (_, i) => bulkPod(i)) : [])]));
  let port = 0;
  const args = () => [
    '--pods-file', podsFile(),
    '--node-name', tb.kubePod('client').spec.nodeName,
    '--redirect-mode', backend,
    '--metrics-address', `127.0.0.1:${port}`,
    '--bpffs-path', bpffs,
    '--cgroup-path', tb.cgroupRoot,
    '--state-dir', path.join(dir, `state-${backend}`),
    '--netns-prefix', podNetnsPrefix(tb),
    '--max-pods', '1024',
  ];
  const start = async () => {
    port = await freePort();
    const a = await startBuiltAgent(args(), { readyTimeoutMs: 120_000 });
    agents.push(a);
    return a;
  };

  /** The kernel's view of which netns are enrolled: sockops from the pinned maps, iptables from SHUNT_* chains. */
  const enrolledInKernel = async (): Promise<{ netns: Set<string>; ips?: number }> => {
    const all = [...stream.map((p) => tb.pod(p).netnsPath), ...bulkNetns];
    if (backend === 'sockops') {
      const maps = path.join(bpffs, 'shunt', 'sockops', 'maps');
      const cfg = BpfMap.fromPin(path.join(maps, 'pod_cfg'));
      const byIp = BpfMap.fromPin(path.join(maps, 'pod_by_ip'));
      try {
        const cookies = new Set(cfg.keys().map((k) => k.readBigUInt64LE(0).toString()));
        const byCookie = new Map(all.map((p) => [netnsCookie(p).toString(), p]));
        const unknown = [...cookies].filter((c) => !byCookie.has(c));
        if (unknown.length) throw new Error(`pod_cfg holds ${unknown.length} cookie(s) of no netns of this test`);
        return { netns: new Set([...cookies].map((c) => byCookie.get(c)!)), ips: byIp.keys().length };
      } finally {
        cfg.close();
        byIp.close();
      }
    }
    const chains = await pooled(all, 6, async (p) => ({ p, n: (await readShuntChains(p)).length }));
    return { netns: new Set(chains.filter((c) => c.n > 0).map((c) => c.p)) };
  };

  /**
   * Converged: the enrolled gauge and the kernel both say exactly the listed pods (polled, bounded:
   * "ready" is the first full sync, and the removals it started may still be running), no failure.
   */
  const expectConverged = async (agent: AgentProcess, bulk: boolean) => {
    const want = bulk ? BULK + 2 : 2;
    const expected = [...stream.map((p) => tb.pod(p).netnsPath), ...(bulk ? bulkNetns : [])].sort();
    // Each stream pod has an IPv4 and an IPv6 address, each bulk pod one IPv4.
    const wantIps = backend === 'sockops' ? 4 + (bulk ? BULK : 0) : undefined;
    let last: unknown;
    const deadline = Date.now() + 90_000;
    for (let i = 0; i < 200; i++) {
      const k = await enrolledInKernel();
      last = { enrolledGauge: await metric(port, 'shunt_pods_enrolled'), netns: [...k.netns].sort(), ips: k.ips };
      if (JSON.stringify(last) === JSON.stringify({ enrolledGauge: want, netns: expected, ips: wantIps })) break;
      if (Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    expect(last).toEqual({ enrolledGauge: want, netns: expected, ips: wantIps });
    expect(agent.logs.filter((l) => l['msg'] === 'pod state changed' && l['state'] === 'failed')).toEqual([]);
  };

  /** How far the killed agent got: pods in pod_cfg (sockops), or iptables state records (written as each enroll starts). */
  const installedNow = (): number => {
    if (backend === 'sockops') {
      const cfg = BpfMap.fromPin(path.join(bpffs, 'shunt', 'sockops', 'maps', 'pod_cfg'));
      try {
        return cfg.keys().length;
      } finally {
        cfg.close();
      }
    }
    const recs = path.join(dir, `state-${backend}`, 'iptables');
    return existsSync(recs) ? readdirSync(recs).filter((f) => f.endsWith('.json')).length : 0;
  };

  /** Writes the pods file, kills the agent once it has logged the first bulk pod reaching `state`, starts a new one. */
  const killDuring = async (agent: AgentProcess, bulk: boolean, state: 'enrolled' | 'removed'): Promise<{ next: AgentProcess; atKill: string; changes: number }> => {
    const from = agent.logs.length;
    writePods(bulk);
    const isBulk = (l: Record<string, unknown>) => l['msg'] === 'pod state changed' && l['state'] === state && String(l['pod']).startsWith('bulk/');
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline && !agent.logs.slice(from).some(isBulk) && agent.child.exitCode === null) await new Promise((r) => setTimeout(r, 2));
    agent.child.kill('SIGKILL');
    await agent.exited;
    const logged = agent.logs.slice(from).filter(isBulk).length;
    const installed = installedNow();
    const atKill = `${logged} ${state} logged, ${installed} ${backend === 'sockops' ? 'in pod_cfg' : 'records'}`;
    const streamChanges = agent.logs.slice(from).filter((l) => l['msg'] === 'pod state changed' && streamUids().has(String(l['uid']))).length;
    expect(logged).toBeGreaterThan(0);
    // Really in the middle: some of the 150 done, not all (2 of the counted are the stream pods).
    if (state === 'enrolled') expect(installed).toBeLessThan(BULK + 2);
    else expect(installed).toBeGreaterThan(2);
    const next = await start();
    return { next, atKill, changes: streamChanges };
  };

  it('SIGKILL during enroll of 150 pods, then during their unenroll: a new agent converges each time; stream 0 failed / 0 bypassed', async () => {
    writePods(false);
    let agent = await start();
    await expectConverged(agent, false);
    const s = requestStream(tb, { port: HTTP_PORT, maxRequests: 3000 });
    try {
      await new Promise((r) => setTimeout(r, 1000));

      const e = await killDuring(agent, true, 'enrolled');
      agent = e.next;
      await expectConverged(agent, true);
      const afterEnroll = { ...s.stats };
      table.push({ backend, scenario: 'SIGKILL during enroll of 150 + converge', ...afterEnroll, stateChanges: e.changes + agent.logs.filter((l) => l['msg'] === 'pod state changed' && streamUids().has(String(l['uid'])) && l['state'] !== 'enrolled').length, atKill: e.atKill });

      const u = await killDuring(agent, false, 'removed');
      agent = u.next;
      await expectConverged(agent, false);
      await new Promise((r) => setTimeout(r, 1000));
      await s.stop();
      table.push({
        backend,
        scenario: 'SIGKILL during unenroll of 150 + converge',
        sent: s.stats.sent - afterEnroll.sent,
        failed: s.stats.failed - afterEnroll.failed,
        bypassed: s.stats.bypassed - afterEnroll.bypassed,
        stateChanges: u.changes + agent.logs.filter((l) => l['msg'] === 'pod state changed' && streamUids().has(String(l['uid'])) && l['state'] !== 'enrolled').length,
        atKill: u.atKill,
      });
    } finally {
      await s.stop();
    }
    expect(s.stats).toMatchObject({ failed: 0, bypassed: 0 });
    expect(s.stats.sent).toBeGreaterThan(5);
    expect(table.filter((r) => r.backend === backend).map((r) => r.stateChanges)).toEqual([0, 0]);
    expect(await agent.stop()).toBe(0);
  }, 240_000);

  it('a scoped `shunt cleanup` leaves nothing: no SHUNT_ chains in any netns of the test, no pins, no probe netns', async () => {
    // From an agent killed in the middle of enrolling the 150 again: partial state, pending records.
    writePods(false);
    const a = await start();
    const from = a.logs.length;
    writePods(true);
    const deadline = Date.now() + 60_000;
    const firstBulk = (l: Record<string, unknown>) => l['msg'] === 'pod state changed' && l['state'] === 'enrolled' && String(l['pod']).startsWith('bulk/');
    while (Date.now() < deadline && !a.logs.slice(from).some(firstBulk) && a.child.exitCode === null) await new Promise((r) => setTimeout(r, 2));
    a.child.kill('SIGKILL');
    await a.exited;
    expect(installedNow()).toBeGreaterThan(2);
    const report = JSON.parse(runCli(['cleanup', '--json', '--bpffs-path', bpffs, '--state-dir', path.join(dir, `state-${backend}`), '--cgroup-path', tb.cgroupRoot, '--netns-prefix', podNetnsPrefix(tb)], 180_000)) as { errors: string[] };
    expect(report.errors).toEqual([]);
    const all = [...stream.map((p) => tb.pod(p).netnsPath), ...bulkNetns];
    const left = (await pooled(all, 6, async (p) => ({ p, chains: await readShuntChains(p) }))).filter((c) => c.chains.length > 0);
    expect(left).toEqual([]);
    expect(existsSync(path.join(bpffs, 'shunt'))).toBe(false);
    expect(orphanedProbeNetns()).toEqual([]);
  }, 240_000);
});
