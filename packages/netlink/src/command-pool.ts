/**
 * Runs commands through a few long-lived `sh` helpers instead of spawning each from Node.
 *
 * Why: child_process.spawn forks the agent itself, synchronously on the main thread. With a
 * 100+ MiB agent that costs several ms of main-thread time per command (measured: 7.6 ms per spawn
 * in the iptables backend's profile at 300 pods, more than the iptables commands themselves),
 * which capped the iptables backend at ~40 pods/s. A small shell forks for us for a fraction.
 *
 * Protocol: one job is one line of shell the helper evals: the command (entered into a netns with
 * nsenter when asked) with stdin, stdout and stderr redirected to files of a private directory,
 * then `echo <id> $?`. Job outputs never mix with the protocol. A job that overruns its timeout
 * gets its helper (and the helper's process group, so the command too) killed; the next job
 * starts a new helper. Same contract as runCommand: resolves with stdout, rejects NetlinkError.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { NetlinkError } from './errors';
import { runCommand, type RunOptions } from './run';
import { processAlive } from './process-alive';

const NSENTER = process.env.SHUNT_NSENTER_BIN ?? 'nsenter';
const DEFAULT_TIMEOUT_MS = 15_000;

/** Single-quoted for sh: safe for any byte but NUL. */
export function shellQuote(s: string): string {
  if (s.includes('\0')) throw new Error('shellQuote: NUL in argument');
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

interface Job {
  id: number;
  full: string[];
  netns: string | undefined;
  resolve: (out: string) => void;
  reject: (e: Error) => void;
  timer?: NodeJS.Timeout;
}

class Helper {
  readonly child: ChildProcess;
  private buf = '';
  private readonly jobs = new Map<number, Job>();
  dead = false;

  constructor(
    private readonly dir: string,
    private readonly onDead: (h: Helper) => void,
  ) {
    // Its own process group, so a timed-out command dies with it; unref'd: never keeps the agent alive.
    this.child = spawn('sh', ['-c', 'while IFS= read -r line; do eval "$line"; done'], { stdio: ['pipe', 'pipe', 'ignore'], detached: true });
    this.child.unref();
    (this.child.stdout as Readable & { unref?: () => void }).unref?.();
    (this.child.stdin as Writable & { unref?: () => void }).unref?.();
    this.child.stdout!.setEncoding('utf8').on('data', (d: string) => this.onData(d));
    this.child.on('exit', () => this.die(new Error('command helper exited')));
    this.child.on('error', (e) => this.die(e));
    this.child.stdin!.on('error', () => undefined); // reported through 'exit'
  }

  get load(): number {
    return this.jobs.size;
  }

  run(job: Job, input: string | undefined, timeoutMs: number): void {
    const base = path.join(this.dir, String(job.id));
    const stdin = input !== undefined ? `${base}.in` : '/dev/null';
    if (input !== undefined) fs.writeFileSync(stdin, input);
    const cmd = job.full.map(shellQuote).join(' ');
    this.jobs.set(job.id, job);
    job.timer = setTimeout(() => {
      this.finish(job.id, null, 'command timed out');
      this.kill();
    }, timeoutMs);
    this.child.stdin!.write(`{ ${cmd} ; } <${shellQuote(stdin)} >${shellQuote(`${base}.out`)} 2>${shellQuote(`${base}.err`)}; echo "${job.id} $?"\n`);
  }

  kill(): void {
    try {
      if (this.child.pid) process.kill(-this.child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
    this.die(new Error('command helper killed'));
  }

  private onData(d: string): void {
    this.buf += d;
    let nl: number;
    while ((nl = this.buf.indexOf('\n')) >= 0) {
      const line = this.buf.slice(0, nl);
      this.buf = this.buf.slice(nl + 1);
      const m = /^(\d+) (\d+)$/.exec(line);
      if (m) this.finish(Number(m[1]), Number(m[2]));
    }
  }

  private finish(id: number, code: number | null, detail?: string): void {
    const job = this.jobs.get(id);
    if (!job) return;
    this.jobs.delete(id);
    clearTimeout(job.timer);
    const base = path.join(this.dir, String(id));
    const read = (f: string): string => {
      try {
        return fs.readFileSync(f, 'utf8');
      } catch {
        return '';
      }
    };
    const stdout = read(`${base}.out`);
    const stderr = read(`${base}.err`);
    for (const ext of ['in', 'out', 'err']) fs.rmSync(`${base}.${ext}`, { force: true });
    if (code === 0) job.resolve(stdout);
    else job.reject(new NetlinkError(job.full, job.netns, stderr, code, code === null ? detail : undefined));
  }

  private die(err: Error): void {
    if (this.dead) return;
    this.dead = true;
    for (const id of [...this.jobs.keys()]) this.finish(id, null, err.message);
    this.onDead(this);
  }
}

export interface CommandPoolOptions {
  /** Helpers running jobs in parallel (default 4). */
  size?: number;
  /** Where the job directory is made (default os.tmpdir()). */
  tmpRoot?: string;
}

const JOB_DIR_PREFIX = 'shunt-cmd-';


/**
 * Removes the job directories of processes that are gone. A SIGKILLed agent never runs its exit
 * handler, so without this every kill (OOM, a failed liveness probe) leaves one behind. The pid
 * is in the name; a reused pid only keeps a dead directory a little longer.
 */
export function removeStaleJobDirs(root: string): string[] {
  const removed: string[] = [];
  let names: string[];
  try {
    names = fs.readdirSync(root);
  } catch {
    return removed;
  }
  for (const name of names) {
    const m = /^shunt-cmd-(\d+)-/.exec(name);
    if (!m) continue;
    const pid = Number(m[1]);
    if (pid === process.pid || processAlive(pid)) continue;
    fs.rmSync(path.join(root, name), { recursive: true, force: true });
    removed.push(name);
  }
  return removed;
}

export class CommandPool {
  private readonly size: number;
  private readonly tmpRoot: string;
  private helpers: Helper[] = [];
  private dir: string | null = null;
  private nextId = 1;

  constructor(opts: CommandPoolOptions = {}) {
    this.size = Math.max(1, opts.size ?? 4);
    this.tmpRoot = opts.tmpRoot ?? os.tmpdir();
  }

  /** runCommand's contract, run by a helper. */
  run(argv: readonly string[], opts: RunOptions = {}): Promise<string> {
    if (argv.length === 0) return Promise.reject(new Error('CommandPool.run: empty argv'));
    const full = opts.netns ? [NSENTER, `--net=${opts.netns}`, '--', ...argv] : [...argv];
    // One job is one protocol line: an argument with a line break goes the direct way.
    if (full.some((a) => a.includes('\n'))) return runCommand(argv, opts);
    return new Promise<string>((resolve, reject) => {
      const job: Job = { id: this.nextId++, full, netns: opts.netns, resolve, reject };
      try {
        this.pick().run(job, opts.input, opts.timeoutMs ?? DEFAULT_TIMEOUT_MS);
      } catch (e) {
        reject(e as Error);
      }
    });
  }

  /** Kills the helpers (jobs in flight fail) and removes the job directory. */
  close(): void {
    for (const h of this.helpers) h.kill();
    this.helpers = [];
    if (this.dir) fs.rmSync(this.dir, { recursive: true, force: true });
    this.dir = null;
  }

  private pick(): Helper {
    if (!this.dir) {
      removeStaleJobDirs(this.tmpRoot);
      const dir = fs.mkdtempSync(path.join(this.tmpRoot, `${JOB_DIR_PREFIX}${process.pid}-`));
      this.dir = dir;
      // Job files are removed as jobs end; the directory goes with the process.
      process.once('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
    }
    if (this.helpers.length < this.size) {
      const idle = this.helpers.find((h) => h.load === 0);
      if (idle) return idle;
      const h = new Helper(this.dir, (dead) => (this.helpers = this.helpers.filter((x) => x !== dead)));
      this.helpers.push(h);
      return h;
    }
    return this.helpers.reduce((a, b) => (b.load < a.load ? b : a));
  }
}

let shared: CommandPool | null = null;

/** runCommand through the process-wide pool (created on first use). */
export function runPooled(argv: readonly string[], opts: RunOptions = {}): Promise<string> {
  shared ??= new CommandPool();
  return shared.run(argv, opts);
}

/** Ends the process-wide pool (tests; the agent's helpers die with it anyway). */
export function closeSharedPool(): void {
  shared?.close();
  shared = null;
}
