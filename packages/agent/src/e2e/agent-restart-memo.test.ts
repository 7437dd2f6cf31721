// The restart memo (src/agent/restart-memo.ts) with the real, built agent, the sockops backend and
// HAProxy sidecars: a restarted agent vouches for the pods-file items that did not change, but a
// pod whose kernel state drifted while no agent ran (its pod_cfg entry deleted) is still repaired
// before ready, the undrifted pod's kernel entry is not rewritten, and traffic takes the sidecars.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { BpfMap, netnsCookie } from '@shunt/libbpf';
import type { Testbed } from '@shunt/testbed';
import type { AgentProcess } from '../agent/process';
import { RESTART_MEMO_FILE } from '../agent/restart-memo';
import { freePort } from '../demo/free-port';
import { CLIENT_SERVER_SIDECARS, useAgentRun } from '../test-support/agent-run';
import { eventually, metric, requestViaSidecars } from './support';

const HTTP_PORT = 8080;
const run = useAgentRun({
  tag: 'memo',
  pods: CLIENT_SERVER_SIDECARS,
  httpServer: { pod: 'server', port: HTTP_PORT },
  bpffs: 'run',
});
let tb: Testbed;
let bpffs: string;

beforeAll(() => {
  ({ tb, bpffs } = run);
  writeFileSync(run.podsFile, JSON.stringify(['client', 'server'].map((n) => tb.kubePod(n))));
});

const stateDir = () => path.join(run.dir, 'state');

async function startAgent(): Promise<{ agent: AgentProcess; port: number }> {
  const port = await freePort();
  const agent = await run.startAgent([
    '--pods-file', run.podsFile,
    '--node-name', tb.kubePod('client').spec.nodeName,
    '--redirect-mode', 'sockops',
    '--metrics-address', `127.0.0.1:${port}`,
    ...run.nodeArgs(),
    '--log-level', 'debug',
  ]);
  return { agent, port };
}

/** The pod's pod_cfg value as the kernel holds it (its generation changes with every rewrite), or null. */
function podCfg(pod: string): string | null {
  const m = BpfMap.fromPin(path.join(bpffs, 'shunt', 'sockops', 'maps', 'pod_cfg'));
  try {
    const key = Buffer.alloc(8);
    key.writeBigUInt64LE(netnsCookie(tb.pod(pod).netnsPath));
    return m.lookup(key)?.toString('hex') ?? null;
  } finally {
    m.close();
  }
}

function deletePodCfg(pod: string): void {
  const m = BpfMap.fromPin(path.join(bpffs, 'shunt', 'sockops', 'maps', 'pod_cfg'));
  try {
    const key = Buffer.alloc(8);
    key.writeBigUInt64LE(netnsCookie(tb.pod(pod).netnsPath));
    m.delete(key);
  } finally {
    m.close();
  }
}

const stateChanges = (a: AgentProcess, uid: string) => a.logs.filter((l) => l['msg'] === 'pod state changed' && l['uid'] === uid);

it('a restart vouches for unchanged pods from the memo, and still repairs the pod whose kernel state drifted', async () => {
  const { agent: first } = await startAgent();
  expect(await requestViaSidecars(tb, 'client', 'server', HTTP_PORT)).toEqual({ ok: true, originalDst: `${tb.pod('server').ipv4}:${HTTP_PORT}` });
  expect(await first.stop()).toBe(0);
  // Written at stop: both pods, each with the fingerprint the kernel holds.
  const memo = JSON.parse(readFileSync(path.join(stateDir(), RESTART_MEMO_FILE), 'utf8')) as { pods: string[][] };
  expect(memo.pods.map((p) => p[1]).sort()).toEqual([tb.kubePod('client').metadata.uid, tb.kubePod('server').metadata.uid].sort());

  const clientBefore = podCfg('client');
  expect(clientBefore).not.toBeNull();
  deletePodCfg('server'); // drift while no agent runs
  expect(podCfg('server')).toBeNull();

  const { agent: second, port } = await startAgent();
  expect(second.logs.find((l) => l['msg'] === 'restart memo')).toMatchObject({ pods: 2 });
  const ready = second.logs.find((l) => l['msg'] === 'ready: first full sync done')!;
  // The client was vouched for and found as recorded: adopted, no call; the server was enrolled again before ready.
  expect(ready).toMatchObject({ pods: 2, enrolled: 2, pending: 0, failed: 0, adoptedUnchanged: 1 });
  const serverUid = tb.kubePod('server').metadata.uid;
  const readyAt = second.logs.indexOf(ready);
  expect(stateChanges(second, serverUid).filter((l) => second.logs.indexOf(l) < readyAt).map((l) => l['state'])).toEqual(['enrolled']);
  expect(podCfg('server')).not.toBeNull();
  expect(podCfg('client')).toBe(clientBefore); // same generation: not rewritten
  expect(await requestViaSidecars(tb, 'client', 'server', HTTP_PORT)).toEqual({ ok: true, originalDst: `${tb.pod('server').ipv4}:${HTTP_PORT}` });

  // The full objects follow the vouchers: a later change of a vouched pod is applied as usual.
  const pods = ['client', 'server'].map((n) => tb.kubePod(n));
  pods[0]!.metadata.annotations = { ...pods[0]!.metadata.annotations, 'traffic.sidecar.istio.io/excludeOutboundPorts': String(HTTP_PORT) };
  writeFileSync(run.podsFile, JSON.stringify(pods));
  await eventually('client re-enrolled with its new exclude', async () => podCfg('client') !== clientBefore, 20_000);
  expect(await metric(port, 'shunt_pods_enrolled')).toBe(2);
  expect(await second.stop()).toBe(0);
  expect(existsSync(path.join(stateDir(), RESTART_MEMO_FILE))).toBe(true);
}, 180_000);
