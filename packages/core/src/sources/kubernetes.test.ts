// The Kubernetes source against the fake API server in test/fake-apiserver: the real client-node,
// real HTTP, chunked watch streams, resourceVersion resume, bookmarks, 410 Gone and dropped connections.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startFakeApiServer, type FakeApiServer } from '../../../../test/fake-apiserver';
import type { ShuntError } from '../errors';
import { collect, eventually, type Collector } from '../testing/collect';
import type { PodEvent } from '../types';
import type { ReconcilerInput } from './events';
import { interpret } from './interpret';
import { kubernetesSource } from './kubernetes';

const NODE = 'node-1';

const pod = (name: string, node: string | undefined = NODE, extra: { labels?: Record<string, string>; annotations?: Record<string, string> } = {}) => ({
  metadata: { name, namespace: 'shop', labels: extra.labels ?? {}, annotations: { 'sidecar.istio.io/status': '{}', ...extra.annotations } },
  spec: { nodeName: node, containers: [{ name: 'app' }, { name: 'istio-proxy', args: ['proxy', 'sidecar'] }] },
  status: { phase: 'Running', podIPs: [{ ip: '198.18.1.1' }] },
});

const names = (items: ReconcilerInput[], type: PodEvent['type']) =>
  items.filter((e) => e.type === type).map((e) => (e as { pod: { name: string } }).pod.name);

let api: FakeApiServer;
let c: Collector<ReconcilerInput> | undefined;
let errors: ShuntError[];
const dir = mkdtempSync(join(tmpdir(), `shunt-kube-${process.pid}-`));

beforeEach(async () => {
  api = await startFakeApiServer();
  errors = [];
});
afterEach(async () => {
  c?.stop();
  c = undefined;
  await api.close();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function start(profile: 'istio-sidecar' | 'istio-ambient' = 'istio-sidecar', extra: Record<string, unknown> = {}) {
  c = collect(
    kubernetesSource({ kubeconfig: api.kubeconfig, nodeName: NODE, backoff: { initialMs: 10, maxMs: 100 }, onError: (e) => errors.push(e), ...extra }).pipe(
      interpret(profile),
    ),
  );
  return c;
}

const watchRequests = (resource = '/api/v1/pods') => api.requests.filter((r) => r.watch && r.path === resource);
const listRequests = (resource = '/api/v1/pods') => api.requests.filter((r) => !r.watch && r.path === resource);
const until = (pred: () => boolean, what: string, ms = 5000) => eventually(pred, ms, what);

describe('kubernetesSource against the fake API server', () => {
  it('lists this node’s pods, then follows the watch (add, modify, bind, delete)', async () => {
    api.addNamespace('shop');
    api.addPod(pod('a'));
    api.addPod(pod('other', 'node-2'));
    const s = start();
    await s.until((i) => i.some((e) => e.type === 'synced'), 10_000, 'synced');
    expect(names(s.items, 'upsert')).toEqual(['a']);
    expect(listRequests()[0]!.query.fieldSelector).toBe(`spec.nodeName=${NODE}`);
    expect(listRequests()[0]!.authorization).toBe('Bearer fake-token');

    s.clear();
    api.addPod(pod('b'));
    api.updatePod(pod('a', NODE, { labels: { v: '2' } }));
    api.addPod(pod('pending', '')); // not scheduled yet
    api.updatePod(pod('pending', NODE)); // scheduled onto this node: the selector watch reports ADDED
    api.addPod(pod('c', 'node-2'));
    api.deletePod('shop', 'b');
    await s.until((i) => names(i, 'delete').includes('b'), 5000, 'delete b');
    expect(names(s.items, 'upsert')).toEqual(['b', 'a', 'pending']);
    const w = watchRequests()[0]!;
    expect(w.query).toMatchObject({ watch: 'true', allowWatchBookmarks: 'true', fieldSelector: `spec.nodeName=${NODE}` });
    expect(Number(w.query.resourceVersion)).toBeGreaterThan(0);
    expect(Number(w.query.timeoutSeconds)).toBeGreaterThanOrEqual(300);
  });

  it('a dropped watch resumes from the last resourceVersion without relisting, and misses nothing', async () => {
    api.addPod(pod('a'));
    const s = start();
    await s.until((i) => i.some((e) => e.type === 'synced'), 10_000);
    await until(() => api.openWatches('pods') === 1, 'pod watch open');
    api.addPod(pod('b'));
    await s.until((i) => names(i, 'upsert').includes('b'));
    const rvAfterB = api.resourceVersion();
    api.failNextRequests(1, 503, 'watch'); // the first reconnect fails too
    api.dropWatches();
    await until(() => api.openWatches('pods') === 0, 'watch dropped');
    api.addPod(pod('during-outage'));
    await s.until((i) => names(i, 'upsert').includes('during-outage'), 5000, 'event from the outage replayed');
    expect(listRequests()).toHaveLength(1);
    const resumed = watchRequests().slice(1).map((r) => r.query.resourceVersion);
    expect(resumed.every((rv) => rv === rvAfterB)).toBe(true);
    expect(errors.some((e) => /503|Service Unavailable/.test(e.message))).toBe(true);
  });

  it('after an outage, a watch that was up and then drops is retried at the initial backoff, not the outage\'s', async () => {
    api.addPod(pod('a'));
    const s = start('istio-sidecar', { backoff: { initialMs: 20, maxMs: 4000 } });
    await s.until((i) => i.some((e) => e.type === 'synced'), 10_000);
    await until(() => api.openWatches('pods') === 1, 'pod watch open');
    // An outage: seven failed watch requests (pods and namespaces) grow the backoff (20, 40, 80, … ms).
    api.failNextRequests(7, 503, 'watch');
    api.dropWatches();
    await until(() => errors.filter((e) => /503/.test(e.message)).length === 7, 'seven failed reconnects', 15_000);
    // Both watches back (the namespaces one may still sit in the outage's backoff after the pods
    // one reconnected), each up for more than a second; the pod watch's own report is the one read.
    await until(() => api.openWatches('pods') === 1 && api.openWatches('namespaces') === 1, 'both watches open again', 15_000);
    await new Promise((r) => setTimeout(r, 1200));
    const before = errors.length;
    api.dropWatches();
    const podDrop = () => errors.slice(before).find((e) => /kubernetes pods on /.test(e.message));
    await until(() => podDrop() !== undefined, 'the pod watch drop reported');
    const delay = Number(/retrying in (\d+) ms/.exec(podDrop()!.message)?.[1]);
    // backoffDelay(0, initial 20 ms) is 10..20 ms; without the reset it goes on from the outage's (seen: 605 ms).
    expect(delay).toBeLessThanOrEqual(20);
    await until(() => api.openWatches('pods') === 1, 'pod watch open after the drop');
  });

  it('bookmarks advance the resume point', async () => {
    api.addPod(pod('a'));
    const s = start();
    await s.until((i) => i.some((e) => e.type === 'synced'), 10_000);
    await until(() => api.openWatches('pods') === 1, 'pod watch open');
    api.addPod(pod('x', 'node-2')); // invisible to us, but moves the resourceVersion on
    api.addNamespace('unrelated');
    api.sendBookmarks();
    const bookmarked = api.resourceVersion();
    await new Promise((r) => setTimeout(r, 100));
    api.endWatches(); // a clean server-side end: re-watch at once, no relist
    await until(() => watchRequests().length >= 2, 'second watch');
    expect(watchRequests()[1]!.query.resourceVersion).toBe(bookmarked);
    expect(listRequests()).toHaveLength(1);
  });

  it('410 Gone relists and emits deletes for pods that vanished meanwhile', async () => {
    api.addPod(pod('keep'));
    api.addPod(pod('vanish'));
    const s = start();
    await s.until((i) => i.some((e) => e.type === 'synced'), 10_000);
    await until(() => api.openWatches('pods') === 1, 'pod watch open');
    s.clear();
    api.failNextRequests(2, 500, 'watch'); // stay disconnected for a moment
    api.dropWatches();
    await until(() => api.openWatches('pods') === 0, 'watch dropped');
    api.deletePod('shop', 'vanish');
    api.updatePod(pod('keep', NODE, { labels: { v: 'new' } }));
    api.expireResourceVersions();
    await s.until((i) => names(i, 'delete').includes('vanish'), 10_000, 'delete after relist');
    expect(names(s.items, 'upsert')).toEqual(['keep']);
    expect(listRequests().length).toBe(2);
    const lastWatch = watchRequests().at(-1)!;
    await until(() => watchRequests().at(-1) !== lastWatch || api.openWatches('pods') === 1, 'watch after relist');
  });

  it('an HTTP 410 answer to a watch request also relists', async () => {
    api.addPod(pod('a'));
    const s = start();
    await s.until((i) => i.some((e) => e.type === 'synced'), 10_000);
    await until(() => api.openWatches('pods') === 1, 'pod watch open');
    api.failNextRequests(1, 410, 'watch');
    api.dropWatches();
    // Whichever watch reconnects first gets the 410 and that resource relists.
    await until(() => listRequests().length + listRequests('/api/v1/namespaces').length === 3, 'relist');
    await until(() => api.openWatches() === 2, 'both watches open again');
  });

  it('pages through long lists with limit/continue', async () => {
    for (let i = 0; i < 7; i++) api.addPod(pod(`p${i}`));
    const s = start('istio-sidecar', { pageSize: 3 });
    await s.until((i) => i.some((e) => e.type === 'synced'), 10_000);
    expect(names(s.items, 'upsert').sort()).toEqual(['p0', 'p1', 'p2', 'p3', 'p4', 'p5', 'p6']);
    expect(listRequests().map((r) => Boolean(r.query.continue))).toEqual([false, true, true]);
    expect(listRequests().every((r) => r.query.limit === '3')).toBe(true);
  });

  it('backs off and retries failing lists, reporting each failure', async () => {
    api.addPod(pod('a'));
    api.failNextRequests(3, 500, 'list');
    const s = start();
    await s.until((i) => i.some((e) => e.type === 'synced'), 10_000);
    expect(errors.filter((e) => /HTTP 500.*retrying in \d+ ms/.test(e.message))).toHaveLength(3);
  });

  it('namespace label changes re-announce pods (ambient membership follows the namespace)', async () => {
    api.addNamespace('shop');
    api.addPod({ metadata: { name: 'w', namespace: 'shop' }, spec: { nodeName: NODE, containers: [{ name: 'app' }] }, status: { podIP: '198.18.1.2' } });
    const s = start('istio-ambient');
    await s.until((i) => i.some((e) => e.type === 'synced'), 10_000);
    const memberships = () => s.items.filter((e): e is Extract<PodEvent, { type: 'upsert' }> => e.type === 'upsert').map((e) => e.pod.membership);
    expect(memberships()).toEqual(['none']);
    api.updateNamespace({ metadata: { name: 'shop', labels: { 'istio.io/dataplane-mode': 'ambient' } } });
    await s.until(() => memberships().includes('ambient'), 5000, 'ambient');
    api.deleteNamespace('shop');
    await s.until(() => memberships().at(-1) === 'none', 5000, 'namespace gone');
  });

  it('rejects a pod with a bad annotation and keeps streaming the others', async () => {
    api.addPod(pod('bad', NODE, { annotations: { 'traffic.sidecar.istio.io/excludeOutboundIPRanges': '10.0.0.0/33' } }));
    api.addPod(pod('good'));
    const s = start();
    await s.until((i) => i.some((e) => e.type === 'synced'), 10_000);
    expect(names(s.items, 'reject')).toEqual(['bad']);
    expect(names(s.items, 'upsert')).toEqual(['good']);
  });

  it('reads a kubeconfig file; a missing one errors the stream with a CONFIG error', async () => {
    api.addPod(pod('a'));
    const path = api.writeKubeconfig(join(dir, 'kubeconfig'));
    const s = start('istio-sidecar', { kubeconfig: path });
    await s.until((i) => i.some((e) => e.type === 'synced'), 10_000);
    expect(names(s.items, 'upsert')).toEqual(['a']);
    const bad = collect(kubernetesSource({ kubeconfig: join(dir, 'nope'), nodeName: NODE }));
    await until(() => bad.errors.length > 0, 'config error');
    expect((bad.errors[0] as ShuntError).code).toBe('CONFIG');
    expect((bad.errors[0] as Error).message).toContain(join(dir, 'nope'));
  });
});
