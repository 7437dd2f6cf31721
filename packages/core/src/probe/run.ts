// Runs a command with a time limit and returns its outcome instead of throwing: a probe wants the
// kernel's answer as evidence, including failures.
import { execFile } from 'node:child_process';

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
  /** The command line, for evidence. */
  cmd: string;
}

export function run(file: string, args: string[], timeoutMs = 10_000): Promise<RunResult> {
  const cmd = [file, ...args].join(' ');
  return new Promise((resolve) => {
    execFile(file, args, { timeout: timeoutMs, encoding: 'utf8' }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : null) : 0;
      resolve({ code, stdout: stdout ?? '', stderr: (stderr || (err && code === null ? String(err.message) : '')) ?? '', cmd });
    });
  });
}

export function firstLine(s: string): string {
  return s.trim().split('\n')[0]?.trim() ?? '';
}
