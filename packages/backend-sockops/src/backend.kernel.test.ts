/**
 * Datapath tests against the real kernel: real programs attached to a throwaway cgroup, real
 * connections inside throwaway netns, a stand-in proxy (uid 1337) that reads SO_ORIGINAL_DST.
 *
 *   netns a (pod A: app uid 1000 + proxy uid 1337)  ──veth──  netns s (servers, not meshed)
 *   netns b (pod B: app server + proxy)             ──veth──  netns s
 */
import * as fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import type { MeshPod } from '@shunt/core';
import { BpfLink, BpfMap, netnsCookie } from '@shunt/libbpf';
import { INBOUND_PENDING, SockopsBackend } from './backend';
import { Sandbox, type Helper, type Netns } from './test-support/sandbox';
import { PROXY_UID, sandboxPod } from './test-support/sandbox-pod';

const APP_UID = 1000;
const DNS_PORT = 15053;
const NO_RECORDS = { origByCookie: 0, origByTuple: 0, splicedSockets: 0, splicePeers: 0, dnsSockets: 0 };

function meshPod(name: string, ns: Netns, v4: string, v6: string[], dnsPort?: number): MeshPod {
  return sandboxPod(ns, {
    name,
    namespace: 'test',
    v4,
    v6,
    ...(dnsPort ? { dnsPort } : {}),
    inboundExclude: [15008, 15020, 15021, 15090],
    outbound: { excludePorts: [8081], excludeCidrs: [{ family: 4, address: '198.18.0.3', prefix: 32 }] },
  });
}

interface ClientResult {
  reply?: string;
  remote?: string;
  local?: string;
  error?: string;
}

describe('sockops backend on the real kernel', () => {
  let sb: Sandbox;
  let a: Netns;
  let b: Netns;
  let c: Netns;
  let s: Netns;
  let proxyA: Helper;
  let proxyB: Helper;
  let dnsProxyA: Helper;
  let backend: SockopsBackend;
  let podA: MeshPod;
  let podB: MeshPod;
  let podC: MeshPod;

  const client = async (ns: Netns, host: string, port: number, extra: string[] = []): Promise<ClientResult> =>
    JSON.parse(await sb.run(ns, APP_UID, 'client.js', [host, String(port), ...extra])) as ClientResult;

  /** Live per-connection entries once they stop changing to non-zero (bounded: ~3 s). */
  const settledRecords = async (): Promise<ReturnType<SockopsBackend['liveRecords']>> => {
    let live = backend.liveRecords();
    for (let i = 0; i < 100 && Object.values(live).some((n) => n > 0); i++) {
      await new Promise((r) => setTimeout(r, 30));
      live = backend.liveRecords();
    }
    return live;
  };

  beforeAll(async () => {
    sb = new Sandbox();
    a = sb.addNetns('a');
    b = sb.addNetns('b');
    c = sb.addNetns('c');
    s = sb.addNetns('s');
    sb.link(a, ['198.18.0.1/24', '2001:db8::1/64'], s, ['198.18.0.2/24', '198.18.0.3/24', '2001:db8::2/64'], 'A');
    sb.link(b, ['198.18.1.1/24'], s, ['198.18.1.2/24'], 'B');
    sb.link(c, ['198.18.2.1/24'], s, ['198.18.2.2/24'], 'C');
    await sb.start(s, 0, 'server.js', ['srv', '8080'], { inCgroup: false });
    await sb.start(s, 0, 'server.js', ['srv', '8081'], { inCgroup: false });
    await sb.start(s, 0, 'server.js', ['sink', '9000', 'sink'], { inCgroup: false });
    await sb.start(s, 0, 'dns-responder.js', ['upstream', '53'], { inCgroup: false });
    await sb.start(b, APP_UID, 'server.js', ['appb', '8080'], { inCgroup: true });
    await sb.start(c, APP_UID, 'server.js', ['appc', '8080'], { inCgroup: true });
    await sb.start(c, APP_UID, 'server.js', ['appc', '15020'], { inCgroup: true });
    proxyA = await sb.start(a, PROXY_UID, 'proxy.js', ['15001', '15006']);
    proxyB = await sb.start(b, PROXY_UID, 'proxy.js', ['15001', '15006']);
    dnsProxyA = await sb.start(a, PROXY_UID, 'dns-responder.js', ['proxy', String(DNS_PORT)]);
    podA = meshPod('pod-a', a, '198.18.0.1', ['2001:db8::1'], DNS_PORT);
    podB = meshPod('pod-b', b, '198.18.1.1', []);
    // Pod C is enrolled but its proxy never started: every redirected connect is refused.
    podC = meshPod('pod-c', c, '198.18.2.1', []);
    // The default splice setting (auto: guarded splicing of every captured connection), as the
    // agent runs unless told otherwise; one test turns it off ('with splice none').
    backend = new SockopsBackend();
    await backend.start(sb.node());
    await backend.enroll(podA);
    await backend.enroll(podB);
    // Everything but inbound steering is installed; the missing listener is a retryable error.
    await expect(backend.enroll(podC)).rejects.toThrow(
      `pod test/pod-c (uid uid-pod-c): proxy inbound listener :15006 not found yet in netns ${c.path}`,
    );
  });

  afterAll(async () => {
    await backend?.stop({ cleanup: true }).catch(() => undefined);
    await sb?.dispose();
  });

  it('redirects an IPv4 connect to the proxy, which learns the original destination', async () => {
    const before = proxyA.events.length;
    const r = await client(a, '198.18.0.2', 8080);
    expect(r.reply).toBe('srv|198.18.0.2:8080|hello');
    // The socket is on loopback (to the proxy), yet getpeername() shows what the app asked for.
    expect(r.local).toMatch(/^127\.0\.0\.1:/);
    expect(r.remote).toBe('198.18.0.2:8080');
    const ev = proxyA.events.slice(before);
    expect(ev).toHaveLength(1);
    expect(ev[0]).toMatchObject({ listener: 15001, family: 4, orig: { address: '198.18.0.2', port: 8080 } });
  });

  it('redirects an IPv6 connect and answers IP6T_SO_ORIGINAL_DST', async () => {
    const before = proxyA.events.length;
    const r = await client(a, '2001:db8::2', 8080);
    expect(r.reply).toBe('srv|2001:db8::2:8080|hello');
    expect(r.local).toMatch(/^::1:/);
    expect(r.remote).toBe('2001:db8::2:8080');
    expect(proxyA.events.slice(before)).toEqual([
      expect.objectContaining({ listener: 15001, family: 6, orig: { address: '2001:db8::2', port: 8080 } }),
    ]);
  });

  it('leaves excluded ports, excluded CIDRs and loopback alone', async () => {
    const before = proxyA.events.length;
    expect(await client(a, '198.18.0.2', 8081)).toMatchObject({ reply: 'srv|198.18.0.2:8081|hello', remote: '198.18.0.2:8081' });
    expect(await client(a, '198.18.0.3', 8080)).toMatchObject({ reply: 'srv|198.18.0.3:8080|hello', remote: '198.18.0.3:8080' });
    // Straight to the proxy port on loopback: not redirected, so the kernel's own
    // SO_ORIGINAL_DST answer (no conntrack entry) reaches the proxy unchanged.
    const r = await client(a, '127.0.0.1', 15001);
    expect(r).toMatchObject({ reply: 'NOORIG', remote: '127.0.0.1:15001' });
    const ev = proxyA.events.slice(before);
    expect(ev).toHaveLength(1);
    expect(ev[0]).toMatchObject({ orig: null });
    expect(['ENOENT', 'ENOPROTOOPT']).toContain(ev[0]?.err);
  });

  it('keeps two pods apart when their loopback 4-tuples are identical', async () => {
    const beforeA = proxyA.events.length;
    const beforeB = proxyB.events.length;
    const [ra, rb] = await Promise.all([client(a, '198.18.0.2', 8080, ['0', '40000']), client(b, '198.18.1.2', 8080, ['0', '40000'])]);
    expect(ra).toMatchObject({ reply: 'srv|198.18.0.2:8080|hello', local: '127.0.0.1:40000', remote: '198.18.0.2:8080' });
    expect(rb).toMatchObject({ reply: 'srv|198.18.1.2:8080|hello', local: '127.0.0.1:40000', remote: '198.18.1.2:8080' });
    expect(proxyA.events.slice(beforeA)).toEqual([expect.objectContaining({ orig: { address: '198.18.0.2', port: 8080 } })]);
    expect(proxyB.events.slice(beforeB)).toEqual([expect.objectContaining({ orig: { address: '198.18.1.2', port: 8080 } })]);
  });

  it("sends a same-node caller to the destination pod's inbound port", async () => {
    const before = proxyB.events.length;
    // Caller in netns s is not meshed; pod B's app listens on 8080, its proxy on 15006.
    const r = JSON.parse(await sb.run(s, APP_UID, 'client.js', ['198.18.1.1', '8080'])) as ClientResult;
    // Connected to :15006 underneath; getpeername() shows the port the caller asked for.
    expect(r).toMatchObject({ reply: 'appb|198.18.1.1:8080|hello', remote: '198.18.1.1:8080' });
    expect(proxyB.events.slice(before)).toEqual([
      expect.objectContaining({ listener: 15006, family: 4, orig: { address: '198.18.1.1', port: 8080 } }),
    ]);
  });

  describe('DNS capture (pod A has a DNS port, pod B has none)', () => {
    interface DnsResult {
      reply?: string;
      from?: string;
      query?: string;
      error?: string;
    }
    const dns = async (ns: Netns, uid: number, host: string, mode: 'sendto' | 'connect' | 'tcp'): Promise<DnsResult> =>
      JSON.parse(await sb.run(ns, uid, 'dns-client.js', [host, '53', mode])) as DnsResult;

    it.each([
      ['unconnected UDP (sendmsg4/recvmsg4)', '198.18.0.2', 'sendto', '198.18.0.2:53'],
      ['connected UDP, as glibc does (connect4/recvmsg4)', '198.18.0.2', 'connect', '198.18.0.2:53'],
      ['unconnected UDP over IPv6 (sendmsg6/recvmsg6)', '2001:db8::2', 'sendto', '2001:db8::2:53'],
      ['connected UDP over IPv6 (connect6/recvmsg6)', '2001:db8::2', 'connect', '2001:db8::2:53'],
    ] as const)('%s: the proxy answers, the reply comes from the server asked', async (_label, host, mode, from) => {
      const before = dnsProxyA.events.length;
      const r = await dns(a, APP_UID, host, mode);
      expect(r).toEqual({ reply: `proxy|${r.query}`, from, query: r.query, ...(mode === 'connect' ? { peer: from } : {}) });
      expect(dnsProxyA.events.slice(before)).toEqual([expect.objectContaining({ event: 'query', query: r.query })]);
    });

    it('sends TCP :53 to the proxy DNS port too', async () => {
      const r = await dns(a, APP_UID, '198.18.0.2', 'tcp');
      // Answered by the proxy (reply), the peer shown is the server asked (getpeername4).
      expect(r).toMatchObject({ reply: `proxy|${r.query}`, from: '198.18.0.2:53' });
    });

    it("leaves the proxy's own queries and pods without a DNS port alone", async () => {
      const before = dnsProxyA.events.length;
      const own = await dns(a, PROXY_UID, '198.18.0.2', 'sendto');
      expect(own).toMatchObject({ reply: `upstream|${own.query}`, from: '198.18.0.2:53' });
      const other = await dns(b, APP_UID, '198.18.1.2', 'connect');
      expect(other).toMatchObject({ reply: `upstream|${other.query}`, from: '198.18.1.2:53' });
      expect(dnsProxyA.events.slice(before)).toEqual([]);
    });

    it("with the pod's DNS servers known (capture.dnsServers), only queries to them are captured", async () => {
      await backend.enroll({ ...podA, capture: { dnsServers: { v4: ['198.18.0.2'], v6: [] } } });
      try {
        const before = dnsProxyA.events.length;
        const listed = await dns(a, APP_UID, '198.18.0.2', 'sendto');
        expect(listed).toMatchObject({ reply: `proxy|${listed.query}`, from: '198.18.0.2:53' });
        const tcp = await dns(a, APP_UID, '198.18.0.2', 'tcp');
        expect(tcp).toMatchObject({ reply: `proxy|${tcp.query}` });
        const others: (string | undefined)[] = [];
        for (const [host, mode] of [['198.18.0.3', 'sendto'], ['2001:db8::2', 'sendto'], ['198.18.0.3', 'tcp']] as const) {
          const other = await dns(a, APP_UID, host, mode);
          expect(other).toMatchObject({ reply: `upstream|${other.query}` });
          others.push(other.query);
        }
        const seen = dnsProxyA.events.slice(before).map((e) => (e as { query?: string }).query);
        expect(seen).toContain(listed.query);
        expect(seen.filter((q) => others.includes(q))).toEqual([]);
      } finally {
        await backend.enroll(podA);
      }
    });

    it('forgets a socket once it is released', async () => {
      expect(await settledRecords()).toEqual(NO_RECORDS);
      const c = (await backend.observe()).counters;
      expect(c.dns_redirected).toBeGreaterThanOrEqual(5);
      expect(c.dns_replies_rewritten).toBeGreaterThanOrEqual(4);
    });
  });

  /** Restarts the backend with another splice setting; it adopts the installed state. */
  const restartWith = async (splice?: 'none'): Promise<void> => {
    await backend.stop({ cleanup: false });
    backend = new SockopsBackend(splice ? { splice } : {});
    await backend.start(sb.node());
    expect((await backend.observe()).nodeDetail).toMatchObject({ splice: splice ?? 'all' });
  };

  describe('with splicing on (the default, auto)', () => {
  beforeAll(() => restartWith());

  it('splices app<->proxy sockets: a transfer within the guard\'s queue cap never touches loopback', async () => {
    // 96 KiB: below the guard's cap (4 MiB; at least the peer's sk_rcvbuf = tcp_rmem[1]), so the whole
    // payload is spliced whatever the reader's pace; larger bulk flows move to TCP while the reader
    // lags (splice-safety.e2e.test.ts).
    const n = 96 << 10;
    const c0 = (await backend.observe()).counters;
    const lo0 = sb.loopbackPackets(a);
    const r = await client(a, '198.18.0.2', 9000, [String(n)]);
    const lo1 = sb.loopbackPackets(a);
    expect(r.reply).toBe(`sink|${n}`);
    const c1 = (await backend.observe()).counters;
    expect((c1.sockets_spliced ?? 0) - (c0.sockets_spliced ?? 0)).toBeGreaterThanOrEqual(2);
    expect((c1.bytes_spliced ?? 0) - (c0.bytes_spliced ?? 0)).toBeGreaterThanOrEqual(n);
    expect((c1.splice_tcp_bytes ?? 0) - (c0.splice_tcp_bytes ?? 0)).toBe(0);
    // Handshake and teardown of one loopback connection: a handful of packets, not the payload.
    expect(lo1 - lo0).toBeLessThan(40);
  });

  it('deletes original-destination records and sockhash entries when connections close', async () => {
    // Earlier tests' connections may still be closing; start from a settled map.
    expect(await settledRecords()).toEqual(NO_RECORDS);
    const k0 = (await backend.observe()).counters;
    const released0 = k0.orig_dst_released ?? 0;
    const recorded0 = k0.orig_dst_recorded ?? 0;
    const N = 10;
    const results = await Promise.all([
      // outbound (record on proxy A's accepted socket, both ends spliced)
      ...Array.from({ length: N }, () => client(a, '198.18.0.2', 8080)),
      // same-node inbound: proxy B's accepted socket, then proxy B -> app B (splice-only record)
      ...Array.from({ length: 5 }, () =>
        sb.run(s, APP_UID, 'client.js', ['198.18.1.1', '8080']).then((o) => JSON.parse(o) as ClientResult),
      ),
      // redirected connects that never establish: only a cookie record, released at close
      ...Array.from({ length: 5 }, () => client(c, '198.18.2.2', 8080)),
    ]);
    expect(results.slice(0, N).every((r) => r.reply === 'srv|198.18.0.2:8080|hello')).toBe(true);
    expect(results.slice(N, N + 5).every((r) => r.reply === 'appb|198.18.1.1:8080|hello')).toBe(true);
    expect(results.slice(N + 5).map((r) => r.error)).toEqual(Array(5).fill('ECONNREFUSED'));
    // The proxies close their halves just after the clients exit: wait (bounded) for the last close.
    expect(await settledRecords()).toEqual(NO_RECORDS);
    const k1 = (await backend.observe()).counters;
    const released = (k1.orig_dst_released ?? 0) - released0;
    const recorded = (k1.orig_dst_recorded ?? 0) - recorded0;
    // Established records: N outbound + 5 inbound, plus up to 5 proxy->app splice-only ones (the
    // default short-connection rule skips those, record and all, once the port's connections were
    // short); every one is released, and so are the 5 refused connects' cookie records.
    expect(recorded).toBeGreaterThanOrEqual(N + 5);
    expect(recorded).toBeLessThanOrEqual(N + 10);
    expect(released).toBe(recorded + 5);
  });
  });

  it('does not splice with splice none: a bulk transfer goes over loopback', async () => {
    await restartWith('none');
    try {
      const c0 = (await backend.observe()).counters;
      const lo0 = sb.loopbackPackets(a);
      const r = await client(a, '198.18.0.2', 9000, [String(4 << 20)]);
      expect(r.reply).toBe(`sink|${4 << 20}`);
      expect(sb.loopbackPackets(a) - lo0).toBeGreaterThan(40);
      expect(((await backend.observe()).counters.sockets_spliced ?? 0) - (c0.sockets_spliced ?? 0)).toBe(0);
    } finally {
      await restartWith();
    }
  });

  it('leaves unrelated getsockopt calls as the kernel answered them', async () => {
    const py = fs.existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
    const script = `${__dirname}/test-support/scripts/sockopt.py`;
    const inside = JSON.parse(await sb.runCmd(s, 0, [py, script, '198.18.0.2', '8080'], { inCgroup: true }));
    const outside = JSON.parse(await sb.runCmd(s, 0, [py, script, '198.18.0.2', '8080'], { inCgroup: false }));
    expect(inside).toEqual(outside);
    expect(inside.large).toMatchObject({ rc: 0 });
    expect(inside.large.len).toBeGreaterThan(100);
    const save = (inCgroup: boolean): Promise<string> => sb.runCmd(s, 0, ['iptables-legacy-save', '-t', 'filter'], { inCgroup });
    const strip = (t: string): string => t.replace(/^#.*$/gm, '');
    expect(strip(await save(true))).toBe(strip(await save(false)));
  });

  it('leaves foreign getsockopt calls alone on a socket that has an original-destination record', async () => {
    const d = sb.addNetns('d');
    sb.link(d, ['198.18.3.1/24'], s, ['198.18.3.2/24'], 'D');
    const py = fs.existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
    const proxy = await sb.startArgv(d, PROXY_UID, [py, `${__dirname}/test-support/scripts/foreign-sockopt-proxy.py`, '15001', '15006']);
    const podD = meshPod('pod-d', d, '198.18.3.1', []);
    await backend.enroll(podD);
    try {
      await client(d, '198.18.3.2', 8080).catch(() => undefined); // the stand-in closes without relaying
      const r = (await proxy.event(0, 15_000)) as { orig: Record<string, unknown>; calls: Record<string, { recorded: Record<string, unknown>; unrecorded: Record<string, unknown> }> };
      // Positive control: this socket has a record, and SO_ORIGINAL_DST is answered from it.
      expect(r.orig).toMatchObject({ rc: 0, len: 16, address: '198.18.3.2', port: 8080 });
      for (const [name, { recorded, unrecorded }] of Object.entries(r.calls)) {
        const shape = (x: Record<string, unknown>) => ({ rc: x['rc'], errno: x['errno'], len: x['len'] });
        expect([name, shape(recorded)]).toEqual([name, shape(unrecorded)]);
      }
      expect(r.calls['so_type']!.recorded).toMatchObject({ rc: 0, len: 4, head: '01000000' }); // SOCK_STREAM
      expect(r.calls['tcp_80']!.recorded).toMatchObject({ rc: -1 });
    } finally {
      await backend.unenroll(podD);
    }
  });

  it('stops redirecting at unenroll and redirects the first connect after enroll', async () => {
    await backend.unenroll(podA);
    const before = proxyA.events.length;
    expect(await client(a, '198.18.0.2', 8080)).toMatchObject({ local: expect.stringMatching(/^198\.18\.0\.1:/), remote: '198.18.0.2:8080' });
    expect(proxyA.events.length).toBe(before);
    await backend.enroll(podA);
    expect(await client(a, '198.18.0.2', 8080)).toMatchObject({
      reply: 'srv|198.18.0.2:8080|hello',
      local: expect.stringMatching(/^127\.0\.0\.1:/),
      remote: '198.18.0.2:8080',
    });
    expect(proxyA.events.slice(before)).toEqual([expect.objectContaining({ listener: 15001, orig: { address: '198.18.0.2', port: 8080 } })]);
  });

  it('reports enrolled pods with matching fingerprints and counters', async () => {
    const st = await backend.observe();
    expect(st.nodeReady).toBe(true);
    const byUid = Object.fromEntries(st.pods.map((p) => [p.uid, p]));
    expect(byUid['uid-pod-a']).toMatchObject({ name: 'pod-a', namespace: 'test', fingerprint: backend.fingerprint(podA) });
    expect(byUid['uid-pod-b']).toMatchObject({ name: 'pod-b', fingerprint: backend.fingerprint(podB) });
    expect(st.counters.connects_redirected).toBeGreaterThan(0);
    expect(st.counters.orig_dst_answered).toBeGreaterThan(0);
    expect(st.counters.peer_rewritten).toBeGreaterThan(0);
    // Pod C's proxy never started: enrolled, but its inbound steering is pending (drift).
    expect(byUid['uid-pod-c']).toMatchObject({ fingerprint: backend.fingerprint(podC) + INBOUND_PENDING });
  });

  describe('read-only (shunt status): adopts and reports, changes nothing', () => {
    /** Every pin under dir and every program on the test cgroup: what read-only must leave as it is. */
    const kernelState = (dir: string): string => {
      const pins = fs.existsSync(dir) ? (fs.readdirSync(dir, { recursive: true }) as string[]).sort() : [];
      const progs = execFileSync('bpftool', ['-j', 'cgroup', 'show', sb.cgroupDir], { encoding: 'utf8' });
      return JSON.stringify({ pins, progs: JSON.parse(progs.trim() || '[]') });
    };

    it("reports the live backend's pods, counters and links, and refuses enroll, unenroll and cleanup", async () => {
      const before = kernelState(backend.pinDir);
      const ro = new SockopsBackend();
      await ro.start({ ...sb.node(), readOnly: true });
      try {
        const st = await ro.observe();
        const live = await backend.observe();
        expect(st.nodeReady).toBe(true);
        expect(st.nodeDetail).toMatchObject({ readOnly: true, splice: 'all' });
        expect(st.pods.map((p) => [p.uid, p.fingerprint]).sort()).toEqual(live.pods.map((p) => [p.uid, p.fingerprint]).sort());
        expect(st.counters.connects_redirected).toBeGreaterThan(0);
        await expect(ro.enroll(podA)).rejects.toThrow(/enroll refused: the backend was started read-only/);
        await expect(ro.unenroll(podA)).rejects.toThrow(/unenroll refused: the backend was started read-only/);
        await expect(ro.stop({ cleanup: true })).rejects.toThrow(/cleanup: true\}\) refused: the backend was started read-only/);
      } finally {
        await ro.stop({ cleanup: false });
      }
      expect(kernelState(backend.pinDir)).toBe(before);
      // The writable backend still works after the read-only one let go of its handles.
      expect((await client(a, '198.18.0.2', 8080)).reply).toBe('srv|198.18.0.2:8080|hello');
    });

    it('does not attach a missing link nor create pins where nothing is installed', async () => {
      const empty = `${sb.bpffsRoot}/ro-empty`;
      const ro = new SockopsBackend();
      await ro.start({ ...sb.node(), bpffsRoot: empty, readOnly: true });
      expect(await ro.observe()).toMatchObject({ nodeReady: false, pods: [], counters: {} });
      await ro.stop({ cleanup: false });
      expect(fs.existsSync(empty)).toBe(false);

      // A second installation whose connect4 link was removed behind its back.
      const ctx = { ...sb.node(), bpffsRoot: `${sb.bpffsRoot}/ro-partial` };
      const other = new SockopsBackend();
      await other.start(ctx);
      try {
        await other.stop({ cleanup: false });
        BpfLink.fromPin(`${ctx.bpffsRoot}/sockops/links/shunt_connect4`).detach();
        const before = kernelState(`${ctx.bpffsRoot}/sockops`);
        const ro2 = new SockopsBackend();
        await ro2.start({ ...ctx, readOnly: true });
        const st = await ro2.observe();
        await ro2.stop({ cleanup: false });
        expect(st.nodeReady).toBe(false);
        expect(st.nodeDetail.links).toMatchObject({ shunt_connect4: false, shunt_connect6: true });
        expect(kernelState(`${ctx.bpffsRoot}/sockops`)).toBe(before);
      } finally {
        const cleaner = new SockopsBackend();
        await cleaner.start(ctx); // re-attaches connect4, then removes everything
        await cleaner.stop({ cleanup: true });
      }
    });
  });

  describe('callers from outside the node (not in the cgroup: no connect rewrite), via sk_lookup', () => {
    const remoteClient = async (host: string, port: number): Promise<ClientResult> =>
      JSON.parse(await sb.run(s, APP_UID, 'client.js', [host, String(port)], { inCgroup: false })) as ClientResult;
    const counters = async () => (await backend.observe()).counters;
    const delta = (a: Record<string, number>, b: Record<string, number>, k: string) => (b[k] ?? 0) - (a[k] ?? 0);

    it('reach the proxy, which accepts on the original address and gets it from SO_ORIGINAL_DST', async () => {
      const before = proxyB.events.length;
      const c0 = await counters();
      const r = await remoteClient('198.18.1.1', 8080);
      expect(r).toMatchObject({ reply: 'appb|198.18.1.1:8080|hello', remote: '198.18.1.1:8080' });
      expect(proxyB.events.slice(before)).toEqual([
        expect.objectContaining({ listener: 15006, family: 4, local: '198.18.1.1:8080', orig: { address: '198.18.1.1', port: 8080 } }),
      ]);
      const c1 = await counters();
      expect(delta(c0, c1, 'inbound_steered')).toBe(1);
      expect(delta(c0, c1, 'orig_dst_local_answered')).toBe(1);
    });

    it('are refused on a captured port while the proxy does not listen, and reach never-captured ports', async () => {
      const c0 = await counters();
      expect(await remoteClient('198.18.2.1', 8080)).toEqual({ error: 'ECONNREFUSED' });
      expect(delta(c0, await counters(), 'inbound_no_listener')).toBe(1);
      expect(await remoteClient('198.18.2.1', 15020)).toMatchObject({ reply: 'appc|198.18.2.1:15020|hello' });
    });

    it('reach a proxy started after enroll once enroll is retried, and one restarted after re-enroll', async () => {
      let proxyC = await sb.start(c, PROXY_UID, 'proxy.js', ['15001', '15006']);
      try {
        await backend.enroll(podC); // the reconciler's retry
        expect((await backend.observe()).pods.find((p) => p.uid === 'uid-pod-c')?.fingerprint).toBe(backend.fingerprint(podC));
        expect(await remoteClient('198.18.2.1', 8080)).toMatchObject({ reply: 'appc|198.18.2.1:8080|hello' });
        expect(proxyC.events).toEqual([expect.objectContaining({ listener: 15006, local: '198.18.2.1:8080', orig: { address: '198.18.2.1', port: 8080 } })]);

        // Proxy restart: its listener leaves the sockhash with the socket, observe() reports
        // drift, and the repairing enroll puts the new listener in.
        proxyC.kill();
        let fp = '';
        for (let i = 0; i < 100 && !fp.endsWith(INBOUND_PENDING); i++) {
          await new Promise((r) => setTimeout(r, 20));
          fp = (await backend.observe()).pods.find((p) => p.uid === 'uid-pod-c')?.fingerprint ?? '';
        }
        expect(fp).toBe(backend.fingerprint(podC) + INBOUND_PENDING);
        expect(await remoteClient('198.18.2.1', 8080)).toEqual({ error: 'ECONNREFUSED' });
        proxyC = await sb.start(c, PROXY_UID, 'proxy.js', ['15001', '15006']);
        await backend.enroll(podC);
        expect(await remoteClient('198.18.2.1', 8080)).toMatchObject({ reply: 'appc|198.18.2.1:8080|hello' });
        expect(proxyC.events).toEqual([expect.objectContaining({ listener: 15006, orig: { address: '198.18.2.1', port: 8080 } })]);
      } finally {
        proxyC.kill();
      }
    });
  });

  it('is adopted by a restarted backend, which can also turn splicing on', async () => {
    await backend.stop({ cleanup: false });
    const next = new SockopsBackend({ splice: 'all' });
    backend = next;
    // While no process holds the backend, redirects keep working from the pinned links.
    expect(await client(a, '198.18.0.2', 8080)).toMatchObject({ local: expect.stringMatching(/^127\.0\.0\.1:/) });
    await next.start(sb.node());
    const st = await next.observe();
    expect(st.pods.find((p) => p.uid === 'uid-pod-a')?.fingerprint).toBe(next.fingerprint(podA));
    // Within the guard's queue cap (see the splicing test above), so the whole payload is spliced.
    const n = 96 << 10;
    const lo0 = sb.loopbackPackets(a);
    const r = await client(a, '198.18.0.2', 9000, [String(n)]);
    expect(r.reply).toBe(`sink|${n}`);
    expect(sb.loopbackPackets(a) - lo0).toBeLessThan(40);
  });

  it('a restart after an unenroll killed between its map writes removes what that pod left (pod_by_ip, pod_meta, listeners)', async () => {
    await backend.enroll(podA); // idempotent: enrolled, its proxy listening
    const cookie = netnsCookie(a.path);
    const maps = path.join(backend.pinDir, 'maps');
    const open = (name: string) => BpfMap.fromPin(path.join(maps, name));
    const key = Buffer.alloc(8);
    key.writeBigUInt64LE(cookie);
    const ofA = () => {
      const byIp = open('pod_by_ip');
      const meta = open('pod_meta');
      const lst = open('inbound_listener');
      try {
        return {
          ips: byIp.entries().filter(([, v]) => v.readBigUInt64LE(0) === cookie).length,
          meta: meta.lookup(key) ? 1 : 0,
          listeners: lst.keys().filter((k) => k.readBigUInt64LE(0) === cookie).length,
        };
      } finally {
        byIp.close();
        meta.close();
        lst.close();
      }
    };
    const enrolled = ofA();
    expect(enrolled).toEqual({ ips: podA.ips.v4.length + podA.ips.v6.length, meta: 1, listeners: expect.any(Number) });
    expect(enrolled.listeners).toBeGreaterThan(0);
    // What an agent SIGKILLed right after unenroll's first write (pod_cfg) leaves in the pins.
    const cfg = open('pod_cfg');
    expect(cfg.delete(key)).toBe(true);
    cfg.close();
    await backend.stop({ cleanup: false });
    backend = new SockopsBackend({ splice: 'all' });
    await backend.start(sb.node());
    expect(ofA()).toEqual({ ips: 0, meta: 0, listeners: 0 });
    const pods = (await backend.observe()).pods;
    expect(pods.map((p) => p.uid)).not.toContain('uid-pod-a');
    // The others are untouched, and pod A can be enrolled again.
    expect(pods.find((p) => p.uid === 'uid-pod-b')?.fingerprint).toBe(backend.fingerprint(podB));
    await backend.enroll(podA);
    expect(ofA()).toEqual(enrolled);
  });

  it('removes links and pins on stop({cleanup: true})', async () => {
    const dir = backend.pinDir;
    await backend.stop({ cleanup: true });
    expect(fs.existsSync(dir)).toBe(false);
    const attached = execFileSync('bpftool', ['-j', 'cgroup', 'show', sb.cgroupDir], { encoding: 'utf8' });
    expect(JSON.parse(attached.trim() || '[]')).toEqual([]);
    // No sk_lookup link is left on any pod netns either.
    const inos = new Set([a, b, c].map((ns) => fs.statSync(ns.path).ino));
    const links = JSON.parse(execFileSync('bpftool', ['-j', 'link', 'show'], { encoding: 'utf8' }) || '[]') as Array<{ type: string; netns_ino?: number }>;
    expect(links.filter((l) => l.type === 'netns' && inos.has(l.netns_ino ?? -1))).toEqual([]);
    expect(await client(a, '198.18.0.2', 8080)).toMatchObject({ remote: '198.18.0.2:8080' });
  });
});
