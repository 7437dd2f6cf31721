import * as path from 'node:path';
import type { ProcessHandle } from './exec';
import type { Testbed } from './testbed';

/**
 * The splice suites' pattern-stream apps (scripts/, plain Node.js, run with process.execPath as
 * processes in testbed pods): `server` is pattern-server.js (argv: port [host]); `lib` is
 * pattern.js (pattern/check/writeAll), which each suite's own client requires as
 * '@shunt/testbed/scripts/pattern'. Resolved from src/ and dist/ alike.
 */
export const PATTERN_SCRIPTS = {
  server: path.resolve(__dirname, '..', 'scripts', 'pattern-server.js'),
  lib: path.resolve(__dirname, '..', 'scripts', 'pattern.js'),
} as const;

/** What pattern-server.js prints for each connection at its EOF (and, after an error, with closed). */
export interface PatternServerRecord {
  id: number;
  mode: string;
  bytes: number;
  /** Offset of the first wrong byte, or null. */
  bad: number | null;
  error?: string;
  closed?: boolean;
}

export interface PatternServer {
  proc: ProcessHandle;
  /** Every record so far, in the order printed (tests slice from a length they noted). */
  records: PatternServerRecord[];
}

/**
 * Starts pattern-server.js in a pod (as `uid`, default the testbed's exec default) on `port`
 * (`host`: default '::', dual-stack) and resolves once it listens; its records collect in
 * `records`. The testbed's dispose() stops it with the pod.
 */
export async function startPatternServer(tb: Testbed, pod: string, port: number, opts: { host?: string; uid?: number } = {}): Promise<PatternServer> {
  const argv = [process.execPath, PATTERN_SCRIPTS.server, String(port), ...(opts.host ? [opts.host] : [])];
  const proc = tb.exec(pod, argv, opts.uid === undefined ? {} : { uid: opts.uid });
  const records: PatternServerRecord[] = [];
  let buf = '';
  proc.stdout.on('data', (d: Buffer) => {
    buf += d.toString();
    const lines = buf.split('\n');
    buf = lines.pop() ?? '';
    for (const l of lines) if (l.startsWith('{"id"')) records.push(JSON.parse(l) as PatternServerRecord);
  });
  await tb.waitListening(pod, [port], { watch: proc });
  return { proc, records };
}
