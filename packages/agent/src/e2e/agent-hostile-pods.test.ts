// Bad input never takes the agent down (issue 12), with the real, built agent on the testbed, real
// HAProxy sidecars, both backends. The pods file holds good pods next to hostile ones (istio-proxy
// runAsUser 4294967296 — it used to crash the sockops agent from fingerprint() —, a bad annotation,
// a scalar entry, a non-string name, a duplicate uid); then the file goes through broken states
// (empty, a scalar, truncated, deleted, unreadable). Throughout: the agent stays up, the good pods'
// traffic still goes through the client's sidecar to the original destination, the bad pods are
// rejected once each and never enrolled (their traffic stays direct), nothing is unenrolled.
import { mkdirSync, renameSync, rmdirSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Testbed } from '@shunt/testbed';
import type { AgentProcess } from '../agent/process';
import { freePort } from '../demo/free-port';
import { useAgentRun } from '../test-support/agent-run';
import { eventually, metric, requestDirect, requestViaSidecars, runCli } from './support';

const HTTP_PORT = 8080;
const run = useAgentRun({
  tag: 'hostile',
  pods: [
    { name: 'client', mesh: 'sidecar' },
    { name: 'server', mesh: 'sidecar' },
    { name: 'victim', mesh: 'sidecar' },
  ],
  httpServer: { pod: 'server', port: HTTP_PORT },
  bpffs: 'run',
});
let tb: Testbed;
let dir: string;

beforeAll(() => {
  ({ tb, dir } = run);
});

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
const clone = (o: unknown): Obj => JSON.parse(JSON.stringify(o)) as Obj;

/** The good pods, and one entry per class of bad input; `expect` is what its report must say. */
function hostileFile(): { items: unknown[]; bad: { name: string; expect: RegExp }[] } {
  const victim = clone(tb.kubePod('victim'));
  victim.spec.containers.find((c: Obj) => c.name === 'istio-proxy').securityContext.runAsUser = 4294967296;
  const badAnnotation = clone(tb.kubePod('victim'));
  badAnnotation.metadata.name = 'bad-annotation';
  badAnnotation.metadata.uid = `${badAnnotation.metadata.uid}-annotation`;
  badAnnotation.metadata.annotations['traffic.sidecar.istio.io/includeInboundPorts'] = '70000';
  const numericName = clone(tb.kubePod('victim'));
  numericName.metadata.name = 12345;
  numericName.metadata.uid = `${numericName.metadata.uid}-numeric`;
  const duplicate = clone(tb.kubePod('client'));
  duplicate.metadata.name = 'client-copy';
  return {
    items: [tb.kubePod('client'), victim, 42, badAnnotation, tb.kubePod('server'), numericName, duplicate],
    bad: [
      { name: 'victim', expect: /item 2: pod default\/victim: spec\.containers\[1\]\.securityContext\.runAsUser="4294967296" rejected/ },
      { name: 'scalar', expect: /item 3: pod default\/<item 3>: pod="42" rejected: not an object/ },
      { name: 'bad-annotation', expect: /default\/bad-annotation: traffic\.sidecar\.istio\.io\/includeInboundPorts="70000" rejected/ },
      { name: 'numeric name', expect: /item 6: pod default\/<item 6>: metadata\.name="12345" rejected/ },
      { name: 'duplicate', expect: /item 7: pod default\/client-copy: metadata\.uid=".*" appears again \(first at item 1\)/ },
    ],
  };
}

/** Every log line that reports a problem with one pod or the file. */
const reports = (a: AgentProcess) =>
  a.logs.filter((l) => (l['msg'] === 'pod state changed' && l['state'] === 'rejected') || l['msg'] === 'pods file problem').map((l) => String(l['reason'] ?? l['err']));

describe.each(['sockops', 'iptables'] as const)('%s backend', (backend) => {
  let agent: AgentProcess;
  let port: number;
  let podsFile: string;
  const nodeArgs = () => run.nodeArgs(`state-${backend}`);

  const goodPodsStillRedirected = async (when: string) => {
    expect(agent.child.exitCode).toBeNull();
    const r = await requestViaSidecars(tb, 'client', 'server', HTTP_PORT);
    if (!r.ok || r.originalDst !== `${tb.pod('server').ipv4}:${HTTP_PORT}`) throw new Error(`${when}: request ${JSON.stringify(r)} did not go through the client's sidecar`);
    expect(await metric(port, 'shunt_pods_enrolled')).toBe(2);
  };

  it('starts with good and hostile pods in one file: good pods redirected, each bad one reported once and never enrolled', async () => {
    podsFile = path.join(dir, `pods-${backend}.json`);
    const { items, bad } = hostileFile();
    writeFileSync(podsFile, JSON.stringify(items, null, 2));
    port = await freePort();
    agent = await run.startAgent([
      '--pods-file', podsFile,
      '--node-name', tb.kubePod('client').spec.nodeName,
      '--redirect-mode', backend,
      '--metrics-address', `127.0.0.1:${port}`,
      ...nodeArgs(),
      '--cleanup-on-exit',
    ]);
    await goodPodsStillRedirected('at start');
    await eventually('every bad entry reported', () => bad.every((b) => reports(agent).some((r) => b.expect.test(r))));
    for (const b of bad) expect([b.name, reports(agent).filter((r) => b.expect.test(r)).length]).toEqual([b.name, 1]);
    expect(await metric(port, 'shunt_pods_rejected')).toBe(4); // the duplicate is a file problem, not a pod
    // The victim was never enrolled: its own traffic goes direct, not through its sidecar.
    expect(await requestDirect(tb, 'victim', 'server', HTTP_PORT)).toEqual({ ok: true, sidecarRecords: 0 });
  }, 120_000);

  it('survives the file going through broken states without unenrolling anything', async () => {
    const good = JSON.stringify(hostileFile().items);
    const replace = (content: string) => {
      writeFileSync(`${podsFile}.tmp`, content);
      renameSync(`${podsFile}.tmp`, podsFile);
    };
    const states: [string, () => void, RegExp][] = [
      ['empty', () => replace(''), /the file is empty; keeping the last known pods/],
      ['a scalar', () => replace('"just a string"'), /the file is string .* not a list of pods/],
      ['truncated', () => replace(good.slice(0, good.length >> 1)), /document 1: .*JSON/],
      ['deleted', () => unlinkSync(podsFile), /ENOENT.*keeping the last known pods/],
      ['unreadable', () => mkdirSync(podsFile), /EISDIR.*keeping the last known pods/],
    ];
    for (const [what, apply, expected] of states) {
      const before = reports(agent).length;
      apply();
      await eventually(`the agent reports the ${what} file`, () => reports(agent).slice(before).some((r) => expected.test(r)));
      await goodPodsStillRedirected(`with the file ${what}`);
    }
    rmdirSync(podsFile);
    replace(good);
    const unenrolled = agent.logs.filter((l) => l['msg'] === 'pod state changed' && l['state'] === 'removed');
    expect(unenrolled).toEqual([]);
    await goodPodsStillRedirected('with the good file back');
  }, 120_000);

  it('stops cleanly (--cleanup-on-exit) and `shunt cleanup` finds nothing left', async () => {
    expect(await agent.stop()).toBe(0);
    expect(await requestDirect(tb, 'client', 'server', HTTP_PORT)).toEqual({ ok: true, sidecarRecords: 0 });
    const report = JSON.parse(runCli(['cleanup', '--json', ...nodeArgs()]));
    expect(report.errors).toEqual([]);
  }, 60_000);
});
