// Runs `shunt agent` as a child process (demo, end-to-end tests): from dist when built, else from
// the TypeScript sources through tools/ts-register.js. Parses its JSON log lines.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';

export interface AgentProcess {
  child: ChildProcess;
  /** host:port of its HTTP server, once it said so. */
  address: Promise<string>;
  /** Every JSON log line so far. */
  logs: Record<string, unknown>[];
  /** Resolves with the first log line matching. */
  waitLog(pred: (l: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  /** SIGTERM, then the exit code (SIGKILL after the timeout). */
  stop(timeoutMs?: number): Promise<number | null>;
  exited: Promise<number | null>;
}

/** argv prefix that runs the shunt CLI with this process's Node. */
export function cliCommand(): string[] {
  const here = __dirname; // …/agent/dist/agent or …/agent/src/agent
  const dist = path.resolve(here, '..', 'cli.js');
  if (here.split(path.sep).includes('dist') && existsSync(dist)) return [process.execPath, dist];
  const pkg = path.resolve(here, '..', '..');
  // Measurements want the built agent, not one carrying the TypeScript compiler.
  const built = path.join(pkg, 'dist', 'cli.js');
  if (process.env['SHUNT_AGENT_FROM_DIST'] === '1' && existsSync(built)) return [process.execPath, built];
  return [process.execPath, '-r', path.join(pkg, 'tools', 'ts-register.js'), path.join(pkg, 'src', 'cli.ts')];
}

/** TypeScript sources of the CLI whose built .js is missing or older (tests and test-only modules, which tsconfig.build.json leaves out, excluded). */
function staleOutputs(srcDir: string, distDir: string, limit = 10_000): string[] {
  const stale: string[] = [];
  let seen = 0;
  const walk = (rel: string): void => {
    for (const e of readdirSync(path.join(srcDir, rel), { withFileTypes: true })) {
      if (++seen > limit) return;
      const r = path.join(rel, e.name);
      if (e.isDirectory()) {
        if (e.name !== 'test-support' && e.name !== '__fixtures__') walk(r);
      }
      else if (e.name.endsWith('.ts') && !e.name.endsWith('.test.ts') && !e.name.endsWith('.d.ts')) {
        const out = path.join(distDir, r.replace(/\.ts$/, '.js'));
        if (!existsSync(out) || statSync(out).mtimeMs < statSync(path.join(srcDir, r)).mtimeMs) stale.push(r);
      }
    }
  };
  walk('');
  return stale;
}

/**
 * argv prefix that runs the built CLI (`dist/cli.js`), as users and the chart run it. End-to-end
 * tests use it so they exercise what ships; they refuse a missing or stale build instead of
 * silently testing old code (`npm test` builds first; by hand: `npx tsc -p tsconfig.build.json`).
 */
export function builtCliCommand(): string[] {
  const pkg = path.resolve(__dirname, '..', '..');
  const dist = path.join(pkg, 'dist');
  const cli = path.join(dist, 'cli.js');
  if (!existsSync(cli)) throw new Error(`${cli} is missing: build the agent first (cd packages/agent && npx tsc -p tsconfig.build.json)`);
  const stale = staleOutputs(path.join(pkg, 'src'), dist);
  if (stale.length) throw new Error(`packages/agent/dist is older than src/${stale.slice(0, 3).join(', src/')}${stale.length > 3 ? ', …' : ''}: rebuild (npx tsc -p tsconfig.build.json)`);
  return [process.execPath, cli];
}

export interface SpawnAgentOptions {
  env?: NodeJS.ProcessEnv;
  echo?: (line: string) => void;
  /** argv prefix of the CLI; default cliCommand(). */
  cli?: string[];
}

export function spawnAgent(args: string[], opts: SpawnAgentOptions = {}): AgentProcess {
  const [node, ...pre] = (opts.cli ?? cliCommand()) as [string, ...string[]];
  const child = spawn(node, [...pre, 'agent', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...opts.env } });
  const logs: Record<string, unknown>[] = [];
  const waiters: { pred: (l: Record<string, unknown>) => boolean; resolve: (l: Record<string, unknown>) => void }[] = [];
  let buf = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    buf += chunk;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      opts.echo?.(line);
      let rec: Record<string, unknown>;
      try {
        rec = JSON.parse(line);
      } catch {
        continue;
      }
      logs.push(rec);
      for (const w of [...waiters]) if (w.pred(rec)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(rec);
      }
    }
  });
  child.stderr!.setEncoding('utf8').on('data', (c: string) => {
    stderr += c;
    opts.echo?.(c);
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));

  const waitLog = (pred: (l: Record<string, unknown>) => boolean, timeoutMs = 30_000): Promise<Record<string, unknown>> => {
    const have = logs.find(pred);
    if (have) return Promise.resolve(have);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`agent: no matching log line within ${timeoutMs} ms; last lines:\n${logs.slice(-10).map((l) => JSON.stringify(l)).join('\n')}\n${stderr}`)), timeoutMs);
      const w = { pred, resolve: (l: Record<string, unknown>) => (clearTimeout(t), resolve(l)) };
      waiters.push(w);
      void exited.then((code) => {
        if (!waiters.includes(w)) return;
        clearTimeout(t);
        reject(new Error(`agent exited (${code}) before the expected log line; stderr: ${stderr}\nlogs:\n${logs.slice(-10).map((l) => JSON.stringify(l)).join('\n')}`));
      });
    });
  };
  return {
    child,
    logs,
    waitLog,
    exited,
    address: waitLog((l) => l['msg'] === 'serving /metrics, /healthz, /readyz').then((l) => String(l['address'])),
    async stop(timeoutMs = 15_000) {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      const code = await exited;
      clearTimeout(t);
      return code;
    },
  };
}
