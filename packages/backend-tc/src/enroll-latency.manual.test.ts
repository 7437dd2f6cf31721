/**
 * Measurement (not a pass/fail test): enroll latency of the tc backend, i.e. enroll() called ->
 * first connection redirected, seen by a prober that keeps connecting from inside the pod to the
 * peer pod and notes when the first one lands on ztunnel's 15001 socket. Run explicitly:
 *   SHUNT_TC_BENCH=1 npx jest --testPathIgnorePatterns=/node_modules/ src/enroll-latency.manual.test.ts
 * SHUNT_TC_ENROLLS (default 200) enroll/unenroll cycles, SHUNT_TC_ATTACH=clsact for the fallback; prints p50/p99/max of enroll() itself,
 * of enroll -> first redirected connection, and of unenroll().
 */
import * as fs from 'node:fs';
import { Testbed } from '@shunt/testbed';
import type { MeshPod } from '@shunt/core';
import { BpfObject, attachTcxAsync, bpfObjectPath, detachLinkAsync } from '@shunt/libbpf';
import { PROGRAMS, TcBackend } from './backend';
import { Service, ZtunnelSockets, talk } from './test-support/sockets';
import { meshPod, nodeContext } from './test-support/env';

const run = process.env.SHUNT_TC_BENCH === '1' ? describe : describe.skip;
const ENROLLS = Number(process.env.SHUNT_TC_ENROLLS ?? 200);
/** SHUNT_TC_ATTACH=clsact measures the cls_bpf fallback instead of tcx links. */
const ATTACH = (process.env.SHUNT_TC_ATTACH ?? 'auto') as 'auto' | 'tcx' | 'clsact';

const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};
const fmt = (xs: number[]): string => `p50 ${pct(xs, 50).toFixed(2)} ms, p99 ${pct(xs, 99).toFixed(2)} ms, max ${Math.max(...xs).toFixed(2)} ms (n=${xs.length})`;

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
    await backend.start(nodeContext(bpffsRoot));
  }, 60_000);

  afterAll(async () => {
    await backend?.stop({ cleanup: true }).catch(() => undefined);
    await z?.close();
    await peer.close();
    await tb?.dispose();
  }, 60_000);

  test(`${ENROLLS} enrolls`, async () => {
    const enrollMs: number[] = [];
    const firstMs: number[] = [];
    const unenrollMs: number[] = [];
    const to = { address: tb.pod('peer').ipv4, port: 8080 };
    for (let i = 0; i < ENROLLS; i++) {
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
      done = true;
      await prober;
      expect(done && first >= 0).toBe(true);
      firstMs.push(first);
      const u0 = performance.now();
      await backend.unenroll(amb);
      unenrollMs.push(performance.now() - u0);
      expect((await talk({ netns: amb.netnsPath!, family: 4, to })).reply).toBe('peer-app');
    }
    // eslint-disable-next-line no-console
    console.log(
      [`attach mode ${ATTACH}`, `tc enroll() duration:            ${fmt(enrollMs)}`, `tc enroll -> first redirected:   ${fmt(firstMs)}`, `tc unenroll() duration:          ${fmt(unenrollMs)}`].join('\n'),
    );
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
