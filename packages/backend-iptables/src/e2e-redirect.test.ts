// REDIRECT mode end to end on the testbed: real pods, real HAProxy sidecars that read
// SO_ORIGINAL_DST, the backend's rules installed from the core's interpretation of each pod.
// Every assertion is about the path: which sidecar logged which original destination.

import { runCommand } from '@shunt/netlink';
import { Testbed, PROXY_UID, type ProxyLogRecord } from '@shunt/testbed';
import type { IptablesBackend } from './backend';
import { RestoreError } from './errors';
import { interpret, meshPod } from './__fixtures__/mesh';
import { endTestbedRun, startBackend } from './__fixtures__/testbed-run';

const A = 'traffic.sidecar.istio.io';
let tb: Testbed;
let backend: IptablesBackend;

const recent = (since: number, listener: 'inbound' | 'outbound', port?: number) => (r: ProxyLogRecord) =>
  r.at >= since - 1 && r.listener === listener && (port === undefined || r.originalDst.port === port);

async function save(pod: string, fam: 4 | 6 = 4): Promise<string> {
  const v = backend.iptablesVariant!;
  return runCommand([`${fam === 4 ? 'iptables' : 'ip6tables'}-${v}-save`], { netns: tb.pod(pod).netnsPath });
}

beforeAll(async () => {
  tb = await Testbed.create({
    pods: [
      { name: 'client', mesh: 'sidecar' },
      { name: 'server', mesh: 'sidecar' },
      { name: 'plain', mesh: 'none' },
    ],
  });
  // Annotations that name other pods' addresses are only known now.
  await tb.addPod({
    name: 'clientx',
    mesh: 'sidecar',
    annotations: { [`${A}/excludeOutboundPorts`]: '9090', [`${A}/excludeOutboundIPRanges`]: `${tb.pod('plain').ipv4}/32` },
  });
  await tb.addPod({ name: 'bad', mesh: 'sidecar', annotations: { [`${A}/excludeOutboundPorts`]: '80,http' } });
  for (const port of [8080, 9090, 15020, 15021, 15090]) await tb.startEchoServer('server', { port });
  await tb.startEchoServer('plain', { port: 8080 });
  await tb.startEchoServer('client', { port: 8080 });

  backend = await startBackend();
  for (const name of ['client', 'server', 'clientx']) await backend.enroll(meshPod(tb, name));
}, 120_000);

afterAll(() => endTestbedRun(backend, tb));

test('client -> server: both sidecars saw the connection with the original destination; the reply arrives; no loop', async () => {
  const client = tb.pod('client');
  const server = tb.pod('server');
  const since = Date.now();
  expect(await tb.echo('client', server.ipv4, 8080, 'ping-1')).toBe('ping-1');

  // The whole log once it stopped growing: a loop shows as further records after the first.
  const out = await tb.settledProxyLog('client', recent(since, 'outbound'));
  const inb = await tb.settledProxyLog('server', recent(since, 'inbound'));
  expect(out).toHaveLength(1); // the sidecar's own upstream connection was not captured again
  expect(out[0]).toMatchObject({ client: { address: client.ipv4 }, originalDst: { address: server.ipv4, port: 8080 }, upstream: { address: server.ipv4, port: 8080 } });
  expect(inb).toHaveLength(1);
  expect(inb[0]).toMatchObject({ client: { address: client.ipv4 }, originalDst: { address: server.ipv4, port: 8080 }, upstreamSource: { address: '127.0.0.6' } });
  expect(tb.proxyLog('client', { since }).filter((r) => r.listener === 'inbound')).toEqual([]);
  expect(tb.proxyLog('server', { since }).filter((r) => r.listener === 'outbound')).toEqual([]);
});

test('excluded outbound port and CIDR bypass the client sidecar (the server still captures inbound)', async () => {
  const server = tb.pod('server');
  const clientx = tb.pod('clientx');
  const since = Date.now();
  expect(await tb.echo('clientx', server.ipv4, 9090, 'port-excluded')).toBe('port-excluded');
  expect(await tb.echo('clientx', tb.pod('plain').ipv4, 8080, 'cidr-excluded')).toBe('cidr-excluded');
  expect(await tb.echo('clientx', server.ipv4, 8080, 'captured')).toBe('captured');

  const out = await tb.waitProxyLog('clientx', recent(since, 'outbound', 8080));
  expect(out.map((r) => r.originalDst)).toEqual([{ address: server.ipv4, port: 8080 }]);
  expect(tb.proxyLog('clientx', { since }).filter((r) => r.originalDst.port === 9090 || r.originalDst.address === tb.pod('plain').ipv4)).toEqual([]);
  // The server's inbound capture does not depend on the client's excludes.
  const inb = await tb.waitProxyLog('server', recent(since, 'inbound', 9090));
  expect(inb[0]).toMatchObject({ client: { address: clientx.ipv4 }, originalDst: { address: server.ipv4, port: 9090 } });
});

test('inbound to 15020/15021/15090 is not captured; other ports are', async () => {
  const server = tb.pod('server');
  const since = Date.now();
  for (const port of [15020, 15021, 15090, 8080]) expect(await tb.echo('plain', server.ipv4, port, `p${port}`)).toBe(`p${port}`);
  const inb = await tb.waitProxyLog('server', recent(since, 'inbound', 8080));
  expect(inb).toHaveLength(1);
  expect(tb.proxyLog('server', { since }).map((r) => r.originalDst.port)).toEqual([8080]);
});

test('app -> localhost and app -> own pod IP are untouched; proxy -> own pod IP goes to the inbound listener', async () => {
  const server = tb.pod('server');
  const since = Date.now();
  expect(await tb.echo('server', '127.0.0.1', 8080, 'lo')).toBe('lo');
  expect(await tb.echo('server', server.ipv4, 8080, 'own-ip')).toBe('own-ip');
  await new Promise((r) => setTimeout(r, 200));
  expect(tb.proxyLog('server', { since })).toEqual([]);

  expect(await tb.echo('server', server.ipv4, 8080, 'as-proxy', { uid: PROXY_UID })).toBe('as-proxy');
  const inb = await tb.waitProxyLog('server', recent(since, 'inbound', 8080));
  expect(inb).toHaveLength(1);
  expect(inb[0]).toMatchObject({ client: { address: server.ipv4 }, originalDst: { address: server.ipv4, port: 8080 } });
});

test('a non-mesh pod is untouched', async () => {
  const plainPod = meshPod(tb, 'plain');
  expect(plainPod.membership).toBe('none');
  expect(await backend.enrollWithResult(plainPod)).toEqual({ changed: false, transactions: 0 });
  expect(await save('plain')).not.toMatch(/SHUNT_/);
  const since = Date.now();
  expect(await tb.echo('plain', tb.pod('client').ipv4, 8080, 'to-client')).toBe('to-client');
  // plain -> client: only the client's inbound capture is involved
  const inb = await tb.waitProxyLog('client', recent(since, 'inbound', 8080));
  expect(inb[0]?.client.address).toBe(tb.pod('plain').ipv4);
});

test('a bad annotation rejects only that pod; the others stay enrolled and working', async () => {
  const bad = interpret(tb, 'bad');
  expect(bad.ok).toBe(false);
  if (!bad.ok) expect(bad.error.message).toMatch(/bad.*excludeOutboundPorts.*http/);
  expect(await save('bad')).not.toMatch(/SHUNT_/);
  const st = await backend.observe();
  for (const name of ['client', 'server', 'clientx']) {
    expect(st.pods.find((p) => p.name === name)?.fingerprint).toBe(backend.fingerprint(meshPod(tb, name)));
  }
});

test('re-apply is a no-op (iptables-save identical, counters excluded)', async () => {
  const strip = (s: string) => s.split('\n').filter((l) => !l.startsWith('#')).map((l) => l.replace(/\[\d+:\d+\]/g, '')).join('\n');
  const before = strip(await save('server'));
  expect(await backend.enrollWithResult(meshPod(tb, 'server'))).toEqual({ changed: false, transactions: 0 });
  expect(strip(await save('server'))).toBe(before);
});

test('a refused restore keeps the old rules working', async () => {
  const server = tb.pod('server');
  const v = backend.iptablesVariant!;
  const ipt = (args: string[]) => runCommand([`iptables-${v}`, ...args], { netns: server.netnsPath });
  await ipt(['-t', 'nat', '-N', 'FOREIGN_REF']);
  await ipt(['-t', 'nat', '-A', 'FOREIGN_REF', '-j', 'SHUNT_INBOUND']);
  try {
    await expect(backend.enroll({ ...meshPod(tb, 'server'), interceptionMode: 'TPROXY' })).rejects.toBeInstanceOf(RestoreError);
    const since = Date.now();
    expect(await tb.echo('client', server.ipv4, 8080, 'still')).toBe('still');
    expect(await tb.waitProxyLog('server', recent(since, 'inbound', 8080))).toHaveLength(1);
  } finally {
    await ipt(['-t', 'nat', '-F', 'FOREIGN_REF']);
    await ipt(['-t', 'nat', '-X', 'FOREIGN_REF']);
  }
});

test('IPv6: client -> server via both sidecars', async () => {
  if (tb.sidecarStatus('client').ipv6 !== 'running') {
    throw new Error(`IPv6 sidecar stand-in not running: ${JSON.stringify(tb.sidecarStatus('client').ipv6)} (build @shunt/libbpf)`);
  }
  const client = tb.pod('client');
  const server = tb.pod('server');
  const since = Date.now();
  expect(await tb.echo('client', server.ipv6, 8080, 'v6')).toBe('v6');
  const out = await tb.waitProxyLog('client', recent(since, 'outbound'));
  const inb = await tb.waitProxyLog('server', recent(since, 'inbound'));
  expect(out).toHaveLength(1);
  expect(out[0]).toMatchObject({ proxy: 'proxy6', client: { address: client.ipv6 }, originalDst: { address: server.ipv6, port: 8080 } });
  expect(inb).toHaveLength(1);
  expect(inb[0]).toMatchObject({ proxy: 'proxy6', client: { address: client.ipv6 }, originalDst: { address: server.ipv6, port: 8080 }, upstreamSource: { address: '::6' } });
});

test('cleanup leaves no SHUNT_* chains and traffic goes direct again', async () => {
  await backend.stop({ cleanup: true });
  for (const name of ['client', 'server', 'clientx']) {
    expect(await save(name, 4)).not.toMatch(/SHUNT_/);
    expect(await save(name, 6)).not.toMatch(/SHUNT_/);
  }
  const since = Date.now();
  expect(await tb.echo('client', tb.pod('server').ipv4, 8080, 'direct')).toBe('direct');
  await new Promise((r) => setTimeout(r, 200));
  expect(tb.proxyLog('client', { since })).toEqual([]);
  expect(tb.proxyLog('server', { since })).toEqual([]);
});
