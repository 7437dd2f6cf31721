/**
 * The tc backend on a real kernel: testbed pods (own netns, veth to a node bridge), the backend's
 * programs attached on the ambient pod's eth0 inside its netns, and sockets with ztunnel's options
 * (SO_MARK 1337, SO_REUSEPORT, IP_TRANSPARENT) on 15001/15006/15008 in that netns. Every claim is
 * checked on the path: which socket accepted the connection and with which local address (the
 * original destination), not only that an answer came back.
 */
import * as fs from 'node:fs';
import { execFileSync } from 'node:child_process';
import { BpfLink, BpfObject, MessageSocket, bpfObjectPath, netnsCookie, netnsListen, type ReceivedMessage } from '@shunt/libbpf';
import { Netlink } from '@shunt/netlink';
import { Testbed } from '@shunt/testbed';
import type { MeshPod } from '@shunt/core';
import { TcBackend, LINKS_MISSING } from './backend';
import { readNetnsSetup } from './netns-setup';
import { TcMaps } from './maps';
import { TC_MARK, TC_RULE_PRIORITY, TC_TABLE } from './abi';
import { Service, ZtunnelSockets, ZTUNNEL_MARK, talk } from './test-support/sockets';
import { meshPod, netnsSnapshot, nodeContext, tcxPrograms } from './test-support/env';

const APP_PORT = 8080; // the peer's service
const AMB_PORT = 9090; // the ambient pod's own service
const PROBE_V4 = '169.254.7.127';
const PROBE_V6 = 'fd16:9254:7127:1337:ffff:ffff:ffff:ffff';

describe('tc backend: tcx + sk_assign to ztunnel sockets inside the pod netns', () => {
  let tb: Testbed;
  let bpffsRoot = '';
  let backend: TcBackend;
  let amb: MeshPod;
  let z: ZtunnelSockets;
  const peerSvc = new Service('peer-app');
  const ambSvc = new Service('amb-app');
  const plainSvc = new Service('plain-app');
  let pristine = '';

  beforeAll(async () => {
    tb = await Testbed.create({ pods: [{ name: 'amb', mesh: 'ambient' }, { name: 'peer' }, { name: 'plain' }, { name: 'amb2', mesh: 'ambient' }] });
    bpffsRoot = `/sys/fs/bpf/${tb.prefix}-tc`;
    fs.mkdirSync(bpffsRoot, { recursive: true });
    tb.track('tc pins', async () => fs.rmSync(bpffsRoot, { recursive: true, force: true }));
    for (const f of [4, 6] as const) {
      await peerSvc.listen({ netns: tb.pod('peer').netnsPath, family: f, v6Only: f === 6, reuseAddr: true, bind: { port: APP_PORT } });
      await ambSvc.listen({ netns: tb.pod('amb').netnsPath, family: f, v6Only: f === 6, reuseAddr: true, bind: { port: AMB_PORT } });
      await plainSvc.listen({ netns: tb.pod('plain').netnsPath, family: f, v6Only: f === 6, reuseAddr: true, bind: { port: AMB_PORT } });
    }
    pristine = netnsSnapshot(tb.pod('amb').netnsPath);
    z = await ZtunnelSockets.open(tb.pod('amb').netnsPath);
    amb = meshPod(tb, 'amb');
    backend = new TcBackend();
    await backend.start(nodeContext(bpffsRoot));
    await backend.enroll(amb);
  }, 60_000);

  afterAll(async () => {
    await backend?.stop({ cleanup: true }).catch(() => undefined);
    await z?.close();
    await Promise.all([peerSvc.close(), ambSvc.close(), plainSvc.close()]);
    await tb?.dispose();
  }, 60_000);

  const counters = async (): Promise<Record<string, number>> => (await backend.observe()).counters;
  const delta = (a: Record<string, number>, b: Record<string, number>, k: string): number => (b[k] ?? 0) - (a[k] ?? 0);

  test.each([4, 6] as const)('outbound v%i: the app connect to another pod lands on 15001 with the original destination as local address', async (family) => {
    const peer = tb.pod('peer');
    const dst = family === 4 ? peer.ipv4 : peer.ipv6;
    const ambIp = family === 4 ? tb.pod('amb').ipv4 : tb.pod('amb').ipv6;
    const before = peerSvc.accepted.length;
    const c0 = await counters();
    const r = await talk({ netns: amb.netnsPath!, family, to: { address: dst, port: APP_PORT } });
    expect(r.reply).toBe('ztunnel-15001');
    const got = z.outbound.accepted.at(-1)!;
    expect(got.listener).toBe(`ztunnel-15001/${family}`);
    expect(got.local).toEqual({ address: dst, port: APP_PORT });
    expect(got.peer).toEqual({ address: ambIp, port: r.local.port });
    expect(peerSvc.accepted.length).toBe(before); // never reached the peer directly
    const c1 = await counters();
    expect(delta(c0, c1, 'outbound_hairpinned_new')).toBeGreaterThanOrEqual(1);
    expect(delta(c0, c1, 'outbound_to_listener')).toBeGreaterThanOrEqual(1);
    expect(delta(c0, c1, 'outbound_to_established')).toBeGreaterThanOrEqual(1);
  });

  test.each([4, 6] as const)('inbound v%i: a connection to the pod lands on 15006 with the pod address:port as local address', async (family) => {
    const ambIp = family === 4 ? tb.pod('amb').ipv4 : tb.pod('amb').ipv6;
    const peerIp = family === 4 ? tb.pod('peer').ipv4 : tb.pod('peer').ipv6;
    const before = ambSvc.accepted.length;
    const r = await talk({ netns: tb.pod('peer').netnsPath, family, to: { address: ambIp, port: AMB_PORT } });
    expect(r.reply).toBe('ztunnel-15006');
    const got = z.inbound.accepted.at(-1)!;
    expect(got.listener).toBe(`ztunnel-15006/${family}`);
    expect(got.local).toEqual({ address: ambIp, port: AMB_PORT });
    expect(got.peer).toEqual({ address: peerIp, port: r.local.port });
    expect(ambSvc.accepted.length).toBe(before);
  });

  test.each([4, 6] as const)('HBONE v%i: inbound to 15008 is not captured (reaches the 15008 listener itself)', async (family) => {
    const ambIp = family === 4 ? tb.pod('amb').ipv4 : tb.pod('amb').ipv6;
    const inboundBefore = z.inbound.accepted.length;
    const c0 = await counters();
    const r = await talk({ netns: tb.pod('peer').netnsPath, family, to: { address: ambIp, port: 15008 } });
    expect(r.reply).toBe('ztunnel-15008');
    expect(z.tunnel.accepted.at(-1)!.local).toEqual({ address: ambIp, port: 15008 });
    expect(z.inbound.accepted.length).toBe(inboundBefore);
    expect(delta(c0, await counters(), 'inbound_tunnel_passed')).toBeGreaterThanOrEqual(1);
  });

  test.each([4, 6] as const)("ztunnel's own v%i connections (mark 1337) are not looped: they reach the peer", async (family) => {
    const dst = family === 4 ? tb.pod('peer').ipv4 : tb.pod('peer').ipv6;
    const outBefore = z.outbound.accepted.length;
    const c0 = await counters();
    const r = await talk({ netns: amb.netnsPath!, family, mark: ZTUNNEL_MARK, to: { address: dst, port: APP_PORT } });
    expect(r.reply).toBe('peer-app');
    expect(z.outbound.accepted.length).toBe(outBefore);
    expect(delta(c0, await counters(), 'outbound_proxy_own')).toBeGreaterThanOrEqual(1);
  });

  test.each([4, 6] as const)(
    "replies to ztunnel's spoofed-source v%i connection (IP_TRANSPARENT, the client's address) come back to ztunnel",
    async (family) => {
      const ambIp = family === 4 ? tb.pod('amb').ipv4 : tb.pod('amb').ipv6;
      const client = family === 4 ? tb.pod('peer').ipv4 : tb.pod('peer').ipv6;
      const c0 = await counters();
      const r = await talk({
        netns: amb.netnsPath!,
        family,
        mark: ZTUNNEL_MARK,
        transparent: true,
        bind: { address: client },
        to: { address: ambIp, port: AMB_PORT },
      });
      expect(r.reply).toBe('amb-app');
      expect(r.local.address).toBe(client);
      const seen = ambSvc.accepted.at(-1)!;
      expect(seen.peer).toEqual({ address: client, port: r.local.port });
      const c1 = await counters();
      // The app's SYN-ACK and later segments went out of eth0 and were hairpinned back.
      expect(delta(c0, c1, 'outbound_hairpinned_flow')).toBeGreaterThanOrEqual(2);
    },
  );

  test.each([
    [4, PROBE_V4, 32],
    [6, PROBE_V6, 128],
  ] as const)('the kubelet probe source is exempt (v%i): it reaches the app, not 15006', async (family, probe, len) => {
    const node = tb.node('node0');
    const nl = Netlink.at(node.netnsPath);
    await nl.addAddress(node.bridge, `${probe}/${len}`, { nodad: true });
    try {
      const ambIp = family === 4 ? tb.pod('amb').ipv4 : tb.pod('amb').ipv6;
      const c0 = await counters();
      const r = await talk({ netns: node.netnsPath, family, bind: { address: probe }, to: { address: ambIp, port: AMB_PORT } });
      expect(r.reply).toBe('amb-app');
      expect(ambSvc.accepted.at(-1)!.peer.address).toBe(probe);
      expect(delta(c0, await counters(), 'inbound_probe_exempt')).toBeGreaterThanOrEqual(1);
    } finally {
      await nl.deleteAddress(node.bridge, `${probe}/${len}`);
    }
  });

  test("ztunnel's dual-stack [::] listeners take both families (v4 as v4-mapped), with the original destinations", async () => {
    const pod = tb.pod('amb2');
    const z2 = await ZtunnelSockets.open(pod.netnsPath, ['outbound', 'inbound'], { dualStack: true });
    const svc = new Service('amb2-app');
    try {
      await backend.enroll(meshPod(tb, 'amb2'));
      for (const family of [4, 6] as const) {
        const peerIp = family === 4 ? tb.pod('peer').ipv4 : tb.pod('peer').ipv6;
        const own = family === 4 ? pod.ipv4 : pod.ipv6;
        const out = await talk({ netns: pod.netnsPath, family, to: { address: peerIp, port: APP_PORT } });
        expect(out.reply).toBe('ztunnel-15001');
        expect(z2.outbound.accepted.at(-1)).toMatchObject({ listener: 'ztunnel-15001/6', local: { address: peerIp, port: APP_PORT } });
        const inb = await talk({ netns: tb.pod('peer').netnsPath, family, to: { address: own, port: AMB_PORT } });
        expect(inb.reply).toBe('ztunnel-15006');
        expect(z2.inbound.accepted.at(-1)).toMatchObject({ listener: 'ztunnel-15006/6', local: { address: own, port: AMB_PORT } });
      }
    } finally {
      await backend.unenroll(meshPod(tb, 'amb2'));
      await z2.close();
      await svc.close();
    }
    expect(tcxPrograms(pod.netnsPath)).toEqual({ ingress: [], egress: [] });
  });

  // The destination once off-node (not enrolled), once an enrolled pod of this node: sk_lookup
  // cannot tell a hairpinned SYN in the sender's netns from an inbound one in the receiver's by
  // addresses (the bench's same-node pods stalled 1 s per collision before the handoff).
  test.each([
    ['a non-mesh peer', 'peer'],
    ['an enrolled pod of the same node', 'amb2'],
  ])("a new app connection on the 4-tuple of one whose ztunnel side is in TIME_WAIT still reaches ztunnel (TIME_WAIT handoff to sk_lookup), destination %s", async (_what, dst) => {
    if (dst === 'amb2') await backend.enroll(meshPod(tb, 'amb2'));
    try {
      const to = { address: tb.pod(dst).ipv4, port: APP_PORT };
      // ztunnel-15001 answers and closes first: its accepted socket (same 4-tuple) enters TIME_WAIT.
      const first = await talk({ netns: amb.netnsPath!, family: 4, to });
      expect(first.reply).toBe('ztunnel-15001');
      const c0 = await counters();
      const again = await talk({ netns: amb.netnsPath!, family: 4, reuseAddr: true, bind: { port: first.local.port }, to, timeoutMs: 3000 });
      expect(again.reply).toBe('ztunnel-15001');
      expect(again.local.port).toBe(first.local.port);
      expect(z.outbound.accepted.at(-1)!.local).toEqual(to);
      const c1 = await counters();
      expect(delta(c0, c1, 'timewait_collision')).toBeGreaterThanOrEqual(1);
      expect(delta(c0, c1, 'timewait_steered')).toBeGreaterThanOrEqual(1);
    } finally {
      if (dst === 'amb2') await backend.unenroll(meshPod(tb, 'amb2'));
    }
  });

  test('an inbound connection on the 4-tuple of one whose ztunnel (15006) side is in TIME_WAIT reaches ztunnel again, never the app', async () => {
    const to = { address: tb.pod('amb').ipv4, port: AMB_PORT };
    const peer = tb.pod('peer').netnsPath;
    const first = await talk({ netns: peer, family: 4, to });
    expect(first.reply).toBe('ztunnel-15006'); // it closes first: TIME_WAIT in the pod netns
    const appBefore = ambSvc.accepted.length;
    const c0 = await counters();
    const again = await talk({ netns: peer, family: 4, reuseAddr: true, bind: { port: first.local.port }, to, timeoutMs: 3000 });
    expect(again.reply).toBe('ztunnel-15006');
    expect(again.local.port).toBe(first.local.port);
    expect(z.inbound.accepted.at(-1)!.local).toEqual(to);
    expect(ambSvc.accepted.length).toBe(appBefore);
    const c1 = await counters();
    expect(delta(c0, c1, 'timewait_collision')).toBeGreaterThanOrEqual(1);
    expect(delta(c0, c1, 'timewait_steered')).toBeGreaterThanOrEqual(1);
  });

  test('a pod whose netns is gone (deleted before its unenroll) unenrolls cleanly; observe() reports its links defunct until then', async () => {
    await tb.addPod({ name: 'gone', mesh: 'ambient' });
    const gone = meshPod(tb, 'gone');
    await backend.enroll(gone);
    const cookie = (await backend.observe()).pods.find((p) => p.uid === gone.uid)!.detail!.netnsCookie as string;
    await tb.removePod('gone');
    // The kernel tears a netns down asynchronously: poll (bounded) until its links go defunct.
    let fp = '';
    for (let i = 0; i < 100 && !fp.endsWith(LINKS_MISSING); i++) {
      fp = (await backend.observe()).pods.find((p) => p.uid === gone.uid)!.fingerprint;
      if (!fp.endsWith(LINKS_MISSING)) await new Promise((r) => setTimeout(r, 50));
    }
    expect(fp).toBe(backend.fingerprint(gone) + LINKS_MISSING);
    await backend.unenroll(gone);
    expect((await backend.observe()).pods.map((p) => p.uid)).toEqual([amb.uid]);
    expect(fs.existsSync(`${backend.pinDir}/netns/${cookie}`)).toBe(false);
  });

  test('fail closed before ztunnel listens: captured connections are dropped and counted, never delivered around it', async () => {
    const pod = tb.pod('amb2');
    const svc = new Service('amb2-app');
    await svc.listen({ netns: pod.netnsPath, family: 4, reuseAddr: true, bind: { port: AMB_PORT } });
    const peerBefore = peerSvc.accepted.length;
    try {
      await backend.enroll(meshPod(tb, 'amb2')); // no ztunnel sockets in amb2
      const c0 = await counters();
      await expect(talk({ netns: pod.netnsPath, family: 4, to: { address: tb.pod('peer').ipv4, port: APP_PORT }, timeoutMs: 1200 })).rejects.toThrow(/ETIMEDOUT|no answer/);
      await expect(talk({ netns: tb.pod('peer').netnsPath, family: 4, to: { address: pod.ipv4, port: AMB_PORT }, timeoutMs: 1200 })).rejects.toThrow(/ETIMEDOUT|no answer/);
      const c1 = await counters();
      expect(delta(c0, c1, 'outbound_no_listener')).toBeGreaterThanOrEqual(1);
      expect(delta(c0, c1, 'inbound_no_listener')).toBeGreaterThanOrEqual(1);
      expect(peerSvc.accepted.length).toBe(peerBefore); // not around ztunnel
      expect(svc.accepted).toEqual([]);
      // ztunnel arrives: the next connection is captured (no re-enroll needed).
      const z2 = await ZtunnelSockets.open(pod.netnsPath, ['outbound']);
      try {
        expect((await talk({ netns: pod.netnsPath, family: 4, to: { address: tb.pod('peer').ipv4, port: APP_PORT } })).reply).toBe('ztunnel-15001');
      } finally {
        await z2.close();
      }
    } finally {
      await backend.unenroll(meshPod(tb, 'amb2'));
      await svc.close();
    }
  });

  test.each([4, 6] as const)('DNS capture v%i (proxy.dnsPort): a query to any :53 reaches ztunnel\'s loopback DNS socket, the reply comes from the server asked', async (family) => {
    const pod = tb.pod('amb2');
    const server = family === 4 ? tb.pod('peer').ipv4 : tb.pod('peer').ipv6;
    const own = family === 4 ? pod.ipv4 : pod.ipv6;
    const socks: MessageSocket[] = [];
    const udp = (fd: number): MessageSocket => {
      const m = MessageSocket.fromFd(fd, 'datagram');
      socks.push(m);
      return m;
    };
    const seenByZt: ReceivedMessage[] = [];
    const seenByReal: ReceivedMessage[] = [];
    try {
      // ztunnel's DNS socket (loopback, mark 1337) answers "zt:<query>"; the real server "real".
      const zt = udp(netnsListen({ netns: pod.netnsPath, family, protocol: 'udp', mark: ZTUNNEL_MARK, reuseAddr: true, bind: { address: family === 4 ? '127.0.0.1' : '::1', port: 15053 } }));
      zt.on('message', (m: ReceivedMessage) => {
        seenByZt.push(m);
        zt.send(Buffer.from(`zt:${m.data.toString()}`), [], m.from);
      });
      const real = udp(netnsListen({ netns: tb.pod('peer').netnsPath, family, protocol: 'udp', reuseAddr: true, v6Only: family === 6, bind: { port: 53 } }));
      real.on('message', (m: ReceivedMessage) => {
        seenByReal.push(m);
        real.send(Buffer.from('real'), [], m.from);
      });
      // The app's resolver socket; the answer must come from server:53, the address it asked.
      const ask = async (netns: string): Promise<string> => {
        const app = udp(netnsListen({ netns, family, protocol: 'udp', v6Only: family === 6, bind: { port: 0 } }));
        const got = new Promise<string>((resolve, reject) => {
          const t = setTimeout(() => reject(new Error('no DNS answer within 3 s')), 3000);
          app.once('message', (m: ReceivedMessage) => {
            clearTimeout(t);
            if (m.from?.address !== server || m.from?.port !== 53) reject(new Error(`answer from ${JSON.stringify(m.from)}, not ${server}:53`));
            else resolve(m.data.toString());
          });
        });
        app.send(Buffer.from('q'), [], { family, address: server, port: 53 });
        return got;
      };
      await backend.enroll({ ...meshPod(tb, 'amb2'), proxy: { ...meshPod(tb, 'amb2').proxy, dnsPort: 15053 } });
      const c0 = await counters();
      expect(await ask(pod.netnsPath)).toBe('zt:q');
      expect(seenByZt.at(-1)!.from).toMatchObject({ address: own });
      expect(seenByReal).toEqual([]);
      const c1 = await counters();
      for (const k of ['dns_captured', 'dns_to_proxy', 'dns_replies_rewritten']) expect(delta(c0, c1, k)).toBeGreaterThanOrEqual(1);
      expect(tcxPrograms(pod.netnsPath, 'lo').egress).toEqual(['shunt_tc_dns_reply']);
      // The ambient pod without DNS capture asks the real server.
      expect(await ask(amb.netnsPath!)).toBe('real');
      // DNS capture turned off: the lo link goes, queries go to the server again.
      await backend.enroll(meshPod(tb, 'amb2'));
      await backend.settled(); // the DNS link no longer needed is detached after enroll returned
      expect(tcxPrograms(pod.netnsPath, 'lo').egress).toEqual([]);
      expect(await ask(pod.netnsPath)).toBe('real');
    } finally {
      for (const m of socks) m.close();
      await backend.unenroll(meshPod(tb, 'amb2'));
    }
    expect(tcxPrograms(pod.netnsPath, 'lo')).toEqual({ ingress: [], egress: [] });
  });

  test.each([4, 6] as const)("DNS over TCP v%i (proxy.dnsPort): a connection to any :53 reaches ztunnel's loopback TCP DNS listener, the server asked as its local address; without DNS capture it is an ordinary outbound connection", async (family) => {
    const pod = tb.pod('amb2');
    const server = family === 4 ? tb.pod('peer').ipv4 : tb.pod('peer').ipv6;
    const dnsTcp = new Service('zt-dns-tcp');
    const z2 = await ZtunnelSockets.open(pod.netnsPath, ['outbound']);
    try {
      // ztunnel's TCP DNS listener: loopback, mark 1337, transparent like its other listeners.
      await dnsTcp.listen({ netns: pod.netnsPath, family, mark: ZTUNNEL_MARK, reuseAddr: true, reusePort: true, transparent: true, v6Only: family === 6, bind: { address: family === 4 ? '127.0.0.1' : '::1', port: 15053 } });
      await backend.enroll({ ...meshPod(tb, 'amb2'), proxy: { ...meshPod(tb, 'amb2').proxy, dnsPort: 15053 } });
      const c0 = await counters();
      const r = await talk({ netns: pod.netnsPath, family, to: { address: server, port: 53 } });
      expect(r.reply).toBe('zt-dns-tcp');
      expect(dnsTcp.accepted.at(-1)!.local).toEqual({ address: server, port: 53 });
      expect(delta(c0, await counters(), 'dns_tcp_to_proxy')).toBeGreaterThanOrEqual(1);
      // DNS capture off: TCP :53 is an outbound connection like any other (to ztunnel's 15001).
      await backend.enroll(meshPod(tb, 'amb2'));
      expect((await talk({ netns: pod.netnsPath, family, to: { address: server, port: 53 } })).reply).toBe('ztunnel-15001');
    } finally {
      await dnsTcp.close();
      await z2.close();
      await backend.unenroll(meshPod(tb, 'amb2'));
    }
  });

  test('a pod that is not enrolled is untouched; a sidecar pod is refused with a reason naming it', async () => {
    const plain = tb.pod('plain');
    const before = peerSvc.accepted.length;
    const r = await talk({ netns: plain.netnsPath, family: 4, to: { address: tb.pod('peer').ipv4, port: APP_PORT } });
    expect(r.reply).toBe('peer-app');
    expect(peerSvc.accepted.length).toBe(before + 1);
    expect(tcxPrograms(plain.netnsPath)).toEqual({ ingress: [], egress: [] });
    const sidecar = { ...meshPod(tb, 'plain'), membership: 'sidecar' as const };
    await expect(backend.enroll(sidecar)).rejects.toThrow(/pod default\/plain \(uid .*\): membership="sidecar": the tc backend redirects ambient pods only/);
    expect(tcxPrograms(plain.netnsPath)).toEqual({ ingress: [], egress: [] });
  });

  test('observe() reads links and counters back; a second start (restart) adopts the pinned links and traffic keeps flowing', async () => {
    const st = await backend.observe();
    const p = st.pods.find((x) => x.uid === amb.uid)!;
    expect(p.fingerprint).toBe(backend.fingerprint(amb));
    expect(p.detail).toMatchObject({ netnsPath: amb.netnsPath, ifname: 'eth0', links: { ingress: { live: true }, egress: { live: true } } });
    expect(tcxPrograms(amb.netnsPath!)).toEqual({ ingress: ['shunt_tc_ingress'], egress: ['shunt_tc_egress'] });

    await backend.stop({ cleanup: false }); // the agent goes away: redirect stays
    const r = await talk({ netns: amb.netnsPath!, family: 4, to: { address: tb.pod('peer').ipv4, port: APP_PORT } });
    expect(r.reply).toBe('ztunnel-15001');

    backend = new TcBackend();
    await backend.start(nodeContext(bpffsRoot));
    const again = await backend.observe();
    expect(again.pods.map((x) => [x.uid, x.fingerprint])).toEqual([[amb.uid, backend.fingerprint(amb)]]);
    await backend.enroll(amb); // idempotent: nothing re-attached
    expect(tcxPrograms(amb.netnsPath!)).toEqual({ ingress: ['shunt_tc_ingress'], egress: ['shunt_tc_egress'] });
    expect(again.counters.outbound_to_listener).toBeGreaterThanOrEqual(3);

    const ro = new TcBackend();
    await ro.start(nodeContext(bpffsRoot, { readOnly: true }));
    const seen = await ro.observe();
    expect(seen.pods.map((x) => x.fingerprint)).toEqual([backend.fingerprint(amb)]);
    await expect(ro.enroll(amb)).rejects.toThrow(/read-only/);
    await ro.stop({ cleanup: false });
    expect(tcxPrograms(amb.netnsPath!).ingress).toEqual(['shunt_tc_ingress']);
  });

  test('a link removed behind our back is drift: observe() says so and enroll repairs it', async () => {
    const pin = `${backend.pinDir}/netns/${(await backend.observe()).pods[0]!.detail!.netnsCookie as string}/egress`;
    const { BpfLink } = await import('@shunt/libbpf');
    BpfLink.fromPin(pin).detach();
    const st = await backend.observe();
    expect(st.pods[0]!.fingerprint).toBe(backend.fingerprint(amb) + LINKS_MISSING);
    await backend.enroll(amb);
    expect((await backend.observe()).pods[0]!.fingerprint).toBe(backend.fingerprint(amb));
    expect(tcxPrograms(amb.netnsPath!).egress).toEqual(['shunt_tc_egress']);
  });

  test("a CNI's tcx programs attached before ours keep their place and see every packet they saw before", async () => {
    await backend.unenroll(amb);
    const cni = BpfObject.open(bpfObjectPath('tc/test/cni_standin.bpf.o'));
    const links: BpfLink[] = [];
    try {
      const port = Buffer.alloc(4);
      port.writeUInt32LE(APP_PORT);
      cni.map('cni_cfg').update(Buffer.alloc(4), port);
      links.push(cni.program('cni_ingress').attachTc('eth0', 'ingress', { netns: amb.netnsPath!, mode: 'tcx' }));
      links.push(cni.program('cni_egress').attachTc('eth0', 'egress', { netns: amb.netnsPath!, mode: 'tcx' }));
      const seen = (): { ingress: bigint; egress: bigint } => {
        const m = cni.map('cni_seen');
        const k = (i: number): Buffer => Buffer.from([i, 0, 0, 0]);
        return { ingress: m.lookup(k(0))!.readBigUInt64LE(0), egress: m.lookup(k(1))!.readBigUInt64LE(0) };
      };
      const flow = async (): Promise<{ ingress: number; egress: number; reply: string }> => {
        const a = seen();
        const r = await talk({ netns: amb.netnsPath!, family: 4, to: { address: tb.pod('peer').ipv4, port: APP_PORT } });
        await new Promise((res) => setTimeout(res, 200)); // last FIN/ACKs
        const b = seen();
        return { ingress: Number(b.ingress - a.ingress), egress: Number(b.egress - a.egress), reply: r.reply };
      };
      const direct = await flow();
      expect(direct.reply).toBe('peer-app');
      await backend.enroll(amb);
      expect(tcxPrograms(amb.netnsPath!)).toEqual({ ingress: ['cni_ingress', 'shunt_tc_ingress'], egress: ['cni_egress', 'shunt_tc_egress'] });
      const meshed = await flow();
      expect(meshed.reply).toBe('ztunnel-15001');
      // Every segment the app sends still passes the CNI's egress program first (then ours
      // hairpins it, and the CNI's ingress program sees it once more on the way in).
      expect(meshed.egress).toBeGreaterThanOrEqual(direct.egress);
      expect(meshed.ingress).toBeGreaterThanOrEqual(meshed.egress);
      await backend.unenroll(amb);
      expect(tcxPrograms(amb.netnsPath!)).toEqual({ ingress: ['cni_ingress'], egress: ['cni_egress'] });
      expect((await flow()).reply).toBe('peer-app');
    } finally {
      for (const l of links) l.detach();
      cni.close();
      await backend.enroll(amb);
    }
  });

  test('enroll is all-or-nothing: a failure at the last step leaves the netns as found', async () => {
    await backend.unenroll(amb);
    expect(netnsSnapshot(amb.netnsPath!)).toBe(pristine);
    const cookie = (await import('@shunt/libbpf')).netnsCookie(amb.netnsPath!);
    const blocker = `${backend.pinDir}/netns/${cookie}/egress`;
    fs.mkdirSync(blocker, { recursive: true }); // the egress link cannot be pinned there
    try {
      await expect(backend.enroll(amb)).rejects.toThrow(/pin/);
    } finally {
      fs.rmSync(`${backend.pinDir}/netns/${cookie}`, { recursive: true, force: true });
    }
    expect(tcxPrograms(amb.netnsPath!)).toEqual({ ingress: [], egress: [] });
    expect(netnsSnapshot(amb.netnsPath!)).toBe(pristine);
    expect((await backend.observe()).pods).toEqual([]);
    const r = await talk({ netns: amb.netnsPath!, family: 4, to: { address: tb.pod('peer').ipv4, port: APP_PORT } });
    expect(r.reply).toBe('peer-app');
    await backend.enroll(amb);
  });

  test('unenroll and stop({cleanup: true}) leave no links, rules, routes or sysctls of ours', async () => {
    const netns = amb.netnsPath!;
    expect(netnsSnapshot(netns)).not.toBe(pristine); // enrolled: our rule, routes and accept_local are there
    expect(netnsSnapshot(netns)).toContain(`${TC_RULE_PRIORITY}:`);
    await backend.stop({ cleanup: true });
    expect(tcxPrograms(netns)).toEqual({ ingress: [], egress: [] });
    expect(netnsSnapshot(netns)).toBe(pristine);
    expect(netnsSnapshot(netns)).not.toContain(`table ${TC_TABLE}`);
    expect(fs.existsSync(`${bpffsRoot}/tc`)).toBe(false);
    const r = await talk({ netns, family: 4, to: { address: tb.pod('peer').ipv4, port: APP_PORT } });
    expect(r.reply).toBe('peer-app');
    backend = new TcBackend();
    await backend.start(nodeContext(bpffsRoot));
  });
});

/**
 * Prepared netns (README "Lifecycle"): links attached before the pod's enroll, idle until it.
 * The CNI stand-in programs sit before ours (attached first) and after ours (attached after
 * prepare): the one after sees a packet only if ours passed it on (TCX_NEXT).
 */
describe('tc backend: netns prepared ahead of enroll', () => {
  let tb: Testbed;
  let bpffsRoot = '';
  let backend: TcBackend;
  let pod: MeshPod;
  let z: ZtunnelSockets;
  let pristine = '';
  const peerSvc = new Service('peer-app');
  const appSvc = new Service('prep-app');
  const cni = { before: null as BpfObject | null, after: null as BpfObject | null, links: [] as BpfLink[] };
  /** Enroll's own step log (debug 'tc: enrolled'): attached links, rtnl_lock takers, prepared or not. */
  const enrolled: Array<{ attached: string[]; rtnl: number; prepared: boolean }> = [];
  const ctx = (): ReturnType<typeof nodeContext> => ({
    ...nodeContext(bpffsRoot),
    log: { ...nodeContext(bpffsRoot).log, debug: (o: unknown, msg?: string) => void (msg === 'tc: enrolled' && enrolled.push(o as (typeof enrolled)[number])) },
  });
  /** What prepare() writes besides the links: the inert rule and route, both families; accept_local untouched. */
  const preparedRouting = { rules: { ipv4: true, ipv6: true }, routes: { ipv4: true, ipv6: true }, acceptLocal: 0 };

  beforeAll(async () => {
    tb = await Testbed.create({ pods: [{ name: 'prep', mesh: 'ambient' }, { name: 'peer' }] });
    bpffsRoot = `/sys/fs/bpf/${tb.prefix}-tcprep`;
    fs.mkdirSync(bpffsRoot, { recursive: true });
    tb.track('tc pins', async () => fs.rmSync(bpffsRoot, { recursive: true, force: true }));
    for (const f of [4, 6] as const) {
      await peerSvc.listen({ netns: tb.pod('peer').netnsPath, family: f, v6Only: f === 6, reuseAddr: true, bind: { port: APP_PORT } });
      await appSvc.listen({ netns: tb.pod('prep').netnsPath, family: f, v6Only: f === 6, reuseAddr: true, bind: { port: AMB_PORT } });
    }
    pristine = netnsSnapshot(tb.pod('prep').netnsPath);
    // ztunnel's sockets are there from the start: a prepared netns that captured anything would show it.
    z = await ZtunnelSockets.open(tb.pod('prep').netnsPath);
    pod = meshPod(tb, 'prep');
    const port = Buffer.alloc(4);
    port.writeUInt32LE(APP_PORT);
    cni.before = BpfObject.open(bpfObjectPath('tc/test/cni_standin.bpf.o'));
    cni.before.map('cni_cfg').update(Buffer.alloc(4), port);
    cni.links.push(cni.before.program('cni_ingress').attachTc('eth0', 'ingress', { netns: pod.netnsPath!, mode: 'tcx' }));
    cni.links.push(cni.before.program('cni_egress').attachTc('eth0', 'egress', { netns: pod.netnsPath!, mode: 'tcx' }));
    cni.after = BpfObject.open(bpfObjectPath('tc/test/cni_standin.bpf.o'));
    cni.after.map('cni_cfg').update(Buffer.alloc(4), port);
    backend = new TcBackend();
    await backend.start(ctx());
  }, 60_000);

  afterAll(async () => {
    await backend?.stop({ cleanup: true }).catch(() => undefined);
    for (const l of cni.links) l.detach();
    cni.before?.close();
    cni.after?.close();
    await z?.close();
    await Promise.all([peerSvc.close(), appSvc.close()]);
    await tb?.dispose();
  }, 60_000);

  const counters = async (): Promise<Record<string, number>> => (await backend.observe()).counters;
  const cookie = (): string => netnsCookie(pod.netnsPath!).toString();
  const pinDir = (): string => `${backend.pinDir}/netns/${cookie()}`;
  const seen = (o: BpfObject): { ingress: number; egress: number } => {
    const m = o.map('cni_seen');
    const k = (i: number): Buffer => Buffer.from([i, 0, 0, 0]);
    return { ingress: Number(m.lookup(k(0))!.readBigUInt64LE(0)), egress: Number(m.lookup(k(1))!.readBigUInt64LE(0)) };
  };
  /** Pinned link ids of the netns (what enroll must reuse, not re-attach). */
  const pinnedIds = (): Record<string, number> =>
    Object.fromEntries(fs.readdirSync(pinDir()).sort().map((d) => {
      const l = BpfLink.fromPin(`${pinDir()}/${d}`);
      try {
        return [d, l.info().id];
      } finally {
        l.close();
      }
    }));
  const nonZero = (a: Record<string, number>, b: Record<string, number>): Record<string, number> =>
    Object.fromEntries(Object.keys(b).map((k) => [k, (b[k] ?? 0) - (a[k] ?? 0)]).filter(([, v]) => v !== 0));

  test('a netns without eth0 yet (before CNI ADD) is not prepared: no-interface, nothing attached or pinned', async () => {
    const name = `${tb.prefix}-bare`;
    execFileSync('ip', ['netns', 'add', name]);
    try {
      const r = await backend.prepare(`/var/run/netns/${name}`);
      expect(r.state).toBe('no-interface');
      expect(fs.existsSync(`${backend.pinDir}/netns/${r.cookie}`)).toBe(false);
      expect(backend.preparedNetns()).toEqual([]);
      expect(tcxPrograms(`/var/run/netns/${name}`, 'lo')).toEqual({ ingress: [], egress: [] });
    } finally {
      execFileSync('ip', ['netns', 'del', name]);
    }
  });

  test('prepared, not enrolled: traffic untouched both ways (v4, v6), nothing counted; CNI programs before and after ours see every packet, in place', async () => {
    const flow = async (): Promise<{ before: { ingress: number; egress: number }; after: { ingress: number; egress: number }; replies: string[] }> => {
      const b0 = seen(cni.before!);
      const a0 = seen(cni.after!);
      const replies: string[] = [];
      for (const f of [4, 6] as const) {
        const peer = f === 4 ? tb.pod('peer').ipv4 : tb.pod('peer').ipv6;
        const own = f === 4 ? tb.pod('prep').ipv4 : tb.pod('prep').ipv6;
        replies.push((await talk({ netns: pod.netnsPath!, family: f, to: { address: peer, port: APP_PORT } })).reply);
        replies.push((await talk({ netns: tb.pod('peer').netnsPath, family: f, to: { address: own, port: AMB_PORT } })).reply);
      }
      await new Promise((res) => setTimeout(res, 200)); // last FIN/ACKs
      const b1 = seen(cni.before!);
      const a1 = seen(cni.after!);
      return { before: { ingress: b1.ingress - b0.ingress, egress: b1.egress - b0.egress }, after: { ingress: a1.ingress - a0.ingress, egress: a1.egress - a0.egress }, replies };
    };
    const r = await backend.prepare(pod.netnsPath!);
    expect(r).toEqual({ cookie: cookie(), state: 'prepared' });
    expect(await backend.prepare(pod.netnsPath!)).toEqual({ cookie: cookie(), state: 'adopted' }); // idempotent
    // The CNI's program attached after ours (tail, the kernel's default), as a CNI update would.
    cni.links.push(cni.after!.program('cni_ingress').attachTc('eth0', 'ingress', { netns: pod.netnsPath!, mode: 'tcx' }));
    cni.links.push(cni.after!.program('cni_egress').attachTc('eth0', 'egress', { netns: pod.netnsPath!, mode: 'tcx' }));
    expect(tcxPrograms(pod.netnsPath!)).toEqual({ ingress: ['cni_ingress', 'shunt_tc_ingress', 'cni_ingress'], egress: ['cni_egress', 'shunt_tc_egress', 'cni_egress'] });
    expect(tcxPrograms(pod.netnsPath!, 'lo').egress).toEqual(['shunt_tc_dns_reply']);
    expect(backend.preparedNetns()).toEqual([expect.objectContaining({ cookie: cookie(), netnsPath: pod.netnsPath, adopted: false })]);
    expect((await backend.observe()).pods).toEqual([]); // prepared is not enrolled
    const c0 = await counters();
    const zBefore = z.all().length;
    const f = await flow();
    expect(f.replies).toEqual(['peer-app', 'prep-app', 'peer-app', 'prep-app']);
    expect(z.all().length).toBe(zBefore); // nothing reached ztunnel's sockets
    expect(f.before.egress).toBeGreaterThan(0);
    expect(f.before.ingress).toBeGreaterThan(0);
    // Ours passed every packet on: the program after it saw exactly what the one before saw.
    expect(f.after).toEqual(f.before);
    expect(nonZero(c0, await counters())).toEqual({});
    // The rule and route prepare() wrote are there (inert: nothing carries the mark), accept_local is not changed.
    expect(await readNetnsSetup(pod.netnsPath!, 'eth0')).toEqual(preparedRouting);
    expect(netnsSnapshot(pod.netnsPath!)).not.toBe(pristine);
    // Inert even for an app socket that carries our mark (SO_MARK 0x5a0): the rule takes only
    // packets arriving on eth0 (iif), so its connection is routed out as usual and reaches the peer.
    for (const f of [4, 6] as const) {
      const peer = f === 4 ? tb.pod('peer').ipv4 : tb.pod('peer').ipv6;
      expect((await talk({ netns: pod.netnsPath!, family: f, mark: TC_MARK, to: { address: peer, port: APP_PORT }, timeoutMs: 3000 })).reply).toBe('peer-app');
    }
    expect(z.all().length).toBe(zBefore);
  });

  test('prepared, then enrolled: enroll attaches nothing (same links), redirected from the first connection, same counters as a cold enroll', async () => {
    const ids = pinnedIds();
    expect(Object.keys(ids)).toEqual(['dns', 'egress', 'ingress', 'lookup']);
    const firstConnections = async (): Promise<Record<string, number>> => {
      const c0 = await counters();
      const out = await talk({ netns: pod.netnsPath!, family: 4, to: { address: tb.pod('peer').ipv4, port: APP_PORT } });
      const inb = await talk({ netns: tb.pod('peer').netnsPath, family: 6, to: { address: tb.pod('prep').ipv6, port: AMB_PORT } });
      expect([out.reply, inb.reply]).toEqual(['ztunnel-15001', 'ztunnel-15006']);
      expect(z.outbound.accepted.at(-1)!.local).toEqual({ address: tb.pod('peer').ipv4, port: APP_PORT });
      expect(z.inbound.accepted.at(-1)!.local).toEqual({ address: tb.pod('prep').ipv6, port: AMB_PORT });
      const d = nonZero(c0, await counters());
      return { outbound_hairpinned_new: d.outbound_hairpinned_new ?? 0, outbound_to_listener: d.outbound_to_listener ?? 0, inbound_to_listener: d.inbound_to_listener ?? 0 };
    };
    await backend.enroll(pod); // the pod event
    // Nothing on the warm path takes rtnl_lock: no rule/route write, no tcx link info read, no attach.
    expect(enrolled.at(-1)).toEqual(expect.objectContaining({ attached: [], rtnl: 0, prepared: true }));
    const warm = await firstConnections();
    expect(warm).toEqual({ outbound_hairpinned_new: 1, outbound_to_listener: 1, inbound_to_listener: 1 });
    await backend.settled(); // the DNS link this pod (no DNS capture) does not need: detached after enroll returned
    const { dns: _dns, ...kept } = ids;
    expect(pinnedIds()).toEqual(kept); // the very links prepare() attached
    expect(tcxPrograms(pod.netnsPath!, 'lo').egress).toEqual([]);
    expect(tcxPrograms(pod.netnsPath!)).toEqual({ ingress: ['cni_ingress', 'shunt_tc_ingress', 'cni_ingress'], egress: ['cni_egress', 'shunt_tc_egress', 'cni_egress'] });
    expect(backend.preparedNetns()).toEqual([]); // claimed
    const st = await backend.observe();
    expect(st.pods.map((p) => [p.uid, p.fingerprint])).toEqual([[pod.uid, backend.fingerprint(pod)]]);
    expect(await backend.release(pod.netnsPath!)).toBe('enrolled'); // a claimed netns is the pod's

    // Cold (as before prepare existed): the same connections count the same.
    await backend.unenroll(pod);
    expect(fs.existsSync(pinDir())).toBe(false);
    expect(netnsSnapshot(pod.netnsPath!)).toBe(pristine); // prepare()'s rule and route went with the pod
    await backend.enroll(pod);
    // The control: a cold enroll writes rule and route itself (and attaches).
    expect(enrolled.at(-1)).toEqual(expect.objectContaining({ attached: ['ingress', 'lookup', 'egress'], prepared: false }));
    expect(enrolled.at(-1)!.rtnl).toBeGreaterThan(0);
    expect(await firstConnections()).toEqual(warm);
    await backend.unenroll(pod);
  });

  test('release() and unenroll of a prepared netns, and stop({cleanup: true}), leave the netns as found and no pins', async () => {
    const asFound = (): void => {
      expect(tcxPrograms(pod.netnsPath!)).toEqual({ ingress: ['cni_ingress', 'cni_ingress'], egress: ['cni_egress', 'cni_egress'] });
      expect(tcxPrograms(pod.netnsPath!, 'lo')).toEqual({ ingress: [], egress: [] });
      expect(netnsSnapshot(pod.netnsPath!)).toBe(pristine);
      expect(fs.existsSync(pinDir())).toBe(false);
      expect(backend.preparedNetns()).toEqual([]);
    };
    asFound(); // after the cold unenroll above
    expect((await backend.prepare(pod.netnsPath!)).state).toBe('prepared');
    expect(await backend.release(pod.netnsPath!)).toBe('released');
    asFound();
    expect(await backend.release(pod.netnsPath!)).toBe('unknown');

    expect((await backend.prepare(pod.netnsPath!)).state).toBe('prepared');
    await backend.enroll(pod);
    expect(netnsSnapshot(pod.netnsPath!)).not.toBe(pristine);
    await backend.unenroll(pod);
    await backend.settled();
    asFound();

    expect((await backend.prepare(pod.netnsPath!)).state).toBe('prepared');
    await backend.stop({ cleanup: true });
    expect(fs.existsSync(`${bpffsRoot}/tc`)).toBe(false);
    backend = new TcBackend();
    await backend.start(ctx());
    asFound();
    expect((await talk({ netns: pod.netnsPath!, family: 4, to: { address: tb.pod('peer').ipv4, port: APP_PORT } })).reply).toBe('peer-app');
  });

  test('a restarted backend adopts prepared links (enroll reuses them) or releases them; links of a netns gone meanwhile are dropped at start', async () => {
    expect((await backend.prepare(pod.netnsPath!)).state).toBe('prepared');
    const ids = pinnedIds();
    await backend.stop({ cleanup: false }); // the agent goes away: prepared links stay (pinned)
    expect(tcxPrograms(pod.netnsPath!).ingress).toContain('shunt_tc_ingress');
    backend = new TcBackend();
    await backend.start(ctx());
    // Its record names the netns (path), so the watcher can follow it; rule and route still there.
    expect(backend.preparedNetns()).toEqual([expect.objectContaining({ cookie: cookie(), netnsPath: pod.netnsPath, adopted: true })]);
    expect(await readNetnsSetup(pod.netnsPath!, 'eth0')).toEqual(preparedRouting);
    expect((await backend.prepare(pod.netnsPath!)).state).toBe('adopted');
    await backend.enroll(pod);
    expect(enrolled.at(-1)).toEqual(expect.objectContaining({ attached: [], rtnl: 0, prepared: true }));
    expect((await talk({ netns: pod.netnsPath!, family: 4, to: { address: tb.pod('peer').ipv4, port: APP_PORT } })).reply).toBe('ztunnel-15001');
    await backend.settled();
    const { dns: _dns, ...kept } = ids;
    expect(pinnedIds()).toEqual(kept);
    await backend.unenroll(pod);

    // Adopted, then released by whoever prepares (the agent's watcher when no pod claimed it).
    expect((await backend.prepare(pod.netnsPath!)).state).toBe('prepared');
    await backend.stop({ cleanup: false });
    backend = new TcBackend();
    await backend.start(ctx());
    expect(await backend.release(BigInt(cookie()))).toBe('released');
    expect(tcxPrograms(pod.netnsPath!).ingress).toEqual(['cni_ingress', 'cni_ingress']);
    expect(fs.existsSync(pinDir())).toBe(false);
    expect(netnsSnapshot(pod.netnsPath!)).toBe(pristine); // released by cookie after a restart: the record knew the path

    // A prepared netns deleted while no agent ran: its defunct links are dropped at start.
    const extra = await tb.addPod({ name: 'gone', mesh: 'ambient' });
    const gone = await backend.prepare(extra.netnsPath);
    expect(gone.state).toBe('prepared');
    await backend.stop({ cleanup: false });
    await tb.removePod('gone');
    backend = new TcBackend();
    await backend.start(ctx());
    expect(backend.preparedNetns()).toEqual([]);
    expect(fs.existsSync(`${backend.pinDir}/netns/${gone.cookie}`)).toBe(false);
    const maps = TcMaps.open(`${backend.pinDir}/maps`);
    try {
      expect(maps.readPrepared()).toEqual([]); // its record dropped too
    } finally {
      maps.close();
    }
  });

  test('links prepared on an eth0 that may not be the one any more (ifindex differs) are not trusted: enroll reads their info, keeps live ones, redirected', async () => {
    expect((await backend.prepare(pod.netnsPath!)).state).toBe('prepared');
    const ids = pinnedIds();
    await backend.stop({ cleanup: false });
    // As if the CNI had replaced eth0 after prepare(): the record's ifindex is not eth0's.
    const maps = TcMaps.open(`${bpffsRoot}/tc/maps`);
    try {
      const [rec] = maps.readPrepared();
      expect(rec).toBeDefined();
      maps.writePrepared(rec!.cookie, { ...rec!.place, ifindex: rec!.place.ifindex + 1000 });
    } finally {
      maps.close();
    }
    backend = new TcBackend();
    await backend.start(ctx());
    await backend.enroll(pod);
    expect(enrolled.at(-1)).toEqual(expect.objectContaining({ prepared: true }));
    expect(enrolled.at(-1)!.rtnl).toBeGreaterThan(0); // it read the links' info instead of trusting the record
    expect((await talk({ netns: pod.netnsPath!, family: 4, to: { address: tb.pod('peer').ipv4, port: APP_PORT } })).reply).toBe('ztunnel-15001');
    await backend.settled();
    expect(pinnedIds().ingress).toBe(ids.ingress); // live links are kept (their info says so), only the check differs
    await backend.unenroll(pod);
    await backend.settled();
    expect(netnsSnapshot(pod.netnsPath!)).toBe(pristine);
  });

  test('an enroll of a prepared netns that fails puts the prepared record back: still prepared (links, rule, route), then released as found', async () => {
    expect((await backend.prepare(pod.netnsPath!, { dns: false })).state).toBe('prepared');
    const ids = pinnedIds();
    const blocker = `${pinDir()}/dns`;
    fs.mkdirSync(blocker, { recursive: true }); // a DNS pod needs the DNS link: its pin cannot be made
    try {
      await expect(backend.enroll({ ...pod, proxy: { ...pod.proxy, dnsPort: 15053 } })).rejects.toThrow(/pin/);
    } finally {
      fs.rmSync(blocker, { recursive: true, force: true });
    }
    expect((await backend.observe()).pods).toEqual([]);
    expect(backend.preparedNetns()).toEqual([expect.objectContaining({ cookie: cookie(), netnsPath: pod.netnsPath })]);
    expect(pinnedIds()).toEqual(ids);
    expect(await readNetnsSetup(pod.netnsPath!, 'eth0')).toEqual(preparedRouting); // accept_local restored too
    const maps = TcMaps.open(`${backend.pinDir}/maps`);
    try {
      expect(maps.readPrepared().map((r) => r.cookie.toString())).toEqual([cookie()]);
    } finally {
      maps.close();
    }
    expect((await talk({ netns: pod.netnsPath!, family: 4, to: { address: tb.pod('peer').ipv4, port: APP_PORT } })).reply).toBe('peer-app');
    expect(await backend.release(pod.netnsPath!)).toBe('released');
    expect(netnsSnapshot(pod.netnsPath!)).toBe(pristine);
  });

  test('prepare and enroll of one netns at once (the netns watcher racing the pod event) take turns: one set of links, redirected', async () => {
    // Attached now, both CNI programs being there: ours last.
    const ours = { ingress: ['cni_ingress', 'cni_ingress', 'shunt_tc_ingress'], egress: ['cni_egress', 'cni_egress', 'shunt_tc_egress'] };
    const [first] = await Promise.all([backend.prepare(pod.netnsPath!), backend.enroll(pod)]);
    expect(first.state).toBe('prepared');
    expect(tcxPrograms(pod.netnsPath!)).toEqual(ours);
    expect((await talk({ netns: pod.netnsPath!, family: 4, to: { address: tb.pod('peer').ipv4, port: APP_PORT } })).reply).toBe('ztunnel-15001');
    await backend.unenroll(pod);
    await backend.settled();
    const [, second] = await Promise.all([backend.enroll(pod), backend.prepare(pod.netnsPath!)]);
    expect(second.state).toBe('enrolled');
    expect(tcxPrograms(pod.netnsPath!)).toEqual(ours);
    await backend.unenroll(pod);
    await backend.settled();
    expect(tcxPrograms(pod.netnsPath!)).toEqual({ ingress: ['cni_ingress', 'cni_ingress'], egress: ['cni_egress', 'cni_egress'] });
    expect(tcxPrograms(pod.netnsPath!, 'lo')).toEqual({ ingress: [], egress: [] });
    expect(netnsSnapshot(pod.netnsPath!)).toBe(pristine);
  });
});
