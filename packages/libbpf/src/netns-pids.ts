/**
 * Which processes live in which network namespace, indexed once and kept current instead of
 * stat'ing /proc/<pid>/ns/net of every process on the node for every pod (that was O(N) per
 * enroll, O(N²) for a node's start-up).
 *
 * The index maps pid -> netns identity (nsfs dev:inode) and back. A refresh lists /proc and
 * stats only pids it has not seen; pids gone from the listing are dropped. Answers are checked
 * on use (the pid may have exited and its number been reused), so a stale entry costs one stat,
 * never a wrong answer. Callers that miss refresh with `since`: many pods that miss together
 * share one refresh.
 */
import * as fs from 'node:fs';

type NsKey = string;

export interface NetnsPidIndexOptions {
  procRoot?: string;
  now?: () => number;
}

const keyOf = (st: fs.Stats): NsKey => `${st.dev}:${st.ino}`;
/** A full listing at least this often (prunes pids that exited without being asked about). */
const FULL_EVERY = 256;
/** More new pids than this since the last refresh: list /proc instead of probing each number. */
const MAX_NEW = 4096;

/** The last pid the kernel allocated in our pid namespace (threads count too). */
function readLastPid(procRoot: string): number | null {
  try {
    const n = Number(fs.readFileSync(`${procRoot}/sys/kernel/ns_last_pid`, 'utf8').trim());
    return Number.isSafeInteger(n) && n > 0 ? n : null;
  } catch {
    return null;
  }
}

/**
 * Whether pid is a process (thread-group leader), not a thread: /proc/<tid> of a thread exists
 * too (unlisted), and pidfd_open refuses a thread. Its status says Tgid.
 */
function isProcess(procRoot: string, pid: number): boolean {
  try {
    const m = /^Tgid:\s+(\d+)$/m.exec(fs.readFileSync(`${procRoot}/${pid}/status`, 'utf8'));
    return m !== null && Number(m[1]) === pid;
  } catch {
    return false; // never allocated, or exited already
  }
}

export class NetnsPidIndex {
  private readonly procRoot: string;
  private readonly now: () => number;
  private readonly nsOfPid = new Map<number, NsKey>();
  private readonly pidsOfNs = new Map<NsKey, Set<number>>();
  /** Time the last refresh started (a refresh that started after a miss answers it). */
  private lastRefresh = -Infinity;
  /** For tests and the capacity section of the README. */
  refreshes = 0;
  /** ns_last_pid at the last refresh (null: unknown, the next refresh lists /proc). */
  private lastPid: number | null = null;
  private sinceFull = 0;
  stats = 0;

  constructor(opts: NetnsPidIndexOptions = {}) {
    this.procRoot = opts.procRoot ?? '/proc';
    this.now = opts.now ?? Date.now;
  }

  get size(): number {
    return this.nsOfPid.size;
  }

  /**
   * Pids in the netns at netnsPath, each re-checked. When none is known, refreshes the index
   * unless a refresh started at or after `since` (the caller's own start) already saw the node.
   */
  pidsIn(netnsPath: string, since: number = this.now()): number[] {
    const want = keyOf(fs.statSync(netnsPath));
    let pids = this.verified(want);
    if (pids.length === 0 && this.refreshIfOlder(since)) pids = this.verified(want);
    return pids;
  }

  /** Refreshes unless a refresh started at or after `since`; true when it did. */
  refreshIfOlder(since: number): boolean {
    if (this.lastRefresh >= since) return false;
    if (!this.refreshNew()) this.refresh();
    return true;
  }

  /**
   * The cheap refresh: only the pids allocated since the last refresh, (last, ns_last_pid], which
   * the kernel hands out in increasing order until it wraps at pid_max — O(processes started
   * since), not O(processes on the node). Exited pids are pruned lazily (verified()) and by the
   * full refresh every FULL_EVERY calls. false when it cannot tell (wrapped, unreadable, too many
   * new pids): the caller does the full refresh.
   */
  private refreshNew(): boolean {
    if (this.lastPid === null || this.sinceFull >= FULL_EVERY) return false;
    const last = readLastPid(this.procRoot);
    if (last === null || last < this.lastPid || last - this.lastPid > MAX_NEW) return false;
    this.lastRefresh = this.now();
    this.refreshes++;
    this.sinceFull++;
    for (let pid = this.lastPid + 1; pid <= last; pid++) if (!this.nsOfPid.has(pid) && isProcess(this.procRoot, pid)) this.learn(pid);
    this.lastPid = last;
    return true;
  }

  /** Lists /proc; stats only pids not seen before; drops pids that are gone. */
  refresh(): void {
    this.lastRefresh = this.now();
    this.refreshes++;
    this.sinceFull = 0;
    // Read before listing: a pid allocated meanwhile is then seen by this listing or the next refresh.
    this.lastPid = readLastPid(this.procRoot);
    const live = new Set<number>();
    for (const name of fs.readdirSync(this.procRoot)) {
      const c = name.charCodeAt(0);
      if (c < 48 || c > 57) continue; // not a pid
      const pid = Number(name);
      live.add(pid);
      if (!this.nsOfPid.has(pid)) this.learn(pid);
    }
    for (const pid of [...this.nsOfPid.keys()]) if (!live.has(pid)) this.drop(pid);
  }

  /** Every netns some process is in, by nsfs inode, with one of its pids (after a refresh). */
  namespaces(): Array<{ dev: number; inode: number; pid: number }> {
    const out: Array<{ dev: number; inode: number; pid: number }> = [];
    for (const [key, pids] of this.pidsOfNs) {
      const [dev, inode] = key.split(':').map(Number) as [number, number];
      const pid = pids.values().next().value;
      if (pid !== undefined) out.push({ dev, inode, pid });
    }
    return out;
  }

  private verified(want: NsKey): number[] {
    const set = this.pidsOfNs.get(want);
    if (!set) return [];
    const out: number[] = [];
    for (const pid of [...set]) {
      // The pid may have exited (or been reused by a process elsewhere) since we looked.
      const now = this.statNs(pid);
      if (now === want) out.push(pid);
      else {
        this.drop(pid);
        if (now !== null) this.add(pid, now);
      }
    }
    return out.sort((a, b) => a - b);
  }

  private learn(pid: number): void {
    const ns = this.statNs(pid);
    if (ns !== null) this.add(pid, ns);
  }

  private statNs(pid: number): NsKey | null {
    this.stats++;
    try {
      return keyOf(fs.statSync(`${this.procRoot}/${pid}/ns/net`));
    } catch {
      return null; // exited while we looked, or a kernel thread without a netns link
    }
  }

  private add(pid: number, ns: NsKey): void {
    this.nsOfPid.set(pid, ns);
    let set = this.pidsOfNs.get(ns);
    if (!set) this.pidsOfNs.set(ns, (set = new Set()));
    set.add(pid);
  }

  private drop(pid: number): void {
    const ns = this.nsOfPid.get(pid);
    if (ns === undefined) return;
    this.nsOfPid.delete(pid);
    const set = this.pidsOfNs.get(ns);
    set?.delete(pid);
    if (set && set.size === 0) this.pidsOfNs.delete(ns);
  }
}
