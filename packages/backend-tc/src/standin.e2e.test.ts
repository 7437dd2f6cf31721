/**
 * Through the testbed's ztunnel stand-in (a separate process, a ZDS client that opens ztunnel's
 * sockets in each pod netns it is handed and forwards 15001 -> HBONE to the destination's 15008
 * -> the app from the client's address), with the tc backend on both pods: the istio-cni order
 * (redirect installed, then AddWorkload), app -> app across both pods' ztunnel legs, each leg
 * checked in the stand-in's log, and the spoofed-source return path through the server pod's
 * hairpin.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Testbed, ztunnelHarness, type ZtunnelLogEntry } from '@shunt/testbed';
import { TcBackend } from './backend';
import { Service, talk } from './test-support/sockets';
import { meshPod, nodeContext } from './test-support/env';

type Conn = Extract<ZtunnelLogEntry, { event: 'conn' }>;

describe('tc backend with the ztunnel stand-in', () => {
  let tb: Testbed;
  let bpffsRoot = '';
  let backend: TcBackend;
  let h: Awaited<ReturnType<typeof ztunnelHarness>> | undefined;
  const app = new Service('b-app');

  beforeAll(async () => {
    tb = await Testbed.create({ pods: [{ name: 'a', mesh: 'ambient' }, { name: 'b', mesh: 'ambient' }] });
    bpffsRoot = `/sys/fs/bpf/${tb.prefix}-tc`;
    fs.mkdirSync(bpffsRoot, { recursive: true });
    tb.track('tc pins', async () => fs.rmSync(bpffsRoot, { recursive: true, force: true }));
    for (const f of [4, 6] as const) await app.listen({ netns: tb.pod('b').netnsPath, family: f, v6Only: f === 6, reuseAddr: true, bind: { port: 9090 } });
    backend = new TcBackend();
    await backend.start(nodeContext(bpffsRoot));
    h = await ztunnelHarness({ socketPath: path.join(tb.stateDir, 'ztunnel.sock'), logPath: path.join(tb.stateDir, 'ztunnel.log') });
    for (const name of ['a', 'b']) {
      const pod = meshPod(tb, name);
      await backend.enroll(pod); // redirect first, then AddWorkload (istio-cni's order)
      await h.add({ uid: pod.uid, name: pod.name, namespace: pod.namespace, netnsPath: pod.netnsPath! });
    }
  }, 90_000);

  afterAll(async () => {
    await h?.stop().catch(() => undefined);
    await backend?.stop({ cleanup: true }).catch(() => undefined);
    await app.close();
    await tb?.dispose();
  }, 60_000);

  test.each([4, 6] as const)('v%i: app in a -> app in b through a:15001 -> HBONE -> b:15008 -> app, original destination and source kept', async (family) => {
    const a = tb.pod('a');
    const b = tb.pod('b');
    const dst = family === 4 ? b.ipv4 : b.ipv6;
    const src = family === 4 ? a.ipv4 : a.ipv6;
    const c0 = (await backend.observe()).counters;
    const r = await talk({ netns: a.netnsPath, family, to: { address: dst, port: 9090 }, timeoutMs: 8000 });
    expect(r.reply).toBe('b-app');
    // The app saw the real client (ztunnel's spoofed-source leg; its replies were hairpinned back).
    expect(app.accepted.at(-1)!.peer).toEqual({ address: src, port: expect.any(Number) });
    const legs = (await h!.zt.waitFor((e) => e.event === 'conn' && (e as Conn).origDst?.address === dst && (e as Conn).client?.port === r.local.port, { count: 1, timeoutMs: 5000, what: 'outbound leg' })) as Conn[];
    const out = legs.find((e) => e.leg === 'outbound')!;
    expect(out).toMatchObject({ pod: 'a', origDst: { address: dst, port: 9090 }, how: 'local-address', via: 'hbone' });
    const hbone = (await h!.zt.waitFor((e) => e.event === 'conn' && (e as Conn).leg === 'hbone' && (e as Conn).origDst?.address === dst && (e as Conn).pod === 'b', { count: 1, timeoutMs: 5000, what: 'hbone leg' })) as Conn[];
    expect(hbone.at(-1)).toMatchObject({ pod: 'b', via: 'app', upstreamSource: { address: src } });
    const c1 = (await backend.observe()).counters;
    expect((c1.outbound_to_listener ?? 0) - (c0.outbound_to_listener ?? 0)).toBeGreaterThanOrEqual(1);
    expect((c1.inbound_tunnel_passed ?? 0) - (c0.inbound_tunnel_passed ?? 0)).toBeGreaterThanOrEqual(1);
    expect((c1.outbound_hairpinned_flow ?? 0) - (c0.outbound_hairpinned_flow ?? 0)).toBeGreaterThanOrEqual(2);
  });
});
