// Chaos suite, API side (bounded): the built agent watching test/fake-apiserver (both backends), a
// request stream through the sidecars, while the API misbehaves: watches dropped mid-stream, 410 Gone
// (history compacted, so the agent relists), the API answering 503 to everything for 30 s, a slow
// API (every answer and watch event 1–3 s late), a clean server-side watch end. Healthy pods must be
// neither unenrolled nor re-enrolled (no flapping): no pod
// state change is logged during the chaos, and every request still goes through the client's sidecar.
// The two backends run at once, each agent on its own testbed node watching the same API server, so
// each scenario (the 30 s outage above all) is lived through once for both: the suite stays in budget.
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
import { requestStream } from './request-stream';

const HTTP_PORT = 8080;
const BACKENDS = ['sockops', 'iptables'] as const;
type Backend = (typeof BACKENDS)[number];
let api: FakeApiServer;
let dir: string;
const bpffs = `/sys/fs/bpf/shunt-chaos-api-${randomBytes(4).toString('hex')}`;
const agents: AgentProcess[] = [];
const table: { backend: string; scenario: string; sent: number; failed: number; bypassed: number; stateChanges: number }[] = [];

/** One backend's node: its own testbed (node name `node-<backend>`), agent and metrics port. */
interface Side {
  backend: Backend;
  tb: Testbed;
  node: string;
  agent: AgentProcess;
  port: number;
}
const sides: Side[] = [];
const testbeds: Testbed[] = [];

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'shunt-chaos-api-'));
  mkdirSync(bpffs);
  api = await startFakeApiServer();
  api.addNamespace('default');
  const made = await Promise.allSettled(BACKENDS.map((b) => Testbed.create({ nodes: [`node-${b}`], pods: [{ name: 'client', mesh: 'sidecar' }, { name: 'server', mesh: 'sidecar' }] })));
  for (const m of made) if (m.status === 'fulfilled') testbeds.push(m.value); // disposed in afterAll, also when the other failed
  for (const m of made) if (m.status === 'rejected') throw m.reason;
  for (const [i, backend] of BACKENDS.entries()) {
    const tb = testbeds[i]!;
    mkdirSync(path.join(bpffs, backend));
    sides.push({ backend, tb, node: `node-${backend}`, agent: undefined as never, port: 0 });
    await tb.startHttpServer('server', { port: HTTP_PORT, body: 'hello' });
    api.addNamespace(`ns-${backend}`);
    // One API for both nodes: the pods of each testbed live in their own namespace.
    for (const p of ['client', 'server']) api.addPod({ ...apiPodOf(tb.kubePod(p)), metadata: { ...tb.kubePod(p).metadata, namespace: `ns-${backend}` } });
  }
  for (const side of sides) {
    side.port = await freePort();
    const kubeconfig = api.writeKubeconfig(path.join(dir, `kubeconfig-${side.backend}`));
    side.agent = await startBuiltAgent([
      '--kubeconfig', kubeconfig,
      '--node-name', side.node,
      '--redirect-mode', side.backend,
      '--metrics-address', `127.0.0.1:${side.port}`,
      // One pin root per agent: both use this test's bpffs mount point under a name of their own.
      '--bpffs-path', path.join(bpffs, side.backend),
      '--cgroup-path', side.tb.cgroupRoot,
      '--state-dir', path.join(dir, `state-${side.backend}`),
      '--netns-prefix', podNetnsPrefix(side.tb),
      '--cleanup-on-exit',
    ]);
    agents.push(side.agent);
    expect(await metric(side.port, 'shunt_pods_enrolled')).toBe(2);
  }
}, 180_000);

afterAll(async () => {
  const codes: (number | string | null)[] = [];
  for (const a of agents) codes.push(await a.stop().catch((e: Error) => e.message));
  await api?.close();
  for (const b of BACKENDS) await removePins(path.join(bpffs, b, 'shunt')).catch(() => undefined);
  rmSync(bpffs, { recursive: true, force: true });
  await Promise.all(testbeds.map((t) => t.dispose()));
  if (dir) rmSync(dir, { recursive: true, force: true });
  // eslint-disable-next-line no-console
  console.log(['backend   scenario                           sent  failed  bypassed  pod-state-changes', ...table.map((r) => `${r.backend.padEnd(9)} ${r.scenario.padEnd(34)} ${String(r.sent).padStart(4)}  ${String(r.failed).padStart(6)}  ${String(r.bypassed).padStart(8)}  ${String(r.stateChanges).padStart(17)}`)].join('\n'));
  // Both agents stopped with cleanup, exit 0 (after the table, so it prints either way).
  expect(codes).toEqual(agents.map(() => 0));
}, 60_000);

/** Pod lists (not watches) one agent made: its requests carry its node's field selector. */
const listsOf = (node: string) => api.requests.filter((q) => q.path === '/api/v1/pods' && !q.watch && (q.query['fieldSelector'] ?? '').endsWith(`=${node}`)).length;

const scenarios: [string, () => Promise<void>][] = [
  ['watch dropped', async () => api.dropWatches()],
  ['watch ended cleanly', async () => api.endWatches()],
  ['410 Gone (relist)', async () => {
    // A change the pod watches do not carry (a namespace), so the agents' pod versions are now old…
    api.addNamespace(`chaos-${randomBytes(3).toString('hex')}`);
    const before = sides.map((s) => listsOf(s.node));
    // …then history is compacted and the watches drop: resuming gets 410, each agent relists.
    api.expireResourceVersions();
    api.dropWatches();
    await eventually('a relist after 410 by every agent', () => sides.every((s, i) => listsOf(s.node) > before[i]!), 60_000);
  }],
  ['API down 30 s (503)', async () => {
    api.setUnavailable(503);
    api.dropWatches();
    await new Promise((r) => setTimeout(r, 30_000));
    api.setUnavailable(null);
  }],
  ['slow API (1-3 s per answer/event)', async () => {
    // Every answer and watch event 1–3 s late, while the agents must re-list and re-watch through
    // it (watches dropped) and a change arrives late: nothing may be taken for a pod going away.
    api.setLatency({ minMs: 1000, maxMs: 3000 });
    try {
      const before = sides.map((s) => api.requests.filter((q) => (q.query['fieldSelector'] ?? '').endsWith(`=${s.node}`)).length);
      api.dropWatches();
      api.addNamespace(`chaos-slow-${randomBytes(3).toString('hex')}`);
      await eventually('every agent asked the slow API again', () => sides.every((s, i) => api.requests.filter((q) => (q.query['fieldSelector'] ?? '').endsWith(`=${s.node}`)).length > before[i]!), 30_000);
      await eventually('every agent watching through the slow API', () => sides.every((s) => api.openWatches('pods', s.node) > 0), 30_000);
      await new Promise((r) => setTimeout(r, 5000));
      for (const s of sides) expect(api.openWatches('pods', s.node)).toBeGreaterThan(0);
    } finally {
      api.setLatency(null);
    }
  }],
];

it.each(scenarios)('%s (both backends at once): no healthy pod unenrolled or re-enrolled; every request through the sidecar', async (name, chaos) => {
  const logsBefore = sides.map((s) => s.agent.logs.length);
  const streams = sides.map((s) => requestStream(s.tb, { port: HTTP_PORT, maxRequests: 3000 }));
  try {
    await new Promise((r) => setTimeout(r, 1000));
    await chaos();
    // Every agent is watching again (or still) before the streams stop.
    await eventually('every agent has a pod watch open again', () => sides.every((s) => api.openWatches('pods', s.node) > 0), 60_000);
    await new Promise((r) => setTimeout(r, 1000));
  } finally {
    await Promise.all(streams.map((st) => st.stop()));
  }
  for (const [i, s] of sides.entries()) {
    const changes = s.agent.logs.slice(logsBefore[i]).filter((l) => l['msg'] === 'pod state changed');
    table.push({ backend: s.backend, scenario: name, ...streams[i]!.stats, stateChanges: changes.length });
  }
  for (const [i, s] of sides.entries()) {
    expect({ backend: s.backend, changes: s.agent.logs.slice(logsBefore[i]).filter((l) => l['msg'] === 'pod state changed') }).toEqual({ backend: s.backend, changes: [] });
    expect({ backend: s.backend, ...streams[i]!.stats }).toMatchObject({ backend: s.backend, failed: 0, bypassed: 0 });
    expect(await metric(s.port, 'shunt_pods_enrolled')).toBe(2);
  }
}, 150_000);
