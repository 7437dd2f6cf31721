/**
 * The clsact + cls_bpf fallback for kernels without tcx, forced with attach: 'clsact' (this kernel
 * has tcx, so the fallback is exercised through the same API, not by an older kernel). Our
 * filters sit at a documented handle/priority, never replace anyone's, survive an agent restart
 * (found again by handle/priority: cls_bpf filters cannot be pinned) and leave the qdisc as found.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { BpfObject, MessageSocket, attachClsactAt, bpfObjectPath, netnsListen, type BpfLink, type ReceivedMessage } from '@shunt/libbpf';
import { Testbed } from '@shunt/testbed';
import { TcBackend } from './backend';
import { CLSACT_HANDLE, CLSACT_PRIORITY } from './abi';
import { Service, ZTUNNEL_MARK, ZtunnelSockets, talk } from './test-support/sockets';
import { meshPod, netnsSnapshot, nodeContext } from './test-support/env';

const filters = (netns: string, dir: 'ingress' | 'egress'): Array<{ pref: number; handle?: string; name?: string }> => {
  const out = execFileSync('nsenter', [`--net=${netns}`, 'tc', '-j', 'filter', 'show', 'dev', 'eth0', dir], { encoding: 'utf8' });
  const list = (out.trim() ? JSON.parse(out) : []) as Array<{ pref: number; options?: { handle?: string; bpf_name?: string } }>;
  return list.filter((f) => f.options).map((f) => ({ pref: f.pref, ...(f.options?.handle ? { handle: f.options.handle } : {}), ...(f.options?.bpf_name ? { name: f.options.bpf_name } : {}) }));
};
const qdiscs = (netns: string): string => execFileSync('nsenter', [`--net=${netns}`, 'tc', 'qdisc', 'show', 'dev', 'eth0'], { encoding: 'utf8' });

describe('tc backend, clsact fallback (forced)', () => {
  let tb: Testbed;
  let bpffsRoot = '';
  let backend: TcBackend;
  let z: ZtunnelSockets;
  const peer = new Service('peer-app');
  const cni = BpfObject.open(bpfObjectPath('tc/test/cni_standin.bpf.o'));
  const foreign: BpfLink[] = [];

  beforeAll(async () => {
    tb = await Testbed.create({ pods: [{ name: 'amb', mesh: 'ambient' }, { name: 'peer' }, { name: 'bare', mesh: 'ambient' }] });
    bpffsRoot = `/sys/fs/bpf/${tb.prefix}-tc`;
    fs.mkdirSync(bpffsRoot, { recursive: true });
    tb.track('tc pins', async () => fs.rmSync(bpffsRoot, { recursive: true, force: true }));
    await peer.listen({ netns: tb.pod('peer').netnsPath, family: 4, reuseAddr: true, bind: { port: 8080 } });
    z = await ZtunnelSockets.open(tb.pod('amb').netnsPath, ['outbound', 'inbound']);
    // A CNI's legacy filter at priority 1 on amb's eth0 (it continues: TC_ACT_UNSPEC).
    for (const d of ['ingress', 'egress'] as const)
      foreign.push(attachClsactAt(cni.program(d === 'ingress' ? 'cni_ingress' : 'cni_egress'), 'eth0', d, { netns: tb.pod('amb').netnsPath, handle: 1, priority: 1 }).link);
    backend = new TcBackend({ attach: 'clsact' });
    await backend.start(nodeContext(bpffsRoot));
  }, 60_000);

  afterAll(async () => {
    await backend?.stop({ cleanup: true }).catch(() => undefined);
    for (const l of foreign) l.close();
    cni.close();
    await z?.close();
    await peer.close();
    await tb?.dispose();
  }, 60_000);

  test('filters at the documented priority after the CNI filter; redirect works; restart adopts; unenroll leaves the CNI filter and its qdisc', async () => {
    const amb = meshPod(tb, 'amb');
    const netns = amb.netnsPath!;
    await backend.enroll(amb);
    const hex = `0x${CLSACT_HANDLE.toString(16)}`;
    for (const d of ['ingress', 'egress'] as const)
      expect(filters(netns, d)).toEqual([
        { pref: 1, handle: '0x1', name: expect.stringMatching(/^cni_standin.bpf.o:\[tcx\/|cni_/) },
        { pref: CLSACT_PRIORITY, handle: hex, name: expect.stringMatching(/shunt_tc_/) },
      ]);
    const r = await talk({ netns, family: 4, to: { address: tb.pod('peer').ipv4, port: 8080 } });
    expect(r.reply).toBe('ztunnel-15001');
    expect(z.outbound.accepted.at(-1)!.local).toEqual({ address: tb.pod('peer').ipv4, port: 8080 });
    const inb = await talk({ netns: tb.pod('peer').netnsPath, family: 4, to: { address: tb.pod('amb').ipv4, port: 9090 } });
    expect(inb.reply).toBe('ztunnel-15006');

    await backend.stop({ cleanup: false });
    backend = new TcBackend({ attach: 'clsact' });
    await backend.start(nodeContext(bpffsRoot));
    const st = await backend.observe();
    expect(st.pods[0]!.fingerprint).toBe(backend.fingerprint(amb));
    expect(st.pods[0]!.detail!.links).toMatchObject({ ingress: { kind: 'clsact', live: true }, egress: { kind: 'clsact', live: true } });

    await backend.unenroll(amb);
    for (const d of ['ingress', 'egress'] as const) expect(filters(netns, d)).toEqual([{ pref: 1, handle: '0x1', name: expect.any(String) }]);
    expect(qdiscs(netns)).toContain('clsact');
    expect((await talk({ netns, family: 4, to: { address: tb.pod('peer').ipv4, port: 8080 } })).reply).toBe('peer-app');
  });

  test("a filter already at our handle/priority is never replaced: enroll fails naming it, the netns is left as found", async () => {
    const amb = meshPod(tb, 'amb');
    const netns = amb.netnsPath!;
    const squatter = attachClsactAt(cni.program('cni_egress'), 'eth0', 'egress', { netns, handle: CLSACT_HANDLE, priority: CLSACT_PRIORITY }).link;
    try {
      const before = netnsSnapshot(netns);
      await expect(backend.enroll(amb)).rejects.toThrow(/EEXIST.*a filter is already there; it is not replaced/);
      expect(filters(netns, 'egress').map((f) => f.name)).toEqual([expect.stringMatching(/cni/), expect.stringMatching(/cni/)]);
      expect(filters(netns, 'ingress').map((f) => f.pref)).toEqual([1]);
      expect(netnsSnapshot(netns)).toBe(before);
      expect((await backend.observe()).pods).toEqual([]);
    } finally {
      squatter.detach();
    }
  });

  test('a pod without a clsact qdisc gets one for the filters, and loses it again on unenroll', async () => {
    const bare = meshPod(tb, 'bare');
    const netns = bare.netnsPath!;
    const pristine = netnsSnapshot(netns);
    expect(qdiscs(netns)).not.toContain('clsact');
    await backend.enroll(bare);
    expect(qdiscs(netns)).toContain('clsact');
    expect(filters(netns, 'ingress').map((f) => f.pref)).toEqual([CLSACT_PRIORITY]);
    await backend.unenroll(bare);
    expect(qdiscs(netns)).not.toContain('clsact');
    expect(netnsSnapshot(netns)).toBe(pristine);
  });

  test("DNS capture with the fallback: a cls_bpf filter on lo restores the replies' source, and goes with its qdisc", async () => {
    const bare = meshPod(tb, 'bare');
    const netns = bare.netnsPath!;
    const server = tb.pod('peer').ipv4;
    const socks: MessageSocket[] = [];
    const loQdisc = (): string => execFileSync('nsenter', [`--net=${netns}`, 'tc', 'qdisc', 'show', 'dev', 'lo'], { encoding: 'utf8' });
    try {
      const zt = MessageSocket.fromFd(netnsListen({ netns, family: 4, protocol: 'udp', mark: ZTUNNEL_MARK, bind: { address: '127.0.0.1', port: 15053 } }), 'datagram');
      socks.push(zt);
      zt.on('message', (m: ReceivedMessage) => zt.send(Buffer.from(`zt:${m.data.toString()}`), [], m.from));
      await backend.enroll({ ...bare, proxy: { ...bare.proxy, dnsPort: 15053 } });
      expect(loQdisc()).toContain('clsact');
      const app = MessageSocket.fromFd(netnsListen({ netns, family: 4, protocol: 'udp', bind: { port: 0 } }), 'datagram');
      socks.push(app);
      const answer = new Promise<ReceivedMessage>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('no DNS answer within 3 s')), 3000);
        app.once('message', (m: ReceivedMessage) => {
          clearTimeout(t);
          resolve(m);
        });
      });
      app.send(Buffer.from('q'), [], { family: 4, address: server, port: 53 });
      const m = await answer;
      expect(m.data.toString()).toBe('zt:q');
      expect(m.from).toMatchObject({ address: server, port: 53 });
    } finally {
      for (const x of socks) x.close();
      await backend.unenroll(bare);
    }
    expect(loQdisc()).not.toContain('clsact');
  });
});
