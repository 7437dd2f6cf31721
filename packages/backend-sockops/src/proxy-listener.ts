/**
 * Finding a pod proxy's inbound listener from the node: the processes whose network namespace
 * is the pod's (/proc/<pid>/ns/net), and among their sockets one listening on the inbound port
 * (@shunt/libbpf listeningSockets, which reads the netns's TCP table once for all of them).
 * The proxy is another process (another container), so its socket is borrowed with pidfd_getfd
 * and handed to the sockhash that sk_lookup steers to; the copy is closed right after.
 */
import * as fs from 'node:fs';
import { listeningSockets, pidfdGetfd, type ListeningSocket } from '@shunt/libbpf';

export type FoundListener = ListeningSocket;

/** Pids whose network namespace is the one at netnsPath (compared by nsfs inode and device). */
export function pidsInNetns(netnsPath: string): number[] {
  const want = fs.statSync(netnsPath);
  const out: number[] = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(name)) continue;
    try {
      const st = fs.statSync(`/proc/${name}/ns/net`);
      if (st.ino === want.ino && st.dev === want.dev) out.push(Number(name));
    } catch {
      // exited while we looked, or a kernel thread without a netns link
    }
  }
  return out;
}

const isWildcard = (s: ListeningSocket): boolean => s.address === '0.0.0.0' || s.address === '::';

/**
 * The listener that should take connections of `family` on `port` in the netns of `pids`: a
 * socket of that family (wildcard address first); for IPv4, failing that, a [::] socket
 * (dual-stack unless the proxy set IPV6_V6ONLY, which sk_assign then refuses: the counter
 * inbound_assign_failed shows it). The IPv6 table is read only when that fallback is needed.
 */
export function findListener(pids: readonly number[], port: number, family: 4 | 6): FoundListener | null {
  if (pids.length === 0) return null;
  const own = listeningSockets({ pids, port, family });
  const best = own.find(isWildcard) ?? own[0];
  if (best) return best;
  if (family === 6) return null;
  return listeningSockets({ pids, port, family: 6 }).find((s) => s.address === '::') ?? null;
}

/** Runs fn with a copy of the listener's fd in this process, closed afterwards whatever happens. */
export function withBorrowedSocket<T>(l: FoundListener, fn: (fd: number) => T): T {
  const fd = pidfdGetfd(l.pid, l.fd);
  try {
    return fn(fd);
  } finally {
    fs.closeSync(fd);
  }
}
