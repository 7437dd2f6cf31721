// Pure parsers and renderers: proxy log lines, client outputs, the bench report.
import { markdownTable, pickIptablesBaseline, summarizeMode, svgChart, type BenchReport } from './benchmark/report';
import { summarize } from './benchmark/stats';
import { handwrittenRedirectRemoval, handwrittenRedirectRules } from './iptables-handwritten';
import { parseProxyLogLine, ProxyLogCollector } from './proxy-log';
import { parseIperf, parseSockperf, parseWrk } from './workloads';

test('proxy log lines from HAProxy and the IPv6 proxy parse to the same record shape', () => {
  const v4 = parseProxyLogLine(
    'shunt-proxy proxy=haproxy listener=outbound client=198.18.0.2:40000 dst=198.18.0.3:8080 upstream=198.18.0.3:8080 src=198.18.0.2:41000 up=78 down=120 at=1700000000.123 term=--',
  );
  expect(v4).toEqual({
    proxy: 'haproxy',
    listener: 'outbound',
    client: { address: '198.18.0.2', port: 40000 },
    originalDst: { address: '198.18.0.3', port: 8080 },
    upstream: { address: '198.18.0.3', port: 8080 },
    upstreamSource: { address: '198.18.0.2', port: 41000 },
    bytes: { up: 78, down: 120 },
    at: 1700000000123,
    termination: '--',
  });
  const v6 = parseProxyLogLine(
    'shunt-proxy proxy=proxy6 listener=inbound client=[2001:db8::2]:5000 dst=[2001:db8::3]:80 upstream=- src=- up=0 down=0 at=1.5 term=SC',
  );
  expect(v6).toMatchObject({ proxy: 'proxy6', listener: 'inbound', originalDst: { address: '2001:db8::3', port: 80 }, termination: 'SC' });
  expect(v6?.upstream).toBeUndefined();
  expect(parseProxyLogLine('[NOTICE] haproxy started')).toBeUndefined();
  const c = new ProxyLogCollector(1);
  c.push('shunt-proxy listener=outbound client=1.2.3.4:1 dst=5.6.7.8:2 up=1 down=1 at=1 term=--\nshunt-proxy listener=out');
  expect(c.records).toHaveLength(1);
  c.push('bound client=1.2.3.4:3 dst=5.6.7.8:2 up=1 down=1 at=2 term=--\n');
  expect(c.records.map((r) => r.client.port)).toEqual([3]);
  expect(c.dropped).toBe(1);
});

test('client output parsers', () => {
  const sp = parseSockperf(
    'sockperf: \x1b[2;35m====> avg-rtt=30.1 (std-dev=5)\x1b[0m\nsockperf: \x1b[2;35mTotal 100 observations\x1b[0m\nsockperf: ---> percentile 99.000 =   90.5\nsockperf: ---> percentile 50.000 =    28.4\n',
  );
  expect(sp).toEqual({ p50Us: 28.4, p99Us: 90.5, avgUs: 30.1, observations: 100 });
  expect(() => parseSockperf('nothing')).toThrow(/percentile 50.000/);
  expect(parseIperf(JSON.stringify({ end: { sum_received: { bits_per_second: 5e9 }, sum_sent: { retransmits: 2 } } }))).toEqual({ bitsPerSecond: 5e9, retransmits: 2 });
  expect(() => parseIperf(JSON.stringify({ error: 'unable to connect' }))).toThrow(/unable to connect/);
  const wrk = parseWrk('  20895 requests in 3.00s, 1.61MB read\n  Socket errors: connect 0, read 2, write 0, timeout 1\nRequests/sec:   6964.57\n');
  expect(wrk).toEqual({ requests: 20895, requestsPerSecond: 6964.57, errors: 3, durationS: 3 });
});

test('hand-written rules: capture with the proxy uid and passthrough source excluded, and a matching removal', () => {
  const v4 = handwrittenRedirectRules(4);
  expect(v4).toContain('-A TB_ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006');
  expect(v4).toContain('-A TB_ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001');
  expect(v4).toContain('-A TB_ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN');
  expect(v4).toContain('-A TB_ISTIO_OUTPUT -s 127.0.0.6/32 -o lo -j RETURN');
  expect(handwrittenRedirectRules(6)).toContain('-s ::6/128');
  expect(handwrittenRedirectRemoval()).toMatch(/-D PREROUTING -p tcp -j TB_ISTIO_INBOUND[\s\S]*-X TB_ISTIO_REDIRECT/);
});

test('bench report: medians with min/max, ratios to direct and iptables, an SVG', () => {
  expect(summarize([3, 1, 2])).toEqual({ median: 2, min: 1, max: 3, n: 3 });
  expect(summarize([1, 2, 3, 10]).median).toBe(2.5);
  const s = (rtt: number, gbps: number) => ({ rttP50Us: rtt, rttP99Us: rtt * 2, throughputGbps: gbps, bulk64kGbps: gbps, rr1kTps: 1e6 / rtt, newConnsPerSec: 1000 / rtt, cpuPerConnUs: rtt * 10, machineCpuPerConnUs: rtt * 12, conntrackPerConn: 0 });
  const report: BenchReport = {
    startedAt: '',
    finishedAt: '',
    machine: { kernel: 'k', cpus: 2, cpuModel: 'cpu' },
    settings: { rounds: 2, seconds: 1, wrkConnections: 8, order: ['direct', 'iptables-handwritten'] },
    modes: [summarizeMode('direct', 'd', [s(10, 8), s(12, 6)]), summarizeMode('iptables-handwritten', 'i', [s(40, 2), s(44, 4)])],
    iptablesBaseline: pickIptablesBaseline(['direct', 'iptables-handwritten']),
  };
  const md = markdownTable(report);
  expect(md).toContain('| direct | 11.0 [10.0–12.0] | 22.0 [20.0–24.0] | 7.00 [6.00–8.00]');
  expect(md).toContain('| iptables-handwritten | 3.82× / 1.00× | 3.82× / 1.00× | 0.43× / 1.00×');
  expect(svgChart(report)).toMatch(/^<svg[\s\S]*<\/svg>$/);
  expect(pickIptablesBaseline(['direct', 'iptables', 'iptables-handwritten'])).toBe('iptables');
});
