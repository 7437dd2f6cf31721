// The proxy stand-ins prove themselves before any backend exists: hand-written istio-like
// `iptables -t nat … REDIRECT` rules send the traffic to them, and they must log the original
// destination (read with SO_ORIGINAL_DST) and really forward there.
import type { Testbed } from './index';
import { clientServerTestbed } from './__fixtures__/client-server';

let tb: Testbed;

beforeAll(async () => {
  tb = await clientServerTestbed();
}, 60_000);

afterAll(async () => {
  await tb?.dispose();
});

test('sidecars run as uid 1337 in the pod cgroup and listen on 15001/15006', async () => {
  expect(tb.sidecarStatus('client').ipv4).toBe('running');
  const ss = await tb.run('client', ['ss', '-Hltnpe']);
  expect(ss.stdout).toMatch(/0\.0\.0\.0:15001 .*uid:1337/);
  expect(ss.stdout).toMatch(/0\.0\.0\.0:15006 .*uid:1337/);
});

test('direct path: no rules, the sidecars see nothing', async () => {
  const server = tb.pod('server');
  const since = Date.now();
  const [r] = await tb.httpGet('client', `http://${server.ipv4}:8080/`);
  expect(r).toMatchObject({ ok: true, status: 200, body: 'from-server' });
  expect(tb.proxyLog('client', { since })).toEqual([]);
  expect(tb.proxyLog('server', { since })).toEqual([]);
});

test('hand-written REDIRECT: both sidecars log the original destination and forward to it (IPv4)', async () => {
  const client = tb.pod('client');
  const server = tb.pod('server');
  await tb.applyHandwrittenRedirect('client');
  await tb.applyHandwrittenRedirect('server');
  try {
    const before = { client: await tb.counters('client'), server: await tb.counters('server') };
    const since = Date.now();
    const results = await tb.httpGet('client', `http://${server.ipv4}:8080/`, { count: 3 });
    expect(results.map((r) => r.body)).toEqual(['from-server', 'from-server', 'from-server']);

    const out = await tb.waitProxyLog('client', (r) => r.at >= since - 1 && r.listener === 'outbound', { count: 3 });
    expect(out).toHaveLength(3);
    for (const rec of out) {
      expect(rec.proxy).toBe('haproxy');
      expect(rec.client.address).toBe(client.ipv4);
      // %fi:%fp is the pre-REDIRECT destination, not 127.0.0.1:15001 …
      expect(rec.originalDst).toEqual({ address: server.ipv4, port: 8080 });
      // … and HAProxy really connected there.
      expect(rec.upstream).toEqual({ address: server.ipv4, port: 8080 });
      expect(rec.upstreamSource?.address).toBe(client.ipv4);
      expect(rec.bytes.up).toBeGreaterThan(0);
      expect(rec.bytes.down).toBeGreaterThan(0);
    }
    const inb = await tb.waitProxyLog('server', (r) => r.at >= since - 1 && r.listener === 'inbound', { count: 3 });
    expect(inb).toHaveLength(3);
    for (const rec of inb) {
      // The client sidecar's own connection arrives here (it runs as 1337, so it was not re-captured on the way out).
      expect(rec.client.address).toBe(client.ipv4);
      expect(rec.originalDst).toEqual({ address: server.ipv4, port: 8080 });
      expect(rec.upstream).toEqual({ address: server.ipv4, port: 8080 });
      expect(rec.upstreamSource?.address).toBe('127.0.0.6');
    }

    // Path evidence: the proxied path goes over lo in both pods and creates conntrack entries.
    const after = { client: await tb.counters('client'), server: await tb.counters('server') };
    expect(after.client.lo.rxPackets).toBeGreaterThan(before.client.lo.rxPackets);
    expect(after.server.lo.rxPackets).toBeGreaterThan(before.server.lo.rxPackets);
    expect(after.client.eth0.txPackets).toBeGreaterThan(before.client.eth0.txPackets);
    expect(after.server.conntrack).toBeGreaterThan(0);
  } finally {
    await tb.removeHandwrittenRedirect('client');
    await tb.removeHandwrittenRedirect('server');
  }
  // Rules removed: the direct path is back.
  const since = Date.now();
  const [r] = await tb.httpGet('client', `http://${server.ipv4}:8080/`);
  expect(r?.ok).toBe(true);
  expect(tb.proxyLog('client', { since })).toEqual([]);
});

test('hand-written REDIRECT: the IPv6 stand-in logs the original destination (IP6T_SO_ORIGINAL_DST)', async () => {
  const status = tb.sidecarStatus('client').ipv6;
  if (typeof status === 'object') {
    throw new Error(`IPv6 sidecar stand-in unavailable: ${status.unavailable}`);
  }
  const client = tb.pod('client');
  const server = tb.pod('server');
  await tb.applyHandwrittenRedirect('client');
  await tb.applyHandwrittenRedirect('server');
  try {
    const since = Date.now();
    const [r] = await tb.httpGet('client', `http://[${server.ipv6}]:8080/`);
    expect(r).toMatchObject({ ok: true, body: 'from-server' });
    const [out] = await tb.waitProxyLog('client', (x) => x.at >= since - 1 && x.listener === 'outbound');
    expect(out).toMatchObject({
      proxy: 'proxy6',
      client: { address: client.ipv6 },
      originalDst: { address: server.ipv6, port: 8080 },
      upstream: { address: server.ipv6, port: 8080 },
    });
    const [inb] = await tb.waitProxyLog('server', (x) => x.at >= since - 1 && x.listener === 'inbound');
    expect(inb).toMatchObject({ proxy: 'proxy6', originalDst: { address: server.ipv6, port: 8080 }, upstreamSource: { address: '::6' } });
  } finally {
    await tb.removeHandwrittenRedirect('client');
    await tb.removeHandwrittenRedirect('server');
  }
});
