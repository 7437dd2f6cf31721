// The fake API server checked by a real client that is not ours: Debian's kubectl (package
// kubernetes-client, or any kubectl on PATH) lists, pages and watches pods against it, with
// discovery, server-side Table printing, field selectors and token auth — so the watch tests of the
// Kubernetes source are not shaped to client-node alone.
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startFakeApiServer, type FakeApiServer } from '../../../../test/fake-apiserver';
import { eventually } from '../testing/collect';

/** Debian's kubernetes-client installs /usr/bin/kubectl; KUBECTL points elsewhere (another build). */
const KUBECTL = process.env['KUBECTL'] ?? 'kubectl';
const dir = mkdtempSync(join(tmpdir(), `shunt-kubectl-${process.pid}-`));
let api: FakeApiServer;
let kubeconfig: string;

const pod = (name: string, node: string, namespace = 'shop') => ({
  metadata: { name, namespace },
  spec: { nodeName: node, containers: [{ name: 'app' }] },
  status: { phase: 'Running', podIP: '198.18.0.10' },
});

function kubectl(args: string[], config = kubeconfig): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(KUBECTL, ['--kubeconfig', config, '--request-timeout=10s', ...args], { timeout: 30_000, env: { ...process.env, HOME: dir } }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

beforeAll(async () => {
  api = await startFakeApiServer({ tls: true });
  api.addNamespace('shop');
  api.addPod(pod('web-1', 'node-1'));
  api.addPod(pod('web-2', 'node-1'));
  api.addPod(pod('db-1', 'node-2', 'data'));
  kubeconfig = api.writeKubeconfig(join(dir, 'kubeconfig'));
});
afterAll(async () => {
  await api?.close();
  rmSync(dir, { recursive: true, force: true });
});

const rows = (out: string) => out.trim().split('\n').map((l) => l.trim().split(/\s+/));

it('kubectl is installed (scripts/setup.sh installs it); a missing client is a failure, not a skip', async () => {
  const r = await new Promise<string>((resolve, reject) => execFile(KUBECTL, ['version', '--client'], (e, out) => (e ? reject(e) : resolve(out))));
  expect(r).toMatch(/Client Version: .*v1\.\d+/);
});

it('get pods -A: discovery, then a server-side Table with every pod', async () => {
  const r = await kubectl(['get', 'pods', '-A']);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  const [header, ...body] = rows(r.stdout);
  expect(header).toEqual(['NAMESPACE', 'NAME', 'READY', 'STATUS', 'RESTARTS', 'AGE']);
  expect(body.map((c) => `${c[0]}/${c[1]}`).sort()).toEqual(['data/db-1', 'shop/web-1', 'shop/web-2']);
  expect(body.every((c) => c[3] === 'Running')).toBe(true);
  const list = api.requests.filter((q) => q.path === '/api/v1/pods' && !q.watch).at(-1)!;
  expect(list.accept).toMatch(/as=Table;v=v1;g=meta\.k8s\.io/);
  expect(list.authorization).toBe('Bearer fake-token');
  expect(api.requests.some((q) => q.path === '/api' || q.path === '/api/v1')).toBe(true);
});

it('--field-selector spec.nodeName=… is applied by the server', async () => {
  const r = await kubectl(['get', 'pods', '-A', '--field-selector', 'spec.nodeName=node-1', '-o', 'wide']);
  expect(r.code).toBe(0);
  const body = rows(r.stdout).slice(1);
  expect(body.map((c) => c[1]).sort()).toEqual(['web-1', 'web-2']);
  expect(api.requests.filter((q) => q.path === '/api/v1/pods').at(-1)!.query.fieldSelector).toBe('spec.nodeName=node-1');
});

it('--chunk-size pages through limit/continue', async () => {
  const before = api.requests.length;
  const r = await kubectl(['get', 'pods', '-A', '--chunk-size=1']);
  expect(r.code).toBe(0);
  expect(rows(r.stdout).slice(1).map((c) => c[1]).sort()).toEqual(['db-1', 'web-1', 'web-2']);
  const pages = api.requests.slice(before).filter((q) => q.path === '/api/v1/pods');
  expect(pages.map((q) => q.query.limit)).toEqual(['1', '1', '1']);
  expect(pages.slice(1).every((q) => q.query.continue)).toBe(true);
});

it('get pods -A -w: prints the listing, then every change as it happens', async () => {
  const child = spawn(KUBECTL, ['--kubeconfig', kubeconfig, 'get', 'pods', '-A', '-w', '--field-selector', 'spec.nodeName=node-1'], { env: { ...process.env, HOME: dir } });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  try {
    await eventually(() => /web-1/.test(out) && /web-2/.test(out), 15_000, `the listing (got ${JSON.stringify(out)} ${err})`);
    await eventually(() => api.openWatches('pods') > 0, 15_000, 'the watch');
    api.addPod(pod('web-3', 'node-1'));
    api.addPod(pod('elsewhere', 'node-2'));
    await eventually(() => /web-3/.test(out), 15_000, `web-3 (got ${JSON.stringify(out)})`);
    api.updatePod({ ...pod('web-3', 'node-1'), status: { phase: 'Succeeded', podIP: '198.18.0.10' } });
    await eventually(() => /web-3\s+0\/1\s+Succeeded/.test(out), 15_000, `web-3 Succeeded (got ${JSON.stringify(out)})`);
    expect(out).not.toMatch(/elsewhere/);
    const header = out.split('\n').filter((l) => /^NAMESPACE\s+NAME/.test(l));
    expect(header).toHaveLength(1);
    expect(err).toBe('');
  } finally {
    child.kill('SIGKILL');
  }
});

it('a wrong token is refused, and kubectl says so', async () => {
  const bad = join(dir, 'bad-kubeconfig');
  writeFileSync(bad, JSON.stringify({ ...JSON.parse(require('node:fs').readFileSync(kubeconfig, 'utf8')), users: [{ name: 'fake', user: { token: 'wrong' } }] }));
  const r = await kubectl(['get', 'pods', '-A'], bad);
  expect(r.code).not.toBe(0);
  expect(r.stderr).toMatch(/Unauthorized|must be logged in/);
});
