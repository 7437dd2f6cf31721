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

export class NetnsPidIndex {
  private readonly procRoot: string;
  private readonly now: () => number;
  private readonly nsOfPid = new Map<number, NsKey>();
  private readonly pidsOfNs = new Map<NsKey, Set<number>>();
  /** Time the last refresh started (a refresh that started after a miss answers it). */
  private lastRefresh = -Infinity;
  /** For tests and the capacity section of the README. */
  refreshes = 0;
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
    this.refresh();
    return true;
  }

  /** Lists /proc; stats only pids not seen before; drops pids that are gone. */
  refresh(): void {
    this.lastRefresh = this.now();
    this.refreshes++;
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
