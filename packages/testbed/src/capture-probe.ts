// Who captured a connection, for the backends' capture-option tests (iptables and sockops run the
// same Istio cases against the same sidecars): the client pod with a given istio-proxy env and
// annotations, a one-shot echo client run in a pod as a chosen uid/gid (or with a supplementary
// group), and the original destination the pod's outbound sidecar logged for that connection.
// Test-only, like the whole package: the assertions stay in the tests.
import type { KubePod } from './kube';
import type { Endpoint, Listener, ProxyLogRecord } from './proxy-log';
import type { Testbed } from './testbed';

/** A one-shot echo client; argv: host port message. Prints {reply}; exits non-zero on error or after 5 s. */
export const ECHO_CLIENT = String.raw`
const net = require('node:net');
const [host, port, msg] = process.argv.slice(1);
const s = net.connect({ host, port: Number(port) }, () => s.write(msg));
let got = '';
s.on('data', (d) => { got += d; if (got.length >= msg.length) { process.stdout.write(JSON.stringify({ reply: got })); s.destroy(); } });
s.on('error', (e) => { process.stderr.write(String(e)); process.exit(2); });
setTimeout(() => { process.stderr.write('timeout'); process.exit(3); }, 5000).unref();
`;

/** The caller's uid, gid (default: the uid) and, when set, one supplementary group. */
export interface CallerIds {
  uid: number;
  gid?: number;
  suppl?: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Proxy-log filter: records of `listener` from `since` on (1 ms of clock slack). */
export const loggedSince = (since: number, listener: Listener) => (r: ProxyLogRecord) => r.at >= since - 1 && r.listener === listener;

/** tb.kubePod(name) with these annotations added and, when `env` is given, its istio-proxy env replaced by it. */
export function kubePodWith(tb: Testbed, name: string, env?: Record<string, string>, annotations: Record<string, string> = {}): KubePod {
  const kube = tb.kubePod(name);
  kube.metadata.annotations = { ...kube.metadata.annotations, ...annotations };
  if (env) {
    const proxy = kube.spec.containers.find((c) => c.name === 'istio-proxy');
    if (!proxy) throw new Error(`kubePodWith: pod ${name} has no istio-proxy container to set env on (mesh: 'sidecar' pods have one)`);
    proxy.env = Object.entries(env).map(([n, value]) => ({ name: n, value }));
  }
  return kube;
}

/** Runs ECHO_CLIENT in `pod` as `ids` and returns the reply it got. */
export async function echoAs(tb: Testbed, pod: string, host: string, port: number, msg: string, ids: CallerIds): Promise<string> {
  const argv = [process.execPath, '-e', ECHO_CLIENT, host, String(port), msg];
  // With a supplementary group, setpriv runs here (as root) instead of the testbed's --clear-groups.
  const res =
    ids.suppl === undefined
      ? await tb.run(pod, argv, { uid: ids.uid, gid: ids.gid ?? ids.uid, timeoutMs: 15_000 })
      : await tb.run(pod, ['setpriv', `--reuid=${ids.uid}`, `--regid=${ids.gid ?? ids.uid}`, `--groups=${ids.suppl}`, '--', ...argv], { timeoutMs: 15_000 });
  return (JSON.parse(res.stdout) as { reply: string }).reply;
}

/**
 * One connection from `pod` as `ids`; the original destination its outbound sidecar logged for it,
 * or null when the sidecar never saw it. Throws when the echo itself did not come back: a lost
 * connection is a failure, never "not captured".
 */
export async function capturedOutbound(tb: Testbed, pod: string, host: string, port: number, ids: CallerIds): Promise<Endpoint | null> {
  const since = Date.now();
  const msg = `m${Math.random().toString(36).slice(2, 8)}`;
  const reply = await echoAs(tb, pod, host, port, msg, ids);
  if (reply !== msg) throw new Error(`echo from ${pod} to ${host}:${port} as ${JSON.stringify(ids)}: got ${JSON.stringify(reply)}, sent ${JSON.stringify(msg)}`);
  const hits = await tb.waitProxyLog(pod, loggedSince(since, 'outbound'), { timeoutMs: 1500 });
  if (hits.length > 0) return hits[0]!.originalDst;
  await sleep(150); // a late record would still be a capture
  return tb.proxyLog(pod, { since }).find((r) => r.listener === 'outbound')?.originalDst ?? null;
}
