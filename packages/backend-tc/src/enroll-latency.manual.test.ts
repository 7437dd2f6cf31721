/**
 * Measurement (not a pass/fail test): enroll latency of the tc backend, i.e. the pod event
 * (enroll() called) -> the first connection redirected to ztunnel. Run explicitly:
 *   SHUNT_TC_BENCH=1 npx jest --testPathIgnorePatterns=/node_modules/ src/enroll-latency.manual.test.ts
 * SHUNT_TC_ENROLLS (default 300) cycles of each kind in SHUNT_TC_KINDS (default 'warm,cold'),
 * alternating; SHUNT_TC_ATTACH=clsact for the fallback; SHUNT_TC_GAP_MS (default 50) between
 * prepare() and the pod event. Prints p50/p90/p99/max of: enroll() itself, event -> first
 * redirected, unenroll(), and enroll's steps (from its debug line), with the load average.
 *   warm: the netns prepared (links, rule and route, as the agent does when a netns appears),
 *         then after the gap (the sandbox/CNI ADD -> pod event delay is longer in a cluster) the enroll;
 *   cold: enroll of a netns nobody prepared (it attaches the links itself).
 * The prober is a separate process (test-support/enroll-prober.js) connecting back to back to a
 * port nothing listens on at the peer: refused until the enroll, then the first connect that
 * completes is one whose SYN reached ztunnel's 15001 listener (its kernel side completes the
 * handshake; no user-space server on the probe path). Its CLOCK_MONOTONIC completion time minus
 * the event's is the sample; that ztunnel's socket took it, with the original destination as local
 * address, is checked on every cycle.
 */
import * as os from 'node:os';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fork, type ChildProcess } from 'node:child_process';
import { PerformanceObserver } from 'node:perf_hooks';
import { Testbed } from '@shunt/testbed';
import type { MeshPod } from '@shunt/core';
import { BpfObject, attachTcxAsync, bpfObjectPath, detachLinkAsync } from '@shunt/libbpf';
import { PROGRAMS, TcBackend } from './backend';
import { ZtunnelSockets } from './test-support/sockets';
import { meshPod, nodeContext, silentLog } from './test-support/env';

type Step = { beforeMs: number; setupMs: number; mapsMs: number; linksMs: number; attached: string[]; rtnl: number };
/** Enroll's own step timings (its debug log line), in enroll order. */
const steps: Step[] = [];

const run = process.env.SHUNT_TC_BENCH === '1' ? describe : describe.skip;
const ENROLLS = Number(process.env.SHUNT_TC_ENROLLS ?? 300);
const KINDS = (process.env.SHUNT_TC_KINDS ?? 'warm,cold').split(',') as Array<'warm' | 'cold'>;
/** SHUNT_TC_ATTACH=clsact measures the cls_bpf fallback instead of tcx links. */
const ATTACH = (process.env.SHUNT_TC_ATTACH ?? 'auto') as 'auto' | 'tcx' | 'clsact';
const GAP_MS = Number(process.env.SHUNT_TC_GAP_MS ?? 50);
/** The probe destination: a port nothing listens on at the peer (refused unless redirected). */
const PROBE_PORT = 8081;
const load = (): string => os.loadavg().map((x) => x.toFixed(2)).join(' ');
/** ms this (main) thread has run on a CPU, and waited on a run queue (CPU taken by others), so far: schedstat. */
const sched = (): { cpu: number; wait: number } => {
  const [cpu, wait] = fs.readFileSync(`/proc/self/task/${process.pid}/schedstat`, 'utf8').split(' ').map(Number);
  return { cpu: cpu! / 1e6, wait: wait! / 1e6 };
};
/** GC pauses of this process (start, duration on the performance.now() timeline). */
const gcPauses: Array<{ start: number; ms: number }> = [];
const gcObserver = new PerformanceObserver((list) => {
  for (const e of list.getEntries()) gcPauses.push({ start: e.startTime, ms: e.duration });
});
const gcIn = (from: number, to: number): number => gcPauses.filter((g) => g.start + g.ms > from && g.start < to).reduce((a, g) => a + g.ms, 0);

const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};
const fmt = (xs: number[]): string => `p50 ${pct(xs, 50).toFixed(2)} ms, p90 ${pct(xs, 90).toFixed(2)} ms, p99 ${pct(xs, 99).toFixed(2)} ms, max ${Math.max(...xs).toFixed(2)} ms (n=${xs.length})`;

type ProberMsg = { kind: 'armed' } | { kind: 'hit'; atNs: string; attempts: number } | { kind: 'error'; message: string };

/** The prober child: one message at a time, bounded waits. */
class Prober {
  private readonly child: ChildProcess;
  private queue: ProberMsg[] = [];
  private waiter: ((m: ProberMsg) => void) | null = null;

  constructor(netns: string, to: { address: string; port: number }, own: string) {
    // nsenter execs node inside the pod netns; the IPC channel (a socketpair) is not netns-bound.
    this.child = fork(path.join(__dirname, 'test-support', 'enroll-prober.js'), ['4', to.address, String(to.port), own], {
      execPath: 'nsenter',
      execArgv: [`--net=${netns}`, process.execPath],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    this.child.on('message', (m: ProberMsg) => {
      if (this.waiter) {
        const w = this.waiter;
        this.waiter = null;
        w(m);
      } else this.queue.push(m);
    });
  }

  send(m: { cmd: 'go'; timeoutMs: number }): void {
    this.child.send(m);
  }

  next(kind: ProberMsg['kind'], timeoutMs: number): Promise<ProberMsg> {
    const check = (m: ProberMsg): ProberMsg => {
      if (m.kind === 'error') throw new Error(`prober: ${m.message}`);
      if (m.kind !== kind) throw new Error(`prober: expected ${kind}, got ${JSON.stringify(m)}`);
      return m;
    };
    const queued = this.queue.shift();
    if (queued) return Promise.resolve(check(queued));
    return new Promise<ProberMsg>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = null;
        reject(new Error(`prober: no ${kind} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiter = (m) => {
        clearTimeout(timer);
        try {
          resolve(check(m));
        } catch (e) {
          reject(e as Error);
        }
      };
    });
  }

  /** ms the prober's thread has waited on a run queue so far (its schedstat). */
  waitMs(): number {
    return Number(fs.readFileSync(`/proc/${this.child.pid}/schedstat`, 'utf8').split(' ')[1]) / 1e6;
  }

  stop(): void {
    if (this.child.connected) this.child.disconnect();
    this.child.kill('SIGTERM');
  }
}

run('tc enroll latency (manual)', () => {
  let tb: Testbed;
  let backend: TcBackend;
  let z: ZtunnelSockets;
  let amb: MeshPod;
  let prober: Prober;
  let bpffsRoot = '';

  beforeAll(async () => {
    tb = await Testbed.create({ pods: [{ name: 'amb', mesh: 'ambient' }, { name: 'peer' }] });
    bpffsRoot = `/sys/fs/bpf/${tb.prefix}-tc`;
    fs.mkdirSync(bpffsRoot, { recursive: true });
    tb.track('tc pins', async () => fs.rmSync(bpffsRoot, { recursive: true, force: true }));
    z = await ZtunnelSockets.open(tb.pod('amb').netnsPath, ['outbound']);
    amb = meshPod(tb, 'amb');
    prober = new Prober(amb.netnsPath!, { address: tb.pod('peer').ipv4, port: PROBE_PORT }, tb.pod('amb').ipv4);
    tb.track('prober', async () => prober.stop());
    backend = new TcBackend({ attach: ATTACH });
    await backend.start({ ...nodeContext(bpffsRoot), log: { ...silentLog, debug: (o: unknown, msg?: string) => void (msg === 'tc: enrolled' && steps.push(o as Step)) } });
  }, 60_000);

  afterAll(async () => {
    prober?.stop();
    await backend?.stop({ cleanup: true }).catch(() => undefined);
    await z?.close();
    await tb?.dispose();
  }, 60_000);

  test(`${ENROLLS} enrolls of each kind (${KINDS.join(', ')}), alternating, probed from another process`, async () => {
    gcObserver.observe({ entryTypes: ['gc'] });
    const blank = (): { enrollMs: number[]; firstMs: number[]; unenrollMs: number[]; prepareMs: number[]; attempts: number[]; waitMs: number[]; cpuMs: number[]; gcMs: number[]; proberWaitMs: number[] } => ({ enrollMs: [], firstMs: [], unenrollMs: [], prepareMs: [], attempts: [], waitMs: [], cpuMs: [], gcMs: [], proberWaitMs: [] });
    const kinds = { warm: blank(), cold: blank() };
    const stepsOf: Record<'warm' | 'cold', Step[]> = { warm: [], cold: [] };
    const dst = { address: tb.pod('peer').ipv4, port: PROBE_PORT };
    const load0 = load();
    for (let i = 0; i < KINDS.length * ENROLLS; i++) {
      const kind = KINDS[i % KINDS.length]!;
      const k = kinds[kind];
      if (kind === 'warm') {
        const p0 = performance.now();
        const r = await backend.prepare(amb.netnsPath!);
        k.prepareMs.push(performance.now() - p0);
        if (ATTACH !== 'clsact') expect(r.state).toBe('prepared');
        await new Promise((res) => setTimeout(res, GAP_MS));
      }
      const seen = z.outbound.accepted.length;
      prober.send({ cmd: 'go', timeoutMs: 5000 });
      await prober.next('armed', 5000); // refused once: not redirected before the event
      const s0 = sched();
      const pw0 = prober.waitMs();
      const p0 = performance.now();
      const t0 = process.hrtime.bigint(); // the pod event
      await backend.enroll(amb);
      k.enrollMs.push(Number(process.hrtime.bigint() - t0) / 1e6);
      const p1 = performance.now();
      const s1 = sched();
      k.waitMs.push(s1.wait - s0.wait);
      k.cpuMs.push(s1.cpu - s0.cpu);
      stepsOf[kind].push(steps.at(-1)!);
      const hit = (await prober.next('hit', 6000)) as Extract<ProberMsg, { kind: 'hit' }>;
      k.firstMs.push(Number(BigInt(hit.atNs) - t0) / 1e6);
      k.attempts.push(hit.attempts);
      k.proberWaitMs.push(prober.waitMs() - pw0);
      await new Promise((res) => setImmediate(res)); // GC entries are delivered asynchronously
      k.gcMs.push(gcIn(p0, p1));
      // The connection that completed is ztunnel's: its 15001 socket accepted it, with the original destination.
      for (let w = 0; w < 200 && z.outbound.accepted.length === seen; w++) await new Promise((res) => setTimeout(res, 10));
      expect(z.outbound.accepted.slice(seen).map((a) => a.local)).toContainEqual(dst);
      await backend.settled();
      const u0 = performance.now();
      await backend.unenroll(amb);
      k.unenrollMs.push(performance.now() - u0);
    }
    await backend.settled();
    gcObserver.disconnect();
    const lines = [`attach mode ${ATTACH}, gap ${GAP_MS} ms, load average ${load0} at start, ${load()} at end`];
    for (const kind of KINDS) {
      const k = kinds[kind];
      if (kind === 'warm') lines.push(`warm prepare() (netns appears):  ${fmt(k.prepareMs)}`);
      const st = stepsOf[kind];
      lines.push(`${kind} enroll steps: before (config, cookie, lock) ${fmt(st.map((x) => x.beforeMs))}; setup ${fmt(st.map((x) => x.setupMs))}; maps ${fmt(st.map((x) => x.mapsMs))}; links ${fmt(st.map((x) => x.linksMs))}; rtnl_lock takers per enroll max ${Math.max(...st.map((x) => x.rtnl))}`);
      // The slowest enrolls, split: where their time went (the rest: the process not running, GC, the event loop).
      const worst = k.enrollMs.map((ms, j) => ({ ms, st: st[j]!, first: k.firstMs[j]!, wait: k.waitMs[j]!, cpu: k.cpuMs[j]!, gc: k.gcMs[j]! })).sort((a, b) => b.ms - a.ms).slice(0, 5);
      lines.push(`${kind} slowest enrolls (total = before + setup + maps + links + rest; of it on CPU, run-queue wait, GC; first redirected): ${worst.map((w) => `${w.ms.toFixed(1)} = ${w.st.beforeMs.toFixed(1)} + ${w.st.setupMs.toFixed(1)} + ${w.st.mapsMs.toFixed(1)} + ${w.st.linksMs.toFixed(1)} + ${(w.ms - w.st.beforeMs - w.st.setupMs - w.st.mapsMs - w.st.linksMs).toFixed(1)}; cpu ${w.cpu.toFixed(1)}, wait ${w.wait.toFixed(1)}, gc ${w.gc.toFixed(1)}; ${w.first.toFixed(1)}`).join(' | ')}`);
      const late = k.firstMs.map((ms, j) => ({ ms, enroll: k.enrollMs[j]!, pw: k.proberWaitMs[j]! })).sort((a, b) => b.ms - a.ms).slice(0, 5);
      lines.push(`${kind} slowest first-redirected (ms; of it enroll(), the prober's run-queue wait): ${late.map((l) => `${l.ms.toFixed(1)}: ${l.enroll.toFixed(1)}, ${l.pw.toFixed(1)}`).join(' | ')}`);
      lines.push(`${kind} enroll() minus run-queue wait minus GC: ${fmt(k.enrollMs.map((ms, j) => Math.max(0, ms - k.waitMs[j]! - k.gcMs[j]!)))}; run-queue wait ${fmt(k.waitMs)}; on CPU ${fmt(k.cpuMs)}`);
      lines.push(`${kind} enroll() duration:          ${fmt(k.enrollMs)}`, `${kind} event -> first redirected:  ${fmt(k.firstMs)} (prober attempts p50 ${pct(k.attempts, 50)})`, `${kind} unenroll() duration:        ${fmt(k.unenrollMs)}`);
    }
    // eslint-disable-next-line no-console
    console.log(lines.join('\n'));
  }, 900_000);

  // Where enroll's time goes: one tcx attach alone (what each of enroll's two costs), and one
  // sk_lookup netns link alone, attached and detached in the same pod netns, not enrolled.
  test(`breakdown: ${ENROLLS} single tcx attaches and netns (sk_lookup) link attaches`, async () => {
    await backend.unenroll(amb).catch(() => undefined);
    const ing = BpfObject.open(bpfObjectPath(PROGRAMS.ingress.object), { pinMaps: `${bpffsRoot}/tc/maps` });
    const skl = BpfObject.open(bpfObjectPath(PROGRAMS.lookup.object), { pinMaps: `${bpffsRoot}/tc/maps` });
    try {
      const tcx: number[] = [];
      const tcxDetach: number[] = [];
      const netns: number[] = [];
      for (let i = 0; i < ENROLLS; i++) {
        const t0 = performance.now();
        const link = await attachTcxAsync(ing.program(PROGRAMS.ingress.program), 'eth0', 'ingress', { netns: amb.netnsPath!, position: 'last' });
        tcx.push(performance.now() - t0);
        const t1 = performance.now();
        await detachLinkAsync(link);
        tcxDetach.push(performance.now() - t1);
        const t2 = performance.now();
        const nl = skl.program(PROGRAMS.lookup.program).attachNetns(amb.netnsPath!);
        netns.push(performance.now() - t2);
        nl.detach();
      }
      // eslint-disable-next-line no-console
      console.log([`one tcx attach:                  ${fmt(tcx)}`, `one tcx detach:                  ${fmt(tcxDetach)}`, `one sk_lookup netns link attach: ${fmt(netns)}`].join('\n'));
    } finally {
      ing.close();
      skl.close();
    }
  }, 600_000);
});
