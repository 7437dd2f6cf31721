/**
 * Finding a pod proxy's inbound listener from the node: the processes whose network namespace
 * is the pod's (/proc/<pid>/ns/net), and among their sockets one listening on the inbound port.
 * The proxy is another process (another container), so its socket is borrowed with pidfd_getfd
 * and handed to the sockhash that sk_lookup steers to; the copy is closed right after.
 */
import * as fs from 'node:fs';
import { listeningSocketFds, pidfdGetfd, type ListeningSocket } from '@shunt/libbpf';

export interface FoundListener extends ListeningSocket {
  pid: number;
}

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

/**
 * The listener that should take connections of `family` on `port` in the netns: a socket of that
 * family (wildcard address first); for IPv4, failing that, a [::] socket (dual-stack unless the
 * proxy set IPV6_V6ONLY, which sk_assign then refuses and the counters show).
 */
export function findListener(pids: readonly number[], port: number, family: 4 | 6): FoundListener | null {
  const candidates: FoundListener[] = [];
  for (const pid of pids) {
    try {
      for (const s of listeningSocketFds(pid, { port })) candidates.push({ pid, ...s });
    } catch {
      // the process exited between the scan and now
    }
  }
  const wildcard = (s: FoundListener) => s.address === '0.0.0.0' || s.address === '::';
  const rank = (s: FoundListener): number => {
    if (s.family === family) return wildcard(s) ? 0 : 1;
    if (family === 4 && s.address === '::') return 2;
    return -1;
  };
  const usable = candidates.filter((s) => rank(s) >= 0).sort((a, b) => rank(a) - rank(b));
  return usable[0] ?? null;
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
