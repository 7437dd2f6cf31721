/**
 * Ambient splicing: the app's socket and ztunnel's socket of one captured connection, both in the
 * pod netns, spliced with sk_msg behind the same guard the sockops backend uses for sidecars
 * (bpf/include/shunt_splice_guard.h, here built as bpf/tc/redir.bpf.c on the tc backend's own
 * splice sockhash), paired by a sockops program at the node's cgroup (bpf/tc/splice.bpf.c).
 * Node-wide state, all under <bpffs>/shunt/tc/:
 *   maps/splice_*, maps/tc_splice_pending   the splice maps (bpf/include/shunt_splice.h)
 *   links/shunt_tc_splice                   the sockops link on the node cgroup
 *   links/shunt_tc_splice_release          cgroup/sock_release: a spliced socket closed with
 *                                          unread data -> maps/splice_resets -> SpliceResetter
 *   links/shunt_tc_redir, shunt_tc_splice_verdict  sk_msg / sk_skb on maps/splice_socks
 * The links are pinned, so a restarted agent adopts them and spliced flows keep working.
 *
 *  - 'auto' (default): on where the guard loads (probeSpliceGuard) and the node has a cgroup to
 *    attach to; off elsewhere, with the reason in observe() and `shunt doctor`.
 *  - 'none': nothing is spliced (the pairing program reads splice_cfg mode NONE).
 *  - on, but the connected ztunnel (SO_PEERCRED pid from the ZDS server) runs outside the cgroup
 *    the pairing program is attached to: splice_cfg mode NONE too, reason "tc splicing off:
 *    ztunnel pid P in cgroup X is not under Y" (ztunnel-cgroup.ts). Its sockets are invisible to
 *    the pairing program, so every app socket would pay the psock set-up and fall back to TCP at
 *    its first message. Re-decided on every ztunnel (re)connect; a disconnect changes nothing
 *    (ztunnel comes back from where it was). Unknown placement (pid not visible, cgroup not
 *    resolvable) counts as outside: the cost of being wrong is only a lost optimisation.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  BpfLink,
  BpfMap,
  BpfObject,
  SPLICE_MODE,
  attachSpecs,
  bpfObjectPath,
  probeSpliceGuard,
  readSpliceStats,
  spliceCfgValue,
  spliceGuardValue,
  spliceSockValue,
  spliceTuple,
  u32,
  u64,
  SpliceResetter,
  type AttachSpec,
  type SpliceGuardProbe,
  type SpliceResetStats,
  type TypedMap,
} from '@shunt/libbpf';
import { validGuard, type Logger, type SpliceGuard } from '@shunt/core';
import { ztunnelPlacement, type ZtunnelPlacement } from './ztunnel-cgroup';

export type TcSpliceSetting = 'auto' | 'none';
export const DEFAULT_TC_SPLICE: TcSpliceSetting = 'auto';
/** Why DEFAULT_TC_SPLICE is what it is, in one sentence (`shunt doctor`). */
export const TC_SPLICE_WHY =
  "the app's and ztunnel's sockets of each captured connection in the pod netns are spliced behind the sockops backend's guard (bounded peer queue, else TCP with TCP's backpressure; one receive queue per socket), " +
  'short connections excepted, where the guard loads and the node cgroup (which must cover ztunnel\'s pod) exists; nothing elsewhere.';

/**
 * Attach order: the verdict and the guard on the sockhash before the pairing program puts any
 * socket there (a socket gets the map's programs when it is inserted, and every spliced socket
 * needs the verdict, one receive queue, from its first byte). Detached in reverse.
 */
export const SPLICE_PROGRAMS: readonly AttachSpec[] = [
  { object: 'tc/redir.bpf.o', program: 'shunt_tc_splice_verdict', attach: 'sk_skb' },
  { object: 'tc/redir.bpf.o', program: 'shunt_tc_redir', attach: 'sk_msg' },
  // A spliced socket closed with unread data: reported on splice_resets, the resetter below resets
  // the connection as TCP would (bpf/include/shunt_splice_close.h).
  { object: 'tc/splice_close.bpf.o', program: 'shunt_tc_splice_release', attach: 'cgroup' },
  { object: 'tc/splice.bpf.o', program: 'shunt_tc_splice', attach: 'cgroup' },
];

/** The maps one entry per spliced (or learning) socket lives in: empty again once those sockets closed. */
export const PER_SOCKET_MAPS = ['splice_socks', 'splice_peer', 'tc_splice_pending'] as const;

export function validTcSplice(setting: unknown): TcSpliceSetting {
  if (setting === 'auto' || setting === 'none') return setting;
  throw new Error(`tc: splice ${JSON.stringify(setting)} is not 'auto' or 'none'`);
}

/** Whether the node splices, and why (or why not). */
export function effectiveTcSplice(setting: TcSpliceSetting, cgroupRoot: string, probe: () => SpliceGuardProbe): { on: boolean; reason: string } {
  if (setting === 'none') return { on: false, reason: 'splice none' };
  if (!cgroupRoot) return { on: false, reason: 'auto: no node cgroup to attach the pairing program to (NodeContext.cgroupRoot empty)' };
  if (!fs.existsSync(path.join(cgroupRoot, 'cgroup.procs'))) return { on: false, reason: `auto: node cgroup ${cgroupRoot} is not a cgroup v2 directory` };
  const p = probe();
  return p.available ? { on: true, reason: `auto: guard loads (${p.evidence})` } : { on: false, reason: `auto: nothing spliced: ${p.evidence}` };
}

export interface TcSpliceReading {
  setting: TcSpliceSetting;
  on: boolean;
  reason: string;
  cgroupRoot: string;
  guard: SpliceGuard | null;
  links: Record<string, boolean>;
  /** Kernel link id per program (0: not a bpf_link, or unreadable): the same ids after a restart = adopted. */
  linkIds: Record<string, number>;
  /** Entries now: sockets spliced (sockhash, splice_peer) and connections learning while not spliced. */
  entries: Record<(typeof PER_SOCKET_MAPS)[number], number> | null;
  /** The guard's decisions (splice_stats). */
  stats: Record<string, number> | null;
  /** Connections reset after a spliced socket closed with unread data (null: no resetter in this process). */
  resets: SpliceResetStats | null;
  /** Where the connected ztunnel runs relative to cgroupRoot (null: no ztunnel seen yet). */
  ztunnel: ZtunnelPlacement | null;
}

export class TcSplice {
  readonly setting: TcSpliceSetting;
  private readonly guard: SpliceGuard;
  private readonly probe: () => SpliceGuardProbe;
  private links = new Map<string, BpfLink>();
  private maps: { cfg: TypedMap<number, { mode: number }>; guard: TypedMap<number, SpliceGuard>; stats: TypedMap<number, bigint>; raw: Record<string, BpfMap> } | null = null;
  private state: { on: boolean; reason: string } = { on: false, reason: 'not started' };
  /** What the setting, the probe and the attach made of it, before ztunnel's placement is applied. */
  private base: { on: boolean; reason: string } = { on: false, reason: 'not started' };
  private ztunnelPid: number | undefined;
  private placement: ZtunnelPlacement | null = null;
  private readOnly = false;
  private log: Logger | undefined;
  private cgroupRoot = '';
  private resetter: SpliceResetter | null = null;

  constructor(opts: { splice?: TcSpliceSetting; guard?: Partial<SpliceGuard>; guardProbe?: () => SpliceGuardProbe } = {}) {
    this.setting = validTcSplice(opts.splice ?? DEFAULT_TC_SPLICE);
    try {
      this.guard = validGuard(opts.guard);
    } catch (err) {
      throw new Error(`tc: ${(err as Error).message}`);
    }
    this.probe = opts.guardProbe ?? probeSpliceGuard;
  }

  get on(): boolean {
    return this.state.on;
  }

  /**
   * Adopts pinned links, attaches what is missing (when on), opens the maps and writes the guard's
   * bounds, then the mode (sockets pair from then on). Off: mode NONE; links an earlier agent left
   * stay (the sockets they spliced still need their close callback and the guard).
   */
  start(dirs: { mapsDir: string; linksDir: string }, cgroupRoot: string, log: Logger, readOnly = false, netnsPathOf: (cookie: bigint) => string | undefined = () => undefined): void {
    this.cgroupRoot = cgroupRoot;
    this.readOnly = readOnly;
    this.log = log;
    this.state = effectiveTcSplice(this.setting, cgroupRoot, this.probe);
    for (const s of SPLICE_PROGRAMS) {
      const pin = path.join(dirs.linksDir, s.program);
      if (fs.existsSync(pin)) this.links.set(s.program, BpfLink.fromPin(pin));
    }
    if (readOnly) {
      // What the agent that wrote the maps decided, read back (not this process's own resolution).
      if (!fs.existsSync(path.join(dirs.mapsDir, 'splice_cfg'))) {
        this.state = { on: false, reason: 'read back: no splice maps pinned (an agent without splicing)' };
        return;
      }
      this.openMaps(dirs.mapsDir);
      const mode = this.maps!.cfg.lookup(0)?.mode ?? SPLICE_MODE.NONE;
      const linked = SPLICE_PROGRAMS.every((p) => this.links.has(p.program));
      this.state = { on: mode !== SPLICE_MODE.NONE && linked, reason: `read back: splice_cfg mode ${mode === SPLICE_MODE.NONE ? 'none' : 'all'}, ${linked ? 'all splice links pinned' : 'splice links missing'}` };
      this.base = this.state;
      this.applyZtunnel();
      return;
    }
    const missing = SPLICE_PROGRAMS.filter((s) => !this.links.has(s.program));
    if (this.state.on && missing.length > 0) {
      fs.mkdirSync(dirs.linksDir, { recursive: true });
      try {
        attachSpecs(missing, { mapsDir: dirs.mapsDir, linksDir: dirs.linksDir, cgroupRoot: this.cgroupRoot }, this.links);
      } catch (err) {
        // Splicing is an optimisation: redirect works without it, so the backend starts anyway.
        this.state = { on: false, reason: `${this.setting}: attaching the splice programs failed: ${(err as Error).message.split('\n')[0]}` };
      }
    }
    if (!['splice_cfg', 'splice_resets', ...PER_SOCKET_MAPS].every((m) => fs.existsSync(path.join(dirs.mapsDir, m)))) {
      // Off and never on here (or pins of a version without some of them): every splice map exists
      // anyway (observe() reads zeros), created by loading the objects without attaching.
      for (const obj of new Set(SPLICE_PROGRAMS.map((x) => x.object))) BpfObject.open(bpfObjectPath(obj), { pinMaps: dirs.mapsDir }).close();
    }
    this.openMaps(dirs.mapsDir);
    this.maps!.guard.update(0, this.guard);
    this.base = this.state;
    this.applyZtunnel();
    // The resetter runs wherever its program is attached (also adopted while splicing is now off:
    // the sockets spliced before still close). Both ends of a pair are in one pod netns.
    const resets = path.join(dirs.mapsDir, 'splice_resets');
    if (this.links.has('shunt_tc_splice_release') && fs.existsSync(resets)) {
      this.resetter = new SpliceResetter({ map: BpfMap.fromPin(resets), netnsPathOf, log, name: 'tc' });
      this.resetter.start();
    }
    if (this.setting === 'auto' && !this.state.on) log.warn({ reason: this.state.reason }, 'tc: splicing off');
    else if (this.state.on) log.info({ cgroupRoot, attached: this.state.on ? missing.map((s) => s.program) : [], adopted: SPLICE_PROGRAMS.length - missing.length }, 'tc: splicing app<->ztunnel sockets');
  }

  /**
   * ztunnel (re)connected (its pid from SO_PEERCRED; undefined: unreadable): pairing on only if
   * its process is under the cgroup the pairing program is attached to. Before start() it is
   * remembered and applied there. Read-only: only the reason changes (the map is not written).
   */
  ztunnelConnected(pid: number | undefined): ZtunnelPlacement | null {
    this.ztunnelPid = pid ?? 0;
    if (!this.maps && !this.readOnly) return null; // not started: start() applies it
    const before = this.state.on;
    this.applyZtunnel();
    if (!this.readOnly && this.log && before !== this.state.on) {
      if (this.state.on) this.log.info({ reason: this.state.reason }, 'tc: splicing on for this ztunnel');
      else this.log.warn({ reason: this.state.reason }, 'tc: splicing off for this ztunnel');
    }
    return this.placement;
  }

  /** state = base, narrowed by where ztunnel runs; the mode written for the pairing program. */
  private applyZtunnel(): void {
    this.placement = this.ztunnelPid === undefined ? null : ztunnelPlacement(this.ztunnelPid, this.cgroupRoot);
    const p = this.placement;
    if (this.readOnly) {
      // What the agent wrote is the fact; the placement only explains a mode NONE it left.
      this.state = !this.base.on && p && p.under !== true && this.base.reason.includes('mode none') ? { on: false, reason: `tc splicing off: ${p.reason} (${this.base.reason})` } : this.base;
      return;
    }
    if (!this.base.on || !p) this.state = this.base;
    else if (p.under === true) this.state = { on: true, reason: `${this.base.reason}; ${p.reason}` };
    else this.state = { on: false, reason: `tc splicing off: ${p.reason}` };
    this.maps?.cfg.update(0, { mode: this.state.on ? SPLICE_MODE.ALL : SPLICE_MODE.NONE });
  }

  private openMaps(mapsDir: string): void {
    const raw: Record<string, BpfMap> = {};
    try {
      for (const name of ['splice_cfg', 'splice_guard', 'splice_stats', 'splice_learn', ...PER_SOCKET_MAPS]) raw[name] = BpfMap.fromPin(path.join(mapsDir, name));
      // typed() checks each codec's size against the map: the shared ABI cannot drift silently.
      raw.splice_socks!.typed(spliceTuple, u32);
      raw.splice_peer!.typed(spliceTuple, spliceSockValue);
      this.maps = { cfg: raw.splice_cfg!.typed(u32, spliceCfgValue), guard: raw.splice_guard!.typed(u32, spliceGuardValue), stats: raw.splice_stats!.typed(u32, u64), raw };
    } catch (err) {
      for (const m of Object.values(raw)) m.close();
      throw err;
    }
  }

  reading(): TcSpliceReading {
    const m = this.maps;
    let guard: SpliceGuard | null = null;
    if (m) {
      const g = m.guard.lookup(0);
      guard = g ? { queueCap: g.queueCap, smallMsg: g.smallMsg, smallQueue: g.smallQueue, shortConns: g.shortConns } : null;
    }
    return {
      setting: this.setting,
      on: this.state.on,
      reason: this.state.reason,
      cgroupRoot: this.cgroupRoot,
      guard,
      links: Object.fromEntries(SPLICE_PROGRAMS.map((s) => [s.program, this.links.has(s.program)])),
      linkIds: Object.fromEntries(SPLICE_PROGRAMS.map((s) => [s.program, this.linkId(s.program)])),
      entries: m ? (Object.fromEntries(PER_SOCKET_MAPS.map((n) => [n, m.raw[n]!.count()])) as TcSpliceReading['entries']) : null,
      stats: m ? readSpliceStats(m.stats) : null,
      resets: this.resetter ? { ...this.resetter.stats } : null,
      ztunnel: this.placement,
    };
  }

  private linkId(program: string): number {
    const l = this.links.get(program);
    if (!l || l.kind !== 'link') return 0;
    try {
      return l.info().id;
    } catch {
      return 0;
    }
  }

  /** Closes handles; with cleanup, detaches the links first (pairing first, so nothing new is spliced). */
  stop(cleanup: boolean): void {
    this.resetter?.close();
    this.resetter = null;
    for (const s of [...SPLICE_PROGRAMS].reverse()) {
      const l = this.links.get(s.program);
      if (!l) continue;
      if (cleanup) l.detach();
      else l.close();
    }
    this.links.clear();
    for (const mp of Object.values(this.maps?.raw ?? {})) mp.close();
    this.maps = null;
  }
}
