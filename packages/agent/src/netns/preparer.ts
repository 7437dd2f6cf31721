// Prepares new pod network namespaces for the tc backend before their pod is enrolled.
//
// Why: a tcx attach waits one RCU grace period (~16 ms, under rtnl_lock) and an enroll needs
// three links; in Kubernetes the pod's netns exists (sandbox + CNI ADD) before the API event
// that carries the pod's IP, which is what enrolls it. So the links are attached when the netns
// appears, idle (the programs pass every packet of a netns with no pod map entry), and the
// enroll only writes maps, rules and sysctls (backend-tc README, "Lifecycle").
//
// What: the named-netns run dirs (/var/run/netns, where CRI runtimes bind-mount pod netns, the
// same dirs netns discovery reads) are watched with inotify (fs.watch) and re-read on a slow
// sweep (a dir created later, a missed event). Each netns that appears while the agent runs,
// and is not the host's, is prepared (retried while it has no eth0 yet: CNI ADD runs after the
// netns is created): the backend attaches its links idle and writes its inert rule and route, so
// the pod event's enroll takes no rtnl_lock. A prepared netns no enroll claimed within the grace
// time is released (links, rule and route removed: the netns as found), as is one whose run-dir entry went away. Netns present
// when the agent starts are not prepared (their pods come with the first sync and enroll cold);
// prepared links adopted from an earlier agent are given the grace time again, then released.
// Bounded: at most `maxPrepared` prepared-but-unclaimed netns, prepares run one at a time; a
// re-read costs one readdir per dir (only names not seen before are stat'ed).
import { promises as fsp, watch, type FSWatcher } from 'node:fs';
import path from 'node:path';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Logger } from '@shunt/core';
import { inodeOf } from './discovery';

/** What the preparer needs of a backend (TcBackend has it). */
export interface PreparingBackend {
  readonly name: string;
  prepare(netnsPath: string, opts?: { dns?: boolean }): Promise<{ cookie: string; state: 'prepared' | 'adopted' | 'enrolled' | 'no-interface' | 'skipped' }>;
  release(netns: string | bigint): Promise<'released' | 'enrolled' | 'unknown'>;
  preparedNetns(): Array<{ cookie: string; netnsPath?: string; since: number; adopted: boolean }>;
}

/** An address a CNI gives a pod (not loopback, not link-local). */
export function isPodAddress(ip: string): boolean {
  const l = ip.toLowerCase();
  return !(l === '::1' || l.startsWith('127.') || l.startsWith('fe80:') || l.startsWith('169.254.'));
}

export function isPreparingBackend(b: unknown): b is PreparingBackend {
  const x = b as Partial<PreparingBackend> | null;
  return !!x && typeof x.prepare === 'function' && typeof x.release === 'function' && typeof x.preparedNetns === 'function';
}

export const DEFAULT_PREPARE_GRACE_MS = 30_000;
export const DEFAULT_MAX_PREPARED = 64;

export interface NetnsPreparerOptions {
  backend: PreparingBackend;
  log: Logger;
  registry?: Registry;
  /** Named-netns dirs (default /var/run/netns). */
  runDirs?: string[];
  /** Only names starting with this (tests sharing a machine). */
  namePrefix?: string;
  /** A prepared netns no enroll claimed within this is released (default 30 s). */
  graceMs?: number;
  /** Prepared-but-unclaimed netns at most (default 64); beyond, new netns enroll cold. */
  maxPrepared?: number;
  /** Re-read of the dirs and grace check (default 1 s). */
  sweepMs?: number;
  /**
   * Whether the CNI is done with the netns (e.g. it has a pod address); not ready yet is
   * retried like a missing eth0. Attaching only then also puts ours after programs the CNI
   * attaches in the pod during its ADD (a later one comes after ours: README, attach position).
   */
  ready?: (netnsPath: string) => Promise<boolean>;
  now?: () => number;
}

type Result = 'prepared' | 'claimed' | 'released' | 'skipped_cap' | 'gave_up';

interface Tracked {
  /** Unknown only for pins an earlier agent left without a prepared record. */
  path?: string;
  inode?: number;
  cookie?: string;
  since: number;
  state: 'waiting' | 'prepared' | 'done';
  attempts: number;
}

export class NetnsPreparer {
  private readonly runDirs: string[];
  private readonly graceMs: number;
  private readonly maxPrepared: number;
  private readonly sweepMs: number;
  private readonly now: () => number;
  private readonly hostInode = inodeOf('/proc/self/ns/net');
  /** By run-dir path (or `cookie:<n>` for adopted links whose path is unknown). */
  private readonly tracked = new Map<string, Tracked>();
  private readonly watchers = new Map<string, FSWatcher>();
  private sweepTimer: NodeJS.Timeout | undefined;
  private rescanSoon: NodeJS.Timeout | undefined;
  /** One prepare/release at a time: each holds rtnl_lock for a grace period. */
  private chain: Promise<void> = Promise.resolve();
  private stopped = false;
  private readonly results?: Counter<'result'>;

  constructor(private readonly opts: NetnsPreparerOptions) {
    this.runDirs = opts.runDirs ?? ['/var/run/netns'];
    this.graceMs = opts.graceMs ?? DEFAULT_PREPARE_GRACE_MS;
    this.maxPrepared = opts.maxPrepared ?? DEFAULT_MAX_PREPARED;
    this.sweepMs = opts.sweepMs ?? 1000;
    this.now = opts.now ?? Date.now;
    if (opts.registry) {
      this.results = new Counter({
        name: 'shunt_netns_prepare_total',
        help: 'Pod netns prepared ahead of enroll (tc links attached idle), and how each ended: claimed by an enroll, released (no ambient pod within the grace time, or gone), skipped (cap), gave up (no eth0 within the grace time, or errors).',
        labelNames: ['result'],
        registers: [opts.registry],
      });
      const backend = opts.backend;
      new Gauge({
        name: 'shunt_netns_prepared',
        help: 'Pod netns whose tc links are attached and idle, waiting for their pod to be enrolled.',
        registers: [opts.registry],
        collect() {
          this.set(backend.preparedNetns().length);
        },
      });
    }
  }

  /** Notes what exists already (not prepared), adopts an earlier agent's prepared links, starts watching. */
  async start(): Promise<void> {
    const t = this.now();
    for (const p of await this.listPaths()) this.tracked.set(p, { path: p, since: t, state: 'done', attempts: 0 });
    for (const p of this.opts.backend.preparedNetns()) {
      const key = p.netnsPath ?? `cookie:${p.cookie}`;
      this.tracked.set(key, { ...(p.netnsPath ? { path: p.netnsPath } : {}), cookie: p.cookie, since: t, state: 'prepared', attempts: 0 });
    }
    const adopted = this.opts.backend.preparedNetns().length;
    if (adopted > 0) this.opts.log.info({ netns: adopted, graceMs: this.graceMs }, 'netns prepare: adopted prepared netns of an earlier agent; released after the grace time unless claimed');
    this.watchDirs();
    this.sweepTimer = setInterval(() => void this.sweep(), this.sweepMs);
    this.sweepTimer.unref();
    this.opts.log.info({ dirs: this.runDirs, graceMs: this.graceMs, maxPrepared: this.maxPrepared, backend: this.opts.backend.name }, 'netns prepare: watching for new pod netns');
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.sweepTimer);
    clearTimeout(this.rescanSoon);
    for (const w of this.watchers.values()) w.close();
    this.watchers.clear();
    await this.chain;
  }

  /** For tests and status: what is tracked as prepared now. */
  preparedPaths(): string[] {
    return [...this.tracked.values()].filter((t) => t.state === 'prepared' && t.path).map((t) => t.path!);
  }

  private watchDirs(): void {
    for (const dir of this.runDirs) {
      if (this.watchers.has(dir)) continue;
      try {
        const w = watch(dir, { persistent: false }, () => this.scheduleRescan());
        w.on('error', () => {
          w.close();
          this.watchers.delete(dir); // re-established by a later sweep
        });
        this.watchers.set(dir, w);
      } catch {
        // The dir does not exist yet (no netns named on this node so far): the sweep retries.
      }
    }
  }

  /** Events come in bursts (create, then the bind mount): one re-read for them. */
  private scheduleRescan(): void {
    if (this.stopped || this.rescanSoon) return;
    this.rescanSoon = setTimeout(() => {
      this.rescanSoon = undefined;
      void this.rescan();
    }, 5);
  }

  /** The run dirs' entries (names only: a re-read costs one readdir, not a stat per netns). */
  private async listPaths(): Promise<string[]> {
    const out: string[] = [];
    for (const dir of this.runDirs) {
      let names: string[];
      try {
        names = await fsp.readdir(dir);
      } catch {
        continue;
      }
      for (const name of names) if (!this.opts.namePrefix || name.startsWith(this.opts.namePrefix)) out.push(path.join(dir, name));
    }
    return out;
  }

  private async rescan(): Promise<void> {
    if (this.stopped) return;
    const paths = await this.listPaths();
    const here = new Set(paths);
    for (const p of paths) {
      // Known names are not looked at again: runtimes never reuse a pod netns name (a sandbox
      // recreated gets a new one), and a name that went away is forgotten below.
      if (this.tracked.has(p)) continue;
      const ino = inodeOf(p);
      if (ino === null) continue; // gone again already
      const entry: Tracked = { path: p, inode: ino, since: this.now(), state: ino === this.hostInode ? 'done' : 'waiting', attempts: 0 };
      this.tracked.set(p, entry);
      if (entry.state === 'waiting') this.enqueue(() => this.prepare(entry));
    }
    // Gone from the run dir: the pod's sandbox was removed before (or after) its enroll.
    for (const [key, t] of this.tracked) {
      if (!t.path || here.has(t.path) || inodeOf(t.path) !== null) continue;
      if (t.state === 'prepared') this.enqueue(() => this.release(t, 'netns gone'));
      else this.tracked.delete(key);
    }
  }

  private enqueue(fn: () => Promise<void>): void {
    this.chain = this.chain.then(fn).catch((err: Error) => this.opts.log.error({ err: err.message }, 'netns prepare: unexpected failure'));
  }

  private preparedCount(): number {
    let n = 0;
    for (const t of this.tracked.values()) if (t.state === 'prepared') n++;
    return n;
  }

  private async prepare(t: Tracked): Promise<void> {
    if (this.stopped || t.state !== 'waiting' || !t.path) return;
    if (this.preparedCount() >= this.maxPrepared) {
      t.state = 'done';
      this.results?.inc({ result: 'skipped_cap' });
      this.opts.log.warn({ netns: t.path, maxPrepared: this.maxPrepared }, 'netns prepare: cap of prepared-but-unclaimed netns reached; this one enrolls cold if its pod is ambient');
      return;
    }
    const t0 = performance.now();
    let why = '';
    try {
      if (this.opts.ready && !(await this.opts.ready(t.path))) return this.retry(t, 'the CNI has not configured it yet');
      const r = await this.opts.backend.prepare(t.path);
      t.cookie = r.cookie || t.cookie;
      if (r.state === 'prepared' || r.state === 'adopted') {
        t.state = 'prepared';
        t.inode = inodeOf(t.path) ?? t.inode;
        this.count('prepared');
        this.opts.log.info({ netns: t.path, cookie: r.cookie, ms: +(performance.now() - t0).toFixed(1), state: r.state }, 'netns prepared: tc links attached, idle until its pod is enrolled');
        return;
      }
      if (r.state === 'enrolled' || r.state === 'skipped') {
        t.state = 'done';
        return;
      }
      why = 'no eth0 yet';
    } catch (err) {
      why = (err as Error).message; // e.g. the bind mount is not in place yet
    }
    this.retry(t, why);
  }

  /** Not ready (CNI ADD not done) or a passing error: retried with backoff within the grace time. */
  private retry(t: Tracked, why: string): void {
    const age = this.now() - t.since;
    if (age >= this.graceMs) {
      t.state = 'done';
      this.count('gave_up');
      this.opts.log.warn({ netns: t.path, reason: why, graceMs: this.graceMs }, 'netns prepare: gave up (its pod, if ambient, enrolls cold)');
      return;
    }
    // Soon at first (the pod event follows the CNI's ADD closely), then every 200 ms.
    const delay = Math.min(200, 20 * 2 ** Math.min(4, t.attempts++));
    setTimeout(() => this.enqueue(() => this.prepare(t)), delay).unref();
  }

  private async release(t: Tracked, reason: string): Promise<void> {
    if (t.state !== 'prepared') return;
    const target = t.cookie !== undefined ? BigInt(t.cookie) : t.path!;
    t.state = 'done';
    try {
      const r = await this.opts.backend.release(target);
      if (r === 'enrolled') {
        this.count('claimed');
        return;
      }
      if (r === 'released') {
        this.count('released');
        this.opts.log.info({ netns: t.path ?? null, cookie: t.cookie, reason }, 'prepared netns released: links detached, netns as found');
      }
    } catch (err) {
      this.opts.log.warn({ netns: t.path ?? null, cookie: t.cookie, err: (err as Error).message }, 'netns prepare: release failed; retried');
      t.state = 'prepared';
    }
    if (!t.path || inodeOf(t.path) === null) for (const [k, v] of this.tracked) if (v === t) this.tracked.delete(k);
  }

  private count(r: Result): void {
    this.results?.inc({ result: r });
  }

  /** Claims (enroll took the links), grace expiries, and the dirs re-read. */
  private async sweep(): Promise<void> {
    if (this.stopped) return;
    this.watchDirs();
    const stillPrepared = new Set(this.opts.backend.preparedNetns().map((p) => p.cookie));
    const now = this.now();
    for (const t of this.tracked.values()) {
      if (t.state !== 'prepared' || t.cookie === undefined) continue;
      if (!stillPrepared.has(t.cookie)) {
        t.state = 'done';
        this.count('claimed');
        this.opts.log.info({ netns: t.path ?? null, cookie: t.cookie, ms: now - t.since }, 'prepared netns claimed: its pod was enrolled on the prepared links');
      } else if (now - t.since >= this.graceMs) this.enqueue(() => this.release(t, `no ambient pod claimed it within ${this.graceMs} ms`));
    }
    await this.rescan();
  }
}
