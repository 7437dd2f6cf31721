// One log line per proxied connection, written by both stand-ins (HAProxy for IPv4, the Node
// proxy for IPv6) in the same format, e.g.
//   shunt-proxy listener=outbound client=198.18.0.2:40000 dst=198.18.0.3:8080 upstream=198.18.0.3:8080 src=198.18.0.2:41000 up=78 down=120 at=1700000000.123 term=--
// `dst` is the original destination the proxy obtained (SO_ORIGINAL_DST); `upstream` is where it
// connected; `src` its own address on that upstream connection.

export type Listener = 'outbound' | 'inbound';

export interface Endpoint {
  address: string;
  port: number;
}

export interface ProxyLogRecord {
  /** Which stand-in wrote it. */
  proxy: 'haproxy' | 'proxy6' | 'node4';
  listener: Listener;
  client: Endpoint;
  originalDst: Endpoint;
  /** Undefined when the proxy never connected upstream. */
  upstream?: Endpoint;
  upstreamSource?: Endpoint;
  /** Bytes from the client, and bytes sent back to it. */
  bytes: { up: number; down: number };
  /** Accept time, epoch ms. */
  at: number;
  /** HAProxy's termination state (`--` = normal) or the Node proxy's equivalent. */
  termination: string;
}

export const LOG_PREFIX = 'shunt-proxy';

/** HAProxy log-format that produces the line above. */
export const HAPROXY_LOG_FORMAT =
  `${LOG_PREFIX} proxy=haproxy listener=%f client=%ci:%cp dst=%fi:%fp upstream=%si:%sp src=%bi:%bp up=%U down=%B at=%Ts.%ms term=%ts`;

export function parseEndpoint(s: string | undefined): Endpoint | undefined {
  if (!s || s === '-' || s.startsWith('-:')) return undefined;
  const m = /^\[?([0-9a-fA-F.:]+?)\]?:(\d+)$/.exec(s);
  if (!m) return undefined;
  return { address: m[1]!, port: Number(m[2]) };
}

/** Parses one line; returns undefined for lines that are not connection records (start-up noise). */
export function parseProxyLogLine(line: string): ProxyLogRecord | undefined {
  const idx = line.indexOf(`${LOG_PREFIX} `);
  if (idx < 0) return undefined;
  const kv = new Map<string, string>();
  for (const tok of line.slice(idx + LOG_PREFIX.length + 1).trim().split(/\s+/)) {
    const eq = tok.indexOf('=');
    if (eq > 0) kv.set(tok.slice(0, eq), tok.slice(eq + 1));
  }
  const listener = kv.get('listener');
  const client = parseEndpoint(kv.get('client'));
  const originalDst = parseEndpoint(kv.get('dst'));
  if ((listener !== 'outbound' && listener !== 'inbound') || !client || !originalDst) return undefined;
  const rec: ProxyLogRecord = {
    proxy: kv.get('proxy') === 'proxy6' ? 'proxy6' : kv.get('proxy') === 'node4' ? 'node4' : 'haproxy',
    listener,
    client,
    originalDst,
    bytes: { up: Number(kv.get('up') ?? 0), down: Number(kv.get('down') ?? 0) },
    at: Math.round(Number(kv.get('at') ?? 0) * 1000),
    termination: kv.get('term') ?? '',
  };
  const upstream = parseEndpoint(kv.get('upstream'));
  if (upstream && upstream.address !== '0.0.0.0' && upstream.address !== '::') rec.upstream = upstream;
  const src = parseEndpoint(kv.get('src'));
  if (src) rec.upstreamSource = src;
  return rec;
}

/** Collects records from a stream of text chunks, keeping at most `max` (oldest dropped first). */
export class ProxyLogCollector {
  private partial = '';
  readonly records: ProxyLogRecord[] = [];
  dropped = 0;
  constructor(private readonly max = 100_000) {}

  push(chunk: string): void {
    const text = this.partial + chunk;
    const lines = text.split('\n');
    this.partial = lines.pop() ?? '';
    for (const line of lines) {
      const rec = parseProxyLogLine(line);
      if (!rec) continue;
      this.records.push(rec);
      if (this.records.length > this.max) {
        this.records.shift();
        this.dropped++;
      }
    }
  }
}
