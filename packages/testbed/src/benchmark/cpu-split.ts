/**
 * Where a benchmark's CPU goes (ambient bench, README "Ambient bench"): around a measured run, the
 * CPU of the node's pods (their cgroup: apps, clients, in-pod work charged to them), of the
 * processes a mode runs outside the pods' cgroups (the ztunnel stand-in, whose relay threads move
 * every byte), and the whole machine's busy time (softirq work charged to no process, the agent,
 * and other jobs sharing the machine: the least precise of the three). Per connection (wrk) and per
 * round trip (sockperf ping-pong).
 */
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { summarize, type Summary } from './stats';

/** /proc/stat and /proc/<pid>/stat count in USER_HZ, which is 100 on Linux whatever the kernel's HZ. */
const USER_HZ = 100;

export interface CpuSnapshot {
  podsUs: number;
  /** name -> µs on CPU, all threads (schedstat). */
  procsUs: Record<string, number>;
  machineBusyUs: number;
}

/** µs on CPU of every live thread of pid (/proc/<pid>/task/<tid>/schedstat, ns); NaN when the process is gone. */
export function processCpuUs(pid: number): number {
  let total = 0;
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      try {
        total += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]) / 1000;
      } catch {
        // the thread ended between the listing and the read
      }
    }
  } catch {
    return NaN;
  }
  return total;
}

/** Busy time of all CPUs (everything but idle and iowait), µs. */
export function machineBusyUs(stat = readFileSync('/proc/stat', 'utf8')): number {
  const line = stat.split('\n').find((l) => l.startsWith('cpu '));
  if (!line) throw new Error('bench: /proc/stat has no cpu line');
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const total = v.slice(0, 8).reduce((a, b) => a + b, 0); // user nice system idle iowait irq softirq steal
  return ((total - v[3]! - v[4]!) * 1e6) / USER_HZ;
}

/** µs used so far by the pods of the node whose cgroup is at dir (cgroup v2 cpu.stat usage_usec). */
export function cgroupCpuUs(dir: string): number {
  const text = readFileSync(path.join(dir, 'cpu.stat'), 'utf8');
  const m = /^usage_usec (\d+)$/m.exec(text);
  if (!m) throw new Error(`bench: no usage_usec in ${dir}/cpu.stat`);
  return Number(m[1]);
}

export function cpuSnapshot(podsCgroup: string, procs: ReadonlyArray<{ name: string; pid: number }>): CpuSnapshot {
  return {
    podsUs: cgroupCpuUs(podsCgroup),
    procsUs: Object.fromEntries(procs.map((p) => [p.name, processCpuUs(p.pid)])),
    machineBusyUs: machineBusyUs(),
  };
}

/** CPU per unit of work between two snapshots: pods, each process, machine, and what is left (machine − pods − processes). */
export function cpuPer(a: CpuSnapshot, b: CpuSnapshot, units: number): Record<string, number> {
  if (!(units > 0)) return {};
  const pods = (b.podsUs - a.podsUs) / units;
  const out: Record<string, number> = { pods };
  let procs = 0;
  for (const name of Object.keys(b.procsUs)) {
    const d = (b.procsUs[name]! - (a.procsUs[name] ?? NaN)) / units;
    out[name] = d;
    if (Number.isFinite(d)) procs += d;
  }
  const machine = (b.machineBusyUs - a.machineBusyUs) / units;
  out.machine = machine;
  out.rest = machine - pods - procs;
  return out;
}

/** Per mode: per connection and per round trip, each part's median [min–max] over the rounds. */
export type CpuSplitSamples = { perConn: Record<string, number>; perRtt: Record<string, number> };

export function cpuSplitTable(modes: ReadonlyArray<{ mode: string; samples: CpuSplitSamples[] }>): string {
  const parts = [...new Set(modes.flatMap((m) => m.samples.flatMap((s) => [...Object.keys(s.perConn), ...Object.keys(s.perRtt)])))];
  const order = ['pods', ...parts.filter((p) => !['pods', 'machine', 'rest'].includes(p)).sort(), 'rest', 'machine'].filter((p) => parts.includes(p));
  const cell = (s: Summary): string => (Number.isFinite(s.median) ? `${s.median.toFixed(1)} [${s.min.toFixed(1)}–${s.max.toFixed(1)}]` : 'n/a');
  const head = ['mode', ...order.map((p) => `${p} µs/conn`), ...order.map((p) => `${p} µs/RTT`)];
  return [
    `| ${head.join(' | ')} |`,
    `|${head.map(() => '---').join('|')}|`,
    ...modes.map(
      (m) =>
        `| ${m.mode} | ${[...order.map((p) => cell(summarize(m.samples.map((s) => s.perConn[p] ?? NaN)))), ...order.map((p) => cell(summarize(m.samples.map((s) => s.perRtt[p] ?? NaN))))].join(' | ')} |`,
    ),
    '',
    'CPU split (median [min–max] over the rounds): pods = the node\'s pods\' cgroup (apps, wrk/sockperf, what the kernel charges to them); ' +
      'named processes run by the mode outside that cgroup (all threads, schedstat); machine = all CPUs\' busy time (/proc/stat, 10 ms ticks, other jobs on the machine included); ' +
      'rest = machine − pods − processes (softirq charged to no process, the agent, other jobs). Per connection: the wrk run; per RTT: the sockperf ping-pong run.',
  ].join('\n');
}
