// Start/stop/read API of the ztunnel stand-in (one process per node), like the HAProxy sidecar
// wrapper: tests, the demo and the bench start it next to an agent (or next to an in-process
// ZdsServer: see harness.ts) and read what it logged per connection.
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { builtPackageMain } from '../runtime-modules';
import { readZtunnelLog, type ZtunnelLogEntry } from './log';
import type { ZtunnelProcessConfig } from './main';

export interface ZtunnelStartOptions {
  /** The agent's ZDS socket. */
  socketPath: string;
  /** JSON-lines log (created/appended). */
  logPath: string;
  name?: string;
  /** Run inside this netns (the node's); default the caller's. */
  netnsPath?: string;
  /**
   * Start inside this cgroup v2 directory (a testbed node's, tb.node(n).cgroupPath), joined before
   * exec so every socket the stand-in creates belongs to it: cgroup programs attached there (the
   * tc backend's splice pairing) see its sockets, as a real node's cgroup root covers ztunnel's
   * pod. Default: the caller's cgroup.
   */
  cgroupPath?: string;
  retryMs?: number;
  nack?: Record<string, string>;
}

export interface ZtunnelStandIn {
  readonly pid: number;
  readonly logPath: string;
  entries(): ZtunnelLogEntry[];
  /** Polls the log (every 20 ms, bounded) until pred holds for `count` entries; throws with the log tail otherwise. */
  waitFor(pred: (e: ZtunnelLogEntry) => boolean, opts?: { count?: number; timeoutMs?: number; what?: string }): Promise<ZtunnelLogEntry[]>;
  /** SIGTERM, then SIGKILL after 2 s; resolves when gone. */
  stop(): Promise<void>;
  /** Sends a signal and waits for the exit. */
  kill(signal: NodeJS.Signals): Promise<void>;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderr(): string;
}

/** Path of the stand-in's process entry in the built testbed (a child cannot run TS sources). */
export function ztunnelMainPath(): string {
  const main = builtPackageMain('@shunt/testbed');
  if ('unavailable' in main) throw new Error(`ztunnel stand-in: ${main.unavailable}`);
  const p = path.join(path.dirname(main.path), 'ztunnel', 'main.js');
  if (!fs.existsSync(p)) throw new Error(`ztunnel stand-in: ${p} missing: build @shunt/testbed`);
  return p;
}

export async function startZtunnel(opts: ZtunnelStartOptions): Promise<ZtunnelStandIn> {
  const cfg: ZtunnelProcessConfig = {
    name: opts.name ?? 'ztunnel',
    socketPath: opts.socketPath,
    logPath: opts.logPath,
    retryMs: opts.retryMs ?? 200,
    ...(opts.nack ? { nack: opts.nack } : {}),
  };
  fs.mkdirSync(path.dirname(opts.logPath), { recursive: true });
  fs.appendFileSync(opts.logPath, '');
  const argv = [process.execPath, ztunnelMainPath(), JSON.stringify(cfg)];
  const inNetns = opts.netnsPath ? ['nsenter', `--net=${opts.netnsPath}`, ...argv] : argv;
  // The shell joins the cgroup, then execs the command (arguments positional, never parsed).
  const cmd = opts.cgroupPath ? ['/bin/sh', '-c', 'echo $$ > "$1" || exit 125; shift; exec "$@"', 'shunt-zt', path.join(opts.cgroupPath, 'cgroup.procs'), ...inNetns] : inNetns;
  const child: ChildProcess = spawn(cmd[0]!, cmd.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (s: string) => (err = (err + s).slice(-65536)));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', () => resolve());
    child.once('error', reject);
  });
  let gone = false;
  void exited.then(() => (gone = true));
  const entries = (): ZtunnelLogEntry[] => readZtunnelLog(opts.logPath);
  const kill = async (signal: NodeJS.Signals): Promise<void> => {
    if (gone) return;
    child.kill(signal);
    await exited;
  };
  return {
    pid: child.pid!,
    logPath: opts.logPath,
    exited,
    entries,
    stderr: () => err,
    kill,
    async stop() {
      if (gone) return;
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 2000);
      await exited;
      clearTimeout(t);
    },
    async waitFor(pred, o = {}) {
      const want = o.count ?? 1;
      const deadline = Date.now() + (o.timeoutMs ?? 10_000);
      for (let i = 0; i < 5000; i++) {
        const hits = entries().filter(pred);
        if (hits.length >= want) return hits;
        if (Date.now() > deadline || gone) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      const tail = entries().slice(-15).map((e) => JSON.stringify(e)).join('\n');
      throw new Error(`ztunnel stand-in ${cfg.name}: ${o.what ?? 'log entries'} not seen (want ${want}) within ${o.timeoutMs ?? 10_000} ms${gone ? ' (process exited)' : ''}; log tail:\n${tail}\nstderr: ${err.slice(-2000)}`);
    },
  };
}

export { readZtunnelLog, type ZtunnelLogEntry, type ZtunnelLeg, type OrigDstHow, type ZtEndpoint } from './log';
