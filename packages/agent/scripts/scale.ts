// Scale measurement: the real agent (iptables backend) with N sidecar pods in a pods file.
// Each pod is a bare network namespace (no proxy needed to install rules). Reports the agent's
// RSS and the event → enrolled latency (from the agent's per-pod log lines), for all N pods
// arriving at once, then for pods added one at a time to a node that already has N.
//   node -r ./tools/ts-register.js scripts/scale.ts [N]
import { mkdtempSync, rmSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { runCommand } from '@shunt/netlink';
import { spawnAgent } from '../src/agent/process';
import { freePort } from '../src/demo/free-port';

const N = Number(process.argv[2] ?? 1000);
const INCREMENTAL = 50;
const run = `shunt-scale-${randomBytes(2).toString('hex')}`;

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] ?? NaN;
}

function pod(i: number): Record<string, unknown> {
  const ip = `198.18.${Math.floor(i / 250)}.${(i % 250) + 1}`;
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: `p${i}`, namespace: 'scale', uid: `${run}-${i}`, annotations: { 'sidecar.istio.io/status': '{"containers":["istio-proxy"]}' } },
    spec: { nodeName: 'scale-node', containers: [{ name: 'app' }, { name: 'istio-proxy' }] },
    status: { phase: 'Running', podIP: ip, podIPs: [{ ip }] },
    shunt: { netnsPath: `/var/run/netns/${run}-${i}` },
  };
}

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

async function main(): Promise<void> {
  const total = N + INCREMENTAL;
  const dir = mkdtempSync(path.join(tmpdir(), 'shunt-scale-'));
  const podsFile = path.join(dir, 'pods.json');
  const created: number[] = [];
  let agent: ReturnType<typeof spawnAgent> | undefined;
  try {
    process.stderr.write(`creating ${total} network namespaces…\n`);
    const batch = ['netns add'].length;
    void batch;
    const lines = Array.from({ length: total }, (_, i) => `netns add ${run}-${i}`).join('\n') + '\n';
    await runCommand(['ip', '-batch', '-'], { input: lines, timeoutMs: 300_000 });
    for (let i = 0; i < total; i++) created.push(i);
    writeFileSync(podsFile, '[]');
    const port = await freePort();
    agent = spawnAgent(['--pods-file', podsFile, '--node-name', 'scale-node', '--redirect-mode', 'iptables', '--metrics-address', `127.0.0.1:${port}`, '--bpffs-path', path.join(dir, 'bpffs'), '--state-dir', path.join(dir, 'state'), '--log-level', 'info']);
    await agent.waitLog((l) => l['msg'] === 'ready: first full sync done', 120_000);
    const pid = agent.child.pid!;
    const idleRss = rssMiB(pid);

    const t0 = Date.now();
    writeFileSync(podsFile, JSON.stringify(Array.from({ length: N }, (_, i) => pod(i))));
    const enrolledOf = (l: Record<string, unknown>) => l['msg'] === 'pod state changed' && l['state'] === 'enrolled';
    await agent.waitLog(() => agent!.logs.filter(enrolledOf).length >= N, 600_000).catch(() => undefined);
    const bulkWall = (Date.now() - t0) / 1000;
    const bulk = agent.logs.filter(enrolledOf).map((l) => Number(l['ms']));
    const failed = agent.logs.filter((l) => l['msg'] === 'pod state changed' && l['state'] === 'failed').length;
    const bulkRss = rssMiB(pid);

    const incremental: number[] = [];
    for (let k = 0; k < INCREMENTAL; k++) {
      const before = agent.logs.filter(enrolledOf).length;
      writeFileSync(podsFile, JSON.stringify(Array.from({ length: N + k + 1 }, (_, i) => pod(i))));
      await agent.waitLog(() => agent!.logs.filter(enrolledOf).length > before, 60_000);
      const last = agent.logs.filter(enrolledOf).at(-1)!;
      incremental.push(Number(last['ms']));
    }
    const finalRss = rssMiB(pid);
    const report = {
      pods: N,
      rssMiB: { idle: +idleRss.toFixed(1), afterBulk: +bulkRss.toFixed(1), final: +finalRss.toFixed(1) },
      bulk: { enrolled: bulk.length, failed, wallSeconds: bulkWall, latencyMs: { p50: pct(bulk, 50), p99: pct(bulk, 99), max: Math.max(...bulk) } },
      incremental: { pods: INCREMENTAL, latencyMs: { p50: pct(incremental, 50), p99: pct(incremental, 99), max: Math.max(...incremental) } },
      note: 'latency = pods-file event seen by the agent → iptables rules installed (ms); the pods-file source debounces file changes before emitting',
    };
    process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  } finally {
    await agent?.stop().catch(() => undefined);
    // The agent stopped without cleanup: the namespaces (and our rules in them) go together.
    const lines = created.map((i) => `netns delete ${run}-${i}`).join('\n') + '\n';
    if (created.length) await runCommand(['ip', '-batch', '-'], { input: lines, timeoutMs: 300_000 }).catch((e) => process.stderr.write(`cleanup: ${e.message}\n`));
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).stack}\n`);
  process.exitCode = 1;
});
