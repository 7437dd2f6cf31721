// The restart memo on disk (<stateDir>/restart-memo.json): for each enrolled pod, the digest of the
// pods-file item it came from and the fingerprint installed from it (core's RestartMemoEntry). The
// next agent's pods-file source announces an item with a recorded digest as `unchanged` instead of
// validating and interpreting it, and the reconciler takes that only where the kernel still holds
// the fingerprint, so a restart with 10,000 unchanged pods does no per-pod interpretation before
// ready. It is a hint, never the truth: a memo that is missing, unreadable, of another scope
// (version, backend, profile, node, pods file, mesh-wide capture defaults) or malformed is ignored
// whole; a stale entry costs only the shortcut (its pod waits for its object, read right after).
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { RestartMemoEntry } from '@shunt/core';

export const RESTART_MEMO_FILE = 'restart-memo.json';
const FORMAT = 1;

/** What the recorded fingerprints depend on besides the item itself; another scope invalidates the memo. */
export interface RestartMemoScope {
  version: string;
  backend: string;
  profile: string;
  nodeName: string;
  podsFile: string;
  meshCapture: unknown;
}

export const restartMemoPath = (stateDir: string): string => path.join(stateDir, RESTART_MEMO_FILE);

const scopeKey = (s: RestartMemoScope): string =>
  JSON.stringify([FORMAT, s.version, s.backend, s.profile, s.nodeName, path.resolve(s.podsFile), s.meshCapture ?? null]);

/** The memo's entries, or [] with the reason when it cannot be used. Never throws. */
export function loadRestartMemo(file: string, scope: RestartMemoScope): { entries: RestartMemoEntry[]; ignored?: string } {
  let doc: unknown;
  try {
    doc = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return { entries: [], ignored: code === 'ENOENT' ? 'none recorded' : `unreadable: ${(err as Error).message}` };
  }
  const d = doc as { scope?: unknown; pods?: unknown };
  if (typeof d !== 'object' || d === null || d.scope !== scopeKey(scope)) return { entries: [], ignored: 'recorded for another version, backend, profile, node, pods file or mesh config' };
  if (!Array.isArray(d.pods)) return { entries: [], ignored: 'malformed (pods is not a list)' };
  const entries: RestartMemoEntry[] = [];
  for (const p of d.pods as unknown[]) {
    // [digest, uid, namespace, name, fingerprint], all non-empty strings except a fingerprint.
    if (!Array.isArray(p) || p.length !== 5 || !p.every((x) => typeof x === 'string') || p.slice(0, 4).some((x) => x === ''))
      return { entries: [], ignored: `malformed entry ${JSON.stringify(p)?.slice(0, 120)}` };
    const [digest, uid, namespace, name, fingerprint] = p as string[];
    entries.push({ digest: digest!, uid: uid!, namespace: namespace!, name: name!, fingerprint: fingerprint! });
  }
  return { entries };
}

/** Writes the memo atomically (a reader sees the old or the new file, never half of one). */
export function saveRestartMemo(file: string, scope: RestartMemoScope, entries: readonly RestartMemoEntry[]): void {
  mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  const pods = entries.map((e) => [e.digest, e.uid, e.namespace, e.name, e.fingerprint]);
  writeFileSync(tmp, JSON.stringify({ scope: scopeKey(scope), pods }));
  renameSync(tmp, file);
}

export function removeRestartMemo(file: string): void {
  rmSync(file, { force: true });
}
