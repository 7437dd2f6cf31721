import { BUILTIN_MODES, type ModePods, type PathMode } from './modes';
import type { ProxyLogRecord } from './proxy-log';
import { summarize } from './benchmark/stats';
import { Testbed } from './testbed';
import { withTeardown } from './signals';
import type { ZtunnelLogEntry } from './ztunnel/log';

type ZtConn = Extract<ZtunnelLogEntry, { event: 'conn' }>;

/** What the node could run, as decided by the caller (the agent: core probe + backend support). */
export interface DemoCapabilities {
  /** Where the answer came from, e.g. "core probeNode + backend support()". */
  source: string;
  rows: { name: string; available: boolean; detail: string }[];
}

export interface DemoOptions {
  /** Paths to show; default direct and the hand-written iptables sidecar path. */
  modes?: readonly PathMode[];
  /** Supplied by the agent; without it the demo asks the kernel through @shunt/libbpf's probes. */
  capabilities?: DemoCapabilities;
  /** Requests per path (each a new connection); default 20. */
  requests?: number;
  /** `sidecar` (default: HAProxy sidecars, their logs shown) or `ambient` (no sidecars; the modes' ztunnel stand-in log shown). */
  mesh?: 'sidecar' | 'ambient';
  out?: (line: string) => void;
}

export interface DemoPathResult {
  mode: string;
  ok: number;
  failed: number;
  latencyUs: { p50: number; max: number };
  viaProxy: boolean;
  proxied: { client: ProxyLogRecord[]; server: ProxyLogRecord[] };
  /** Ambient: the ztunnel legs the requests produced (client pod's outbound, server pod's HBONE/inbound). */
  ztunnel?: { client: ZtConn[]; server: ZtConn[] };
  deltas: { clientLoPackets: number; serverLoPackets: number; conntrack: number };
}

const HTTP_PORT = 8080;

/** Asks the kernel which eBPF program types and attach points work here (used when the caller gives no capabilities). */
export async function probeCapabilities(iptablesShown?: DemoPathResult): Promise<DemoCapabilities> {
  const rows: DemoCapabilities['rows'] = [];
  try {
    const lib = await import('@shunt/libbpf');
    const add = (name: string, r: { available: boolean; evidence: string }) => rows.push({ name, available: r.available, detail: r.evidence });
    add('prog sock_ops', lib.probeProgType('sock_ops'));
    add('prog sk_msg', lib.probeProgType('sk_msg'));
    add('prog cgroup_sock_addr', lib.probeProgType('cgroup_sock_addr'));
    add('prog cgroup_sockopt', lib.probeProgType('cgroup_sockopt'));
    add('prog sched_cls', lib.probeProgType('sched_cls'));
    add('helper msg_redirect_hash', lib.probeHelper('sk_msg', 'msg_redirect_hash'));
    add('tcx links', lib.probeTcx());
  } catch (e) {
    rows.push({ name: '@shunt/libbpf', available: false, detail: `probes unavailable: ${(e as Error).message.split('\n')[0]}` });
  }
  const has = (n: string) => rows.find((r) => r.name === n)?.available === true;
  const sockops = has('prog sock_ops') && has('prog sk_msg') && has('prog cgroup_sock_addr') && has('helper msg_redirect_hash');
  const tc = has('prog sched_cls');
  rows.push({ name: 'backend sockops (kernel side)', available: sockops, detail: 'needs sock_ops, sk_msg, cgroup_sock_addr, msg_redirect_hash' });
  rows.push({ name: 'backend tc (kernel side)', available: tc, detail: `needs sched_cls${has('tcx links') ? ', tcx available' : ', no tcx: legacy clsact'}` });
  rows.push(
    iptablesShown
      ? { name: 'backend iptables', available: iptablesShown.viaProxy && iptablesShown.ok > 0, detail: `nat REDIRECT in a pod netns: ${iptablesShown.viaProxy ? 'worked above' : 'did not reach the sidecar above'}` }
      : { name: 'backend iptables', available: false, detail: 'not tried' },
  );
  return { source: '@shunt/libbpf feature probes (no backend is wired in yet)', rows };
}

/** The ztunnel legs since `since`: the client pod's outbound ones and the server pod's HBONE/inbound ones (bounded wait for `want` each). */
async function ztunnelLegs(mode: PathMode, since: number, want: number): Promise<{ client: ZtConn[]; server: ZtConn[] }> {
  const read = () => {
    const conns = (mode.ztunnelLog?.() ?? []).filter((e): e is ZtConn => e.event === 'conn' && e.at >= since - 1);
    return { client: conns.filter((c) => c.pod === 'client' && c.leg === 'outbound'), server: conns.filter((c) => c.pod === 'server' && c.leg !== 'outbound') };
  };
  const deadline = Date.now() + (want ? 3000 : 200);
  for (let i = 0; i < 200; i++) {
    const r = read();
    if ((r.client.length >= want && r.server.length >= want) || Date.now() > deadline) return r;
    await new Promise((res) => setTimeout(res, 20));
  }
  return read();
}

function fmtUs(us: number): string {
  return us >= 1000 ? `${(us / 1000).toFixed(2)} ms` : `${us.toFixed(0)} µs`;
}

function ep(e: { address: string; port: number } | undefined): string {
  if (!e) return '-';
  return e.address.includes(':') ? `[${e.address}]:${e.port}` : `${e.address}:${e.port}`;
}

/** Builds a node with client and server pods (both with sidecars), sends requests per path and explains what happened. */
export async function runDemo(opts: DemoOptions = {}): Promise<DemoPathResult[]> {
  const out = opts.out ?? ((l: string) => console.log(l));
  const modes = opts.modes ?? BUILTIN_MODES;
  const requests = opts.requests ?? 20;
  const pods: ModePods = { client: 'client', server: 'server' };
  const ambient = opts.mesh === 'ambient';
  out(`shunt demo: a simulated node in network namespaces${ambient ? ' (ambient pods, ztunnel stand-in)' : ''}\n`);
  const mesh = ambient ? 'ambient' : 'sidecar';
  const tb = await Testbed.create({ pods: [{ name: 'client', mesh }, { name: 'server', mesh }] });
  const results: DemoPathResult[] = [];
  try {
    const c = tb.pod('client');
    const s = tb.pod('server');
    await tb.startHttpServer('server', { port: HTTP_PORT, body: 'hello from server' });
    out(`node ${c.node} (netns ${tb.node(c.node).netnsName}), bridge ${tb.node(c.node).bridge}`);
    if (ambient) {
      out(`  pod client  ${c.ipv4}  ${c.ipv6}  ambient: ztunnel's in-pod sockets :15001 (outbound) / :15006 / :15008 (HBONE), mark 1337`);
      out(`  pod server  ${s.ipv4}  ${s.ipv6}  ambient: same; app: HTTP responder on :${HTTP_PORT}`);
    } else {
      out(`  pod client  ${c.ipv4}  ${c.ipv6}  sidecar: HAProxy as uid 1337 on :15001 (outbound) / :15006 (inbound)`);
      out(`  pod server  ${s.ipv4}  ${s.ipv6}  sidecar: same; app: HTTP responder on :${HTTP_PORT}`);
    }
    out('');
    for (const mode of modes) {
      await withTeardown(() => mode.teardown(tb, pods), async () => {
        await mode.setup(tb, pods);
        const before = { c: await tb.counters('client'), s: await tb.counters('server') };
        const since = Date.now();
        const res = await tb.httpGet('client', `http://${s.ipv4}:${HTTP_PORT}/`, { count: requests });
        const after = { c: await tb.counters('client'), s: await tb.counters('server') };
        const expectLogs = mode.expectsProxy ? requests : 0;
        const clientLog = ambient ? [] : await tb.waitProxyLog('client', (r) => r.at >= since - 1, { count: expectLogs, timeoutMs: expectLogs ? 3000 : 200 });
        const serverLog = ambient ? [] : await tb.waitProxyLog('server', (r) => r.at >= since - 1, { count: expectLogs, timeoutMs: expectLogs ? 3000 : 200 });
        const zt = ambient ? await ztunnelLegs(mode, since, expectLogs) : undefined;
        const lat = summarize(res.filter((r) => r.ok).map((r) => r.us));
        const r: DemoPathResult = {
          mode: mode.name,
          ok: res.filter((x) => x.ok).length,
          failed: res.filter((x) => !x.ok).length,
          latencyUs: { p50: lat.median, max: lat.max },
          viaProxy: clientLog.length > 0 || serverLog.length > 0 || (zt ? zt.client.length + zt.server.length > 0 : false),
          proxied: { client: clientLog, server: serverLog },
          ...(zt ? { ztunnel: zt } : {}),
          deltas: {
            clientLoPackets: after.c.lo.rxPackets - before.c.lo.rxPackets,
            serverLoPackets: after.s.lo.rxPackets - before.s.lo.rxPackets,
            conntrack: (after.c.conntrack ?? 0) + (after.s.conntrack ?? 0) - (before.c.conntrack ?? 0) - (before.s.conntrack ?? 0),
          },
        };
        results.push(r);
        out(`▶ path "${mode.name}": ${mode.description}`);
        out(`  ${requests} HTTP requests client → ${s.ipv4}:${HTTP_PORT}, each on a new connection: ${r.ok} ok, ${r.failed} failed; latency p50 ${fmtUs(lat.median)}, max ${fmtUs(lat.max)}`);
        if (zt) {
          if (!r.viaProxy) out("  ztunnel saw nothing: traffic went straight over eth0");
          const o = zt.client[0];
          const i = zt.server[0];
          if (o) out(`  client's ztunnel (outbound :15001) logged ${zt.client.length} connections, e.g. ${ep(o.client)} asked for ${ep(o.origDst)} (${o.how}) → ${o.via ?? '?'}`);
          if (i) out(`  server's ztunnel (${i.leg} :${i.local.port}) logged ${zt.server.length} connections, e.g. for ${ep(i.origDst)} (${i.how}) → app from ${ep(i.upstreamSource)}`);
        } else if (!r.viaProxy) {
          out('  the sidecars saw nothing: traffic went straight over eth0');
        } else {
          const o = clientLog[0];
          const i = serverLog[0];
          if (o) out(`  client sidecar (outbound :15001) logged ${clientLog.length} connections, e.g. ${ep(o.client)} asked for ${ep(o.originalDst)} (SO_ORIGINAL_DST) → connected to ${ep(o.upstream)}`);
          if (i) out(`  server sidecar (inbound  :15006) logged ${serverLog.length} connections, e.g. ${ep(i.client)} asked for ${ep(i.originalDst)} → delivered via ${ep(i.upstreamSource)} to ${ep(i.upstream)}`);
        }
        out(`  evidence: lo packets client +${r.deltas.clientLoPackets}, server +${r.deltas.serverLoPackets}; conntrack entries +${r.deltas.conntrack}`);
        if (mode.expectsProxy !== r.viaProxy) {
          out(`  ⚠ expected ${mode.expectsProxy ? `${ambient ? 'ztunnel' : 'the sidecars'} to see the traffic` : 'no proxy on this path'}, but ${r.viaProxy ? 'it did' : 'nothing was seen'}`);
        }
        out('');
      });
    }
    const caps = opts.capabilities ?? (await probeCapabilities(results.find((x) => x.mode.startsWith('iptables'))));
    out(`what this node could run (${caps.source}):`);
    for (const row of caps.rows) out(`  ${row.available ? '✔' : '✘'} ${row.name.padEnd(32)} ${row.detail}`);
    const direct = results.find((x) => x.mode === 'direct');
    const ipt = results.find((x) => x.mode.startsWith('iptables'));
    if (direct && ipt && direct.latencyUs.p50 > 0) {
      out(`\nproxy tax on this machine (new connection + request, p50): ${fmtUs(direct.latencyUs.p50)} direct vs ${fmtUs(ipt.latencyUs.p50)} via ${ipt.mode} (${(ipt.latencyUs.p50 / direct.latencyUs.p50).toFixed(1)}×). npm run bench measures it properly.`);
    }
  } finally {
    await tb.dispose();
  }
  return results;
}
