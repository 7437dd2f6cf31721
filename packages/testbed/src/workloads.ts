// Workload programs and the parsers of their clients' output. Every client is bounded in time.

/** TCP echo server (Node), dual stack. Argument: port. */
export const ECHO_SERVER_SOURCE = String.raw`
'use strict';
const net = require('node:net');
const port = Number(process.argv[1]);
const server = net.createServer({ noDelay: true }, (s) => { s.on('error', () => s.destroy()); s.pipe(s); });
server.listen({ host: '::', port }, () => process.stderr.write('echo ready\n'));
process.on('SIGTERM', () => process.exit(0));
`;

/**
 * HTTP probe client (Node): N sequential GETs, each on a new connection, and a JSON summary with
 * the per-request latency in microseconds. Arguments: url count timeoutMs.
 */
export const HTTP_PROBE_SOURCE = String.raw`
'use strict';
const http = require('node:http');
const [url, countArg, timeoutArg] = process.argv.slice(1);
const count = Math.max(1, Math.min(10000, Number(countArg)));
const timeoutMs = Number(timeoutArg);
const agent = new http.Agent({ keepAlive: false });
function once() {
  return new Promise((resolve) => {
    const t0 = process.hrtime.bigint();
    const req = http.get(url, { agent, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ ok: true, status: res.statusCode, body, us: Number(process.hrtime.bigint() - t0) / 1000, local: req.socket && req.socket.localPort }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout after ' + timeoutMs + ' ms')));
    req.on('error', (e) => resolve({ ok: false, error: e.message, us: Number(process.hrtime.bigint() - t0) / 1000 }));
  });
}
(async () => {
  const results = [];
  for (let i = 0; i < count; i++) results.push(await once());
  process.stdout.write(JSON.stringify(results) + '\n');
})();
`;

/** TCP echo client (Node): sends a message, expects it back. Arguments: host port message timeoutMs. */
export const ECHO_CLIENT_SOURCE = String.raw`
'use strict';
const net = require('node:net');
const [host, port, message, timeoutArg] = process.argv.slice(1);
const s = net.connect({ host, port: Number(port) });
let got = '';
const timer = setTimeout(() => { process.stderr.write('echo client: timeout\n'); process.exit(2); }, Number(timeoutArg));
s.setEncoding('utf8');
s.on('connect', () => s.write(message));
s.on('data', (d) => { got += d; if (got.length >= message.length) { clearTimeout(timer); process.stdout.write(JSON.stringify({ reply: got, local: s.localAddress + ' ' + s.localPort })); s.end(); } });
s.on('error', (e) => { process.stderr.write('echo client: ' + e.message + '\n'); process.exit(1); });
`;

export interface HttpProbeResult {
  ok: boolean;
  status?: number;
  body?: string;
  error?: string;
  /** Request latency in microseconds (connect + request + response). */
  us: number;
}

export interface SockperfResult {
  /** Round-trip times in microseconds. */
  p50Us: number;
  p99Us: number;
  avgUs: number;
  observations: number;
}

/** Parses `sockperf ping-pong --full-rtt` output. */
export function parseSockperf(output: string): SockperfResult {
  // eslint-disable-next-line no-control-regex
  const text = output.replace(/\x1b\[[0-9;]*m/g, '');
  const pct = (p: string) => {
    const m = new RegExp(`percentile ${p.replace('.', '\\.')} =\\s*([0-9.]+)`).exec(text);
    if (!m) throw new Error(`sockperf output has no percentile ${p}: ${text.slice(-500)}`);
    return Number(m[1]);
  };
  const avg = /avg-(?:rtt|latency)=([0-9.]+)/.exec(text);
  const obs = /Total (\d+) observations/.exec(text);
  return { p50Us: pct('50.000'), p99Us: pct('99.000'), avgUs: avg ? Number(avg[1]) : NaN, observations: obs ? Number(obs[1]) : 0 };
}

export interface IperfResult {
  bitsPerSecond: number;
  retransmits: number;
}

/** Parses `iperf3 -J` output. */
export function parseIperf(json: string): IperfResult {
  let d: { end?: { sum_received?: { bits_per_second?: number }; sum_sent?: { retransmits?: number } }; error?: string };
  try {
    d = JSON.parse(json);
  } catch {
    throw new Error(`iperf3 output is not JSON: ${json.slice(0, 300)}`);
  }
  if (d.error) throw new Error(`iperf3: ${d.error}`);
  const bps = d.end?.sum_received?.bits_per_second;
  if (typeof bps !== 'number') throw new Error(`iperf3 output has no end.sum_received: ${json.slice(0, 300)}`);
  return { bitsPerSecond: bps, retransmits: d.end?.sum_sent?.retransmits ?? 0 };
}

export interface WrkResult {
  requests: number;
  requestsPerSecond: number;
  errors: number;
  durationS: number;
}

/** Parses wrk's text summary. */
export function parseWrk(output: string): WrkResult {
  const rps = /Requests\/sec:\s*([0-9.]+)/.exec(output);
  const req = /(\d+) requests in ([0-9.]+)(us|ms|s|m)/.exec(output);
  if (!rps || !req) throw new Error(`wrk output has no summary: ${output.slice(-500)}`);
  const unit = { us: 1e-6, ms: 1e-3, s: 1, m: 60 }[req[3] as 'us' | 'ms' | 's' | 'm'];
  let errors = 0;
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(output);
  if (sock) errors += Number(sock[1]) + Number(sock[2]) + Number(sock[3]) + Number(sock[4]);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(output);
  if (non2xx) errors += Number(non2xx[1]);
  return { requests: Number(req[1]), requestsPerSecond: Number(rps[1]), errors, durationS: Number(req[2]) * unit };
}
