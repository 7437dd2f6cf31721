// Chaos suite, API side (bounded): the built agent watching test/fake-apiserver (both backends), a
// request stream through the sidecars, while the API misbehaves: watches dropped mid-stream, 410 Gone
// (history compacted, so the agent relists), the API answering 503 to everything for 10 s, a clean
// server-side watch end. Healthy pods must be neither unenrolled nor re-enrolled (no flapping): no pod
// state change is logged during the chaos, and every request still goes through the client's sidecar.
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { apiPodOf, Testbed } from '@shunt/testbed';
import { startFakeApiServer, type FakeApiServer } from '../fake-apiserver';
import type { AgentProcess } from '../../packages/agent/src/agent/process';
import { freePort } from '../../packages/agent/src/demo/free-port';
import { eventually, metric, podNetnsPrefix, startBuiltAgent } from '../../packages/agent/src/e2e/support';
import { removePins } from '../../packages/agent/src/node-state/pins';

const HTTP_PORT = 8080;
let tb: Testbed;
let api: FakeApiServer;
let dir: string;
const bpffs = `/sys/fs/bpf/shunt-chaos-api-${randomBytes(4).toString('hex')}`;
const agents: AgentProcess[] = [];
const table: { backend: string; scenario: string; sent: number; failed: number; bypassed: number; stateChanges: number }[] = [];

beforeAll(async () => {
  tb = await Testbed.create({ pods: [{ name: 'client', mesh: 'sidecar' }, { name: 'server', mesh: 'sidecar' }] });
  await tb.startHttpServer('server', { port: HTTP_PORT, body: 'hello' });
  dir = mkdtempSync(path.join(tmpdir(), 'shunt-chaos-api-'));
  mkdirSync(bpffs);
  api = await startFakeApiServer();
  api.addNamespace('default');
  api.addPod(apiPodOf(tb.kubePod('client')));
  api.addPod(apiPodOf(tb.kubePod('server')));
}, 120_000);

afterAll(async () => {
  for (const a of agents) await a.stop().catch(() => undefined);
  await api?.close();
  await removePins(path.join(bpffs, 'shunt')).catch(() => undefined);
  rmSync(bpffs, { recursive: true, force: true });
  await tb?.dispose();
  if (dir) rmSync(dir, { recursive: true, force: true });
  // eslint-disable-next-line no-console
  console.log(['backend   scenario                 sent  failed  bypassed  pod-state-changes', ...table.map((r) => `${r.backend.padEnd(9)} ${r.scenario.padEnd(24)} ${String(r.sent).padStart(4)}  ${String(r.failed).padStart(6)}  ${String(r.bypassed).padStart(8)}  ${String(r.stateChanges).padStart(17)}`)].join('\n'));
}, 60_000);

function requestStream() {
  let running = true;
  const stats = { sent: 0, failed: 0, bypassed: 0 };
  const done = (async () => {
    for (let i = 0; i < 2000 && running; i++) {
      const since = Date.now();
      stats.sent++;
      const res = await tb.httpGet('client', `http://${tb.pod('server').ipv4}:${HTTP_PORT}/`, { count: 1 }).catch(() => [{ ok: false }]);
      if (res[0]?.ok !== true) {
        stats.failed++;
        continue;
      }
      const seen = await tb.waitProxyLog('client', (r) => r.at >= since - 1 && r.originalDst.port === HTTP_PORT, { count: 1, timeoutMs: 3000 });
      if (seen.length === 0) stats.bypassed++;
      tb.clearProxyLog('client');
    }
  })();
  return { stats, stop: async () => ((running = false), await done) };
}

describe.each(['sockops', 'iptables'] as const)('%s backend', (backend) => {
  let agent: AgentProcess;
  let port: number;

  beforeAll(async () => {
    port = await freePort();
    const kubeconfig = api.writeKubeconfig(path.join(dir, `kubeconfig-${backend}`));
    agent = await startBuiltAgent([
      '--kubeconfig', kubeconfig,
      '--node-name', tb.kubePod('client').spec.nodeName,
      '--redirect-mode', backend,
      '--metrics-address', `127.0.0.1:${port}`,
      '--bpffs-path', bpffs,
      '--cgroup-path', tb.cgroupRoot,
      '--state-dir', path.join(dir, `state-${backend}`),
      '--netns-prefix', podNetnsPrefix(tb),
      '--cleanup-on-exit',
    ]);
    agents.push(agent);
    expect(await metric(port, 'shunt_pods_enrolled')).toBe(2);
  }, 120_000);

  afterAll(async () => {
    expect(await agent.stop()).toBe(0);
  }, 60_000);

  const scenarios: [string, () => Promise<void>][] = [
    ['watch dropped', async () => api.dropWatches()],
    ['watch ended cleanly', async () => api.endWatches()],
    ['410 Gone (relist)', async () => {
      // A change the pod watch does not carry (a namespace), so the agent's pod version is now old…
      api.addNamespace(`chaos-${randomBytes(3).toString('hex')}`);
      const lists = () => api.requests.filter((q) => q.path === '/api/v1/pods' && !q.watch).length;
      const before = lists();
      // …then history is compacted and the watches drop: resuming gets 410, the agent relists.
      api.expireResourceVersions();
      api.dropWatches();
      await eventually('a relist after 410', () => lists() > before, 60_000);
    }],
    ['API down 10 s (503)', async () => {
      api.setUnavailable(503);
      api.dropWatches();
      await new Promise((r) => setTimeout(r, 10_000));
      api.setUnavailable(null);
    }],
  ];

  it.each(scenarios)('%s: no healthy pod unenrolled or re-enrolled; every request through the sidecar', async (name, chaos) => {
    const logsBefore = agent.logs.length;
    const stream = requestStream();
    await new Promise((r) => setTimeout(r, 1000));
    await chaos();
    // The agent is watching again (or still) before the stream stops.
    await eventually('a watch is open again', () => api.openWatches('pods') > 0, 60_000);
    await new Promise((r) => setTimeout(r, 1000));
    await stream.stop();
    const changes = agent.logs.slice(logsBefore).filter((l) => l['msg'] === 'pod state changed');
    table.push({ backend, scenario: name, ...stream.stats, stateChanges: changes.length });
    expect(changes).toEqual([]);
    expect(stream.stats).toMatchObject({ failed: 0, bypassed: 0 });
    expect(await metric(port, 'shunt_pods_enrolled')).toBe(2);
  }, 120_000);
});
