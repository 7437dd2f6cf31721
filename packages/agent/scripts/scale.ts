// Scale benchmark: the real built agent with N meshed pods, each in its own network namespace
// with a listener stand-in on the sidecar's inbound port (a `sleep` holding the socket, see
// listeners.py: no proxy processes). Reports, for one run:
//   - cold start: agent start -> ready with N pods in the pods file (all enrolled), s and ms/pod
//   - incremental enroll with N present: event -> enrolled latency p50/p99 (agent's own log)
//   - restart to ready with N enrolled, and whether the kernel state was rewritten (map
//     contents incl. config generations, map and program ids compared before/after)
//   - SIGTERM -> exit with N enrolled
//   - unenroll of everything: s and ms/pod
//   - agent RSS (now and peak) and CPU seconds
// Everything it creates (netns, stand-ins, cgroup, bpffs pins, temp files) is removed at the
// end, also on failure and on Ctrl-C.
//
//   npm run bench:scale -- [N] [--mode sockops|iptables] [--incremental K] [--cpu-prof DIR] [--heap-snapshot DIR] [--state-on-disk] [--settle] [--steady S] [--resync-seconds R] [--node-flag F]… [--env NAME=VALUE]…
// Every RSS figure is read before and after one /metrics scrape (afterScrape): a user's Prometheus
// scrapes every 15 s, so a scrape's cost is part of the steady RSS.
// --steady S: after the incremental phase, S idle seconds as in production: a /metrics scrape every
// 15 s, the agent's resync every R s (--resync-seconds, default 3600 = none), RSS read every second.
// --env NAME=VALUE (repeatable) sets the agent's environment.
// --agent-output FILE appends the agents' raw output (JSON logs, and e.g. --trace-gc lines) to FILE.
// --settle adds RSS once the agent has been idle (V8 shrinks its heap after a burst) to both memory figures.
// --heap-snapshot writes the agent's V8 heap after the cold start and after the incremental
// phase (SIGUSR2, --heapsnapshot-signal) into DIR, for finding what holds memory.
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, rmdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { BpfLink, BpfMap, cgroup2Mount } from '@shunt/libbpf';
import { runCommand } from '@shunt/netlink';
import { builtCliCommand, spawnAgent, type AgentProcess } from '../src/agent/process';
import { freePort } from '../src/demo/free-port';

interface Args {
  n: number;
  mode: 'sockops' | 'iptables';
  incremental: number;
  cpuProf?: string;
  heapSnapshot?: string;
  maxPods?: number;
  stateOnDisk?: boolean;
  /** Also read RSS once the agent is idle (after the cold start and after the incremental phase). */
  settle?: boolean;
  nodeFlags: string[];
  /** Append the agents' raw stdout/stderr (e.g. --trace-gc lines) to this file. */
  agentOutput?: string;
  /** Idle seconds with scrapes every 15 s after the incremental phase (0 = none). */
  steady: number;
  resyncSeconds: number;
  /** Extra environment of the agent (e.g. glibc malloc tunables). */
  env: Record<string, string>;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { n: 1000, mode: 'sockops', incremental: 50, nodeFlags: [], env: {}, steady: 0, resyncSeconds: 3600 };
  for (let i = 0; i < argv.length; i++) {
    const v = argv[i]!;
    if (v === '--mode') a.mode = argv[++i] as Args['mode'];
    else if (v === '--incremental') a.incremental = Number(argv[++i]);
    else if (v === '--cpu-prof') a.cpuProf = path.resolve(argv[++i]!);
    else if (v === '--heap-snapshot') a.heapSnapshot = path.resolve(argv[++i]!);
    else if (v === '--state-on-disk') a.stateOnDisk = true;
    else if (v === '--settle') a.settle = true;
    else if (v === '--steady') a.steady = Number(argv[++i]);
    else if (v === '--agent-output') a.agentOutput = path.resolve(argv[++i]!);
    else if (v === '--resync-seconds') a.resyncSeconds = Number(argv[++i]);
    else if (v === '--env') {
      const kv = argv[++i] ?? '';
      const eq = kv.indexOf('=');
      if (eq <= 0) throw new Error(`--env wants NAME=VALUE, got ${JSON.stringify(kv)}`);
      a.env[kv.slice(0, eq)] = kv.slice(eq + 1);
    }
    else if (v === '--node-flag') a.nodeFlags.push(argv[++i]!);
    else if (v === '--max-pods') a.maxPods = Number(argv[++i]);
    else if (/^\d+$/.test(v)) a.n = Number(v);
    else throw new Error(`unknown argument ${v}`);
  }
  if (a.mode !== 'sockops' && a.mode !== 'iptables') throw new Error(`--mode must be sockops or iptables, got ${a.mode}`);
  if (!(a.steady >= 0 && a.steady <= 600)) throw new Error(`--steady must be 0..600 s, got ${a.steady}`);
  if (!(Number.isInteger(a.resyncSeconds) && a.resyncSeconds >= 1)) throw new Error(`--resync-seconds must be a positive integer, got ${a.resyncSeconds}`);
  if (!(a.n >= 1 && a.n <= 20_000)) throw new Error(`N must be 1..20000, got ${a.n}`);
  return a;
}

const args = parseArgs(process.argv.slice(2));
const run = `shscale${randomBytes(2).toString('hex')}`;
const IN_PORT = 15006;
const total = args.n + args.incremental;
const say = (m: string): void => void process.stderr.write(`[scale ${run}] ${m}\n`);

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] ?? NaN;
}
const r2 = (x: number): number => Math.round(x * 100) / 100;

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

function procStat(pid: number): { rssMiB: number; peakMiB: number; cpuS: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+) kB`).exec(status)?.[1] ?? NaN) / 1024;
  // utime and stime are fields 14 and 15, after the parenthesised comm (which may hold spaces).
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(f[11]) + Number(f[12]);
  return { rssMiB: r2(kb('VmRSS')), peakMiB: r2(kb('VmHWM')), cpuS: r2(ticks / 100) };
}

/**
 * RSS while the agent is idle: V8's memory reducer shrinks the heap (and the young generation it
 * grew during the burst) some seconds after allocation stops (its first pass waits 8 s). Reads RSS
 * every second for maxS seconds; returns the first, lowest and last reading.
 */
async function settledRss(pid: number, maxS = 20): Promise<{ firstMiB: number; lowMiB: number; lastMiB: number; seconds: number }> {
  const first = procStat(pid).rssMiB;
  let low = first;
  let last = first;
  for (let i = 0; i < maxS; i++) {
    await new Promise((r) => setTimeout(r, 1000));
    last = procStat(pid).rssMiB;
    low = Math.min(low, last);
  }
  return { firstMiB: first, lowMiB: low, lastMiB: last, seconds: maxS };
}

/** The agent's own memory figures from its /metrics (prom-client default metrics), MiB: where RSS goes. */
async function agentMemory(port: number): Promise<Record<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(30_000) })).text();
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const m = /^(nodejs_heap_size_total_bytes|nodejs_heap_size_used_bytes|nodejs_external_memory_bytes|nodejs_heap_space_size_total_bytes\{space="(\w+)"\})\s+(\S+)/.exec(line);
    if (!m) continue;
    const key = m[2] ? `space_${m[2]}_total` : m[1]!.replace(/^nodejs_/, '').replace(/_bytes$/, '');
    out[key] = r2(Number(m[3]) / 1048576);
  }
  return out;
}

/**
 * RSS now, then one /metrics scrape (its memory figures) and RSS after it, and RSS 2 s later (the
 * agent compacts its heap once it has been quiet for 0.5 s after a burst: what monitoring sees).
 */
async function withScrape(pid: number, port: number): Promise<ReturnType<typeof procStat> & { memory: Record<string, number>; afterScrape: ReturnType<typeof procStat>; after2s: ReturnType<typeof procStat> }> {
  const before = procStat(pid);
  const memory = await agentMemory(port);
  const afterScrape = procStat(pid);
  await new Promise((r) => setTimeout(r, 2000));
  return { ...before, memory, afterScrape, after2s: procStat(pid) };
}

/** seconds idle as in production: a scrape every 15 s (the first at once), RSS read every second. */
async function steadyRss(pid: number, port: number, seconds: number): Promise<{ seconds: number; scrapes: number; maxMiB: number; lastMiB: number; peakMiB: number }> {
  let scrapes = 0;
  let max = 0;
  for (let i = 0; i < seconds; i++) {
    if (i % 15 === 0) {
      await agentMemory(port);
      scrapes++;
    }
    await new Promise((r) => setTimeout(r, 1000));
    max = Math.max(max, procStat(pid).rssMiB);
  }
  const end = procStat(pid);
  return { seconds, scrapes, maxMiB: max, lastMiB: end.rssMiB, peakMiB: end.peakMiB };
}

/** Everything the sockops backend pinned, as one digest: map contents (incl. generations), map ids, link program ids. */
function kernelDigest(bpffs: string): { digest: string; pods: number } {
  const dir = path.join(bpffs, 'shunt', 'sockops');
  const h = createHash('sha256');
  let pods = 0;
  for (const name of ['pod_cfg', 'pod_meta', 'pod_by_ip', 'port_sel', 'cidr4', 'cidr6', 'inbound_listener']) {
    const m = BpfMap.fromPin(path.join(dir, 'maps', name));
    try {
      h.update(`${name} id ${m.id}\n`);
      const keys = m.keys().map((k) => k.toString('hex')).sort();
      if (name === 'pod_cfg') pods = keys.length;
      for (const k of keys) {
        const v = name === 'inbound_listener' ? String(m.socketCookie(Buffer.from(k, 'hex'))) : m.lookup(Buffer.from(k, 'hex'))?.toString('hex');
        h.update(`${k}=${v}\n`);
      }
    } finally {
      m.close();
    }
  }
  for (const sub of ['links', 'netns']) {
    for (const name of readdirSync(path.join(dir, sub)).sort()) {
      const l = BpfLink.fromPin(path.join(dir, sub, name));
      try {
        const info = l.info();
        h.update(`${sub}/${name} ${info.id} ${info.progId}\n`);
      } finally {
        l.close();
      }
    }
  }
  return { digest: h.digest('hex').slice(0, 16), pods };
}

/** Reads the agent's log lines as they come, with a cursor (no rescans of the whole log). */
class LogWatch {
  private cursor = 0;
  constructor(private readonly agent: AgentProcess) {}
  /** Calls fn on each new line until it returns true, polling every 10 ms; bounded by timeoutMs. */
  async until(fn: (l: Record<string, unknown>) => boolean, timeoutMs: number, what: string): Promise<void> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const logs = this.agent.logs;
      while (this.cursor < logs.length) if (fn(logs[this.cursor++]!)) return;
      if (this.agent.child.exitCode !== null)
        throw new Error(`agent exited while waiting for ${what}; last log: ${logs.slice(-3).map((l) => JSON.stringify(l)).join(' ')}`);
      if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }
}

const isState = (l: Record<string, unknown>, s: string) => l['msg'] === 'pod state changed' && l['state'] === s;

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), 'shunt-scale-'));
  const podsFile = path.join(dir, 'pods.json');
  const bpffs = `/sys/fs/bpf/${run}`;
  const cgroup = path.join(cgroup2Mount(), run);
  let netnsMade = 0;
  let standIns: ChildProcess | undefined;
  let agent: AgentProcess | undefined;
  let cleaned = false;
  const extraDirs: string[] = [];
  const cleanup = async (): Promise<void> => {
    if (cleaned) return;
    cleaned = true;
    await agent?.stop(20_000).catch(() => undefined);
    standIns?.stdin?.end();
    standIns?.kill('SIGTERM');
    // Unpinning detaches the links (the agent is gone, so nothing else holds them).
    rmSync(bpffs, { recursive: true, force: true });
    try {
      if (existsSync(cgroup)) rmdirSync(cgroup);
    } catch (e) {
      say(`cleanup: cgroup ${cgroup}: ${(e as Error).message}`);
    }
    if (netnsMade > 0) {
      const lines = Array.from({ length: netnsMade }, (_, i) => `netns delete ${run}-${i}`).join('\n') + '\n';
      await runCommand(['ip', '-force', '-batch', '-'], { input: lines, timeoutMs: 600_000 }).catch((e: Error) => say(`cleanup: ${e.message}`));
    }
    rmSync(dir, { recursive: true, force: true });
    for (const d of extraDirs) rmSync(d, { recursive: true, force: true });
  };
  const onSignal = (): void => {
    say('interrupted: cleaning up');
    void cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  try {
    say(`creating ${total} network namespaces`);
    const tNs = Date.now();
    netnsMade = total; // a partial batch is cleaned up with -force
    const lines = Array.from({ length: total }, (_, i) => `netns add ${run}-${i}`).join('\n') + '\n';
    await runCommand(['ip', '-batch', '-'], { input: lines, timeoutMs: 900_000 });
    say(`listener stand-ins on :${IN_PORT} (netns took ${((Date.now() - tNs) / 1000).toFixed(1)} s)`);
    standIns = spawn('python3', [path.join(__dirname, 'listeners.py'), String(IN_PORT)], { stdio: ['pipe', 'pipe', 'inherit'] });
    const ready = new Promise<void>((resolve, reject) => {
      standIns!.stdout!.setEncoding('utf8').on('data', (d: string) => (d.startsWith('ready') ? resolve() : undefined));
      standIns!.once('exit', (c) => reject(new Error(`listener stand-ins exited ${c}`)));
    });
    standIns.stdin!.write(Array.from({ length: total }, (_, i) => `/var/run/netns/${run}-${i}`).join('\n') + '\n\n');
    await ready;
    mkdirSync(cgroup);
    mkdirSync(bpffs);

    writeFileSync(podsFile, JSON.stringify(Array.from({ length: args.n }, (_, i) => pod(i))));
    // The agent's state dir where a node has it: /run is a tmpfs there (records need no fsync);
    // --state-on-disk keeps it in the temp dir instead.
    const stateDir = args.stateOnDisk || !existsSync('/dev/shm') ? path.join(dir, 'state') : mkdtempSync(path.join('/dev/shm', `${run}-state-`));
    if (!stateDir.startsWith(dir)) extraDirs.push(stateDir);
    const port = await freePort();
    const agentArgs = [
      '--pods-file', podsFile, '--node-name', 'scale-node', '--redirect-mode', args.mode,
      '--metrics-address', `127.0.0.1:${port}`, '--bpffs-path', bpffs, '--cgroup-path', cgroup,
      '--state-dir', stateDir, '--log-level', 'info', '--resync-seconds', String(args.resyncSeconds),
      '--max-pods', String(args.maxPods ?? Math.max(1024, total)),
    ];
    const [node, ...rest] = builtCliCommand() as [string, ...string[]];
    const flags = [
      ...args.nodeFlags,
      ...(args.cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${args.cpuProf}`] : []),
      ...(args.heapSnapshot ? ['--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${args.heapSnapshot}`] : []),
    ];
    const cli = [node, ...flags, ...rest];
    /** Asks the agent for a heap snapshot and waits (bounded) until V8 has written it. */
    const heapSnapshot = async (label: string): Promise<void> => {
      if (!args.heapSnapshot || !agent) return;
      mkdirSync(args.heapSnapshot, { recursive: true });
      const before = new Set(readdirSync(args.heapSnapshot));
      agent.child.kill('SIGUSR2');
      const end = Date.now() + 120_000;
      for (;;) {
        const fresh = readdirSync(args.heapSnapshot).filter((f) => !before.has(f) && f.endsWith('.heapsnapshot'));
        const file = fresh[0] ? path.join(args.heapSnapshot, fresh[0]) : undefined;
        // V8 writes the file in one go; a size that stops growing over 0.5 s means it is done.
        if (file) {
          const size = (): number => statSync(file).size;
          const s0 = size();
          await new Promise((r) => setTimeout(r, 500));
          if (s0 > 0 && size() === s0) {
            say(`heap snapshot ${label}: ${file}`);
            return;
          }
        } else await new Promise((r) => setTimeout(r, 100));
        if (Date.now() > end) throw new Error(`no heap snapshot written into ${args.heapSnapshot} within 120 s`);
      }
    };
    const env = { ...args.env };
    const echo = args.agentOutput ? (line: string): void => appendFileSync(args.agentOutput!, line.endsWith('\n') ? line : `${line}\n`) : undefined;

    say(`cold start with ${args.n} pods (${args.mode})`);
    const t0 = performance.now();
    agent = spawnAgent(agentArgs, { cli, env, ...(echo ? { echo } : {}) });
    agent.address.catch(() => undefined); // an early exit is reported by the log watch
    let watch = new LogWatch(agent);
    let enrolled = 0;
    let failed = 0;
    const at = (l: Record<string, unknown>) => Date.parse(String(l['time']));
    let firstEnrolled = NaN;
    let lastEnrolled = NaN;
    let selected = NaN;
    await watch.until((l) => {
      if (l['msg'] === 'backend selected') selected = at(l);
      if (isState(l, 'enrolled')) {
        if (Number.isNaN(firstEnrolled)) firstEnrolled = at(l);
        lastEnrolled = at(l);
      }
      if (isState(l, 'enrolled')) enrolled++;
      if (isState(l, 'failed')) failed++;
      return l['msg'] === 'ready: first full sync done';
    }, 900_000, 'ready');
    const coldS = (performance.now() - t0) / 1000;
    const afterCold = await withScrape(agent.child.pid!, port);
    const coldSettled = args.settle ? await settledRss(agent.child.pid!) : undefined;
    await heapSnapshot('after cold start');

    say(`incremental: ${args.incremental} pods, one at a time, with ${args.n} present`);
    const incremental: number[] = [];
    const incrementalWall: number[] = [];
    for (let k = 0; k < args.incremental; k++) {
      const uid = `${run}-${args.n + k}`;
      const t = performance.now();
      writeFileSync(podsFile, JSON.stringify(Array.from({ length: args.n + k + 1 }, (_, i) => pod(i))));
      await watch.until((l) => {
        if (l['uid'] !== uid) return false;
        if (isState(l, 'failed')) throw new Error(`pod ${uid} failed: ${String(l['reason'])}`);
        if (!isState(l, 'enrolled')) return false;
        incremental.push(Number(l['ms']));
        return true;
      }, 60_000, `pod ${uid} enrolled`);
      incrementalWall.push(performance.now() - t);
    }
    const running = await withScrape(agent.child.pid!, port);
    const runningSettled = args.settle ? await settledRss(agent.child.pid!) : undefined;
    const steady = args.steady > 0 ? await steadyRss(agent.child.pid!, port, args.steady) : undefined;
    await heapSnapshot('after incremental');

    say('restart with everything enrolled');
    const before = args.mode === 'sockops' ? kernelDigest(bpffs) : null;
    const tStop = performance.now();
    await agent.stop(60_000);
    const stopS = (performance.now() - tStop) / 1000;
    const t1 = performance.now();
    const spawnedAt = Date.now();
    agent = spawnAgent([...agentArgs, '--cleanup-on-exit'], { cli, env, ...(echo ? { echo } : {}) });
    agent.address.catch(() => undefined);
    watch = new LogWatch(agent);
    let reEnrollCalls = 0;
    const timeline: Record<string, number> = {};
    await watch.until((l) => {
      const msg = String(l['msg']);
      if (!(msg in timeline) && msg !== 'pod state changed') timeline[msg] = Date.parse(String(l['time'])) - spawnedAt;
      if (msg === 'pod state changed' && !('first pod state' in timeline)) timeline['first pod state'] = Date.parse(String(l['time'])) - spawnedAt;
      if (l['msg'] === 'backend call failed') reEnrollCalls++;
      return l['msg'] === 'ready: first full sync done';
    }, 300_000, 'ready after restart');
    const restartS = (performance.now() - t1) / 1000;
    // The restart's own CPU (start-up to ready), less load-sensitive than the wall time.
    const atReady = procStat(agent.child.pid!);
    const after = args.mode === 'sockops' ? kernelDigest(bpffs) : null;

    say('unenroll everything');
    const t2 = performance.now();
    writeFileSync(podsFile, '[]');
    let removed = 0;
    await watch.until((l) => isState(l, 'removed') && ++removed >= total, 900_000, 'all removed');
    const unenrollS = (performance.now() - t2) / 1000;
    const end = procStat(agent.child.pid!);
    const tStop2 = performance.now();
    await agent.stop(60_000);
    const stopCleanupS = (performance.now() - tStop2) / 1000;

    const report = {
      pods: args.n,
      mode: args.mode,
      coldStart: {
        enrolled,
        failed,
        seconds: r2(coldS),
        msPerPod: r2((coldS * 1000) / args.n),
        // From the agent's log timestamps: backend selected -> first pod enrolled (start-up, pod
        // source's first listing), and first -> last enrolled (the enroll throughput).
        selectedToFirstEnrolledS: r2((firstEnrolled - selected) / 1000),
        firstToLastEnrolledS: r2((lastEnrolled - firstEnrolled) / 1000),
        enrollPodsPerS: Math.round(args.n / Math.max(0.001, (lastEnrolled - firstEnrolled) / 1000)),
      },
      incremental: {
        pods: args.incremental,
        enrollMs: { p50: r2(pct(incremental, 50)), p99: r2(pct(incremental, 99)), max: r2(Math.max(...incremental)) },
        fileWriteToEnrolledMs: { p50: r2(pct(incrementalWall, 50)), p99: r2(pct(incrementalWall, 99)) },
      },
      restart: {
        stopSeconds: r2(stopS),
        toReadySeconds: r2(restartS),
        agentAtReady: atReady,
        timelineMs: timeline,
        failedCalls: reEnrollCalls,
        ...(before && after ? { kernelStateUnchanged: before.digest === after.digest, podsInKernel: after.pods, digest: after.digest } : {}),
      },
      unenroll: { pods: total, seconds: r2(unenrollS), msPerPod: r2((unenrollS * 1000) / total) },
      stopWithCleanupSeconds: r2(stopCleanupS),
      agent: {
        afterColdStart: { ...afterCold, ...(coldSettled ? { settled: coldSettled } : {}) },
        afterIncremental: { ...running, ...(runningSettled ? { settled: runningSettled } : {}) },
        ...(steady ? { steady: { ...steady, resyncSeconds: args.resyncSeconds } } : {}),
        secondRunEnd: end,
      },
      notes: [
        'enrollMs = the agent\'s own event -> enrolled latency (log field ms); fileWriteToEnrolledMs adds the pods-file watch, debounce and parse',
        'cpuS = user+system seconds of the agent process (first run: cold start + incremental; second run: restart + unenroll)',
      ],
    };
    process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  } finally {
    await cleanup();
  }
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).stack}\n`);
  process.exitCode = 1;
});
