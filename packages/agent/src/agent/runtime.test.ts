// The agent's wiring with an in-memory backend: what /readyz says while pods are pending, once
// every pod had its answer, and with failed pods; and that stopping never waits on queued or
// hung work. Real pods file, real HTTP server; the backend is core's RecordingBackend.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { RecordingBackend, eventually, probeNode, type NodeCapabilities } from '@shunt/core';
import { freePort } from '../demo/free-port';
import { createLogger } from '../observability/log';
import { startAgent, type RunningAgent } from './runtime';

let dir: string;
let caps: NodeCapabilities;
const agents: RunningAgent[] = [];

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'shunt-runtime-'));
  caps = await probeNode({ iptablesScratch: true });
}, 60_000);
afterAll(async () => {
  for (const a of agents) await a.stop({ cleanup: false }).catch(() => undefined);
  rmSync(dir, { recursive: true, force: true });
});

const uid = (name: string) => `runtime-${name}`;
function pod(name: string): Record<string, unknown> {
  return {
    metadata: { name, namespace: 'rt', uid: uid(name), annotations: { 'sidecar.istio.io/status': '{"containers":["istio-proxy"]}' } },
    spec: { nodeName: 'rt-node', containers: [{ name: 'app' }, { name: 'istio-proxy' }] },
    status: { phase: 'Running', podIP: '198.18.200.1', podIPs: [{ ip: '198.18.200.1' }] },
  };
}

async function start(backend: RecordingBackend, names: string[]): Promise<{ agent: RunningAgent; readyz: () => Promise<{ status: number; body: string }> }> {
  const file = path.join(mkdtempSync(path.join(dir, 'a-')), 'pods.json');
  writeFileSync(file, JSON.stringify(names.map(pod)));
  const port = await freePort();
  const agent = await startAgent(
    {
      nodeName: 'rt-node',
      mode: 'iptables',
      profile: 'istio-sidecar',
      source: { kind: 'podsFile', path: file },
      metricsAddress: `127.0.0.1:${port}`,
      cleanupOnExit: false,
      stateDir: path.join(dir, 'state'),
      bpffsPath: path.join(dir, 'bpffs'),
    },
    { log: createLogger('silent'), backends: [backend], probe: async () => caps },
  );
  agents.push(agent);
  const readyz = async () => {
    const r = await fetch(`http://127.0.0.1:${port}/readyz`);
    return { status: r.status, body: await r.text() };
  };
  return { agent, readyz };
}

test('not ready while a listed pod is pending; ready once all had an answer; failed pods are counted, not hidden', async () => {
  const backend = new RecordingBackend('iptables');
  const release = backend.hang(uid('slow'), 'enroll');
  backend.fail({ uid: uid('bad'), times: 1000, message: 'injected: map is full' });
  const { agent, readyz } = await start(backend, ['ok', 'bad', 'slow']);
  await eventually(() => backend.callsFor(uid('slow'), 'enroll').length === 1 && backend.callsFor(uid('bad'), 'enroll').length >= 1, 10_000);
  await eventually(() => agent.tracker.states().get(uid('bad'))?.state === 'failed', 10_000);
  const pending = await readyz();
  expect(pending.status).toBe(503);
  expect(pending.body).toMatch(/enrolling the listed pods: 1 of 3 pods enrolled, 1 pending, 1 failed/);
  expect(agent.isReady()).toBe(false);

  release();
  await agent.ready;
  const ready = await readyz();
  expect(ready.status).toBe(200);
  expect(ready.body).toMatch(/ready with failures: 2 of 3 pods enrolled, 0 pending, 1 failed/);
  await agent.stop({ cleanup: false });
}, 30_000);

test('stop does not wait for hung or queued work', async () => {
  const backend = new RecordingBackend('iptables');
  // Never released: a stop that waited for it would never return.
  backend.hang(uid('stuck'), 'enroll');
  const names = ['stuck', ...Array.from({ length: 50 }, (_, i) => `q${i}`)];
  const { agent } = await start(backend, names);
  await eventually(() => backend.callsFor(uid('stuck'), 'enroll').length === 1, 10_000);
  await agent.stop({ cleanup: false });
  expect(backend.calls.some((c) => c.op === 'stop')).toBe(true);
}, 30_000);
