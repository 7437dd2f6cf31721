import { execFile } from 'node:child_process';
import { NetlinkError } from './errors';

const IP = process.env.SHUNT_IP_BIN ?? 'ip';
const NSENTER = process.env.SHUNT_NSENTER_BIN ?? 'nsenter';
const DEFAULT_TIMEOUT_MS = 15_000;

export interface RunOptions {
  /** Run inside this network namespace (a path such as /run/netns/x). */
  netns?: string;
  /** Kill the command after this long; default 15 s. */
  timeoutMs?: number;
  /** Bytes fed to stdin (for `ip -batch -`). */
  input?: string;
}

/**
 * Runs argv without a shell. A netns is entered with `nsenter --net=<path>` rather than
 * `ip netns exec`, because the latter remounts /sys and hides the bpffs pins.
 */
export function runCommand(argv: readonly string[], opts: RunOptions = {}): Promise<string> {
  if (argv.length === 0) throw new Error('runCommand: empty argv');
  const full = opts.netns ? [NSENTER, `--net=${opts.netns}`, '--', ...argv] : [...argv];
  const [file, ...args] = full as [string, ...string[]];
  return new Promise((resolve, reject) => {
    const child = execFile(
      file,
      args,
      { timeout: opts.timeoutMs ?? DEFAULT_TIMEOUT_MS, maxBuffer: 64 * 1024 * 1024, encoding: 'utf8' },
      (err, stdout, stderr) => {
        if (!err) return resolve(stdout);
        const code = typeof (err as NodeJS.ErrnoException & { code?: unknown }).code === 'number'
          ? ((err as unknown as { code: number }).code)
          : null;
        const detail = (err as { killed?: boolean }).killed ? 'command timed out' : err.message.split('\n')[0];
        reject(new NetlinkError(full, opts.netns, String(stderr ?? ''), code, code === null ? detail : undefined));
      },
    );
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}

/** Runs `ip <args>` (optionally in a netns) and returns stdout. */
export function runIp(args: readonly string[], opts: RunOptions = {}): Promise<string> {
  return runCommand([IP, ...args], opts);
}

/** Runs `ip -json <args>` and parses the JSON answer (an empty answer is an empty list). */
export async function runIpJson<T>(args: readonly string[], opts: RunOptions = {}): Promise<T[]> {
  const out = await runIp(['-json', ...args], opts);
  const text = out.trim();
  if (!text) return [];
  try {
    return JSON.parse(text) as T[];
  } catch (e) {
    const argv = [IP, '-json', ...args];
    throw new NetlinkError(argv, opts.netns, '', 0, `unparseable JSON from ip (${(e as Error).message}): ${text.slice(0, 200)}`);
  }
}
