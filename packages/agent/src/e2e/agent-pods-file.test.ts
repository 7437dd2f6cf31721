// The real, built `shunt agent` process on the testbed, pods from a pods file, iptables backend, real
// HAProxy sidecars: enroll on add (the sidecars see the original destination), unenroll on
// removal, /metrics counts them, SIGTERM leaves the redirect working, a restarted agent adopts
// it, `shunt cleanup` leaves nothing.
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Testbed } from '@shunt/testbed';
import type { AgentProcess } from '../agent/process';
import { freePort } from '../demo/free-port';
import { useAgentRun } from '../test-support/agent-run';
import { readShuntChains } from './iptables-read';
import { eventually, metric, requestDirect, requestViaSidecars as viaSidecars, runCli } from './support';

const HTTP_PORT = 8080;
// iptables installs nothing node-wide; a throwaway bpffs dir (<dir>/bpffs) keeps the run self-contained.
const run = useAgentRun({
  tag: 'pods-file',
  pods: [
    { name: 'client', mesh: 'sidecar' },
    { name: 'server', mesh: 'sidecar' },
    { name: 'late', mesh: 'sidecar' },
  ],
  httpServer: { pod: 'server', port: HTTP_PORT },
});
let tb: Testbed;
let dir: string;

beforeAll(() => {
  ({ tb, dir } = run);
});

function writePods(names: string[]): void {
  // tb.kubePod() carries the pods file's `shunt:` key: it is a pods-file entry as it is.
  writeFileSync(run.podsFile, JSON.stringify(names.map((n) => tb.kubePod(n)), null, 2));
}

async function startAgent(port: number): Promise<AgentProcess> {
  return run.startAgent([
    '--pods-file', run.podsFile,
    '--node-name', tb.kubePod('client').spec.nodeName,
    '--redirect-mode', 'iptables',
    '--metrics-address', `127.0.0.1:${port}`,
    ...run.nodeArgs(),
    '--log-level', 'debug',
  ]);
}

const requestViaSidecars = () => viaSidecars(tb, 'client', 'server', HTTP_PORT);

let port1: number;
let agent1: AgentProcess;

it('enrolls the pods of the pods file; the client sidecar sees the original destination; /metrics counts them', async () => {
  writePods(['client', 'server']);
  port1 = await freePort();
  agent1 = await startAgent(port1);
  expect(await metric(port1, 'shunt_pods_enrolled')).toBe(2);
  expect((await fetch(`http://127.0.0.1:${port1}/readyz`)).status).toBe(200);
  const r = await requestViaSidecars();
  expect(r.ok).toBe(true);
  expect(r.originalDst).toBe(`${tb.pod('server').ipv4}:${HTTP_PORT}`);
  const backendInfo = (await (await fetch(`http://127.0.0.1:${port1}/metrics`)).text()).split('\n').find((l) => l.startsWith('shunt_backend_info{'));
  expect(backendInfo).toMatch(/backend="iptables"/);
  // One log line per pod state change, with the pod's name.
  const enrolled = agent1.logs.filter((l) => l['msg'] === 'pod state changed' && l['state'] === 'enrolled').map((l) => l['pod']);
  expect(enrolled.sort()).toEqual(['default/client', 'default/server'].sort());
  // `shunt status`, a separate process, reads the pods back through the backend's records, read-only.
  const chainsBefore = await readShuntChains(tb.pod('client').netnsPath);
  const status = JSON.parse(runCli(['status', '--json', '--backend', 'iptables', '--bpffs-path', path.join(dir, 'bpffs'), '--state-dir', path.join(dir, 'state')]));
  const ipt = status.backends.find((b: { backend: string }) => b.backend === 'iptables');
  expect(ipt.state.pods.map((p: { name: string }) => p.name).sort()).toEqual(['client', 'server']);
  expect(await readShuntChains(tb.pod('client').netnsPath)).toEqual(chainsBefore.map((c) => ({ ...c, redirectedPackets: expect.any(Number) })));
}, 120_000);

it('enrolls a pod added to the file and unenrolls one removed from it', async () => {
  writePods(['client', 'server', 'late']);
  await eventually('late enrolled', async () => (await metric(port1, 'shunt_pods_enrolled')) === 3);
  expect((await readShuntChains(tb.pod('late').netnsPath)).length).toBeGreaterThan(0);
  writePods(['client', 'server']);
  await eventually('late unenrolled', async () => (await metric(port1, 'shunt_pods_enrolled')) === 2);
  await eventually('late chains gone', async () => (await readShuntChains(tb.pod('late').netnsPath)).length === 0);
}, 60_000);

it('SIGTERM stops the agent and leaves the redirect working', async () => {
  expect(await agent1.stop()).toBe(0);
  const r = await requestViaSidecars();
  expect(r.ok).toBe(true);
  expect(r.originalDst).toBe(`${tb.pod('server').ipv4}:${HTTP_PORT}`);
}, 60_000);

it('a restarted agent adopts the installed state: no rule is rewritten, traffic keeps flowing', async () => {
  const before = await readShuntChains(tb.pod('client').netnsPath);
  const port2 = await freePort();
  const agent2 = await startAgent(port2);
  expect(await metric(port2, 'shunt_pods_enrolled')).toBe(2);
  const r = await requestViaSidecars();
  expect(r.originalDst).toBe(`${tb.pod('server').ipv4}:${HTTP_PORT}`);
  // Same chains, and the packet counters kept counting (a rewrite would have reset them).
  const after = await readShuntChains(tb.pod('client').netnsPath);
  expect(after.map((c) => c.tables)).toEqual(before.map((c) => c.tables));
  expect(after[0]!.redirectedPackets).toBeGreaterThan(before[0]!.redirectedPackets);
  expect(await agent2.stop()).toBe(0);
}, 120_000);

it('`shunt cleanup` removes every SHUNT_ chain and the records, and leaves no pins', async () => {
  // One record per enrolled pod, so a later process (this one) can undo them.
  expect(readdirSync(path.join(dir, 'state', 'iptables')).filter((f) => f.endsWith('.json'))).toHaveLength(2);
  // Scoped to this testbed's netns and state dir: other runs on the machine have their own.
  const out = runCli(['cleanup', '--json', ...run.nodeArgs()]);
  const report = JSON.parse(out);
  expect(report.errors).toEqual([]);
  expect(report.backends).toContainEqual({ backend: 'iptables', ok: true });
  for (const p of ['client', 'server']) expect(await readShuntChains(tb.pod(p).netnsPath)).toEqual([]);
  expect(existsSync(path.join(dir, 'state', 'iptables')) ? readdirSync(path.join(dir, 'state', 'iptables')) : []).toEqual([]);
  expect(existsSync(path.join(dir, 'bpffs', 'shunt'))).toBe(false);
}, 120_000);

it('after cleanup the pods talk directly again', async () => {
  for (const p of ['client', 'server', 'late']) expect(await readShuntChains(tb.pod(p).netnsPath)).toEqual([]);
  expect(await requestDirect(tb, 'client', 'server', HTTP_PORT)).toEqual({ ok: true, sidecarRecords: 0 });
}, 60_000);
