// What an operator relies on, against the real, built agent on the testbed (iptables backend, HAProxy
// sidecars): a forced mode that cannot run exits with the reason; /healthz and the metrics beyond
// the pod gauges; `shunt doctor` as a CLI; drift repair (rules removed behind the agent's back come
// back, traffic goes through the sidecar again); retry (a pod whose netns appears late is enrolled by
// a retry, with no new event).
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import type { Testbed } from '@shunt/testbed';
import { builtCliCommand, spawnAgent, type AgentProcess } from '../agent/process';
import { freePort } from '../demo/free-port';
import { CLIENT_SERVER_SIDECARS, useAgentRun } from '../test-support/agent-run';
import { readShuntChains } from './iptables-read';
import { eventually, metric, podNetnsPrefix, requestDirect, requestViaSidecars, runCli, scrape } from './support';

const HTTP_PORT = 8080;
const run = useAgentRun({ tag: 'ops', pods: CLIENT_SERVER_SIDECARS, httpServer: { pod: 'server', port: HTTP_PORT } });
let tb: Testbed;
let lateNetns: string;

beforeAll(() => {
  tb = run.tb;
  lateNetns = `${podNetnsPrefix(tb)}late-netns`;
  run.onTeardown(() => {
    try {
      execFileSync('ip', ['netns', 'del', lateNetns], { stdio: 'ignore' });
    } catch {
      /* never created, or already gone */
    }
  });
});

const nodeArgs = () => run.nodeArgs();

it('a forced mode that cannot serve the profile exits non-zero with the reason', async () => {
  writeFileSync(run.podsFile, JSON.stringify([tb.kubePod('client')]));
  const port = await freePort();
  const a = run.track(spawnAgent(['--pods-file', run.podsFile, '--node-name', tb.kubePod('client').spec.nodeName, '--redirect-mode', 'tc', '--metrics-address', `127.0.0.1:${port}`, ...nodeArgs()], { cli: builtCliCommand() }));
  const code = await Promise.race([a.exited, new Promise<'hung'>((r) => setTimeout(() => r('hung'), 60_000))]);
  expect(code).not.toBe('hung');
  expect(code).not.toBe(0);
  expect(JSON.stringify(a.logs)).toMatch(/redirectMode=tc: tc does not serve .*istio-sidecar/);
}, 90_000);

it('`shunt doctor --json` (the CLI) reports the probe table and the backend auto would choose', () => {
  const report = JSON.parse(runCli(['doctor', '--json', ...nodeArgs()])) as { node: { kernelRelease: string }; features: { name: string; available: boolean; evidence: string }[]; mode: string; choice: string; backends: unknown[] };
  const { release } = require('node:os') as typeof import('node:os');
  expect(report.node.kernelRelease).toBe(release());
  expect(report.mode).toBe('auto');
  // This machine's kernel (6.x, every probe passing) gets sockops, the first in the sidecar order.
  expect(report.features.filter((f) => !f.available && f.name.startsWith('prog:')).map((f) => f.name)).toEqual([]);
  expect(report.choice).toBe('sockops');
  expect(JSON.stringify(report.backends)).toMatch(/iptables/);
  expect(report.features.every((f) => f.evidence.length > 0)).toBe(true);
}, 90_000);

describe('a running agent', () => {
  let agent: AgentProcess;
  let port: number;

  it('serves /healthz and /readyz, and metrics beyond the pod gauges', async () => {
    const late = {
      ...tb.kubePod('client'),
      metadata: { name: 'late', namespace: 'default', uid: 'uid-late-netns', annotations: { 'sidecar.istio.io/status': '{}' } },
      status: { phase: 'Running', podIP: '198.19.255.77', podIPs: [{ ip: '198.19.255.77' }] },
      shunt: { netnsPath: `/var/run/netns/${lateNetns}` },
    };
    writeFileSync(run.podsFile, JSON.stringify([tb.kubePod('client'), tb.kubePod('server'), late]));
    port = await freePort();
    agent = await run.startAgent(
      ['--pods-file', run.podsFile, '--node-name', tb.kubePod('client').spec.nodeName, '--redirect-mode', 'iptables', '--metrics-address', `127.0.0.1:${port}`, '--resync-seconds', '1', ...nodeArgs()],
      // 'late' keeps failing until its netns exists: the agent is live, serving, not ready.
      { until: (l) => l['msg'] === 'backend call failed' && String(l['pod']).endsWith('/late') },
    );
    const healthz = await fetch(`http://127.0.0.1:${port}/healthz`);
    expect(healthz.status).toBe(200);
    await eventually('client and server enrolled', async () => (await metric(port, 'shunt_pods_enrolled')) === 2);
    expect(await metric(port, 'shunt_pods_failed')).toBe(1);
    // A pod that keeps failing does not make the node unready (it is retried and reported).
    expect((await fetch(`http://127.0.0.1:${port}/readyz`)).status).toBe(200);
    expect(await metric(port, 'shunt_pod_state_changes_total', { state: 'enrolled' })).toBeGreaterThanOrEqual(2);
    expect(await metric(port, 'shunt_pod_state_changes_total', { state: 'failed' })).toBeGreaterThanOrEqual(1);
    expect(await metric(port, 'shunt_reconcile_duration_seconds_count', { result: 'enrolled' })).toBeGreaterThanOrEqual(2);
    expect(await metric(port, 'shunt_backend_info', { backend: 'iptables' })).toBe(1);
    expect(await metric(port, 'shunt_pods_installed')).toBe(2);
    expect(await metric(port, 'shunt_observe_errors_total')).toBe(0);
    expect(await scrape(port)).toMatch(/^# TYPE shunt_kernel_counter gauge$/m);
  }, 120_000);

  it('retries a failing pod with backoff until it works, with no new event', async () => {
    const attempts = () => agent.logs.filter((l) => l['msg'] === 'backend call failed' && String(l['pod']).endsWith('/late')).length;
    await eventually('a second attempt', () => attempts() >= 2, 30_000);
    execFileSync('ip', ['netns', 'add', lateNetns]);
    await eventually('late enrolled by a retry', async () => (await metric(port, 'shunt_pods_enrolled')) === 3, 60_000);
    expect((await readShuntChains(`/var/run/netns/${lateNetns}`)).length).toBeGreaterThan(0);
    expect((await fetch(`http://127.0.0.1:${port}/readyz`)).status).toBe(200);
  }, 120_000);

  it('repairs drift: rules flushed behind its back come back, and traffic goes through the sidecar again', async () => {
    const netns = tb.pod('client').netnsPath;
    const before = await readShuntChains(netns);
    expect(before.length).toBeGreaterThan(0);
    // Someone flushes the nat table of the client's netns (user chains go with it).
    for (const { variant, family } of before) {
      const bin = `${family === 4 ? 'iptables' : 'ip6tables'}-${variant}-restore`;
      execFileSync('nsenter', [`--net=${netns}`, bin], { input: '*nat\nCOMMIT\n', timeout: 15_000 });
    }
    const gone = await readShuntChains(netns);
    const repaired = agent.logs.length;
    // Positive control for the drift: right after the flush (resync every 1 s) the request may already
    // be repaired, so only the repair is asserted, from the agent's log and the kernel.
    expect(gone.some((c) => c.tables['nat'])).toBe(false);
    await eventually('the agent repaired drift', () => agent.logs.slice(repaired).some((l) => l['msg'] === 'resync: repairing drift'), 30_000);
    await eventually('the chains are back', async () => (await readShuntChains(netns)).some((c) => c.tables['nat']), 30_000);
    const r = await requestViaSidecars(tb, 'client', 'server', HTTP_PORT);
    expect(r).toEqual({ ok: true, originalDst: `${tb.pod('server').ipv4}:${HTTP_PORT}` });
  }, 120_000);

  it('SIGTERM with --cleanup-on-exit is not the default: without it the redirect stays', async () => {
    expect(await agent.stop()).toBe(0);
    expect((await readShuntChains(tb.pod('client').netnsPath)).length).toBeGreaterThan(0);
    const r = await requestViaSidecars(tb, 'client', 'server', HTTP_PORT);
    expect(r.originalDst).toBe(`${tb.pod('server').ipv4}:${HTTP_PORT}`);
  }, 60_000);

  it('--cleanup-on-exit removes every rule it installed when it stops; the pods talk directly again', async () => {
    const a = await run.startAgent(['--pods-file', run.podsFile, '--node-name', tb.kubePod('client').spec.nodeName, '--redirect-mode', 'iptables', '--metrics-address', `127.0.0.1:${await freePort()}`, '--cleanup-on-exit', ...nodeArgs()]);
    expect(await a.stop()).toBe(0);
    for (const netns of [tb.pod('client').netnsPath, tb.pod('server').netnsPath, `/var/run/netns/${lateNetns}`]) expect(await readShuntChains(netns)).toEqual([]);
    expect(await requestDirect(tb, 'client', 'server', HTTP_PORT)).toEqual({ ok: true, sidecarRecords: 0 });
  }, 60_000);
});
