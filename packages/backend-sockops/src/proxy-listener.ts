/**
 * Finding a pod proxy's inbound listener from the node, at a cost independent of the number of
 * pods: sock_diag inside the pod netns names the listening socket (its inode) without reading a
 * node-wide table, the NetnsPidIndex gives the processes of that netns without stat'ing every
 * process, and their fd links say which one holds the socket. The proxy is another process
 * (another container), so its socket is borrowed with pidfd_getfd and handed to the sockhash
 * that sk_lookup steers to; the copy is closed right after.
 */
import * as fs from 'node:fs';
import { netnsTcpListeners, pidfdGetfd, socketFds, type NetnsListener, type NetnsPidIndex } from '@shunt/libbpf';

export interface FoundListener extends NetnsListener {
  pid: number;
  /** fd number inside pid. */
  fd: number;
}

const isWildcard = (s: NetnsListener): boolean => s.address === '0.0.0.0' || s.address === '::';

/**
 * The listener sockets that should take connections of `family` on `port` in the netns: that
 * family's (wildcard address first); for IPv4, failing that, a [::] socket (dual-stack unless
 * the proxy set IPV6_V6ONLY, which sk_assign then refuses: the counter inbound_assign_failed
 * shows it). The IPv6 dump is asked only when that fallback is needed.
 */
export function listenerCandidates(netnsPath: string, port: number, family: 4 | 6): NetnsListener[] {
  // The common case first, at a cost independent of the node's sockets: the wildcard listener
  // a SYN to the port would reach (for IPv4 possibly a dual-stack [::] socket, as for a SYN).
  const wildcard = netnsTcpListeners(netnsPath, port, family, { wildcardOnly: true });
  if (wildcard.length > 0) return wildcard;
  const own = netnsTcpListeners(netnsPath, port, family);
  if (own.length > 0) return [...own.filter(isWildcard), ...own.filter((s) => !isWildcard(s))];
  if (family === 6) return [];
  return netnsTcpListeners(netnsPath, port, 6).filter((s) => s.address === '::');
}

/**
 * The first (pid, fd) holding one of the candidates, among the processes of the netns. null
 * when no socket listens, or none of the netns's processes holds it (e.g. a process elsewhere
 * made it through setns: not a proxy layout we steer to).
 */
export function findListener(index: NetnsPidIndex, netnsPath: string, port: number, family: 4 | 6, since: number = Date.now()): FoundListener | null {
  const candidates = listenerCandidates(netnsPath, port, family);
  if (candidates.length === 0) return null;
  const found = holderOf(candidates, index.pidsIn(netnsPath, since));
  // A process the index has not seen yet (the proxy started after the pod's sandbox): look again.
  if (found || !index.refreshIfOlder(since)) return found;
  return holderOf(candidates, index.pidsIn(netnsPath, since));
}

function holderOf(candidates: NetnsListener[], pids: readonly number[]): FoundListener | null {
  const byInode = new Map(candidates.map((c) => [c.inode, c]));
  let best: FoundListener | null = null;
  let rank = Infinity;
  for (const pid of pids) {
    for (const [fd, inode] of socketFds(pid)) {
      const c = byInode.get(inode);
      if (!c) continue;
      const r = candidates.indexOf(c);
      if (r < rank) {
        best = { ...c, pid, fd };
        rank = r;
        if (r === 0) return best;
      }
    }
  }
  return best;
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
