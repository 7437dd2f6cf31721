// Helpers shared by the agent's end-to-end tests: the built CLI as a process, /metrics reads,
// bounded waits, and one request through the testbed's sidecars.
import { execFileSync } from 'node:child_process';
import type { Testbed } from '@shunt/testbed';
import { builtCliCommand, spawnAgent, type AgentProcess } from '../agent/process';

/** Runs `shunt <args>` from dist and returns its stdout (throws with stderr on a non-zero exit). */
export function runCli(args: string[], timeoutMs = 60_000): string {
  const [node, ...pre] = builtCliCommand() as [string, ...string[]];
  return execFileSync(node, [...pre, ...args], { encoding: 'utf8', timeout: timeoutMs, stdio: ['ignore', 'pipe', 'pipe'] });
}

/** `shunt agent <args>` from dist, resolved once it logged its first full sync (or `until`). */
export async function startBuiltAgent(
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; readyTimeoutMs?: number; until?: (l: Record<string, unknown>) => boolean } = {},
): Promise<AgentProcess> {
  const agent = spawnAgent(args, { cli: builtCliCommand(), ...(opts.env ? { env: opts.env } : {}) });
  try {
    await agent.waitLog(opts.until ?? ((l) => l['msg'] === 'ready: first full sync done'), opts.readyTimeoutMs ?? 60_000);
  } catch (e) {
    await agent.stop().catch(() => undefined);
    throw e;
  }
  return agent;
}

/** Named netns of the testbed's pods (not its nodes): what `--netns-prefix` scopes a run to. */
export function podNetnsPrefix(tb: Testbed): string {
  return `${tb.prefix}-pod-`;
}

export async function scrape(port: number): Promise<string> {
  return (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
}

/** One sample of a metric (the first whose labels include `labels`); throws when absent. */
export async function metric(port: number, name: string, labels: Record<string, string> = {}): Promise<number> {
  const text = await scrape(port);
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  const line = text
    .split('\n')
    .find((l) => (l.startsWith(`${name} `) || l.startsWith(`${name}{`)) && want.every((w) => l.includes(w)));
  if (!line) throw new Error(`metric ${name}${want.length ? `{${want.join(',')}}` : ''} not found in /metrics`);
  return Number(line.split(' ').pop());
}

/** Polls `fn` every 100 ms until it holds; bounded in count and time. */
export async function eventually(what: string, fn: () => Promise<boolean> | boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; i < 1000; i++) {
    if (await fn()) return;
    if (Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

/**
 * One HTTP request client → server's IP. `originalDst` is what the client's sidecar logged as
 * the connection's original destination (absent when the request went direct).
 */
export async function requestViaSidecars(tb: Testbed, client: string, server: string, port: number): Promise<{ ok: boolean; originalDst?: string }> {
  const since = Date.now();
  const res = await tb.httpGet(client, `http://${tb.pod(server).ipv4}:${port}/`, { count: 1 });
  const rec = (await tb.waitProxyLog(client, (r) => r.at >= since - 1, { count: 1, timeoutMs: 3000 }))[0];
  return { ok: res[0]?.ok === true, ...(rec ? { originalDst: `${rec.originalDst.address}:${rec.originalDst.port}` } : {}) };
}

/** Like requestViaSidecars, for a path expected to be direct: the reply, and no sidecar record. */
export async function requestDirect(tb: Testbed, client: string, server: string, port: number): Promise<{ ok: boolean; sidecarRecords: number }> {
  const since = Date.now();
  const res = await tb.httpGet(client, `http://${tb.pod(server).ipv4}:${port}/`, { count: 1 });
  // The sidecar logs when a connection closes, just after the reply: give a proxied one time to show.
  const recs = await tb.waitProxyLog(client, (r) => r.at >= since - 1, { count: 1, timeoutMs: 1000 });
  return { ok: res[0]?.ok === true, sidecarRecords: recs.length };
}
