// The Istio capture options beyond ports and CIDRs, end to end on the testbed with the real rules:
// HAProxy sidecars (uid/gid 1337) that read SO_ORIGINAL_DST, the client pod's istio-proxy env and
// annotations interpreted by the core, the client re-enrolled with each setting in turn. Callers
// run with the uid/gid each case needs. Assertions are about the path: which sidecar logged what.

import type { MeshPod } from '@shunt/core';
import { runCommand } from '@shunt/netlink';
import { APP_UID, ECHO_CLIENT, PROXY_UID, Testbed, capturedOutbound as capturedFrom, echoAs, loggedSince as since, type CallerIds } from '@shunt/testbed';
import type { IptablesBackend } from './backend';
import { meshPod } from './__fixtures__/mesh';
import { endTestbedRun, startBackend } from './__fixtures__/testbed-run';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let tb: Testbed;
let backend: IptablesBackend;

const client = (env: Record<string, string> = {}, annotations: Record<string, string> = {}): MeshPod => meshPod(tb, 'client', env, annotations);
const echo = (host: string, port: number, msg: string, ids: CallerIds, pod = 'client') => echoAs(tb, pod, host, port, msg, ids);
/** One connection from the client; the original destination its outbound sidecar logged, or null. */
const capturedOutbound = (host: string, port: number, ids: CallerIds) => capturedFrom(tb, 'client', host, port, ids);

beforeAll(async () => {
  tb = await Testbed.create({
    pods: [
      { name: 'client', mesh: 'sidecar' },
      { name: 'server', mesh: 'sidecar' },
      { name: 'plain', mesh: 'none' },
    ],
  });
  await Promise.all([tb.startEchoServer('server', { port: 9000 }), tb.startEchoServer('plain', { port: 9000 }), tb.startEchoServer('client', { port: 9400 })]);
  backend = await startBackend();
  await backend.enroll(client());
  await backend.enroll(meshPod(tb, 'server'));
}, 120_000);

afterAll(() => endTestbedRun(backend, tb));

test('control: an app connect is captured, the proxy uid is not', async () => {
  await backend.enroll(client());
  const plain = tb.pod('plain').ipv4;
  expect(await capturedOutbound(plain, 9000, { uid: APP_UID })).toEqual({ address: plain, port: 9000 });
  expect(await capturedOutbound(plain, 9000, { uid: 2500 })).toEqual({ address: plain, port: 9000 });
  expect(await capturedOutbound(plain, 9000, { uid: PROXY_UID })).toBeNull();
});

test('PROXY_UID=1337,2500 and PROXY_GID=1337,2600: those callers are the proxy too', async () => {
  await backend.enroll(client({ PROXY_UID: '1337,2500', PROXY_GID: '1337,2600' }));
  const plain = tb.pod('plain').ipv4;
  expect(await capturedOutbound(plain, 9000, { uid: 2500 })).toBeNull();
  expect(await capturedOutbound(plain, 9000, { uid: APP_UID, gid: 2600 })).toBeNull();
  expect(await capturedOutbound(plain, 9000, { uid: APP_UID })).toEqual({ address: plain, port: 9000 });
});

test('ISTIO_OUTBOUND_OWNER_GROUPS=3000 captures only gid 3000; _EXCLUDE=3100 leaves gid 3100 alone', async () => {
  const plain = tb.pod('plain').ipv4;
  await backend.enroll(client({ ISTIO_OUTBOUND_OWNER_GROUPS: '3000' }));
  expect(await capturedOutbound(plain, 9000, { uid: APP_UID, gid: 3000 })).toEqual({ address: plain, port: 9000 });
  expect(await capturedOutbound(plain, 9000, { uid: APP_UID })).toBeNull();
  await backend.enroll(client({ ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE: '3100' }));
  expect(await capturedOutbound(plain, 9000, { uid: APP_UID, gid: 3100 })).toBeNull();
  expect(await capturedOutbound(plain, 9000, { uid: APP_UID })).toEqual({ address: plain, port: 9000 });
  // `--gid-owner` without --suppl-groups (Istio never passes it): a supplementary 3100 does not match.
  // (the caller really has it: gid 1000, groups 1000 3100)
  expect((await tb.run('client', ['setpriv', `--reuid=${APP_UID}`, `--regid=${APP_UID}`, '--groups=3100', '--', 'id', '-G'])).stdout.trim().split(' ').sort()).toEqual(['1000', '3100']);
  expect(await capturedOutbound(plain, 9000, { uid: APP_UID, suppl: 3100 })).toEqual({ address: plain, port: 9000 });
});

test('loopback range: with 127.0.0.1/32 the proxy to 127.0.0.2 goes inbound; with 127.0.0.1/8 it does not', async () => {
  await backend.enroll(client());
  let t = Date.now();
  expect(await echo('127.0.0.2', 9400, 'lo32', { uid: PROXY_UID })).toBe('lo32');
  const inb = await tb.waitProxyLog('client', since(t, 'inbound'));
  expect(inb.map((r) => r.originalDst)).toEqual([{ address: '127.0.0.2', port: 9400 }]);
  await backend.enroll(client({ ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR: '127.0.0.1/8' }));
  t = Date.now();
  expect(await echo('127.0.0.2', 9400, 'lo8', { uid: PROXY_UID })).toBe('lo8');
  await sleep(200);
  expect(tb.proxyLog('client', { since: t })).toEqual([]);
});

test('excludeInterfaces=eth0: nothing on eth0 is captured, either way', async () => {
  await backend.enroll(client({}, { 'traffic.sidecar.istio.io/excludeInterfaces': 'eth0' }));
  const plain = tb.pod('plain').ipv4;
  expect(await capturedOutbound(plain, 9000, { uid: APP_UID })).toBeNull();
  const t = Date.now();
  // server -> client:9400 arrives on the client's eth0: its inbound sidecar is skipped.
  expect(await echo(tb.pod('client').ipv4, 9400, 'in', { uid: APP_UID }, 'server')).toBe('in');
  await tb.waitProxyLog('server', since(t, 'outbound'));
  await sleep(200);
  expect(tb.proxyLog('client', { since: t })).toEqual([]);
  // Back to no exclusion: both are captured again.
  await backend.enroll(client());
  expect(await capturedOutbound(plain, 9000, { uid: APP_UID })).toEqual({ address: plain, port: 9000 });
});

describe('istio.io/reroute-virtual-interfaces: a VM guest behind the pod', () => {
  // A "VM" netns wired to the client pod by a veth (vnet0 in the pod), as KubeVirt's tap/bridge is.
  let vmNs = '';
  const ip = (args: string[], netns?: string) => runCommand(['ip', ...args], netns ? { netns } : {});
  beforeAll(async () => {
    vmNs = `${tb.prefix}-vm`;
    const podNs = tb.pod('client').netnsPath;
    const a = `${tb.prefix.slice(-6)}va`;
    const b = `${tb.prefix.slice(-6)}vb`;
    await ip(['netns', 'add', vmNs]);
    await ip(['link', 'add', a, 'type', 'veth', 'peer', 'name', b]);
    await ip(['link', 'set', a, 'netns', podNs]);
    await ip(['link', 'set', b, 'netns', vmNs]);
    await ip(['link', 'set', a, 'name', 'vnet0'], podNs);
    await ip(['addr', 'add', '198.19.250.1/30', 'dev', 'vnet0'], podNs);
    await ip(['link', 'set', 'vnet0', 'up'], podNs);
    const vm = `/run/netns/${vmNs}`;
    await ip(['addr', 'add', '198.19.250.2/30', 'dev', b], vm);
    await ip(['link', 'set', b, 'up'], vm);
    await ip(['link', 'set', 'lo', 'up'], vm);
    await ip(['route', 'add', 'default', 'via', '198.19.250.1'], vm);
  }, 30_000);
  afterAll(async () => {
    // The veth goes with the VM netns; the pod netns goes with the testbed.
    if (vmNs) await ip(['netns', 'del', vmNs]).catch(() => undefined);
  });

  async function fromVm(host: string, port: number, msg: string): Promise<string | null> {
    try {
      const out = await runCommand([process.execPath, '-e', ECHO_CLIENT, host, String(port), msg], { netns: `/run/netns/${vmNs}`, timeoutMs: 15_000 });
      return (JSON.parse(out) as { reply: string }).reply;
    } catch {
      return null;
    }
  }

  test('TCP the guest sends through vnet0 goes to the pod sidecar as outbound traffic; without the annotation it is not outbound', async () => {
    const plain = tb.pod('plain').ipv4;
    await backend.enroll(client({}, { 'istio.io/reroute-virtual-interfaces': 'vnet0' }));
    let t = Date.now();
    expect(await fromVm(plain, 9000, 'guest')).toBe('guest');
    const out = await tb.waitProxyLog('client', since(t, 'outbound'));
    expect(out[0]).toMatchObject({ client: { address: '198.19.250.2' }, originalDst: { address: plain, port: 9000 } });
    // Without it the guest's connection is not outbound: it meets the pod's inbound capture like
    // any TCP entering the pod (Istio's `-A PREROUTING -p tcp -j ISTIO_INBOUND` has no -i), whose
    // sidecar cannot reach a destination that is not its pod (from 127.0.0.6) and logs that only
    // after HAProxy's connect timeout and retries, possibly within this window; the guest never
    // gets an answer.
    await backend.enroll(client());
    t = Date.now();
    expect(await fromVm(plain, 9000, 'plain')).toBeNull();
    await sleep(200);
    expect(tb.proxyLog('client', { since: t }).filter((r) => r.listener === 'outbound')).toEqual([]);
  });
});
