// Ambient end to end on a two-node testbed: istio-cni's in-pod rules from this backend, ztunnel's
// in-pod sockets from the testbed's ztunnel stand-in (a separate process, a ZDS client handed each
// pod's netns fd) that logs, per connection, the leg, the client, the original destination and how
// it learnt it. The test plays the node agent: each pod is enrolled first and only then announced
// with AddWorkload (istio-cni's order), through an in-process ZdsServer (ztunnelHarness).
// Every assertion is about the path.

import net from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { interpretPod, ISTIO_AMBIENT, type MeshPod } from '@shunt/core';
import { netnsConnect } from '@shunt/libbpf';
import { Netlink, runCommand } from '@shunt/netlink';
import { Testbed, ztunnelHarness, type ZtunnelLogEntry } from '@shunt/testbed';
import type { IptablesBackend } from './backend';
import { PodRulesError } from './errors';
import { endTestbedRun, startBackend } from './__fixtures__/testbed-run';
import { AMBIENT } from './render-ambient';

let tb: Testbed;
let backend: IptablesBackend;
let zh: Awaited<ReturnType<typeof ztunnelHarness>> | undefined;
let ztDir = '';
const AMBIENT_PODS = ['a1', 'a2', 'b1'];

/** One accepted connection as the stand-in logged it (v4-mapped addresses of its dual-stack sockets written plainly). */
interface Conn {
  pod: string;
  listener: 'outbound' | 'inbound' | 'hbone' | 'dns';
  client: { address: string; port: number };
  local: { address: string; port: number };
  originalDst: { address: string; port: number };
  via: string;
  at: number;
  error?: string;
}
const unmap = (e: { address: string; port: number }) => ({ address: e.address.replace(/^::ffff:/, ''), port: e.port });
function conns(): Conn[] {
  return zh!.zt
    .entries()
    .filter((e): e is Extract<ZtunnelLogEntry, { event: 'conn' }> => e.event === 'conn')
    .map((e) => ({ pod: e.pod, listener: e.leg, client: unmap(e.client), local: unmap(e.local), originalDst: unmap(e.origDst), via: e.how, at: e.at, ...(e.error ? { error: e.error } : {}) }));
}
const zt = {
  records: (pod: string, since = 0) => conns().filter((r) => r.pod === pod && r.at >= since),
  /** Polls the stand-in's log (bounded) until `want` of the pod's records match. */
  async waitRecords(pod: string, filter: (r: Conn) => boolean, want = 1, timeoutMs = 5000): Promise<Conn[]> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const got = conns().filter((r) => r.pod === pod && filter(r));
      if (got.length >= want || Date.now() > until) return got;
      await new Promise((r) => setTimeout(r, 20));
    }
  },
};

function ambientMesh(name: string): MeshPod {
  const kube = tb.kubePod(name);
  const r = interpretPod(kube, {}, ISTIO_AMBIENT, kube.shunt);
  if (!r.ok) throw r.error;
  return r.pod;
}

async function save(pod: string, fam: 4 | 6 = 4): Promise<string> {
  return runCommand([`${fam === 4 ? 'iptables' : 'ip6tables'}-${backend.iptablesVariant!}-save`], { netns: tb.pod(pod).netnsPath });
}

const ip = (pod: string, fam: 4 | 6) => (fam === 4 ? tb.pod(pod).ipv4 : tb.pod(pod).ipv6);
const since = () => Date.now() - 1;

/** One TCP round trip from a socket made in `netnsPath` (optionally from a given source): the echo's reply. */
async function echoFrom(netnsPath: string, family: 4 | 6, to: { address: string; port: number }, message: string, source?: string): Promise<string> {
  const fd = await netnsConnect({ netns: netnsPath, family, to, timeoutMs: 3000, ...(source ? { bind: { address: source, port: 0 } } : {}) });
  const s = new net.Socket({ fd, readable: true, writable: true });
  return new Promise((resolve, reject) => {
    let got = '';
    const timer = setTimeout(() => (s.destroy(), reject(new Error(`no echo from ${to.address}:${to.port} within 3 s`))), 3000);
    s.setEncoding('utf8');
    s.on('data', (d: string) => {
      got += d;
      if (got.length >= message.length) {
        clearTimeout(timer);
        s.destroy();
        resolve(got);
      }
    });
    s.on('error', (e) => (clearTimeout(timer), reject(e)));
    s.write(message);
  });
}

beforeAll(async () => {
  tb = await Testbed.create({
    nodes: 2,
    pods: [
      { name: 'a1', mesh: 'ambient', node: 'node0' },
      { name: 'a2', mesh: 'ambient', node: 'node0' },
      { name: 'b1', mesh: 'ambient', node: 'node1' },
      { name: 'plain', mesh: 'none', node: 'node0' },
      // A member whose ambient annotation is not a boolean: rejected by the core, by name.
      { name: 'bad', mesh: 'ambient', node: 'node0', annotations: { 'ambient.istio.io/dns-capture': 'yes please' } },
    ],
  });
  for (const p of ['a1', 'a2', 'b1', 'plain', 'bad']) await tb.startEchoServer(p, { port: 8080 });
  backend = await startBackend('istio-ambient');
  ztDir = mkdtempSync(path.join(tmpdir(), 'shunt-ipt-zt-'));
  zh = await ztunnelHarness({ socketPath: path.join(ztDir, 'ztunnel.sock'), logPath: path.join(ztDir, 'ztunnel.log') });
  for (const name of AMBIENT_PODS) {
    // istio-cni's order: the redirect is in place when enroll resolves, then AddWorkload (resolves on the Ack).
    await backend.enroll(ambientMesh(name));
    const p = tb.pod(name);
    await zh.add({ uid: p.uid, name, namespace: p.namespace, netnsPath: p.netnsPath });
  }
}, 180_000);

afterAll(async () => {
  await zh?.stop().catch(() => undefined);
  if (ztDir) rmSync(ztDir, { recursive: true, force: true });
  await endTestbedRun(backend, tb);
});

describe.each([4, 6] as const)('IPv%d', (fam) => {
  test.each([
    ['same node', 'a2'],
    ['cross node', 'b1'],
  ])('%s: a1 -> %s through both ztunnel legs with the original destination; HBONE not re-captured; no loop', async (_what, server) => {
    const t = since();
    expect(await tb.echo('a1', ip(server, fam), 8080, `hi-${server}-${fam}`)).toBe(`hi-${server}-${fam}`);
    const out = await zt.waitRecords('a1', (r) => r.at >= t && r.listener === 'outbound');
    const hbone = await zt.waitRecords(server, (r) => r.at >= t && r.listener === 'hbone');
    // Exactly one outbound leg: ztunnel's own connection to the peer's 15008 (mark 1337) was not captured again.
    expect(out).toEqual([expect.objectContaining({ client: expect.objectContaining({ address: ip('a1', fam) }), originalDst: { address: ip(server, fam), port: 8080 }, via: 'SO_ORIGINAL_DST' })]);
    expect(out[0]!.error).toBeUndefined();
    // The peer's HBONE leg arrived on 15008 itself (not redirected to 15006) and knew the client.
    expect(hbone).toEqual([expect.objectContaining({ local: { address: ip(server, fam), port: 15008 }, originalDst: { address: ip(server, fam), port: 8080 }, via: 'hbone-authority' })]);
    expect(hbone[0]!.error).toBeUndefined();
    expect(zt.records(server, t).filter((r) => r.listener !== 'hbone')).toEqual([]);
    expect(zt.records('a1', t).filter((r) => r.listener !== 'outbound')).toEqual([]);
  });

  test("plaintext inbound from a non-ambient pod: 15006 with SO_ORIGINAL_DST; the app's reply to ztunnel's spoofed-source connection comes back (connmark route)", async () => {
    const t = since();
    expect(await tb.echo('plain', ip('a2', fam), 8080, `plain-${fam}`)).toBe(`plain-${fam}`);
    const inb = await zt.waitRecords('a2', (r) => r.at >= t && r.listener === 'inbound');
    expect(inb).toEqual([expect.objectContaining({ client: expect.objectContaining({ address: ip('plain', fam) }), originalDst: { address: ip('a2', fam), port: 8080 }, via: 'SO_ORIGINAL_DST' })]);
    expect(inb[0]!.error).toBeUndefined();
  });

  test('the kubelet probe source is exempt; the node address is not', async () => {
    const node = tb.node('node0');
    const probe = fam === 4 ? AMBIENT.probeSource.v4 : AMBIENT.probeSource.v6;
    // istio-cni's host rule SNATs kubelet probes to this address; here the node netns owns it.
    await Netlink.at(node.netnsPath).addAddress(node.bridge, `${probe}/${fam === 4 ? 32 : 128}`);
    try {
      let t = since();
      expect(await echoFrom(node.netnsPath, fam, { address: ip('a2', fam), port: 8080 }, 'probe', probe)).toBe('probe');
      await new Promise((r) => setTimeout(r, 200));
      expect(zt.records('a2', t)).toEqual([]);
      t = since();
      const gw = fam === 4 ? node.addressing.gatewayV4 : node.addressing.gatewayV6;
      expect(await echoFrom(node.netnsPath, fam, { address: ip('a2', fam), port: 8080 }, 'node', gw)).toBe('node');
      expect(await zt.waitRecords('a2', (r) => r.at >= t && r.listener === 'inbound')).toEqual([expect.objectContaining({ client: expect.objectContaining({ address: gw }) })]);
    } finally {
      await Netlink.at(node.netnsPath).deleteAddress(node.bridge, `${probe}/${fam === 4 ? 32 : 128}`).catch(() => undefined);
    }
  });
});

test('app -> localhost and app -> own pod IP stay local', async () => {
  const t = since();
  expect(await tb.echo('a2', '127.0.0.1', 8080, 'lo')).toBe('lo');
  expect(await tb.echo('a2', tb.pod('a2').ipv4, 8080, 'own')).toBe('own');
  await new Promise((r) => setTimeout(r, 200));
  expect(zt.records('a2', t)).toEqual([]);
});

test('a non-ambient pod is untouched; an ambient client reaching it goes through its own ztunnel only', async () => {
  const plainPod = ambientMesh('plain');
  expect(plainPod.membership).toBe('none');
  expect(await backend.enrollWithResult(plainPod)).toEqual({ changed: false, transactions: 0 });
  for (const fam of [4, 6] as const) expect(await save('plain', fam)).not.toMatch(/SHUNT_/);
  const t = since();
  expect(await tb.echo('a1', tb.pod('plain').ipv4, 8080, 'to-plain')).toBe('to-plain');
  const out = await zt.waitRecords('a1', (r: Conn) => r.at >= t && r.listener === 'outbound');
  expect(out).toEqual([expect.objectContaining({ originalDst: { address: tb.pod('plain').ipv4, port: 8080 } })]);
});

test('a bad ambient pod is rejected by name and the others keep working', async () => {
  const kube = tb.kubePod('bad');
  const r = interpretPod(kube, {}, ISTIO_AMBIENT, kube.shunt);
  expect(r.ok).toBe(false);
  expect(!r.ok && r.error.message).toMatch(/annotation ambient\.istio\.io\/dns-capture="yes please" rejected: want a boolean/);
  // The backend, handed a bad ambient pod anyway (a setting the in-pod rules cannot express), refuses it by name and installs nothing.
  const good = interpretPod({ ...kube, metadata: { ...kube.metadata, annotations: {} } }, {}, ISTIO_AMBIENT, kube.shunt);
  if (!good.ok) throw good.error;
  const err = await backend.enroll({ ...good.pod, interceptionMode: 'TPROXY' }).then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(PodRulesError);
  expect((err as Error).message).toMatch(/^pod default\/bad: interceptionMode="TPROXY": /);
  for (const fam of [4, 6] as const) expect(await save('bad', fam)).not.toMatch(/SHUNT_/);
  expect(await tb.echo('a1', tb.pod('a2').ipv4, 8080, 'still-fine')).toBe('still-fine');
  expect(await tb.echo('plain', tb.pod('bad').ipv4, 8080, 'bad-untouched')).toBe('bad-untouched');
  const state = await backend.observe();
  expect(state.pods.map((p) => p.name).sort()).toEqual([...AMBIENT_PODS].sort());
  for (const p of state.pods) expect(p.fingerprint).toBe(backend.fingerprint(ambientMesh(p.name)));
});

test("without the connmark policy route the spoofed-source reply is lost; enroll repairs the drift", async () => {
  const nl = Netlink.at(tb.pod('a2').netnsPath);
  const rule = { family: 4 as const, fwmark: AMBIENT.connMark, fwmask: AMBIENT.connMask, priority: AMBIENT.rulePriority, table: AMBIENT.routeTable };
  await nl.deleteRule(rule);
  const fp = backend.fingerprint(ambientMesh('a2'));
  expect((await backend.observe()).pods.find((p) => p.name === 'a2')?.fingerprint).not.toBe(fp);
  await expect(tb.echo('plain', tb.pod('a2').ipv4, 8080, 'lost', { timeoutMs: 1500 })).rejects.toThrow();
  expect((await backend.enrollWithResult(ambientMesh('a2'))).changed).toBe(true);
  expect((await backend.observe()).pods.find((p) => p.name === 'a2')?.fingerprint).toBe(fp);
  expect(await tb.echo('plain', tb.pod('a2').ipv4, 8080, 'back')).toBe('back');
});

test('cleanup leaves no SHUNT_* chains, no connmark rule and no table-100 route', async () => {
  // istio-cni's order on removal: DelWorkload first, then the rules go.
  for (const name of AMBIENT_PODS) await zh!.remove(tb.pod(name).uid);
  await backend.stop({ cleanup: true });
  for (const name of AMBIENT_PODS) {
    for (const fam of [4, 6] as const) {
      expect(await save(name, fam)).not.toMatch(/SHUNT_/);
      const nl = Netlink.at(tb.pod(name).netnsPath);
      expect((await nl.rules({ family: fam })).filter((r) => r.fwmark === AMBIENT.connMark)).toEqual([]);
      expect(await nl.routes({ family: fam, table: AMBIENT.routeTable }).catch(() => [])).toEqual([]);
    }
  }
  // Without rules, the apps are reached directly again.
  expect(await tb.echo('a1', tb.pod('a2').ipv4, 8080, 'direct')).toBe('direct');
});
