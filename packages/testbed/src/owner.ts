import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

// A run records which process owns it, so gc can tell a crashed run from a live one in another
// process (two test files may run testbeds at once). The start time guards against pid reuse.

export interface Owner {
  pid: number;
  startTime: string;
}

export function processStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 22 (starttime); fields after the parenthesised comm are space separated.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

export function writeOwner(stateDir: string): void {
  const owner: Owner = { pid: process.pid, startTime: processStartTime(process.pid) ?? '' };
  writeFileSync(path.join(stateDir, 'owner.json'), JSON.stringify(owner), { mode: 0o644 });
}

export function readOwner(stateDir: string): Owner | undefined {
  try {
    return JSON.parse(readFileSync(path.join(stateDir, 'owner.json'), 'utf8')) as Owner;
  } catch {
    return undefined;
  }
}

export function ownerAlive(owner: Owner | undefined): boolean {
  return owner !== undefined && processStartTime(owner.pid) === owner.startTime;
}
