/**
 * Measurement (not a pass/fail test): enroll latency of the tc backend, i.e. enroll() called ->
 * first connection redirected, seen by a prober that keeps connecting from inside the pod to the
 * peer pod and notes when the first one lands on ztunnel's 15001 socket. Run explicitly:
 *   SHUNT_TC_BENCH=1 npx jest --testPathIgnorePatterns=/node_modules/ src/enroll-latency.manual.test.ts
 * SHUNT_TC_ENROLLS (default 200) enroll/unenroll cycles of each kind, SHUNT_TC_ATTACH=clsact for the fallback; prints p50/p99/max of
 * enroll() itself, of enroll -> first redirected connection, and of unenroll(), for two kinds of cycle run alternately:
 *   warm: the netns prepared (links attached, as the agent does when a netns appears), then after a gap
 *         (SHUNT_TC_GAP_MS, default 50: the sandbox/CNI ADD -> pod event delay is longer in a real cluster) the enroll;
 *   cold: enroll of a netns nobody prepared (it attaches the links itself).
 * With the load average at the start and end (the machine is shared).
 */
import * as os from 'node:os';
import * as fs from 'node:fs';
import { Testbed } from '@shunt/testbed';
import type { MeshPod } from '@shunt/core';
import { BpfObject, attachTcxAsync, bpfObjectPath, detachLinkAsync } from '@shunt/libbpf';
import { PROGRAMS, TcBackend } from './backend';
import { Service, ZtunnelSockets, talk } from './test-support/sockets';
import { meshPod, nodeContext, silentLog } from './test-support/env';

type Step = { setupMs: number; mapsMs: number; linksMs: number; attached: string[] };
/** Enroll's own step timings (its debug log line), in enroll order. */
const steps: Step[] = [];

const run = process.env.SHUNT_TC_BENCH === '1' ? describe : describe.skip;
const ENROLLS = Number(process.env.SHUNT_TC_ENROLLS ?? 200);
/** SHUNT_TC_ATTACH=clsact measures the cls_bpf fallback instead of tcx links. */
const ATTACH = (process.env.SHUNT_TC_ATTACH ?? 'auto') as 'auto' | 'tcx' | 'clsact';
const GAP_MS = Number(process.env.SHUNT_TC_GAP_MS ?? 50);
const load = (): string => os.loadavg().map((x) => x.toFixed(2)).join(' ');

const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};
const fmt = (xs: number[]): string => `p50 ${pct(xs, 50).toFixed(2)} ms, p90 ${pct(xs, 90).toFixed(2)} ms, p99 ${pct(xs, 99).toFixed(2)} ms, max ${Math.max(...xs).toFixed(2)} ms (n=${xs.length})`;

run('tc enroll latency (manual)', () => {
  let tb: Testbed;
  let backend: TcBackend;
  let z: ZtunnelSockets;
  let amb: MeshPod;
  const peer = new Service('peer-app', { clientClosesFirst: true });
  let bpffsRoot = '';

  beforeAll(async () => {
    tb = await Testbed.create({ pods: [{ name: 'amb', mesh: 'ambient' }, { name: 'peer' }] });
    bpffsRoot = `/sys/fs/bpf/${tb.prefix}-tc`;
    fs.mkdirSync(bpffsRoot, { recursive: true });
    tb.track('tc pins', async () => fs.rmSync(bpffsRoot, { recursive: true, force: true }));
    await peer.listen({ netns: tb.pod('peer').netnsPath, family: 4, reuseAddr: true, bind: { port: 8080 }, backlog: 512 });
    // The prober closes first: see ZtunnelSockets' clientClosesFirst (TIME_WAIT on ztunnel's side).
    z = await ZtunnelSockets.open(tb.pod('amb').netnsPath, ['outbound'], { clientClosesFirst: true });
    amb = meshPod(tb, 'amb');
    backend = new TcBackend({ attach: ATTACH });
    await backend.start({ ...nodeContext(bpffsRoot), log: { ...silentLog, debug: (o: unknown, msg?: string) => void (msg === 'tc: enrolled' && steps.push(o as Step)) } });
  }, 60_000);

  afterAll(async () => {
    await backend?.stop({ cleanup: true }).catch(() => undefined);
    await z?.close();
    await peer.close();
    await tb?.dispose();
  }, 60_000);

  test(`${ENROLLS} enrolls of each kind (warm: prepared netns, cold), alternating`, async () => {
    const kinds = { warm: { enrollMs: [] as number[], firstMs: [] as number[], unenrollMs: [] as number[], prepareMs: [] as number[] }, cold: { enrollMs: [] as number[], firstMs: [] as number[], unenrollMs: [] as number[], prepareMs: [] as number[] } };
    const to = { address: tb.pod('peer').ipv4, port: 8080 };
    const load0 = load();
    const stepsOf: Record<'warm' | 'cold', Step[]> = { warm: [], cold: [] };
    for (let i = 0; i < 2 * ENROLLS; i++) {
      const kind = i % 2 === 0 ? 'warm' : 'cold';
      const { enrollMs, firstMs, unenrollMs, prepareMs } = kinds[kind];
      if (kind === 'warm') {
        const p0 = performance.now();
        const r = await backend.prepare(amb.netnsPath!);
        prepareMs.push(performance.now() - p0);
        if (ATTACH !== 'clsact') expect(r.state).toBe('prepared');
        await new Promise((res) => setTimeout(res, GAP_MS));
      }
      const t0 = performance.now();
      let done = false;
      let first = -1;
      // Prober: connects back to back from the pod until one connection reaches ztunnel.
      const prober = (async () => {
        for (let k = 0; k < 5000 && first < 0; k++) {
          const r = await talk({ netns: amb.netnsPath!, family: 4, to, timeoutMs: 3000 }).catch(async (e: Error) => {
            throw new Error(`prober, iteration ${i}, ${(performance.now() - t0).toFixed(1)} ms after enroll(): ${e.message}; counters ${JSON.stringify((await backend.observe()).counters)}`);
          });
          if (r.reply === 'ztunnel-15001') first = performance.now() - t0;
        }
      })();
      await backend.enroll(amb);
      enrollMs.push(performance.now() - t0);
      stepsOf[kind].push(steps.at(-1)!);
      done = true;
      await prober;
      expect(done && first >= 0).toBe(true);
      firstMs.push(first);
      const u0 = performance.now();
      await backend.unenroll(amb);
      unenrollMs.push(performance.now() - u0);
      expect((await talk({ netns: amb.netnsPath!, family: 4, to })).reply).toBe('peer-app');
    }
    await backend.settled();
    const lines = [`attach mode ${ATTACH}, gap ${GAP_MS} ms, load average ${load0} at start, ${load()} at end`];
    for (const [kind, k] of Object.entries(kinds)) {
      if (kind === 'warm') lines.push(`warm prepare() (netns appears):  ${fmt(k.prepareMs)}`);
      const st = stepsOf[kind as 'warm' | 'cold'];
      lines.push(`${kind} enroll steps: setup ${fmt(st.map((x) => x.setupMs))}; maps ${fmt(st.map((x) => x.mapsMs))}; links ${fmt(st.map((x) => x.linksMs))}`);
      lines.push(`${kind} enroll() duration:          ${fmt(k.enrollMs)}`, `${kind} enroll -> first redirected: ${fmt(k.firstMs)}`, `${kind} unenroll() duration:        ${fmt(k.unenrollMs)}`);
    }
    // eslint-disable-next-line no-console
    console.log(lines.join('\n'));
  }, 600_000);

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
