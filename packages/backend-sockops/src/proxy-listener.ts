/**
 * Finding a pod proxy's inbound listener from the node: the processes whose network namespace
 * is the pod's (/proc/<pid>/ns/net), and among their sockets one listening on the inbound port.
 * The proxy is another process (another container), so its socket is borrowed with pidfd_getfd
 * and handed to the sockhash that sk_lookup steers to; the copy is closed right after.
 *
 * Reading /proc/<pid>/net/tcp walks the kernel's whole (node-wide) TCP hash table, ~5 ms here
 * whatever the netns holds, so the table is read once per family for the netns, not once per
 * process as @shunt/libbpf's listeningSocketFds(pid) would; the per-process part is only the
 * cheap fd scan.
 */
import * as fs from 'node:fs';
import { pidfdGetfd } from '@shunt/libbpf';

export interface FoundListener {
  pid: number;
  /** fd number inside pid. */
  fd: number;
  inode: number;
  family: 4 | 6;
  wildcard: boolean;
}

const TCP_LISTEN = 0x0a;

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
 * Socket inodes in LISTEN on port, for one family, in the netns the pids live in (read through
 * the first pid still there).
 */
function listeningInodes(pids: readonly number[], port: number, family: 4 | 6): Map<number, { wildcard: boolean }> {
  const out = new Map<number, { wildcard: boolean }>();
  let text: string | null = null;
  for (const pid of pids) {
    try {
      text = fs.readFileSync(`/proc/${pid}/net/${family === 4 ? 'tcp' : 'tcp6'}`, 'utf8');
      break;
    } catch {
      // exited meanwhile (or no IPv6 in this kernel): try the next
    }
  }
  for (const line of (text ?? '').split('\n').slice(1)) {
    // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
    const cols = line.trim().split(/\s+/);
    if (cols.length < 10 || parseInt(cols[3] ?? '', 16) !== TCP_LISTEN) continue;
    const [addrHex, portHex] = (cols[1] ?? '').split(':');
    const inode = Number(cols[9]);
    if (!addrHex || parseInt(portHex ?? '', 16) !== port || !Number.isSafeInteger(inode) || inode === 0) continue;
    out.set(inode, { wildcard: /^0+$/.test(addrHex) });
  }
  return out;
}

/** [fd, inode] of every socket fd of pid; a process that exits meanwhile has none. */
function socketFds(pid: number): Array<[number, number]> {
  let names: string[];
  try {
    names = fs.readdirSync(`/proc/${pid}/fd`);
  } catch {
    return [];
  }
  const out: Array<[number, number]> = [];
  for (const name of names) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/${pid}/fd/${name}`));
      if (m) out.push([Number(name), Number(m[1])]);
    } catch {
      // closed meanwhile
    }
  }
  return out;
}

/**
 * The listener that should take connections of `family` on `port` in the netns of `pids`: a
 * socket of that family (wildcard address first); for IPv4, failing that, a [::] socket
 * (dual-stack unless the proxy set IPV6_V6ONLY, which sk_assign then refuses: the counter
 * inbound_assign_failed shows it).
 */
export function findListener(pids: readonly number[], port: number, family: 4 | 6): FoundListener | null {
  if (pids.length === 0) return null;
  const tables: Array<[4 | 6, Map<number, { wildcard: boolean }>]> = [[family, listeningInodes(pids, port, family)]];
  // A dual-stack [::] listener takes IPv4 too; only worth a second table read when needed.
  if (family === 4 && tables[0]![1].size === 0) tables.push([6, listeningInodes(pids, port, 6)]);
  const rank = (f: 4 | 6, wildcard: boolean): number => (f === family ? (wildcard ? 0 : 1) : wildcard ? 2 : -1);
  if (tables.every(([, t]) => t.size === 0)) return null;

  let best = null as FoundListener | null;
  for (const pid of pids) {
    for (const [fd, inode] of socketFds(pid)) {
      for (const [f, table] of tables) {
        const hit = table.get(inode);
        if (!hit || rank(f, hit.wildcard) < 0) continue;
        if (!best || rank(f, hit.wildcard) < rank(best.family, best.wildcard)) best = { pid, fd, inode, family: f, wildcard: hit.wildcard };
      }
    }
    if (best && rank(best.family, best.wildcard) === 0) return best;
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
