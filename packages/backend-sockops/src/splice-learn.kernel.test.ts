/**
 * Short connections are not worth a psock (guard shortConns, default 4; real kernel): after 4
 * short connections in a row to a port of a pod, connect4 stops marking that port's connections
 * for splicing; every connection still teaches (the accepting socket at its close: message counts
 * when spliced, TCP data segments when not), so one long connection makes the next one splice; one
 * in 64 is spliced anyway (splice_learn, connect.bpf.c + sockops.bpf.c).
 *
 *   netns a (pod A): app (uid 1000, client.js) --198.18.0.2:9000--> proxy.js (uid 1337, relays)
 *   netns s: sink server on 9000 (counts bytes until EOF, replies with the count)
 *
 * A short connection sends one write each way (1 byte, the count); a long one 256 KiB (4 writes).
 * Each connection's app<->proxy pair is spliced or not: sockets_spliced +2 or +0, and the rule's
 * skips are counted (splice_skipped_short). Control: shortConns 0 splices every connection.
 * Every case runs the default guard unless it says otherwise.
 */
import type { MeshPod } from '@shunt/core';
import { SockopsBackend } from './backend';
import { BpfMap } from '@shunt/libbpf';
import { DEFAULT_GUARD, type SpliceGuard } from './splice';
import { Sandbox, type Netns } from './test-support/sandbox';
import { PROXY_UID, sandboxPod } from './test-support/sandbox-pod';

const APP_UID = 1000;

function meshPod(ns: Netns): MeshPod {
  return sandboxPod(ns, { name: 'pod-a', namespace: 'test', v4: '198.18.0.1', inboundExclude: [15008, 15020, 15021, 15090] });
}

describe('splice (default auto): short connections to a port stop being spliced', () => {
  let sb: Sandbox;
  let a: Netns;
  let backend: SockopsBackend | undefined;

  beforeAll(async () => {
    sb = new Sandbox();
    a = sb.addNetns('a');
    const s = sb.addNetns('s');
    sb.link(a, ['198.18.0.1/24'], s, ['198.18.0.2/24'], 'A');
    await sb.start(s, 0, 'server.js', ['sink', '9000', 'sink'], { inCgroup: false });
    await sb.start(s, 0, 'server.js', ['sink', '9001', 'sink'], { inCgroup: false });
    await sb.start(s, 0, 'server.js', ['sink', '9002', 'sink'], { inCgroup: false });
    await sb.start(a, PROXY_UID, 'proxy.js', ['15001', '15006']);
  }, 30_000);
  afterAll(async () => {
    await backend?.stop({ cleanup: true }).catch(() => undefined);
    await sb?.dispose();
  });

  async function useBackend(guard?: Partial<SpliceGuard>): Promise<SockopsBackend> {
    await backend?.stop({ cleanup: false });
    backend = new SockopsBackend(guard ? { guard } : {});
    await backend.start(sb.node());
    await backend.enroll(meshPod(a));
    return backend;
  }

  /** One connection (bytes sent by the app), once both proxy halves have closed: spliced or not. */
  async function connect(port: number, bytes: number): Promise<{ spliced: boolean; skipped: number }> {
    const b = backend!;
    const c0 = (await b.observe()).counters;
    const out = JSON.parse(await sb.run(a, APP_UID, 'client.js', ['198.18.0.2', String(port), String(bytes)])) as { reply?: string; error?: string };
    expect(out.reply).toBe(`sink|${bytes}`);
    // The proxy's accepted socket learns at its close: wait (bounded) until every spliced socket is gone.
    for (let i = 0; i < 200 && b.liveRecords().splicePeers > 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(b.liveRecords().splicePeers).toBe(0);
    const c1 = (await b.observe()).counters;
    const spliced = (c1.sockets_spliced ?? 0) - (c0.sockets_spliced ?? 0);
    expect([0, 2]).toContain(spliced);
    return { spliced: spliced === 2, skipped: (c1.splice_skipped_short ?? 0) - (c0.splice_skipped_short ?? 0) };
  }

  it('by default, 4 short connections are spliced, then none; a long unspliced one makes the next one splice again', async () => {
    await useBackend();
    expect((await backend!.observe()).nodeDetail.spliceGuard).toMatchObject({ shortConns: 4 });
    const seen: boolean[] = [];
    for (let i = 0; i < 4; i++) seen.push((await connect(9000, 1)).spliced);
    expect(seen).toEqual([true, true, true, true]);
    const next: Array<{ spliced: boolean; skipped: number }> = [];
    for (let i = 0; i < 5; i++) next.push(await connect(9000, 1));
    expect(next).toEqual(Array(5).fill({ spliced: false, skipped: 1 }));
    // A long connection while the port is skipped: not spliced, but its TCP counts end the run.
    expect(await connect(9000, 256 << 10)).toEqual({ spliced: false, skipped: 1 });
    expect(await connect(9000, 1)).toEqual({ spliced: true, skipped: 0 });
    // Another port of the same pod learnt nothing.
    expect(await connect(9001, 1)).toEqual({ spliced: true, skipped: 0 });
  }, 60_000);

  it('one in 64 skipped connections is spliced anyway (relearning where only splice-only legs teach)', async () => {
    await useBackend();
    for (let i = 0; i < 4; i++) expect((await connect(9002, 1)).spliced).toBe(true);
    expect(await connect(9002, 1)).toEqual({ spliced: false, skipped: 1 });
    // Fast-forward the run's skip count (63 connections) in the pinned map: the next skip is the 64th.
    const learn = BpfMap.fromPin(`${backend!.pinDir}/maps/splice_learn`);
    try {
      let found = 0;
      for (const [k, v] of learn.entries()) {
        if (k.readUInt16LE(8) !== 9002) continue;
        v.writeUInt32LE(62, 4);
        learn.update(k, v);
        found++;
      }
      expect(found).toBe(1);
    } finally {
      learn.close();
    }
    expect(await connect(9002, 1)).toEqual({ spliced: false, skipped: 1 });
    expect(await connect(9002, 1)).toEqual({ spliced: true, skipped: 0 });
    expect(await connect(9002, 1)).toEqual({ spliced: false, skipped: 1 });
  }, 60_000);

  it('long connections keep a port spliced', async () => {
    await useBackend();
    for (let i = 0; i < 6; i++) expect(await connect(9001, 256 << 10)).toEqual({ spliced: true, skipped: 0 });
  }, 60_000);

  it('control: shortConns 0 splices every connection', async () => {
    expect(DEFAULT_GUARD.shortConns).toBe(4);
    await useBackend({ shortConns: 0 });
    expect((await backend!.observe()).nodeDetail.spliceGuard).toMatchObject({ shortConns: 0 });
    for (let i = 0; i < 10; i++) expect(await connect(9000, 1)).toEqual({ spliced: true, skipped: 0 });
  }, 60_000);
});
