import { spawn } from 'node:child_process';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { POD_PATH, which } from './binaries';

export interface ExecOptions {
  /** Run as this uid (and `gid`, default = uid) with no supplementary groups; default root. */
  uid?: number;
  gid?: number;
  /** Extra environment; PATH defaults to one that includes the sbin dirs. */
  env?: Record<string, string>;
  /** SIGTERM after this long, SIGKILL 2 s later. Default: none for exec, 30 s for run. */
  timeoutMs?: number;
  /** Bytes for stdin (then closed); default stdin is closed at once. */
  input?: string;
  cwd?: string;
}

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface ProcessHandle {
  pid: number;
  /** Live streams; the handle also keeps the last 4 MiB of each for stdoutText()/stderrText(). */
  stdout: Readable;
  stderr: Readable;
  exited: Promise<ExitStatus>;
  stdoutText(): string;
  stderrText(): string;
  /** SIGTERM (or the given signal), then SIGKILL after 2 s; resolves when the process is gone. */
  kill(signal?: NodeJS.Signals): Promise<ExitStatus>;
}

const KEEP_BYTES = 4 * 1024 * 1024;

// Joins the cgroup *before* exec'ing nsenter, so the workload starts inside it and every child it
// forks inherits it. $1 is the cgroup.procs file; the rest is the command. Arguments are passed
// positionally, so nothing is ever parsed by the shell.
const JOIN_CGROUP_AND_EXEC = 'echo $$ > "$1" || exit 125; shift; exec "$@"';

export interface PodTarget {
  /** For error messages. */
  name: string;
  netnsPath: string;
  cgroupPath: string;
}

/** Full argv of the wrapper that puts a command into a pod's cgroup and netns, as a uid. */
export function podCommand(target: PodTarget, argv: readonly string[], opts: Pick<ExecOptions, 'uid' | 'gid'> = {}): string[] {
  if (argv.length === 0) throw new Error(`exec in pod ${target.name}: empty argv`);
  const drop =
    opts.uid !== undefined
      ? [which('setpriv', 'util-linux'), `--reuid=${opts.uid}`, `--regid=${opts.gid ?? opts.uid}`, '--clear-groups', '--']
      : [];
  const [prog, ...rest] = argv as [string, ...string[]];
  return [
    '/bin/sh',
    '-c',
    JOIN_CGROUP_AND_EXEC,
    'shunt-tb-exec',
    path.join(target.cgroupPath, 'cgroup.procs'),
    which('nsenter', 'util-linux'),
    `--net=${target.netnsPath}`,
    '--',
    ...drop,
    which(prog),
    ...rest,
  ];
}

function tailBuffer(): { push(b: Buffer): void; text(): string } {
  const chunks: Buffer[] = [];
  let size = 0;
  return {
    push(b) {
      chunks.push(b);
      size += b.length;
      while (size > KEEP_BYTES && chunks.length > 1) size -= chunks.shift()!.length;
    },
    text: () => Buffer.concat(chunks).toString('utf8'),
  };
}

/** Starts a process in a pod (netns + cgroup, optionally as a uid). */
export function execInPod(target: PodTarget, argv: readonly string[], opts: ExecOptions = {}): ProcessHandle {
  const full = podCommand(target, argv, opts);
  const child = spawn(full[0]!, full.slice(1), {
    env: { PATH: POD_PATH, HOME: '/tmp', LANG: 'C', ...opts.env },
    stdio: ['pipe', 'pipe', 'pipe'],
    cwd: opts.cwd ?? '/tmp',
  });
  if (child.pid === undefined) {
    // spawn failures surface as an 'error' event; make exited reject clearly.
  }
  const out = tailBuffer();
  const err = tailBuffer();
  child.stdout!.on('data', (b: Buffer) => out.push(b));
  child.stderr!.on('data', (b: Buffer) => err.push(b));
  child.stdin!.on('error', () => undefined);
  child.stdin!.end(opts.input ?? undefined);

  let timer: NodeJS.Timeout | undefined;
  let killTimer: NodeJS.Timeout | undefined;
  const exited = new Promise<ExitStatus>((resolve, reject) => {
    child.once('error', (e) => reject(new Error(`exec in pod ${target.name} failed to start ${argv.join(' ')}: ${e.message}`)));
    child.once('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      if (killTimer) clearTimeout(killTimer);
      resolve({ code, signal });
    });
  });
  exited.catch(() => undefined);

  const kill = (signal: NodeJS.Signals = 'SIGTERM'): Promise<ExitStatus> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill(signal);
      if (!killTimer) {
        killTimer = setTimeout(() => child.kill('SIGKILL'), 2000);
        killTimer.unref();
      }
    }
    return exited;
  };
  if (opts.timeoutMs !== undefined) {
    timer = setTimeout(() => void kill('SIGTERM'), opts.timeoutMs);
    timer.unref();
  }
  return {
    pid: child.pid ?? -1,
    stdout: child.stdout!,
    stderr: child.stderr!,
    exited,
    stdoutText: out.text,
    stderrText: err.text,
    kill,
  };
}

export class ExecError extends Error {
  override readonly name = 'ExecError';
  constructor(
    readonly pod: string,
    readonly argv: readonly string[],
    readonly status: ExitStatus,
    readonly stdout: string,
    readonly stderr: string,
  ) {
    super(
      `in pod ${pod}: \`${argv.join(' ')}\` ${status.signal ? `killed by ${status.signal}` : `exited ${status.code}`}` +
        (stderr.trim() ? `: ${stderr.trim().slice(-2000)}` : ''),
    );
  }
}

export interface RunResult extends ExitStatus {
  stdout: string;
  stderr: string;
}

/** Runs to completion (default timeout 30 s); rejects with ExecError on a non-zero exit unless allowFail. */
export async function runInPod(
  target: PodTarget,
  argv: readonly string[],
  opts: ExecOptions & { allowFail?: boolean } = {},
): Promise<RunResult> {
  const h = execInPod(target, argv, { timeoutMs: 30_000, ...opts });
  const status = await h.exited;
  const res = { ...status, stdout: h.stdoutText(), stderr: h.stderrText() };
  if (!opts.allowFail && (status.code !== 0 || status.signal)) throw new ExecError(target.name, argv, status, res.stdout, res.stderr);
  return res;
}
