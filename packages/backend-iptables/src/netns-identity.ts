// Which network namespace a path leads to, so a record written by an earlier process is not
// applied to a different netns that now sits at the same path (a recreated sandbox, a reused
// /proc/<pid>). The netns cookie never repeats while the host is up; the nsfs inode does (the
// kernel hands out the lowest free number), so it is only the fallback when no cookie can be read
// (kernels before 5.14, or no cookie reader configured).

import { statSync } from 'node:fs';

export interface NetnsIdentity {
  /** nsfs device and inode of the netns (what stat() of the path says). */
  dev: number;
  inode: number;
  /** Kernel netns cookie (decimal), when known. */
  cookie?: string;
}

/** Reads the cookie of the netns at a path (e.g. @shunt/libbpf `netnsCookie`). */
export type NetnsCookieReader = (netnsPath: string) => bigint;

/** The identity of the netns at `netnsPath` now, or null when nothing is there. */
export function identifyNetns(netnsPath: string, readCookie?: NetnsCookieReader, knownCookie?: string): NetnsIdentity | null {
  let st;
  try {
    st = statSync(netnsPath);
  } catch {
    return null;
  }
  const id: NetnsIdentity = { dev: st.dev, inode: st.ino };
  const cookie = knownCookie ?? readCookieQuietly(netnsPath, readCookie);
  if (cookie !== undefined) id.cookie = cookie;
  return id;
}

function readCookieQuietly(netnsPath: string, readCookie?: NetnsCookieReader): string | undefined {
  if (!readCookie) return undefined;
  try {
    return readCookie(netnsPath).toString();
  } catch {
    // Old kernel or a netns that vanished between stat and open: fall back to the inode.
    return undefined;
  }
}

/** Whether `now` is the netns `recorded` describes: cookies decide when both are known, else dev+inode. */
export function sameNetns(recorded: NetnsIdentity, now: NetnsIdentity | null): boolean {
  if (!now) return false;
  if (recorded.cookie !== undefined && now.cookie !== undefined) return recorded.cookie === now.cookie;
  return recorded.dev === now.dev && recorded.inode === now.inode;
}
