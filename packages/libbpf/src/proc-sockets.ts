/**
 * Finding and borrowing another process's listening socket: the agent puts the proxy's
 * inbound listener (15006) into a sockmap for sk_lookup, but the proxy is a separate
 * process. listeningSockets() finds which fds of which processes of a netns hold the
 * listener (from /proc, which shows each process's own netns), pidfdGetfd() copies such an
 * fd into this process.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import { BpfError, invalidArgument } from './errors';
import { native } from './native';

export interface ListeningSocketQuery {
  /**
   * Processes that share one network namespace (e.g. every process of a pod). The netns's
   * TCP table is read once, through the first of them still alive; their fds are matched
   * against it. Processes that exit meanwhile are skipped.
   */
  pids: readonly number[];
  port: number;
  /** 4 or 6; both when omitted. A dual-stack listener on [::] is family 6. */
  family?: 4 | 6;
}

export interface ListeningSocket {
  pid: number;
  /** fd number inside pid (pass both to pidfdGetfd). */
  fd: number;
  inode: number;
  family: 4 | 6;
  address: string;
  port: number;
}

const TCP_LISTEN = 0x0a;

/**
 * A duplicate, in this process, of fd targetFd of process pid (pidfd_open + pidfd_getfd,
 * kernel >= 5.6; needs ptrace rights over pid, i.e. root). Close-on-exec; the caller owns
 * it and closes it with fs.closeSync once done (a sockmap keeps its own reference).
 */
export function pidfdGetfd(pid: number, targetFd: number): number {
  if (!Number.isInteger(pid) || pid <= 0) throw invalidArgument('pidfd_getfd', `pid ${String(pid)}`, 'pid must be a positive integer');
  if (!Number.isInteger(targetFd) || targetFd < 0)
    throw invalidArgument('pidfd_getfd', `fd ${String(targetFd)} of pid ${pid}`, 'fd must be a non-negative integer');
  return native.pidfdGetfd(pid, targetFd);
}

/**
 * The fds, among query.pids, of TCP sockets listening on query.port, ordered by pid then fd
 * (one socket may sit on several fds and in several processes). /proc/<pid>/net/tcp{,6} lists
 * the sockets of pid's netns, but producing it walks the kernel's node-wide TCP hash (~5 ms
 * per read on a busy node, whatever the netns holds), so each table is read once for all pids
 * and only the cheap per-process fd scan is repeated.
 */
export function listeningSockets(query: ListeningSocketQuery): ListeningSocket[] {
  const what = 'find listening sockets';
  const target = `pids [${query.pids.slice(0, 5).join(', ')}${query.pids.length > 5 ? ', …' : ''}] port ${String(query.port)}`;
  for (const pid of query.pids) {
    if (!Number.isInteger(pid) || pid <= 0) throw invalidArgument(what, target, `every pid must be a positive integer, got ${String(pid)}`);
  }
  if (!Number.isInteger(query.port) || query.port < 1 || query.port > 65535)
    throw invalidArgument(what, target, `port must be 1..65535, got ${String(query.port)}`);
  if (query.family !== undefined && query.family !== 4 && query.family !== 6)
    throw invalidArgument(what, target, `family must be 4 or 6, got ${String(query.family)}`);

  const listeners = new Map<number, Omit<ListeningSocket, 'fd' | 'pid'>>();
  for (const family of query.family ? [query.family] : ([4, 6] as const)) {
    for (const s of readListeners(query.pids, family)) if (s.port === query.port) listeners.set(s.inode, s);
  }
  if (listeners.size === 0) return [];

  const out: ListeningSocket[] = [];
  for (const pid of query.pids) {
    for (const [fd, inode] of socketFds(pid)) {
      const s = listeners.get(inode);
      if (s) out.push({ pid, fd, ...s });
    }
  }
  return out.sort((a, b) => a.pid - b.pid || a.fd - b.fd);
}

/** LISTEN entries of the tcp (4) or tcp6 (6) table of the netns, read through the first pid that is still there. */
function readListeners(pids: readonly number[], family: 4 | 6): Array<Omit<ListeningSocket, 'fd' | 'pid'>> {
  let text: string | null = null;
  for (const pid of pids) {
    const file = `/proc/${pid}/net/${family === 4 ? 'tcp' : 'tcp6'}`;
    try {
      text = fs.readFileSync(file, 'utf8');
      break;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // The process exited (ENOENT, or ESRCH/EINVAL mid-exit): try the next. tcp6 is also
      // absent without IPv6, and then absent for every pid.
      if (code === 'ENOENT' || code === 'ESRCH' || code === 'EINVAL') continue;
      throw fsError(err, 'read', file);
    }
  }
  const out: Array<Omit<ListeningSocket, 'fd' | 'pid'>> = [];
  for (const line of (text ?? '').split('\n').slice(1)) {
    // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
    const cols = line.trim().split(/\s+/);
    if (cols.length < 10 || parseInt(cols[3] ?? '', 16) !== TCP_LISTEN) continue;
    const [addrHex, portHex] = (cols[1] ?? '').split(':');
    const inode = Number(cols[9]);
    if (!addrHex || !portHex || !Number.isSafeInteger(inode) || inode === 0) continue;
    out.push({ inode, family, address: decodeProcAddress(addrHex, family), port: parseInt(portHex, 16) });
  }
  return out;
}

/**
 * /proc/net/tcp prints the address as 32-bit words in host byte order (%08X of each
 * __be32 word), so on little-endian machines each word's bytes come out reversed.
 */
function decodeProcAddress(hex: string, family: 4 | 6): string {
  const words = family === 4 ? 1 : 4;
  const bytes = Buffer.alloc(words * 4);
  for (let w = 0; w < words; w++) {
    const value = parseInt(hex.slice(w * 8, w * 8 + 8), 16);
    if (os.endianness() === 'LE') bytes.writeUInt32LE(value, w * 4);
    else bytes.writeUInt32BE(value, w * 4);
  }
  if (family === 4) return Array.from(bytes).join('.');
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(bytes.readUInt16BE(i).toString(16));
  return compressIpv6(groups);
}

/** RFC 5952 text: the longest run (≥ 2) of zero groups becomes '::'. */
function compressIpv6(groups: string[]): string {
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < groups.length; ) {
    if (groups[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < groups.length && groups[j] === '0') j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (bestLen < 2) return groups.join(':');
  return `${groups.slice(0, bestStart).join(':')}::${groups.slice(bestStart + bestLen).join(':')}`;
}

/** [fd, socket inode] for every socket fd of pid; a process that exited has none, fds closed while we look are skipped. */
export function socketFds(pid: number): Array<[number, number]> {
  const dir = `/proc/${pid}/fd`;
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ESRCH') return [];
    throw fsError(err, 'list fds', dir);
  }
  const out: Array<[number, number]> = [];
  for (const name of names) {
    let link: string;
    try {
      link = fs.readlinkSync(`${dir}/${name}`);
    } catch {
      continue;
    }
    const m = /^socket:\[(\d+)\]$/.exec(link);
    if (m) out.push([Number(name), Number(m[1])]);
  }
  return out;
}

function fsError(err: unknown, op: string, target: string): BpfError {
  const code = (err as NodeJS.ErrnoException).code ?? 'EIO';
  const errno = (os.constants.errno as Record<string, number | undefined>)[code] ?? 0;
  return new BpfError({ errno, code, op, target, detail: (err as Error).message });
}
