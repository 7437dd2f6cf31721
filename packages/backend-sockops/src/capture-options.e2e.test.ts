/**
 * The Istio capture options the socket layer can honour, end to end on the testbed: real HAProxy
 * sidecars (uid/gid 1337) that read SO_ORIGINAL_DST, the client pod's istio-proxy env and
 * annotations interpreted by the core's istio-sidecar profile, the client re-enrolled with each
 * setting in turn. Callers run with the uid/gid each case needs (setpriv, no supplementary groups).
 * Every check looks at the path: which sidecar logged the connection and with what original
 * destination, not only whether the echo came back.
 */
import type { MeshPod } from '@shunt/core';
import { APP_UID, ECHO_CLIENT, PROXY_UID, Testbed, capturedOutbound as capturedFrom, echoAs, loggedSince, type CallerIds } from '@shunt/testbed';
import { SockopsBackend } from './backend';
import { PodConfigError } from './pod-program';
import { interpretedMeshPod } from './test-support/mesh';
import { testbedBpffs, testbedNodeContext } from './test-support/testbed-node';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const outbound = (since: number) => loggedSince(since, 'outbound');
const inbound = (since: number) => loggedSince(since, 'inbound');

describe('sockops: Istio capture options through HAProxy sidecars (testbed)', () => {
  let tb: Testbed;
  let backend: SockopsBackend;
  let bpffsRoot = '';

  /** The client pod as the agent would see it with this istio-proxy env and these annotations. */
  const client = (env: Record<string, string> = {}, annotations: Record<string, string> = {}, name = 'client'): MeshPod => interpretedMeshPod(tb, name, env, annotations);
  const echo = (host: string, port: number, msg: string, ids: CallerIds) => echoAs(tb, 'client', host, port, msg, ids);
  /** Sends one connection and says whether the client's outbound sidecar saw it (and with which original destination). */
  const capturedOutbound = (host: string, port: number, ids: CallerIds) => capturedFrom(tb, 'client', host, port, ids);

  beforeAll(async () => {
    tb = await Testbed.create({
      pods: [
        { name: 'client', mesh: 'sidecar' },
        { name: 'server', mesh: 'sidecar' },
        { name: 'plain', mesh: 'none' },
        { name: 'vm', mesh: 'sidecar' },
      ],
    });
    await Promise.all([
      tb.startEchoServer('server', { port: 9000 }),
      tb.startEchoServer('plain', { port: 9000 }),
      // In the client's own netns, reached over loopback (listens on :: so every 127.x answers).
      tb.startEchoServer('client', { port: 9400 }),
    ]);
    bpffsRoot = testbedBpffs(tb, 'sockops-cap');
    backend = new SockopsBackend();
    await backend.start(testbedNodeContext(tb, bpffsRoot));
    await backend.enroll(client());
    await backend.enroll(client({}, {}, 'server'));
  }, 90_000);

  afterAll(async () => {
    await backend?.stop({ cleanup: true }).catch(() => undefined);
    await tb?.dispose();
  });

  it('control: an app connect is captured, and the proxy uid is not', async () => {
    await backend.enroll(client());
    const plain = tb.pod('plain').ipv4;
    expect(await capturedOutbound(plain, 9000, { uid: APP_UID })).toEqual({ address: plain, port: 9000 });
    expect(await capturedOutbound(plain, 9000, { uid: 2500 })).toEqual({ address: plain, port: 9000 });
    expect(await capturedOutbound(plain, 9000, { uid: PROXY_UID })).toBeNull();
  });

  it('several proxy uids (PROXY_UID=1337,2500): uid 2500 is the proxy too', async () => {
    await backend.enroll(client({ PROXY_UID: '1337,2500' }));
    const plain = tb.pod('plain').ipv4;
    expect(await capturedOutbound(plain, 9000, { uid: 2500 })).toBeNull();
    expect(await capturedOutbound(plain, 9000, { uid: APP_UID })).toEqual({ address: plain, port: 9000 });
  });

  it('several proxy gids (PROXY_GID=1337,2600): a caller with gid 2600 is the proxy too', async () => {
    await backend.enroll(client({ PROXY_GID: '1337,2600' }));
    const plain = tb.pod('plain').ipv4;
    expect(await capturedOutbound(plain, 9000, { uid: APP_UID, gid: 2600 })).toBeNull();
    expect(await capturedOutbound(plain, 9000, { uid: APP_UID, gid: 2601 })).toEqual({ address: plain, port: 9000 });
  });

  it('ISTIO_OUTBOUND_OWNER_GROUPS=3000: only gid 3000 is captured', async () => {
    await backend.enroll(client({ ISTIO_OUTBOUND_OWNER_GROUPS: '3000' }));
    const plain = tb.pod('plain').ipv4;
    expect(await capturedOutbound(plain, 9000, { uid: APP_UID, gid: 3000 })).toEqual({ address: plain, port: 9000 });
    expect(await capturedOutbound(plain, 9000, { uid: APP_UID })).toBeNull();
  });

  it("ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE=3100: gid 3100 is not captured by its sidecar, the destination's still captures inbound", async () => {
    await backend.enroll(client({ ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE: '3100' }));
    const plain = tb.pod('plain').ipv4;
    expect(await capturedOutbound(plain, 9000, { uid: APP_UID, gid: 3100 })).toBeNull();
    expect(await capturedOutbound(plain, 9000, { uid: APP_UID })).toEqual({ address: plain, port: 9000 });
    // A supplementary group 3100 is not the caller's gid: captured, as under iptables' `--gid-owner`
    // (Istio never passes --suppl-groups).
    // (the caller really has it: gid 1000, groups 1000 3100)
    expect((await tb.run('client', ['setpriv', `--reuid=${APP_UID}`, `--regid=${APP_UID}`, '--groups=3100', '--', 'id', '-G'])).stdout.trim().split(' ').sort()).toEqual(['1000', '3100']);
    expect(await capturedOutbound(plain, 9000, { uid: APP_UID, suppl: 3100 })).toEqual({ address: plain, port: 9000 });
    const server = tb.pod('server').ipv4;
    const since = Date.now();
    expect(await capturedOutbound(server, 9000, { uid: APP_UID, gid: 3100 })).toBeNull();
    const inb = await tb.waitProxyLog('server', inbound(since));
    expect(inb[0]?.originalDst).toEqual({ address: server, port: 9000 });
  });

  describe('host loopback range (ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR)', () => {
    it('default 127.0.0.1/32: the proxy connecting to 127.0.0.2 goes to its inbound listener (then passes through from 127.0.0.6)', async () => {
      await backend.enroll(client());
      const since = Date.now();
      expect(await echo('127.0.0.2', 9400, 'lo32', { uid: PROXY_UID })).toBe('lo32');
      const inb = await tb.waitProxyLog('client', inbound(since));
      expect(inb).toHaveLength(1);
      expect(inb[0]?.originalDst).toEqual({ address: '127.0.0.2', port: 9400 });
      // 127.0.0.1 is inside the range: untouched; an app's loopback connects never are.
      const s2 = Date.now();
      expect(await echo('127.0.0.1', 9400, 'lo1', { uid: PROXY_UID })).toBe('lo1');
      expect(await echo('127.0.0.2', 9400, 'app', { uid: APP_UID })).toBe('app');
      await sleep(200);
      expect(tb.proxyLog('client', { since: s2 })).toEqual([]);
    });

    it('127.0.0.1/8: every 127.x is localhost, the proxy reaches 127.0.0.2 directly', async () => {
      await backend.enroll(client({ ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR: '127.0.0.1/8' }));
      const since = Date.now();
      expect(await echo('127.0.0.2', 9400, 'lo8', { uid: PROXY_UID })).toBe('lo8');
      await sleep(200);
      expect(tb.proxyLog('client', { since })).toEqual([]);
    });

    it('an include CIDR that is loopback (127.1.2.3/32) captures the app outbound, and the proxy upstream then goes inbound, as in Istio', async () => {
      await backend.enroll(client({}, { 'traffic.sidecar.istio.io/includeOutboundIPRanges': '127.1.2.3/32' }));
      const since = Date.now();
      expect(await echo('127.1.2.3', 9400, 'loinc', { uid: APP_UID })).toBe('loinc');
      const out = await tb.waitProxyLog('client', outbound(since));
      const inb = await tb.waitProxyLog('client', inbound(since));
      expect(out[0]?.originalDst).toEqual({ address: '127.1.2.3', port: 9400 });
      expect(inb[0]?.originalDst).toEqual({ address: '127.1.2.3', port: 9400 });
      // Other loopback addresses stay untouched for the app.
      const s2 = Date.now();
      expect(await echo('127.0.0.2', 9400, 'other', { uid: APP_UID })).toBe('other');
      await sleep(200);
      expect(tb.proxyLog('client', { since: s2 }).filter((r) => r.listener === 'outbound')).toEqual([]);
    });
  });

  it('a pod asking for an option the socket layer cannot do is refused, naming the annotation, and left uncaptured', async () => {
    const vm = client({}, { 'istio.io/reroute-virtual-interfaces': 'net1' }, 'vm');
    expect(backend.supportPod(vm)).toMatchObject({ ok: false, reasons: [expect.stringMatching(/^istio\.io\/reroute-virtual-interfaces .*="net1": .*redirectMode=iptables/)] });
    await expect(backend.enroll(vm)).rejects.toThrow(PodConfigError);
    await expect(backend.enroll(vm)).rejects.toThrow(/pod default\/vm .*reroute-virtual-interfaces/);
    expect((await backend.observe()).pods.map((p) => p.name)).not.toContain('vm');
    const plain = tb.pod('plain').ipv4;
    const since = Date.now();
    const res = await tb.run('vm', [process.execPath, '-e', ECHO_CLIENT, plain, '9000', 'vm'], { uid: APP_UID, timeoutMs: 15_000 });
    expect(JSON.parse(res.stdout)).toEqual({ reply: 'vm' });
    await sleep(200);
    expect(tb.proxyLog('vm', { since })).toEqual([]);
  });
});
