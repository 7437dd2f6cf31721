import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { BUILTIN_MODES, type ModePods, type PathMode } from '../modes';
import { Testbed } from '../testbed';
import type { Sample } from './metrics';
import { parseIperf, parseSockperf } from '../workloads';
import { APP_UID } from '../testbed';
import { withTeardown } from '../signals';
import { iperfTurns } from './iperf-turns';
import { splitPerfData, usPerConn } from './perf-split';
import { summarize } from './stats';
import { markdownTable, pickIptablesBaseline, summarizeMode, svgChart, type BenchReport } from './report';
import { cpuPer, cpuSnapshot, cpuSplitTable, type CpuSplitSamples } from './cpu-split';

export interface BenchOptions {
  /**
   * The pods' mesh: `sidecar` (default; HAProxy sidecar stand-ins) or `ambient` (no sidecars; each
   * mode brings the ztunnel stand-in itself: ambientDirectMode, the agent's ambient modes).
   */
  mesh?: 'sidecar' | 'ambient';
  /** Modes to compare; default direct and iptables-handwritten. The agent appends backend modes. */
  modes?: readonly PathMode[];
  /** A-B-A-B rounds; default 3. */
  rounds?: number;
  /** Seconds per metric run; default 3 (a default bench takes about 1.5 minutes for two modes). */
  seconds?: number;
  /** wrk connections for the new-connections metric; default 8. */
  wrkConnections?: number;
  /** Where JSON, markdown and SVG go; default <cwd>/bench/results. */
  outDir?: string;
  /** Result output (the table); default console.log. */
  log?: (line: string) => void;
  /** Progress line; default stderr, rewritten in place on a terminal. */
  progress?: (line: string) => void;
  /**
   * `conns`: only the new-connections measurement (wrk, CPU/conn, conntrack), for quick A/B runs of
   * the connection rate; the other metrics are n/a. Default: everything.
   */
  only?: 'conns';
  /**
   * Profile each wrk window: `perf record -a -g --all-cgroups` into `<dir>/<mode>-r<round>.data`
   * (the JSON samples keep wrk's request count to divide by). Needs `perf`; it costs CPU, so
   * compare profiled runs only with profiled runs.
   */
  perf?: { dir: string };
  /**
   * The HAProxy sidecars' per-connection access log (TestbedOptions.proxyAccessLog). Default off,
   * as in Istio's default profile: with it on, each connection also costs a log write in every
   * proxy hop and a pipe read in this process, the same in every mode, on a 2-core node.
   */
  proxyAccessLog?: boolean;
}

export interface BenchResult {
  report: BenchReport;
  markdown: string;
  files: { json: string; markdown: string; svg: string };
}

const PERF_HZ = 999;

/**
 * The profiles' split (µs of CPU per wrk connection by symbol group, median [min-max] over the
 * rounds) as a markdown table. Samples of the run's pods' cgroups plus kernel threads.
 */
async function perfTable(dir: string, modes: readonly PathMode[], samples: Map<string, Sample[]>, cgroup: RegExp): Promise<string> {
  const per = new Map<string, Array<Record<string, number>>>();
  const groups = new Set<string>(['total']);
  for (const m of modes) {
    const rows: Array<Record<string, number>> = [];
    for (const [i, s] of samples.get(m.name)!.entries()) {
      const split = await splitPerfData(path.join(dir, `${m.name}-r${i + 1}.data`), cgroup);
      const conns = s.wrkRequests ?? 0;
      const row: Record<string, number> = { total: usPerConn(split.samples, PERF_HZ, conns) };
      for (const [g, n] of Object.entries(split.groups)) {
        row[g] = usPerConn(n, PERF_HZ, conns);
        groups.add(g);
      }
      row['kworker threads'] = usPerConn(split.byComm['kworker'] ?? 0, PERF_HZ, conns);
      groups.add('kworker threads');
      rows.push(row);
    }
    per.set(m.name, rows);
  }
  const cols = [...groups].sort((a, b) => (a === 'total' ? -1 : b === 'total' ? 1 : a.localeCompare(b)));
  const lines = [`| mode | ${cols.join(' | ')} |`, `|---|${cols.map(() => '---').join('|')}|`];
  for (const m of modes) {
    const rows = per.get(m.name)!;
    const cells = cols.map((c) => {
      const s = summarize(rows.map((r) => r[c] ?? 0));
      return `${s.median.toFixed(1)} [${s.min.toFixed(1)}–${s.max.toFixed(1)}]`;
    });
    lines.push(`| ${m.name} | ${cells.join(' | ')} |`);
  }
  lines.push(
    '',
    `CPU per wrk connection (µs) by symbol group from perf record -a -g at ${PERF_HZ} Hz: samples of the pods' cgroups and of kworker/ksoftirqd/rcu threads (which also serve the rest of the machine). ` +
      `A sample counts in the first group any frame of its call chain matches. Profiling costs CPU: compare these only with each other.`,
  );
  return lines.join('\n');
}

const PORTS = { http: 8080, sockperf: 11111, iperf: 5201 } as const;

function defaultProgress(): (line: string) => void {
  const tty = process.stderr.isTTY;
  return (line) => process.stderr.write(tty ? `\r\x1b[2K${line}` : `${line}\n`);
}

function cpuModel(): string {
  try {
    return /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ?? os.cpus()[0]?.model ?? 'unknown';
  } catch {
    return os.cpus()[0]?.model ?? 'unknown';
  }
}

async function conntrackSum(tb: Testbed, pods: ModePods): Promise<number> {
  const [a, b] = await Promise.all([tb.conntrackCount(pods.client), tb.conntrackCount(pods.server)]);
  return (a ?? 0) + (b ?? 0);
}

/** iperf3 single stream with 64 KiB writes (the default is 128 KiB). */
async function bulk64k(tb: Testbed, pod: string, host: string, seconds: number) {
  const res = await tb.run(pod, ['iperf3', '-c', host, '-p', String(PORTS.iperf), '-t', String(seconds), '-l', '65536', '-J'], {
    uid: APP_UID,
    timeoutMs: seconds * 1000 + 15_000,
    allowFail: true,
  });
  return parseIperf(res.stdout);
}

/** sockperf TCP ping-pong with 1 KiB messages; transactions/s = round trips observed / seconds. */
async function rr1k(tb: Testbed, pod: string, host: string, seconds: number) {
  const res = await tb.run(pod, ['sockperf', 'ping-pong', '--tcp', '--full-rtt', '-m', '1024', '-i', host, '-p', String(PORTS.sockperf), '-t', String(seconds)], {
    uid: APP_UID,
    timeoutMs: seconds * 1000 + 15_000,
  });
  return parseSockperf(res.stdout + res.stderr);
}

/**
 * One retry after a pause for a measurement whose tool failed (through two proxies, about one
 * mode-round in 40 here an iperf3 ends "control socket has closed unexpectedly" or a sockperf
 * "No messages were received", seen in sockops and iptables modes alike, under load more often); the retry is reported, never hidden, and a second
 * failure aborts the bench.
 */
async function withRetry<T>(label: string, retries: string[], progress: (l: string) => void, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    const why = `${label}: ${(err as Error).message.split('\n')[0]}`;
    retries.push(why);
    progress(`${label} · failed (${why}); retrying once in 1 s`);
    await new Promise((r) => setTimeout(r, 1000));
    return fn();
  }
}

/**
 * Runs every mode on fresh, identical client/server pods (both with sidecars) per round, so no
 * mode inherits another's netfilter state (an emptied nat table still costs conntrack), and
 * alternates modes A-B-A-B. Every client run is bounded by `seconds`.
 */
/** CPU (µs) used so far by every process of the node's pods: cgroup v2 cpu.stat of node0's cgroup, which holds the pods'. */
function cgroupCpuUs(tb: Testbed): number {
  const text = readFileSync(path.join(tb.node('node0').cgroupPath, 'cpu.stat'), 'utf8');
  const m = /^usage_usec (\d+)$/m.exec(text);
  if (!m) throw new Error(`bench: no usage_usec in ${tb.node('node0').cgroupPath}/cpu.stat`);
  return Number(m[1]);
}

/** Busy time of the whole machine so far (µs): /proc/stat's cpu line, everything but idle and iowait. */
export function machineBusyUs(stat: string = readFileSync('/proc/stat', 'utf8')): number {
  const line = /^cpu\s+([\d\s]+)$/m.exec(stat);
  if (!line) throw new Error('bench: no cpu line in /proc/stat');
  const f = line[1]!.trim().split(/\s+/).map(Number);
  // user nice system idle iowait irq softirq steal (guest time is already in user)
  const busy = f.slice(0, 8).reduce((a, v, i) => (i === 3 || i === 4 ? a : a + v), 0);
  return (busy * 1e6) / USER_HZ;
}
// /proc/stat counts in USER_HZ, 100 on every Linux ABI this runs on (sysconf(_SC_CLK_TCK)).
const USER_HZ = 100;

interface PerfRun {
  stop(): Promise<void>;
}

/**
 * perf record -a -g (every CPU, call graphs, cgroup of each sample) until stop(): SIGINT makes perf
 * write its file. Whole machine, because softirq work and the kworkers that tear psocks down run
 * outside the pods' cgroups; split the samples by cgroup and symbol afterwards (perf script -F
 * comm,cgroup,ip,sym). No perf stat: this VM has no hardware cycle counters.
 */
function startPerf(dir: string, name: string): PerfRun {
  mkdirSync(dir, { recursive: true });
  const p = spawn('perf', ['record', '-a', '-g', '--all-cgroups', '-F', '999', '-q', '-o', path.join(dir, `${name}.data`)], { stdio: 'ignore' });
  const exited = new Promise<void>((resolve) => {
    p.once('exit', () => resolve());
    p.once('error', () => resolve());
  });
  return {
    async stop() {
      p.kill('SIGINT');
      const timeout = new Promise<void>((resolve) => setTimeout(resolve, 30_000).unref());
      await Promise.race([exited, timeout]);
      if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    },
  };
}

export async function runBench(opts: BenchOptions = {}): Promise<BenchResult> {
  const modes = opts.modes ?? BUILTIN_MODES;
  const rounds = opts.rounds ?? 3;
  const seconds = opts.seconds ?? 3;
  const wrkConnections = opts.wrkConnections ?? 8;
  const log = opts.log ?? ((l: string) => console.log(l));
  const progress = opts.progress ?? defaultProgress();
  if (modes.length === 0) throw new Error('bench: no modes');
  if (new Set(modes.map((m) => m.name)).size !== modes.length) throw new Error(`bench: duplicate mode names: ${modes.map((m) => m.name).join(', ')}`);
  if (!Number.isInteger(rounds) || rounds < 1 || rounds > 50) throw new Error(`bench: rounds ${rounds}: want 1..50`);
  if (!(seconds >= 1 && seconds <= 60)) throw new Error(`bench: seconds ${seconds}: want 1..60`);
  const mesh = opts.mesh ?? 'sidecar';
  const connsOnly = opts.only === 'conns';
  if (mesh !== 'sidecar' && mesh !== 'ambient') throw new Error(`bench: mesh ${String(mesh)}: want sidecar or ambient`);

  const startedAt = new Date();
  const samples = new Map<string, Sample[]>(modes.map((m) => [m.name, []]));
  // Ambient: where the CPU goes per connection and per round trip, the stand-in split out (cpu-split.ts).
  const splits = new Map<string, CpuSplitSamples[]>(modes.map((m) => [m.name, []]));
  const snap = (mode: PathMode) => cpuSnapshot(tb.node('node0').cgroupPath, mode.processes?.() ?? []);
  const retries: string[] = [];
  const tb = await Testbed.create({ pods: [], proxyAccessLog: opts.proxyAccessLog ?? false });
  const tbPrefix = path.basename(path.dirname(tb.node('node0').cgroupPath));
  const steps = rounds * modes.length;
  let step = 0;
  try {
    for (let r = 0; r < rounds; r++) {
      for (const [mi, mode] of modes.entries()) {
        step++;
        const tag = `[bench ${step}/${steps}] round ${r + 1}/${rounds} · ${mode.name}`;
        progress(`${tag} · creating pods`);
        const pods: ModePods = { client: `c${r}m${mi}`, server: `s${r}m${mi}` };
        await tb.addPod({ name: pods.client, mesh });
        await tb.addPod({ name: pods.server, mesh });
        const server = tb.pod(pods.server);
        await tb.startHttpServer(pods.server, { port: PORTS.http });
        if (!connsOnly) {
          await tb.startSockperfServer(pods.server, { port: PORTS.sockperf });
          await tb.startIperfServer(pods.server, { port: PORTS.iperf });
        }
        progress(`${tag} · setup`);
        await withTeardown(() => mode.teardown(tb, pods), async () => {
          await mode.setup(tb, pods);
          let sp: { p50Us: number; p99Us: number; observations: number } = { p50Us: NaN, p99Us: NaN, observations: NaN };
          let rtt0 = snap(mode);
          let rtt1 = rtt0;
          let ip: { bitsPerSecond: number } = { bitsPerSecond: NaN };
          let bulk: { bitsPerSecond: number } = { bitsPerSecond: NaN };
          let rr: { observations: number } = { observations: NaN };
          if (!connsOnly) {
            progress(`${tag} · sockperf ping-pong ${seconds}s`);
            sp = await withRetry(`${tag} · sockperf ping-pong`, retries, progress, () => {
              rtt0 = snap(mode); // a retry measures its own run
              return tb.sockperfPingPong(pods.client, server.ipv4, { port: PORTS.sockperf, seconds });
            });
            rtt1 = snap(mode);
            progress(`${tag} · iperf3 ${seconds}s`);
            const iperfReady = iperfTurns(tb, pods.server, PORTS.iperf);
            ip = await withRetry(`${tag} · iperf3`, retries, progress, async () => {
              await iperfReady();
              return tb.iperf(pods.client, server.ipv4, { port: PORTS.iperf, seconds });
            });
            progress(`${tag} · iperf3 -l 64K ${seconds}s`);
            bulk = await withRetry(`${tag} · iperf3 -l 64K`, retries, progress, async () => {
              await iperfReady();
              return bulk64k(tb, pods.client, server.ipv4, seconds);
            });
            progress(`${tag} · sockperf ping-pong 1 KiB ${seconds}s`);
            rr = await withRetry(`${tag} · sockperf 1 KiB`, retries, progress, () => rr1k(tb, pods.client, server.ipv4, seconds));
          }
          await tb.conntrackFlush(pods.client);
          await tb.conntrackFlush(pods.server);
          const ct0 = await conntrackSum(tb, pods);
          const perfRun = opts.perf ? startPerf(opts.perf.dir, `${mode.name}-r${r + 1}`) : null;
          const cpu0 = cgroupCpuUs(tb);
          const conn0 = snap(mode);
          const busy0 = machineBusyUs();
          progress(`${tag} · wrk (Connection: close) ${seconds}s`);
          const wrk = await tb.wrk(pods.client, `http://${server.ipv4}:${PORTS.http}/`, {
            seconds,
            connections: wrkConnections,
            keepAlive: false,
          });
          const cpu1 = cgroupCpuUs(tb);
          const conn1 = snap(mode);
          const busy1 = machineBusyUs();
          await perfRun?.stop();
          if (mesh === 'ambient') splits.get(mode.name)!.push({ perConn: cpuPer(conn0, conn1, wrk.requests), perRtt: cpuPer(rtt0, rtt1, sp.observations) });
          const ct1 = await conntrackSum(tb, pods);
          samples.get(mode.name)!.push({
            rttP50Us: sp.p50Us,
            rttP99Us: sp.p99Us,
            throughputGbps: ip.bitsPerSecond / 1e9,
            bulk64kGbps: bulk.bitsPerSecond / 1e9,
            rr1kTps: rr.observations / seconds,
            newConnsPerSec: wrk.requestsPerSecond,
            cpuPerConnUs: wrk.requests > 0 ? (cpu1 - cpu0) / wrk.requests : NaN,
            machineCpuPerConnUs: wrk.requests > 0 ? (busy1 - busy0) / wrk.requests : NaN,
            wrkRequests: wrk.requests,
            conntrackPerConn: wrk.requests > 0 ? (ct1 - ct0) / wrk.requests : NaN,
          });
        }).finally(async () => {
          await tb.removePod(pods.client);
          await tb.removePod(pods.server);
        });
      }
    }
  } finally {
    await tb.dispose();
  }
  progress(`[bench] done in ${((Date.now() - startedAt.getTime()) / 1000).toFixed(0)} s`);
  if (process.stderr.isTTY && !opts.progress) process.stderr.write('\n');

  const report: BenchReport = {
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    machine: { kernel: os.release(), cpus: os.cpus().length, cpuModel: cpuModel() },
    settings: { rounds, seconds, wrkConnections, order: modes.map((m) => m.name), mesh, ...(mesh === 'sidecar' ? { proxyAccessLog: opts.proxyAccessLog ?? false } : {}) },
    modes: modes.map((m) => summarizeMode(m.name, m.description, samples.get(m.name)!)),
  };
  if (mesh === 'ambient') report.cpuSplit = modes.map((m) => ({ mode: m.name, samples: splits.get(m.name)! }));
  const baseline = pickIptablesBaseline(modes.map((m) => m.name));
  if (baseline) report.iptablesBaseline = baseline;
  if (retries.length) report.retries = retries;
  const perfSplit = opts.perf ? `\n\n${await perfTable(opts.perf.dir, modes, samples, new RegExp(`^/${tbPrefix}/`))}` : '';
  const markdown =
    markdownTable(report) +
    (report.cpuSplit ? `\n\n${cpuSplitTable(report.cpuSplit)}` : '') +
    perfSplit +
    (retries.length ? `\n\nMeasurements retried once after a tool error: ${retries.length} (${retries.join('; ')})` : '');

  const outDir = opts.outDir ?? path.resolve(process.cwd(), 'bench', 'results');
  mkdirSync(outDir, { recursive: true });
  const stamp = startedAt.toISOString().replace(/[:.]/g, '-');
  const files = {
    json: path.join(outDir, `bench-${stamp}.json`),
    markdown: path.join(outDir, `bench-${stamp}.md`),
    svg: path.join(outDir, `bench-${stamp}.svg`),
  };
  writeFileSync(files.json, JSON.stringify(report, null, 2));
  writeFileSync(files.markdown, `${markdown}\n`);
  writeFileSync(files.svg, svgChart(report));
  log(markdown);
  log(`\nwrote ${files.json}, ${files.markdown}, ${files.svg}`);
  return { report, markdown, files };
}
