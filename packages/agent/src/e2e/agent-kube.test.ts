// The real, built `shunt agent` process watching the fake Kubernetes API server (real
// @kubernetes/client-node, real list/watch protocol) on the testbed with HAProxy sidecars. The API
// carries no netns: the agent finds each pod's netns from its IP (netns discovery, scoped to this
// testbed with --netns-prefix). Covered: pods of this node enrolled (sidecar sees the original
// destination, /metrics counts them), pods of another node ignored, a pod scheduled later, a pod
// deleted through the API, dropped and expired (410) watches losing nothing, and, with the
// istio-ambient profile and the ztunnel stand-in, a namespace label enrolling and unenrolling its
// pod live (ztunnel handed the netns the agent found from the pod's IPs).
import { statSync } from 'node:fs';
import path from 'node:path';
import { netnsCookie } from '@shunt/libbpf';
import { apiPodOf, startZtunnel, type Testbed, type ZtunnelStandIn } from '@shunt/testbed';
import { startFakeApiServer, type FakeApiServer } from '../../../../test/fake-apiserver';
import type { AgentProcess } from '../agent/process';
import { freePort } from '../demo/free-port';
import { makeRunBpffs, removeRunBpffs, useAgentRun } from '../test-support/agent-run';
import { readShuntChains } from './iptables-read';
import { eventually, metric, requestViaSidecars } from './support';

const HTTP_PORT = 8080;
const ELSEWHERE = 'node-elsewhere';
const AMBIENT_LABEL = 'istio.io/dataplane-mode';
// Rules a failing test left in the pods' netns go with the netns (the testbed's teardown).
const run = useAgentRun({
  tag: 'kube',
  pods: [
    { name: 'client', mesh: 'sidecar' },
    { name: 'server', mesh: 'sidecar' },
    { name: 'late', mesh: 'sidecar' },
    // Has a sidecar, so enrolling it by mistake would show; announced on another node.
    { name: 'other', mesh: 'sidecar' },
    // No pod label: membership can only come from its namespace's label.
    { name: 'amb', mesh: 'none', namespace: 'amb-ns' },
  ],
  httpServer: { pod: 'server', port: HTTP_PORT },
});
let tb: Testbed;
let api: FakeApiServer;
let dir: string;
let kubeconfig: string;
let nodeName: string;

beforeAll(async () => {
  ({ tb, dir } = run);
  nodeName = tb.kubePod('client').spec.nodeName;
  api = await startFakeApiServer();
  run.onTeardown(() => api.close());
  kubeconfig = api.writeKubeconfig(path.join(dir, 'kubeconfig'));
  api.addNamespace('default');
  api.addNamespace('amb-ns');
  api.addPod(apiPod('client'));
  api.addPod(apiPod('server'));
  api.addPod(apiPod('amb'));
  api.addPod({ ...apiPod('other'), spec: { ...apiPod('other').spec, nodeName: ELSEWHERE } });
}, 120_000);

/** The testbed pod as the API server holds it: no netns, cgroup or veth (the agent must discover them). */
function apiPod(name: string): Record<string, any> {
  return apiPodOf(tb.kubePod(name));
}

async function startAgent(port: number, extra: string[] = [], until?: (l: Record<string, unknown>) => boolean): Promise<AgentProcess> {
  return run.startAgent(
    [
      '--kubeconfig', kubeconfig,
      '--metrics-address', `127.0.0.1:${port}`,
      ...run.nodeArgs(),
      '--log-level', 'debug',
      ...extra,
    ],
    // The chart sets NODE_NAME from the downward API; so does this test.
    { env: { NODE_NAME: nodeName }, ...(until ? { until } : {}) },
  );
}

const stateChanges = (a: AgentProcess, pod: string) => a.logs.filter((l) => l['msg'] === 'pod state changed' && l['pod'] === pod);
const chainsIn = async (pod: string) => (await readShuntChains(tb.pod(pod).netnsPath)).length;
const podRequests = () => api.requests.filter((r) => r.path === '/api/v1/pods');

let port: number;
let agent: AgentProcess;

describe('istio-sidecar profile, iptables backend', () => {
  it('enrolls the pods the API puts on this node, in the netns found from their IPs', async () => {
    port = await freePort();
    agent = await startAgent(port, ['--redirect-mode', 'iptables']);
    expect(await metric(port, 'shunt_pods_enrolled')).toBe(2);
    const r = await requestViaSidecars(tb, 'client', 'server', HTTP_PORT);
    expect(r).toEqual({ ok: true, originalDst: `${tb.pod('server').ipv4}:${HTTP_PORT}` });
    for (const name of ['client', 'server']) {
      const found = agent.logs.find((l) => l['msg'] === 'pod netns discovered' && l['pod'] === `default/${name}`);
      expect(found).toBeDefined();
      // The same netns the testbed made (the API object carried no path), and the cookie BPF sees.
      expect(statSync(String(found!['netnsPath'])).ino).toBe(statSync(tb.pod(name).netnsPath).ino);
      expect(found!['netnsCookie']).toBe(netnsCookie(tb.pod(name).netnsPath).toString());
      expect(stateChanges(agent, `default/${name}`).map((l) => l['state'])).toEqual(['enrolled']);
    }
  }, 120_000);

  it("ignores pods on another node: it asks only for its node's pods and never touches them", async () => {
    expect(podRequests().length).toBeGreaterThan(0);
    for (const r of podRequests()) expect(r.query['fieldSelector']).toBe(`spec.nodeName=${nodeName}`);
    expect(agent.logs.filter((l) => JSON.stringify(l).includes('default/other'))).toEqual([]);
    expect(await chainsIn('other')).toBe(0);
  });

  it('enrolls a pod once it is scheduled to this node and has its IPs', async () => {
    const pod = apiPod('late');
    api.addPod({ ...pod, spec: { ...pod.spec, nodeName: '' }, status: { phase: 'Pending' } });
    api.updatePod(pod);
    await eventually('late enrolled', async () => (await metric(port, 'shunt_pods_enrolled')) === 3);
    expect(await chainsIn('late')).toBeGreaterThan(0);
  }, 60_000);

  it('unenrolls a pod deleted through the API', async () => {
    api.deletePod('default', 'late');
    await eventually('late unenrolled', async () => (await metric(port, 'shunt_pods_enrolled')) === 2);
    await eventually('late chains gone', async () => (await chainsIn('late')) === 0);
    expect(stateChanges(agent, 'default/late').map((l) => l['state'])).toEqual(['enrolled', 'removed']);
  }, 60_000);

  it('a dropped watch resumes from where it was: a pod added meanwhile is enrolled', async () => {
    const watchesBefore = podRequests().filter((r) => r.watch).length;
    api.dropWatches();
    api.addPod(apiPod('late'));
    await eventually('late enrolled again', async () => (await metric(port, 'shunt_pods_enrolled')) === 3);
    expect(podRequests().filter((r) => r.watch).length).toBeGreaterThan(watchesBefore);
    expect(await chainsIn('late')).toBeGreaterThan(0);
  }, 60_000);

  it('an expired watch (410) relists: a pod deleted meanwhile is unenrolled, the others are kept', async () => {
    const listsBefore = podRequests().filter((r) => !r.watch).length;
    const countersBefore = (await readShuntChains(tb.pod('client').netnsPath))[0]!.redirectedPackets;
    api.dropWatches();
    api.deletePod('default', 'late');
    api.expireResourceVersions();
    await eventually('late unenrolled after the relist', async () => (await metric(port, 'shunt_pods_enrolled')) === 2);
    expect(podRequests().filter((r) => !r.watch).length).toBeGreaterThan(listsBefore);
    await eventually('late chains gone', async () => (await chainsIn('late')) === 0);
    // client and server went through the relist untouched: enrolled once, never removed, rules kept.
    for (const name of ['client', 'server']) expect(stateChanges(agent, `default/${name}`).map((l) => l['state'])).toEqual(['enrolled']);
    const r = await requestViaSidecars(tb, 'client', 'server', HTTP_PORT);
    expect(r.originalDst).toBe(`${tb.pod('server').ipv4}:${HTTP_PORT}`);
    expect((await readShuntChains(tb.pod('client').netnsPath))[0]!.redirectedPackets).toBeGreaterThan(countersBefore);
  }, 60_000);
});

describe('istio-ambient profile', () => {
  let ambPort: number;
  let amb: AgentProcess;
  let zt: ZtunnelStandIn;
  // tc pins need a real bpffs: a directory of this run in the machine's.
  let ambBpffs = '';
  beforeAll(async () => {
    ambBpffs = makeRunBpffs('kube');
    const sock = path.join(dir, 'ztunnel', 'ztunnel.sock');
    zt = await startZtunnel({ socketPath: sock, logPath: path.join(dir, 'ztunnel.log'), name: 'zt-kube' });
    ambPort = await freePort();
    amb = await startAgent(ambPort, ['--profile', 'istio-ambient', '--zds-socket', sock, '--bpffs-path', ambBpffs]);
  }, 120_000);
  afterAll(async () => {
    await amb?.stop().catch(() => undefined);
    await zt?.stop().catch(() => undefined);
    if (ambBpffs) await removeRunBpffs(ambBpffs);
  }, 60_000);

  it('picks an ambient backend (order tc → iptables) and serves ZDS; no member yet, nothing announced', async () => {
    const chosen = amb.logs.find((l) => l['msg'] === 'backend selected')!;
    expect(['tc', 'iptables']).toContain(chosen['backend']);
    expect(chosen['profile']).toBe('istio-ambient');
    expect((await fetch(`http://127.0.0.1:${ambPort}/readyz`)).status).toBe(200);
    await zt.waitFor((e) => e.event === 'snapshot', { what: 'the agent\'s (empty) snapshot' });
    // Not a member yet: neither its namespace nor the pod has the label.
    expect(stateChanges(amb, 'amb-ns/amb')).toEqual([]);
    expect(zt.entries().filter((e) => e.event === 'add')).toEqual([]);
  }, 60_000);

  it('a namespace labelled ambient enrolls its pod live: redirect, then ztunnel gets the pod netns found from its IPs', async () => {
    api.updateNamespace({ metadata: { name: 'amb-ns', labels: { [AMBIENT_LABEL]: 'ambient' } } });
    const [add] = await zt.waitFor((e) => e.event === 'add' && e.pod === 'amb', { what: 'amb announced', timeoutMs: 20_000 });
    expect(add).toMatchObject({ namespace: 'amb-ns', netnsIno: statSync(tb.pod('amb').netnsPath).ino });
    expect((add as { error?: string }).error).toBeUndefined();
    await eventually('amb enrolled', async () => (await metric(ambPort, 'shunt_pods_enrolled')) === 1);
    expect(stateChanges(amb, 'amb-ns/amb').map((l) => l['state'])).toEqual(['enrolled']);
    // The sidecar pods are not ambient members (their istio-proxy container excludes them)…
    for (const name of ['client', 'server']) expect(stateChanges(amb, `default/${name}`)).toEqual([]);
    // …and the sidecar-profile agent is not interested in the ambient pod at all.
    expect(stateChanges(agent, 'amb-ns/amb')).toEqual([]);
  }, 60_000);

  it('removing the label unenrolls it: ztunnel is told (DelWorkload), the pod is not enrolled any more', async () => {
    api.updateNamespace({ metadata: { name: 'amb-ns', labels: {} } });
    await zt.waitFor((e) => e.event === 'del' && e.pod === 'amb', { what: 'amb deleted', timeoutMs: 20_000 });
    await eventually('amb no longer enrolled', async () => (await metric(ambPort, 'shunt_pods_enrolled')) === 0);
    expect(stateChanges(amb, 'amb-ns/amb').map((l) => l['state'])).toEqual(['enrolled', 'removed']);
  }, 60_000);
});
