// Chaos suite (bounded): the real, built agent on the testbed with HAProxy sidecars, both backends,
// a request stream client → server through the sidecars while the agent is SIGTERMed, SIGKILLed,
// and SIGKILLed during start-up (the node probe). Every request is checked: sent, failed (no reply),
// bypassed (a reply, but the client's sidecar never saw it). Afterwards the node converges and a
// scoped `shunt cleanup` leaves nothing (no SHUNT_ chains, no pins, no orphaned probe netns).
// Prints the table. Run: cd packages/agent && npx jest ../../test/chaos (part of the agent's tests).
// Set-up and teardown: the agent e2e fixture (packages/agent/src/test-support/agent-run.ts).
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { builtCliCommand, spawnAgent, type AgentProcess } from '../../packages/agent/src/agent/process';
import { freePort } from '../../packages/agent/src/demo/free-port';
import { readShuntChains } from '../../packages/agent/src/e2e/iptables-read';
import { eventually, metric, requestViaSidecars, runCli } from '../../packages/agent/src/e2e/support';
import { CLIENT_SERVER_SIDECARS, useAgentRun } from '../../packages/agent/src/test-support/agent-run';
import { orphanedProbeNetns } from './probe-orphans';
import { requestStream } from './request-stream';

const HTTP_PORT = 8080;
const BACKENDS = ['sockops', 'iptables'] as const;
const run = useAgentRun({ tag: 'chaos', pods: CLIENT_SERVER_SIDECARS, httpServer: { pod: 'server', port: HTTP_PORT }, bpffs: 'run' });
const table: { backend: string; scenario: string; sent: number; failed: number; bypassed: number; stateChanges?: number }[] = [];

beforeAll(() => {
  writeFileSync(run.podsFile, JSON.stringify([run.tb.kubePod('client'), run.tb.kubePod('server')]));
});

afterAll(() => {
  // eslint-disable-next-line no-console
  console.log(
    ['backend   scenario                            sent  failed  bypassed  pod-state-changes', ...table.map((r) => `${r.backend.padEnd(9)} ${r.scenario.padEnd(35)} ${String(r.sent).padStart(4)}  ${String(r.failed).padStart(6)}  ${String(r.bypassed).padStart(8)}  ${String(r.stateChanges ?? '-').padStart(17)}`)].join('\n'),
  );
});

const args = (backend: string, port: number) => [
  '--pods-file', run.podsFile,
  '--node-name', run.tb.kubePod('client').spec.nodeName,
  '--redirect-mode', backend,
  '--metrics-address', `127.0.0.1:${port}`,
  ...run.nodeArgs(`state-${backend}`),
];

async function scenario(backend: string, name: string, chaos: () => Promise<void>): Promise<void> {
  const stream = requestStream(run.tb, { port: HTTP_PORT, maxRequests: 2000 });
  await new Promise((r) => setTimeout(r, 1500));
  await chaos();
  await new Promise((r) => setTimeout(r, 1500));
  await stream.stop();
  table.push({ backend, scenario: name, ...stream.stats });
  expect({ scenario: name, failed: stream.stats.failed, bypassed: stream.stats.bypassed }).toEqual({ scenario: name, failed: 0, bypassed: 0 });
  expect(stream.stats.sent).toBeGreaterThan(5);
}

describe.each(BACKENDS)('%s backend', (backend) => {
  let agent: AgentProcess;
  let port: number;
  const start = async () => {
    port = await freePort();
    agent = await run.startAgent(args(backend, port));
    expect(await metric(port, 'shunt_pods_enrolled')).toBe(2);
  };

  it('SIGTERM restart under a request stream', async () => {
    await start();
    await scenario(backend, 'SIGTERM + restart', async () => {
      expect(await agent.stop()).toBe(0);
      await start();
    });
  }, 120_000);

  it('SIGKILL restart under a request stream', async () => {
    await scenario(backend, 'SIGKILL + restart', async () => {
      agent.child.kill('SIGKILL');
      await agent.exited;
      await start();
    });
  }, 120_000);

  it('SIGKILL during start-up (node probe), then a clean start', async () => {
    await scenario(backend, 'SIGKILL during start-up + restart', async () => {
      agent.child.kill('SIGKILL');
      await agent.exited;
      const early = spawnAgent(args(backend, await freePort()), { cli: builtCliCommand() });
      run.track(early);
      // Killed while the probe's scratch netns exists (or as soon as it logs anything).
      const t0 = Date.now();
      const probeNs = () => (existsSync('/var/run/netns') ? readdirSync('/var/run/netns').filter((n) => n.startsWith(`shunt-probe-`)) : []);
      while (Date.now() - t0 < 20_000 && probeNs().length === 0 && early.logs.length === 0) await new Promise((r) => setTimeout(r, 2));
      early.child.kill('SIGKILL');
      await early.exited;
      await start();
    });
  }, 120_000);

  // Fail-closed when the client's sidecar dies (both backends): its traffic keeps being sent to the
  // proxy's ports, so with nothing listening there every request fails, and none reaches the server
  // around it (the server's sidecar logs no inbound connection). Once the sidecar is back, requests
  // flow through it again with no agent action needed beyond what it does by itself (drift repair).
  it('client sidecar killed: fail closed (requests fail, none bypass); restarted: through it again', async () => {
    const url = `http://${run.tb.pod('server').ipv4}:${HTTP_PORT}/`;
    const logsBefore = agent.logs.length;
    await run.tb.stopSidecar('client');
    expect(run.tb.sidecarStatus('client').ipv4).toBe('stopped');
    const since = Date.now();
    const down = { sent: 0, failed: 0, bypassed: 0 };
    for (let i = 0; i < 10; i++) {
      down.sent++;
      const res = await run.tb.httpGet('client', url, { count: 1, timeoutMs: 3000 }).catch(() => [{ ok: false }]);
      if (res[0]?.ok === true) down.bypassed++;
      else down.failed++;
    }
    // Anything that got around the dead client sidecar would show up at the server's inbound sidecar.
    const reachedServer = (await run.tb.settledProxyLog('server', (r) => r.at >= since - 1 && r.originalDst.port === HTTP_PORT, { atLeast: 0, quietMs: 500, timeoutMs: 3000 })).length;
    const changesDown = agent.logs.slice(logsBefore).filter((l) => l['msg'] === 'pod state changed').length;
    table.push({ backend, scenario: 'client sidecar down (fail closed)', ...down, bypassed: down.bypassed + reachedServer, stateChanges: changesDown });
    expect({ ...down, reachedServer }).toEqual({ sent: 10, failed: 10, bypassed: 0, reachedServer: 0 });
    await run.tb.startSidecar('client');
    run.tb.clearProxyLog('client');
    // Back through the sidecar (bounded: the agent's drift repair may need a resync to re-register it).
    await eventually('requests through the restarted sidecar', async () => (await requestViaSidecars(run.tb, 'client', 'server', HTTP_PORT).catch(() => ({ ok: false, originalDst: undefined }))).originalDst !== undefined, 60_000);
    const logsUp = agent.logs.length;
    await scenario(backend, 'client sidecar restarted', async () => undefined);
    table[table.length - 1]!.stateChanges = agent.logs.slice(logsUp).filter((l) => l['msg'] === 'pod state changed').length;
    expect(agent.child.exitCode).toBeNull();
  }, 150_000);

  it('converges, then a scoped `shunt cleanup` leaves nothing', async () => {
    expect(await agent.stop()).toBe(0);
    const report = JSON.parse(runCli(['cleanup', '--json', ...run.nodeArgs(`state-${backend}`)])) as { errors: string[] };
    expect(report.errors).toEqual([]);
    for (const p of ['client', 'server']) expect(await readShuntChains(run.tb.pod(p).netnsPath)).toEqual([]);
    expect(existsSync(path.join(run.bpffs, 'shunt'))).toBe(false);
    // No probe netns of a dead process is left (a live helper's probe may be running right now).
    expect(orphanedProbeNetns()).toEqual([]);
    await eventually('direct again', async () => (await run.tb.httpGet('client', `http://${run.tb.pod('server').ipv4}:${HTTP_PORT}/`, { count: 1 }))[0]?.ok === true);
  }, 120_000);
});
