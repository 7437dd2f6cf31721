// Finds a pod's network namespace from its IP, the way node agents without a CNI hook do:
// every netns on the node is reachable through /proc/<pid>/ns/net of a process in it, or a
// bind mount under /var/run/netns; the one whose interfaces carry the pod's IP is the pod's.
//
// Cost: a scan lists the namespaces (named mounts, and the processes' netns through an index
// that stats only pids it has not seen) and lists the addresses only of namespaces it has not
// seen before (one child process each), so a new pod costs its own netns, not the node's.
import { promises as fs, statSync } from 'node:fs';
import path from 'node:path';
import { NetnsPidIndex } from '@shunt/libbpf';

/** One network namespace on the node, reachable at `path`. */
export interface NetnsEntry {
  path: string;
  /** nsfs inode: identifies the netns while it lives (the kernel reuses it afterwards). */
  inode: number;
  /** bpf_get_netns_cookie() of the netns, as a decimal string; set when a cookie reader is given. */
  cookie?: string;
  ips: string[];
}

export interface NetnsDiscoveryOptions {
  /** procfs of the node's PID namespace (the agent runs with hostPID). */
  procRoot?: string;
  /** Directories of named netns bind mounts. */
  runDirs?: string[];
  /** Lists the addresses configured inside a netns. */
  listIps: (netnsPath: string) => Promise<string[]>;
  /** Reads the netns cookie (e.g. @shunt/libbpf netnsCookie). */
  readCookie?: (netnsPath: string) => bigint;
  /** Bounds how many netns a scan lists addresses of at once. */
  concurrency?: number;
  /** Bounds a scan on pathological nodes. */
  maxNetns?: number;
  /** Only named netns whose name starts with this, and no /proc scan (tests that must not touch other netns). */
  namePrefix?: string;
  now?: () => number;
}

export class NetnsNotFoundError extends Error {
  constructor(readonly ip: string, scanned: number) {
    super(`no network namespace on this node carries IP ${ip} (scanned ${scanned} namespaces)`);
    this.name = 'NetnsNotFoundError';
  }
}

/** The nsfs inode behind a netns path, or null when it is gone. */
export function inodeOf(p: string): number | null {
  try {
    return statSync(p).ino;
  } catch {
    return null;
  }
}

export class NetnsDiscovery {
  private readonly procRoot: string;
  private readonly runDirs: string[];
  private readonly concurrency: number;
  private readonly maxNetns: number;
  private readonly now: () => number;
  private byIp = new Map<string, NetnsEntry>();
  /** Namespaces listed by the last scan, by nsfs inode, with what was learnt of them. */
  private known = new Map<number, NetnsEntry>();
  private readonly pids: NetnsPidIndex;
  /** Address listings done (one child process each), for tests and the README's capacity section. */
  listings = 0;
  /** Start time of the last completed scan. */
  private lastScanStart = -Infinity;
  private lastScanCount = 0;
  private scanning: { startedAt: number; done: Promise<void> } | null = null;
  /** Scans done so far (for tests and metrics). */
  scans = 0;

  constructor(private readonly opts: NetnsDiscoveryOptions) {
    this.procRoot = opts.procRoot ?? '/proc';
    this.runDirs = opts.runDirs ?? ['/var/run/netns'];
    this.concurrency = opts.concurrency ?? 16;
    this.maxNetns = opts.maxNetns ?? 20_000;
    this.now = opts.now ?? Date.now;
    this.pids = new NetnsPidIndex({ procRoot: this.procRoot });
  }

  /**
   * The netns carrying one of `ips`. A cached answer is reused while its path still leads to
   * the same netns; otherwise (new IP, pod sandbox recreated) the node is scanned again, unless
   * a scan that started after `since` (when the caller learnt of the pod) already missed it:
   * many unknown pods arriving together share scans instead of causing one each.
   */
  async resolve(ips: readonly string[], since: number = this.now()): Promise<NetnsEntry> {
    if (ips.length === 0) throw new Error('cannot find the network namespace of a pod without IPs');
    // Two rounds at most: an in-flight scan that began too early, then a fresh one.
    for (let round = 0; round < 3; round++) {
      const hit = this.fromCache(ips);
      if (hit) return hit;
      if (this.lastScanStart >= since) break;
      await this.scanStartedAfter(since);
    }
    const hit = this.fromCache(ips);
    if (hit) return hit;
    throw new NetnsNotFoundError(ips[0]!, this.lastScanCount);
  }

  /** Drops what is cached for these IPs (pod deleted, IPs or containers changed). */
  forget(ips: readonly string[]): void {
    for (const ip of ips) this.byIp.delete(ip);
  }

  /**
   * nsfs inode numbers are reused once a netns is freed, so a recreated sandbox can show the same
   * inode at the same path; the cookie is never reused, so it settles identity when we have one.
   */
  private sameCookie(e: NetnsEntry): boolean {
    if (!this.opts.readCookie || e.cookie === undefined) return true;
    try {
      return this.opts.readCookie(e.path).toString() === e.cookie;
    } catch {
      return false;
    }
  }

  private fromCache(ips: readonly string[]): NetnsEntry | null {
    for (const ip of ips) {
      const e = this.byIp.get(ip);
      if (!e) continue;
      if (inodeOf(e.path) === e.inode && this.sameCookie(e)) return e;
      this.byIp.delete(ip); // the process exited or the sandbox was recreated
      // A recreated netns may get the freed one's inode: list it afresh next scan.
      if (this.known.get(e.inode) === e) this.known.delete(e.inode);
    }
    return null;
  }

  /** Waits for a scan that started at or after `since`, joining one in flight when it qualifies. */
  private async scanStartedAfter(since: number): Promise<void> {
    if (this.scanning && this.scanning.startedAt < since) await this.scanning.done;
    if (this.scanning) return this.scanning.done;
    const startedAt = this.now();
    const done = this.scan().then(
      () => {
        this.lastScanStart = Math.max(this.lastScanStart, startedAt);
      },
    ).finally(() => {
      this.scanning = null;
    });
    this.scanning = { startedAt, done };
    return done;
  }

  /** Every distinct netns on the node except the agent's own (the host's). */
  async listNamespaces(): Promise<{ path: string; inode: number }[]> {
    const own = inodeOf('/proc/self/ns/net');
    const seen = new Map<number, string>();
    // Named mounts first: their paths outlive any one process, so they are the better handle.
    for (const dir of this.runDirs) {
      let names: string[] = [];
      try {
        names = await fs.readdir(dir);
      } catch {
        continue; // absent on nodes whose runtime does not name netns
      }
      for (const name of names.sort()) {
        if (this.opts.namePrefix && !name.startsWith(this.opts.namePrefix)) continue;
        const p = path.join(dir, name);
        const ino = inodeOf(p);
        if (ino !== null && ino !== own && !seen.has(ino)) seen.set(ino, p);
      }
    }
    if (this.opts.namePrefix) return [...seen].map(([inode, p]) => ({ path: p, inode }));
    this.pids.refresh();
    for (const ns of this.pids.namespaces()) {
      if (seen.size >= this.maxNetns) break;
      if (ns.inode !== own && !seen.has(ns.inode)) seen.set(ns.inode, path.join(this.procRoot, String(ns.pid), 'ns', 'net'));
    }
    return [...seen].map(([inode, p]) => ({ path: p, inode }));
  }

  private async scan(): Promise<void> {
    this.scans++;
    const namespaces = await this.listNamespaces();
    const next = new Map<string, NetnsEntry>();
    const known = new Map<number, NetnsEntry>();
    // Seen by the last scan too, with addresses: a pod's IPs do not change while its netns
    // lives, so they are not listed again (a netns without addresses yet, before CNI ADD, is).
    const fresh: typeof namespaces = [];
    for (const ns of namespaces) {
      const old = this.known.get(ns.inode);
      if (old && old.ips.some((ip) => !isLoopback(ip))) {
        const entry = old.path === ns.path ? old : { ...old, path: ns.path };
        known.set(ns.inode, entry);
        for (const ip of entry.ips) if (!isLoopback(ip)) next.set(ip, entry);
      } else fresh.push(ns);
    }
    let i = 0;
    const worker = async (): Promise<void> => {
      while (i < fresh.length) {
        const ns = fresh[i++]!;
        let ips: string[];
        try {
          this.listings++;
          ips = await this.opts.listIps(ns.path);
        } catch {
          continue; // the process exited during the scan
        }
        const entry: NetnsEntry = { path: ns.path, inode: ns.inode, ips };
        if (this.opts.readCookie) {
          try {
            entry.cookie = this.opts.readCookie(ns.path).toString();
          } catch {
            continue;
          }
        }
        known.set(ns.inode, entry);
        for (const ip of ips) if (!isLoopback(ip)) next.set(ip, entry);
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.concurrency, fresh.length) }, worker));
    this.byIp = next;
    this.known = known;
    this.lastScanCount = namespaces.length;
  }
}

/** Addresses every netns has (loopback) or that say nothing about the pod (link-local). */
function isLoopback(ip: string): boolean {
  return ip === '::1' || ip.startsWith('127.') || ip.toLowerCase().startsWith('fe80:');
}
