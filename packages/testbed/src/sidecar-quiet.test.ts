// proxyAccessLog: false (what the benchmark runs): HAProxy proxies exactly as before but writes
// no line per connection, so nothing lands in proxyLog().
import type { Testbed } from './index';
import { clientServerTestbed } from './__fixtures__/client-server';

let tb: Testbed;

beforeAll(async () => {
  tb = await clientServerTestbed({ ipv6Proxy: 'off', proxyAccessLog: false });
}, 60_000);

afterAll(async () => {
  await tb?.dispose();
});

test('no access log: connections still go through both sidecars, and none is logged', async () => {
  const server = tb.pod('server');
  await tb.applyHandwrittenRedirect('client');
  await tb.applyHandwrittenRedirect('server');
  try {
    const before = { client: await tb.counters('client'), server: await tb.counters('server') };
    const results = await tb.httpGet('client', `http://${server.ipv4}:8080/`, { count: 5 });
    expect(results.map((r) => r.body)).toEqual(Array(5).fill('from-server'));
    const after = { client: await tb.counters('client'), server: await tb.counters('server') };
    // Redirected to the sidecars: over lo in both pods (the direct path never touches lo).
    expect(after.client.lo.rxPackets).toBeGreaterThan(before.client.lo.rxPackets);
    expect(after.server.lo.rxPackets).toBeGreaterThan(before.server.lo.rxPackets);
    // HAProxy logs when a connection ends: give it time to (not) say anything.
    await new Promise((r) => setTimeout(r, 500));
    expect(tb.proxyLog('client')).toEqual([]);
    expect(tb.proxyLog('server')).toEqual([]);
  } finally {
    await tb.removeHandwrittenRedirect('client');
    await tb.removeHandwrittenRedirect('server');
  }
});
