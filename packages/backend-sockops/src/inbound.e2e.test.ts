/**
 * Inbound from another node, end to end on a two-node testbed: the caller sits on node0, where
 * no backend runs (its connects are not rewritten, as on a real other node); the sidecar pods sit
 * on node1, whose cgroup the backend attaches to. Traffic crosses the nodes' routed link and
 * reaches the server pod's eth0, where only the pod netns' sk_lookup link can send it to the
 * HAProxy sidecar (or the IPv6 Node proxy), which must log the original destination.
 */
import { Testbed, type ProxyLogRecord } from '@shunt/testbed';
import { INBOUND_PENDING, SockopsBackend } from './backend';
import { interpretedMeshPod } from './test-support/mesh';
import { testbedBpffs, testbedNodeContext } from './test-support/testbed-node';

const EXCLUDE_INBOUND = 'traffic.sidecar.istio.io/excludeInboundPorts';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const inbound = (since: number) => (r: ProxyLogRecord) => r.at >= since - 1 && r.listener === 'inbound';

describe('inbound from another node via sk_lookup (two-node testbed, HAProxy sidecars)', () => {
  let tb: Testbed;
  let backend: SockopsBackend;
  let bpffsRoot = '';

  const counters = async () => (await backend.observe()).counters;
  const fingerprintOf = async (name: string) => (await backend.observe()).pods.find((p) => p.name === name)?.fingerprint;

  beforeAll(async () => {
    tb = await Testbed.create({
      nodes: 2,
      pods: [
        { name: 'caller', node: 'node0', mesh: 'none' },
        { name: 'server', node: 'node1', mesh: 'sidecar', annotations: { [EXCLUDE_INBOUND]: '9002' } },
        // Its proxy is started by a test, after enroll.
        { name: 'late', node: 'node1', mesh: 'sidecar', sidecar: false },
      ],
    });
    await Promise.all([
      tb.startEchoServer('server', { port: 9000 }),
      tb.startEchoServer('server', { port: 9002 }),
      tb.startEchoServer('late', { port: 9000 }),
    ]);
    bpffsRoot = testbedBpffs(tb, 'sockops-in');
    backend = new SockopsBackend({ splice: 'all' });
    await backend.start(testbedNodeContext(tb, bpffsRoot, 'node1'));
    await backend.enroll(interpretedMeshPod(tb, 'server'));
  }, 90_000);

  afterAll(async () => {
    await backend?.stop({ cleanup: true }).catch(() => undefined);
    await tb?.dispose();
  });

  it('IPv4: the server sidecar accepts the cross-node connection and logs the original destination', async () => {
    const server = tb.pod('server');
    const caller = tb.pod('caller');
    const c0 = await counters();
    const since = Date.now();
    expect(await tb.echo('caller', server.ipv4, 9000, 'cross4')).toContain('cross4');
    const inb = await tb.waitProxyLog('server', inbound(since));
    expect(inb).toHaveLength(1);
    expect(inb[0]?.originalDst).toEqual({ address: server.ipv4, port: 9000 });
    // sk_assign keeps the packet as it came: the proxy sees the real caller too.
    expect(inb[0]?.client.address).toBe(caller.ipv4);
    const c1 = await counters();
    expect((c1.inbound_steered ?? 0) - (c0.inbound_steered ?? 0)).toBe(1);
    // The caller's node has no backend: nothing was rewritten at connect time.
    expect((c1.connects_inbound_redirected ?? 0) - (c0.connects_inbound_redirected ?? 0)).toBe(0);
  });

  it('IPv6: the IPv6 sidecar gets IP6T_SO_ORIGINAL_DST answered from the accepted socket', async () => {
    // The IPv6 stand-in needs only the built addon, no kernel feature: not running is a failure, not a skip.
    expect(tb.sidecarStatus('server').ipv6).toBe('running');
    const server = tb.pod('server');
    const c0 = await counters();
    const since = Date.now();
    expect(await tb.echo('caller', server.ipv6, 9000, 'cross6')).toContain('cross6');
    const inb = await tb.waitProxyLog('server', inbound(since));
    expect(inb).toEqual([expect.objectContaining({ proxy: 'proxy6', originalDst: { address: server.ipv6, port: 9000 } })]);
    const c1 = await counters();
    expect((c1.orig_dst_local_answered ?? 0) - (c0.orig_dst_local_answered ?? 0)).toBe(1);
    // Exactly once: the proxy's own delivery from ::6 to the pod address is not steered back.
    expect((c1.inbound_steered ?? 0) - (c0.inbound_steered ?? 0)).toBe(1);
  });

  it('an excluded inbound port reaches the app directly', async () => {
    const since = Date.now();
    expect(await tb.echo('caller', tb.pod('server').ipv4, 9002, 'excluded')).toContain('excluded');
    await sleep(300); // a sidecar logs at close; give a wrongly steered connection time to show
    expect(tb.proxyLog('server', { since })).toEqual([]);
  });

  it('a proxy started after enroll is picked up by the retried enroll', async () => {
    const late = tb.pod('late');
    const pod = interpretedMeshPod(tb, 'late');
    await expect(backend.enroll(pod)).rejects.toThrow(`proxy inbound listener :15006 not found yet in netns ${late.netnsPath}`);
    expect(await fingerprintOf('late')).toBe(backend.fingerprint(pod) + INBOUND_PENDING);
    // Captured but no proxy: refused, never delivered around the proxy.
    await expect(tb.echo('caller', late.ipv4, 9000, 'early')).rejects.toThrow(/ECONNREFUSED/);

    await tb.startSidecar('late');
    await backend.enroll(pod);
    expect(await fingerprintOf('late')).toBe(backend.fingerprint(pod));
    const since = Date.now();
    expect(await tb.echo('caller', late.ipv4, 9000, 'late')).toContain('late');
    expect((await tb.waitProxyLog('late', inbound(since)))[0]?.originalDst).toEqual({ address: late.ipv4, port: 9000 });
  });

  it('a restarted proxy shows as drift and the repairing enroll steers to its new listener', async () => {
    const server = tb.pod('server');
    const pod = interpretedMeshPod(tb, 'server');
    await tb.stopSidecar('server');
    let fp: string | undefined;
    for (let i = 0; i < 100 && fp !== backend.fingerprint(pod) + INBOUND_PENDING; i++) {
      await sleep(20);
      fp = await fingerprintOf('server');
    }
    expect(fp).toBe(backend.fingerprint(pod) + INBOUND_PENDING);
    await tb.startSidecar('server');
    await backend.enroll(pod);
    expect(await fingerprintOf('server')).toBe(backend.fingerprint(pod));
    const since = Date.now();
    expect(await tb.echo('caller', server.ipv4, 9000, 'again')).toContain('again');
    expect((await tb.waitProxyLog('server', inbound(since)))[0]?.originalDst).toEqual({ address: server.ipv4, port: 9000 });
  });
});
