// The real, built `shunt agent` process with the sockops backend, pods from a pods file, on the
// testbed with HAProxy sidecars. Its programs attach to the testbed's cgroup and pin under a bpffs
// directory of this run, never the machine's root cgroup or /sys/fs/bpf/shunt. Covered: enroll
// (the sidecars see the original destination), removal (direct again), SIGTERM (redirect keeps
// working), a restarted agent adopting the very same links, and `shunt cleanup` leaving no pins
// under the run's bpffs root and no programs on its cgroups (checked with bpftool).
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { BpfMap } from '@shunt/libbpf';
import { cgroup2Mount, type Testbed } from '@shunt/testbed';
import type { AgentProcess } from '../agent/process';
import { freePort } from '../demo/free-port';
import { CLIENT_SERVER_SIDECARS, useAgentRun } from '../test-support/agent-run';
import { eventually, metric, requestDirect, requestViaSidecars as viaSidecars, runCli } from './support';

const HTTP_PORT = 8080;
// The agent's --bpffs-path is a directory of this run in the machine's bpffs; shunt pins under <bpffs>/shunt.
const run = useAgentRun({
  tag: 'sockops',
  pods: CLIENT_SERVER_SIDECARS,
  httpServer: { pod: 'server', port: HTTP_PORT },
  bpffs: 'run',
});
let tb: Testbed;
let bpffs: string;

beforeAll(() => {
  ({ tb, bpffs } = run);
});

function writePods(names: string[]): void {
  writeFileSync(run.podsFile, JSON.stringify(names.map((n) => tb.kubePod(n)), null, 2));
}

const nodeArgs = () => run.nodeArgs();

async function startAgent(port: number, extra: string[] = []): Promise<AgentProcess> {
  return run.startAgent([
    ...extra,
    '--pods-file', run.podsFile,
    '--node-name', tb.kubePod('client').spec.nodeName,
    '--redirect-mode', 'sockops',
    '--metrics-address', `127.0.0.1:${port}`,
    ...nodeArgs(),
    '--log-level', 'debug',
  ]);
}

interface CgroupProg {
  id: number;
  attach_type: string;
  name: string;
}

/** Programs attached directly to a cgroup, as bpftool (not our own code) reads them from the kernel. */
function cgroupPrograms(cgroup: string): CgroupProg[] {
  const out = execFileSync('bpftool', ['-j', 'cgroup', 'show', cgroup], { encoding: 'utf8', timeout: 10_000 }).trim();
  return out ? (JSON.parse(out) as CgroupProg[]) : [];
}

/** Every cgroup of the run: its root, the node's and each pod's. */
const runCgroups = () => [tb.cgroupRoot, ...tb.nodes.map((n) => n.cgroupPath), ...tb.pods.map((p) => p.cgroupPath)];

function filesUnder(root: string, limit = 10_000): string[] {
  if (!existsSync(root)) return [];
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (out.length >= limit) return;
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out.push(p);
    }
  };
  walk(root);
  return out;
}

const requestViaSidecars = () => viaSidecars(tb, 'client', 'server', HTTP_PORT);

let port1: number;
let agent1: AgentProcess;
let attachedIds: number[];

it('enrolls the pods of the pods file: the sidecars see the original destination, programs sit on the run cgroup only', async () => {
  writePods(['client', 'server']);
  port1 = await freePort();
  agent1 = await startAgent(port1);
  expect(await metric(port1, 'shunt_pods_enrolled')).toBe(2);
  expect(await metric(port1, 'shunt_backend_info', { backend: 'sockops' })).toBe(1);
  // Capacity from the (cached) kernel reading: maxPods default, two pods in.
  expect(await metric(port1, 'shunt_capacity_max_pods')).toBe(1024);
  expect(await metric(port1, 'shunt_capacity_pods_left')).toBe(1022);
  expect(await metric(port1, 'shunt_capacity_map_entries', { map: 'pod_cfg', of: 'used' })).toBe(2);
  // Every per-pod map's "used" is the kernel's entry count (read here from the pins by the test).
  for (const name of ['pod_cfg', 'pod_meta', 'pod_by_ip', 'port_sel', 'cidr4', 'cidr6']) {
    const m = BpfMap.fromPin(path.join(bpffs, 'shunt', 'sockops', 'maps', name));
    let n: number;
    try {
      n = m.keys().length;
    } finally {
      m.close();
    }
    expect([name, await metric(port1, 'shunt_capacity_map_entries', { map: name, of: 'used' })]).toEqual([name, n]);
  }
  expect(await metric(port1, 'shunt_capacity_map_entries', { map: 'port_sel', of: 'used' })).toBeGreaterThan(0);
  const since = Date.now();
  expect(await requestViaSidecars()).toEqual({ ok: true, originalDst: `${tb.pod('server').ipv4}:${HTTP_PORT}` });
  // The server's sidecar got it on its inbound port, with the server's own address as original destination.
  const inbound = await tb.waitProxyLog('server', (r) => r.at >= since - 1, { count: 1, timeoutMs: 3000 });
  expect(inbound.map((r) => `${r.originalDst.address}:${r.originalDst.port}`)).toContain(`${tb.pod('server').ipv4}:${HTTP_PORT}`);

  const progs = cgroupPrograms(tb.cgroupRoot);
  expect(progs.map((p) => p.name).sort()).toEqual(expect.arrayContaining(['shunt_connect4', 'shunt_connect6', 'shunt_sockops']));
  attachedIds = progs.map((p) => p.id).sort();
  // Nothing on the machine's cgroup root.
  const machineRoot = cgroup2Mount();
  expect(cgroupPrograms(machineRoot).filter((p) => attachedIds.includes(p.id))).toEqual([]);
  expect(statSync(path.join(bpffs, 'shunt', 'sockops', 'maps')).isDirectory()).toBe(true);

  // `shunt status` reads the enrolled pods back from the pinned maps, in a separate process.
  const status = JSON.parse(runCli(['status', '--json', '--backend', 'sockops', ...nodeArgs()]));
  const sockops = status.backends.find((b: { backend: string }) => b.backend === 'sockops');
  expect(sockops.state.pods.map((p: { name: string }) => p.name).sort()).toEqual(['client', 'server']);
  // Default splice setting 'auto': every connection spliced behind the guard (it loads here).
  expect(sockops.state.nodeDetail.splice).toBe('all');
  expect(sockops.state.counters.sockets_spliced).toBeGreaterThan(0);
}, 120_000);

it('removing the pods from the file unenrolls them: traffic goes direct again', async () => {
  writePods([]);
  await eventually('both unenrolled', async () => (await metric(port1, 'shunt_pods_enrolled')) === 0);
  const since = Date.now();
  expect(await requestDirect(tb, 'client', 'server', HTTP_PORT)).toEqual({ ok: true, sidecarRecords: 0 });
  expect(tb.proxyLog('server', { since })).toEqual([]);
  writePods(['client', 'server']);
  await eventually('both enrolled again', async () => (await metric(port1, 'shunt_pods_enrolled')) === 2);
  expect((await requestViaSidecars()).originalDst).toBe(`${tb.pod('server').ipv4}:${HTTP_PORT}`);
}, 60_000);

it('a pod asking for what sockops cannot do (reroute-virtual-interfaces) is reported rejected, naming the annotation, and left alone', async () => {
  await tb.addPod({ name: 'vm', mesh: 'sidecar', annotations: { 'istio.io/reroute-virtual-interfaces': 'net1' } });
  writePods(['client', 'server', 'vm']);
  await eventually('vm rejected', async () => (await metric(port1, 'shunt_pods_rejected')) === 1);
  expect(await metric(port1, 'shunt_pods_enrolled')).toBe(2);
  const status = JSON.parse(runCli(['status', '--json', '--backend', 'sockops', ...nodeArgs()]));
  const sockops = status.backends.find((b: { backend: string }) => b.backend === 'sockops');
  expect(sockops.state.pods.map((p: { name: string }) => p.name).sort()).toEqual(['client', 'server']);
  const rejected = agent1.logs.find((l) => l.state === 'rejected' && String(l.pod).endsWith('/vm'));
  expect(String(rejected?.reason)).toMatch(/^backend sockops cannot serve this pod: istio\.io\/reroute-virtual-interfaces .*"net1": .*redirectMode=iptables/);
  writePods(['client', 'server']);
  await eventually('vm gone', async () => (await metric(port1, 'shunt_pods_rejected')) === 0);
}, 60_000);

it('SIGTERM stops the agent and leaves the redirect working', async () => {
  expect(await agent1.stop()).toBe(0);
  expect(await requestViaSidecars()).toEqual({ ok: true, originalDst: `${tb.pod('server').ipv4}:${HTTP_PORT}` });
  expect(cgroupPrograms(tb.cgroupRoot).map((p) => p.id).sort()).toEqual(attachedIds);
}, 60_000);

it('a restarted agent adopts the pinned links and maps: the same programs stay attached', async () => {
  const port2 = await freePort();
  // Restarted with splicing for the HTTP port: only the setting changes, links are adopted.
  const agent2 = await startAgent(port2, ['--splice-ports', String(HTTP_PORT)]);
  const adopted = agent2.logs.find((l) => l['msg'] === 'sockops: adopted pinned links');
  expect(adopted).toMatchObject({ attached: 0 });
  expect(cgroupPrograms(tb.cgroupRoot).map((p) => p.id).sort()).toEqual(attachedIds);
  expect(await metric(port2, 'shunt_pods_enrolled')).toBe(2);
  // Enrolled pods found in the kernel, not re-written: no enroll state change was needed.
  expect(await metric(port2, 'shunt_pods_installed')).toBe(2);
  expect(await requestViaSidecars()).toEqual({ ok: true, originalDst: `${tb.pod('server').ipv4}:${HTTP_PORT}` });
  const sockops = JSON.parse(runCli(['status', '--json', '--backend', 'sockops', ...nodeArgs()])).backends.find(
    (b: { backend: string }) => b.backend === 'sockops',
  );
  expect(sockops.state.nodeDetail.splice).toEqual([HTTP_PORT]);
  expect(sockops.state.nodeDetail.capacity).toMatchObject({ maxPods: 1024, pods: 2, podsLeft: 1022 });
  expect(runCli(['status', '--backend', 'sockops', ...nodeArgs()])).toMatch(/capacity: 2 of 1024 pods \(1022 left; raise with maxPods/);
  // App and sidecar sockets of the request above (both pods), spliced.
  expect(sockops.state.counters.sockets_spliced).toBeGreaterThanOrEqual(2);
  expect(await agent2.stop()).toBe(0);
}, 120_000);

it('`shunt cleanup` leaves no pins under the run bpffs root and no programs on its cgroups; traffic is direct', async () => {
  const report = JSON.parse(runCli(['cleanup', '--json', ...nodeArgs()]));
  expect(report.errors).toEqual([]);
  expect(report.backends).toContainEqual({ backend: 'sockops', ok: true });
  expect(filesUnder(bpffs)).toEqual([]);
  for (const cg of runCgroups()) expect({ cg, progs: cgroupPrograms(cg) }).toEqual({ cg, progs: [] });
  expect(await requestDirect(tb, 'client', 'server', HTTP_PORT)).toEqual({ ok: true, sidecarRecords: 0 });
}, 120_000);
