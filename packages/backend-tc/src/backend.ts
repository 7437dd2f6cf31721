/**
 * TcBackend: ambient redirect inside each pod's netns (DESIGN.md "Ambient: how shunt meets
 * ztunnel", README.md here). Kernel state, all under <bpffsRoot>/tc/:
 *   maps/<name>                 every map of bpf/include/shunt_tc.h (pinned by name by libbpf)
 *   netns/<cookie>/ingress|egress  the pod's two tcx links on its eth0, pinned so they outlive
 *                               the agent; a restarted agent adopts them
 * plus, in each pod netns, the policy rule, local route and accept_local of netns-setup.ts. The
 * pod registry is the kernel itself: tc_pod_meta (netns cookie -> uid/namespace/name, netns
 * path, what was changed there) next to tc_pod (pod address -> config).
 *
 * Prepared netns (README "Lifecycle"): prepare() attaches a netns' links and writes its policy
 * rule and local route before its pod is enrolled (when the netns appears, as the kubelet creates
 * it before the pod event that carries the IP), so enroll() takes no rtnl_lock: it writes maps and
 * one sysctl. A prepared netns has pins under netns/<cookie>/ and a tc_pod_meta record with
 * STATE.PREPARED (path, ifindex, rule/route bits); its programs find no tc_pod entry for its
 * addresses and pass every packet (TCX_NEXT), so nothing carries the mark the rule matches.
 * release() detaches and removes them again.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { isIPv4 } from 'node:net';
import {
  BpfLink,
  BpfObject,
  ifIndexIn,
  attachClsactAt,
  attachTcxAsync,
  bpfObjectPath,
  clsactLink,
  clsactProgId,
  detachLinkAsync,
  netnsCookie,
  probeTcx,
  type KernelLinkInfo,
  type SpliceGuardProbe,
} from '@shunt/libbpf';
import type { InstalledState, InstalledSummary, MeshPod, NodeCapabilities, NodeContext, PodRef, RedirectBackend, SpliceGuard, Support } from '@shunt/core';
import { TcSplice, type TcSpliceSetting } from './splice';
import type { ZtunnelPlacement } from './ztunnel-cgroup';
import { CLSACT_HANDLE, CLSACT_PRIORITY, ROUTING, STATE, encodeAddr } from './abi';
import { TcMaps, type InstalledPod, type PodPlace } from './maps';
import { PodConfigError, canonical, fingerprintOf, podConfig, podName, type TcPodConfig } from './pod-config';
import { applyNetnsSetup, applyPreparedRouting, removeNetnsSetup, removeOwnClsact, removeRouting } from './netns-setup';
import { tcSupport } from './support';
import { KeyedLock } from './keyed-lock';

export interface TcOptions {
  /** The pod-side interface the links go on; default 'eth0' (what every CNI names it). */
  ifname?: string;
  /**
   * 'auto' (default): tcx links where the kernel has them, else the clsact fallback; 'clsact'
   * forces the fallback (cls_bpf filters at CLSACT_PRIORITY, not pinnable: re-found by
   * handle/priority after a restart).
   */
  attach?: 'auto' | 'tcx' | 'clsact';
  /**
   * Splice the app's and ztunnel's sockets of each captured connection (src/splice.ts): 'auto'
   * (default) where the splice guard loads and the node has a cgroup, 'none' never.
   */
  splice?: TcSpliceSetting;
  /** The splice guard's bounds (the same as the sockops backend's); default DEFAULT_GUARD. */
  guard?: Partial<SpliceGuard>;
  /** Replaces probeSpliceGuard() (tests). */
  guardProbe?: () => SpliceGuardProbe;
}

export const PROGRAMS = {
  ingress: { object: 'tc/ingress.bpf.o', program: 'shunt_tc_ingress' },
  egress: { object: 'tc/egress.bpf.o', program: 'shunt_tc_egress' },
  /** A netns link: hands SYNs that met a TIME_WAIT of their 4-tuple to ztunnel (see the program). */
  lookup: { object: 'tc/sk_lookup.bpf.o', program: 'shunt_tc_sk_lookup' },
  /** On lo, only for pods with DNS capture: restores the source of ztunnel's DNS replies. */
  dns: { object: 'tc/dns.bpf.o', program: 'shunt_tc_dns_reply' },
} as const;
/** A pod's link: ingress/egress on its eth0, dns on its lo (egress hook). */
type Direction = keyof typeof PROGRAMS;
const DIRECTIONS: readonly Direction[] = ['ingress', 'lookup', 'dns', 'egress'];

/**
 * The links a pod needs, in attach order: ingress before egress (once egress hairpins, ingress
 * must hand the packets over), the DNS reply rewrite before egress captures queries.
 */
function linkKeys(c: { dnsPort: number }): Direction[] {
  return c.dnsPort ? ['ingress', 'lookup', 'dns', 'egress'] : ['ingress', 'lookup', 'egress'];
}

/** The links prepare() attaches: all of them, DNS's on lo too unless told not to. */
function prepareKeys(dns: boolean): Direction[] {
  return dns ? ['ingress', 'lookup', 'dns', 'egress'] : ['ingress', 'lookup', 'egress'];
}

/** A netns whose links are attached, idle, waiting for its pod's enroll. */
export interface PreparedNetns {
  cookie: string;
  /** Unknown only for pins without a prepared record (left by an agent before records existed). */
  netnsPath?: string;
  /** When this backend first held them (Date.now()). */
  since: number;
  /** Adopted from pins left by an earlier agent, not attached by this one. */
  adopted: boolean;
}

/**
 * prepare(): 'prepared' links attached now; 'adopted' they were there already; 'enrolled' the
 * netns is a pod's (nothing done); 'no-interface' the netns has no `ifname` yet (the CNI has not
 * run: try again later); 'skipped' the clsact fallback is in use (its filters cannot be pinned
 * and cost no grace period: attached at enroll).
 */
export type PrepareResult = { cookie: string; state: 'prepared' | 'adopted' | 'enrolled' | 'no-interface' | 'skipped' };

/** Appended to an observed pod's fingerprint while a link is missing or defunct (drift: re-enroll). */
export const LINKS_MISSING = '+links-missing';

export class TcBackendError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TcBackendError';
  }
}

type PodLinks = Partial<Record<Direction, BpfLink>>;

/** What the backend keeps of a prepared netns: the public view and its tc_pod_meta record's place. */
type PreparedEntry = PreparedNetns & { place?: PodPlace };

const ALL_ROUTING = ROUTING[4] | ROUTING[6];

/** Drops the handles of links that are defunct (the interface was replaced) or were removed behind our back. */
function dropStaleLinks(links: PodLinks, which: readonly Direction[]): void {
  for (const d of which) {
    try {
      links[d]?.detach();
    } catch {
      links[d]?.close();
    }
    delete links[d];
  }
}

export class TcBackend implements RedirectBackend {
  readonly name = 'tc' as const;
  private readonly ifname: string;
  private node: NodeContext | null = null;
  private dir = '';
  private readOnly = false;
  private maps: TcMaps | null = null;
  private objects: Partial<Record<Direction, BpfObject>> = {};
  private links = new Map<bigint, PodLinks>();
  /** What the kernel holds per netns cookie; kept current by enroll/unenroll, re-read by observe(). */
  private installed = new Map<bigint, InstalledPod>();
  private nextGen = 1;
  /** Netns cookie -> links attached ahead of an enroll (their links are in `links`). */
  private prepared = new Map<bigint, PreparedEntry>();
  /** One prepare/enroll/unenroll/release at a time per netns cookie. */
  private readonly lock = new KeyedLock<bigint>();
  /** Detaches left to run after the call that decided them returned (see settled()). */
  private readonly pending = new Set<Promise<void>>();

  private readonly attachMode: 'auto' | 'tcx' | 'clsact';
  /** tcx link info reads so far (each takes rtnl_lock: tcx_link_fill_info), for enroll's step log. */
  private tcxInfoReads = 0;
  /** App <-> ztunnel socket splicing, node-wide (src/splice.ts). */
  private readonly splice: TcSplice;

  constructor(opts: TcOptions = {}) {
    this.ifname = opts.ifname ?? 'eth0';
    try {
      this.splice = new TcSplice({ ...(opts.splice !== undefined ? { splice: opts.splice } : {}), ...(opts.guard ? { guard: opts.guard } : {}), ...(opts.guardProbe ? { guardProbe: opts.guardProbe } : {}) });
    } catch (err) {
      throw new TcBackendError((err as Error).message);
    }
    this.attachMode = opts.attach ?? 'auto';
    if (!['auto', 'tcx', 'clsact'].includes(this.attachMode)) throw new TcBackendError(`tc: attach ${JSON.stringify(opts.attach)} is not auto, tcx or clsact`);
    if (!/^[A-Za-z0-9_.@-]{1,15}$/.test(this.ifname)) throw new TcBackendError(`tc: ifname ${JSON.stringify(this.ifname)} is not an interface name`);
  }

  support(caps: NodeCapabilities): Support {
    return tcSupport(caps);
  }

  fingerprint(pod: MeshPod): string {
    return fingerprintOf(podConfig(pod));
  }

  get pinDir(): string {
    return this.dir;
  }

  private get mapsDir(): string {
    return path.join(this.dir, 'maps');
  }

  private get linksDir(): string {
    return path.join(this.dir, 'links');
  }

  private get netnsDir(): string {
    return path.join(this.dir, 'netns');
  }

  private linkPin(cookie: bigint, d: Direction): string {
    return path.join(this.netnsDir, cookie.toString(), d);
  }

  /** Interface and tc direction of a tc link (not 'lookup': that one is on the netns). */
  private hook(d: Direction, ifname = this.ifname): { ifname: string; dir: 'ingress' | 'egress' } {
    if (d === 'lookup') throw new TcBackendError('tc: the sk_lookup link has no tc hook');
    return d === 'dns' ? { ifname: 'lo', dir: 'egress' } : { ifname, dir: d };
  }

  async start(node: NodeContext): Promise<void> {
    if (this.node) return;
    this.node = node;
    this.readOnly = node.readOnly === true;
    this.dir = path.join(node.bpffsRoot, 'tc');
    if (this.readOnly) return this.adoptReadOnly();
    fs.mkdirSync(this.mapsDir, { recursive: true });
    fs.mkdirSync(this.netnsDir, { recursive: true });
    // Loaded once and kept: every pod's links attach these two programs (shared maps by pin).
    for (const d of DIRECTIONS) this.objects[d] = BpfObject.open(bpfObjectPath(PROGRAMS[d].object), { pinMaps: this.mapsDir });
    this.maps = TcMaps.open(this.mapsDir);
    // Splicing is node-wide and independent of any pod: its links pair sockets of enrolled pods only.
    // The resetter finds a pod's netns by cookie (the path kept in tc_pod_meta; installed is read next).
    this.splice.start({ mapsDir: this.mapsDir, linksDir: this.linksDir }, node.cgroupRoot, node.log, false, (c) => this.installed.get(c)?.place.netnsPath);
    const pods = this.maps.readPods();
    this.installed = new Map(pods.map((p) => [p.netnsCookie, p]));
    this.nextGen = Math.max(0, ...pods.map((p) => p.gen), ...this.maps.selectionGens()) + 1;
    const live = new Set(pods.map((p) => p.gen));
    for (const gen of this.maps.selectionGens()) if (!live.has(gen)) this.maps.deleteGen(gen);
    let adopted = 0;
    // Prepared records: the netns still there (same cookie at that path) is adopted with its
    // links, rule and route; a gone one took them with it, so its record and pins are dropped.
    const records = new Map(this.maps.readPrepared().map((r) => [r.cookie, r.place]));
    for (const [cookie, place] of records) {
      if (!this.sameNetns(place.netnsPath, cookie)) {
        this.maps.meta.delete(cookie);
        records.delete(cookie);
      }
    }
    for (const name of fs.readdirSync(this.netnsDir)) {
      const cookie = /^[0-9]+$/.test(name) ? BigInt(name) : null;
      if (cookie !== null && this.installed.has(cookie)) {
        this.links.set(cookie, this.adoptLinks(cookie));
        adopted++;
        continue;
      }
      // Links without a registered pod: a netns prepared by an earlier agent (or an unenroll
      // interrupted between maps and links; idle alike, no tc_pod entry). Live ones are adopted
      // as prepared (whoever prepares netns releases them if no pod claims them: preparedNetns());
      // defunct ones (the netns is gone) are dropped now.
      const links = cookie === null ? {} : this.adoptLinks(cookie);
      const place = (cookie !== null && records.get(cookie)) || this.idlePlace('');
      for (const d of DIRECTIONS) {
        const l = links[d];
        if (l && !this.linkLive(l, d, place)) {
          try {
            l.detach();
          } catch {
            l.close();
            fs.rmSync(this.linkPin(cookie!, d), { force: true });
          }
          delete links[d];
        }
      }
      const record = cookie !== null ? records.get(cookie) : undefined;
      if (cookie !== null && (Object.keys(links).length > 0 || record)) {
        this.links.set(cookie, links);
        this.prepared.set(cookie, { cookie: cookie.toString(), since: Date.now(), adopted: true, ...(record ? { netnsPath: record.netnsPath, place: record } : {}) });
        records.delete(cookie);
      } else fs.rmSync(path.join(this.netnsDir, name), { recursive: true, force: true });
    }
    // A live record without pins (a release interrupted after its detaches): its rule and route
    // are still there; adopted, so whoever prepares releases it (or prepare() re-attaches).
    for (const [cookie, place] of records) this.prepared.set(cookie, { cookie: cookie.toString(), netnsPath: place.netnsPath, since: Date.now(), adopted: true, place });
    if (this.prepared.size > 0) node.log.info({ netns: this.prepared.size, dir: this.dir }, 'tc: adopted prepared (idle) netns links');
    // clsact fallback pods have no pins: their filters are found by handle/priority.
    for (const p of pods)
      if (p.place.state & STATE.CLSACT && !this.links.has(p.netnsCookie)) {
        this.links.set(p.netnsCookie, this.adoptLinks(p.netnsCookie));
        adopted++;
      }
    if (adopted > 0) node.log.info({ pods: adopted, dir: this.dir }, 'tc: adopted pod links');
  }

  private adoptLinks(cookie: bigint): PodLinks {
    const out: PodLinks = {};
    const p = this.installed.get(cookie);
    if (p && p.place.state & STATE.CLSACT) {
      // Filters are not pinnable: handles on them by their fixed handle/priority (if the netns lives).
      for (const d of linkKeys(p)) {
        if (d === 'lookup') {
          const pin = this.linkPin(cookie, d);
          if (fs.existsSync(pin)) out[d] = BpfLink.fromPin(pin);
          continue;
        }
        const h = this.hook(d, p.place.ifname);
        try {
          out[d] = clsactLink(h.ifname, h.dir, { netns: p.place.netnsPath, handle: CLSACT_HANDLE, priority: CLSACT_PRIORITY });
        } catch {
          // interface or netns gone: nothing to adopt
        }
      }
      return out;
    }
    for (const d of DIRECTIONS) {
      const pin = this.linkPin(cookie, d);
      if (fs.existsSync(pin)) out[d] = BpfLink.fromPin(pin);
    }
    return out;
  }

  /** readOnly: open what is pinned; create, attach and delete nothing. */
  private adoptReadOnly(): void {
    if (!fs.existsSync(this.mapsDir)) return;
    try {
      this.maps = TcMaps.open(this.mapsDir);
    } catch (err) {
      this.node?.log.warn({ dir: this.mapsDir, err: (err as Error).message }, 'tc: pinned maps not readable (read-only)');
      return;
    }
    this.installed = new Map(this.maps.readPods().map((p) => [p.netnsCookie, p]));
    this.splice.start({ mapsDir: this.mapsDir, linksDir: this.linksDir }, this.node?.cgroupRoot ?? '', this.node!.log, true);
    for (const cookie of this.installed.keys()) this.links.set(cookie, this.adoptLinks(cookie));
    // Prepared records and pins of no registered pod: prepared netns (counted for status; their links are not opened).
    for (const r of this.maps.readPrepared()) this.prepared.set(r.cookie, { cookie: r.cookie.toString(), netnsPath: r.place.netnsPath, since: Date.now(), adopted: true, place: r.place });
    if (fs.existsSync(this.netnsDir))
      for (const name of fs.readdirSync(this.netnsDir))
        if (/^[0-9]+$/.test(name) && !this.installed.has(BigInt(name)) && !this.prepared.has(BigInt(name))) this.prepared.set(BigInt(name), { cookie: name, since: Date.now(), adopted: true });
  }

  private requireWritable(op: string): TcMaps {
    if (this.readOnly) throw new TcBackendError(`tc: ${op} refused: the backend was started read-only (NodeContext.readOnly), it changes nothing`);
    if (!this.maps) throw new TcBackendError(`tc: ${op} called before start()`);
    return this.maps;
  }

  private cookieOf(pod: MeshPod, who: string): { cookie: bigint; netnsPath: string } {
    const netnsPath = pod.netnsPath;
    if (!netnsPath) throw new PodConfigError(who, 'netnsPath', netnsPath, 'the tc backend attaches inside the pod netns, which needs its path');
    if (!fs.existsSync(netnsPath)) throw new PodConfigError(who, 'netnsPath', netnsPath, 'does not exist');
    const cookie = netnsCookie(netnsPath);
    if (pod.netnsCookie !== undefined && pod.netnsCookie !== cookie.toString())
      throw new PodConfigError(who, 'netnsPath', netnsPath, `is not the netns of netnsCookie ${pod.netnsCookie} (it is ${cookie})`);
    return { cookie, netnsPath };
  }

  /** The netns at path exists and is the one with this cookie (a path can be reused by another netns). */
  private sameNetns(netnsPath: string, cookie: bigint): boolean {
    try {
      return netnsPath !== '' && fs.existsSync(netnsPath) && netnsCookie(netnsPath) === cookie;
    } catch {
      return false;
    }
  }

  /** A PodPlace for link liveness checks of links that belong to no pod (prepared). */
  private idlePlace(netnsPath: string): PodPlace {
    return { netnsPath, ifname: this.ifname, ifindex: 0, state: 0, saved: [] };
  }

  /**
   * Attaches the links of a netns whose pod is not enrolled yet (idle: they pass every packet
   * until enroll writes the pod's map entries), so that enroll() finds them and attaches
   * nothing. `dns` (default true): the DNS reply link on lo too (a pod enrolled without DNS
   * capture has it detached after its enroll returned). Idempotent; a netns already enrolled
   * is left alone. The clsact fallback prepares nothing (see PrepareResult).
   */
  async prepare(netnsPath: string, opts: { dns?: boolean } = {}): Promise<PrepareResult> {
    this.requireWritable('prepare');
    if (this.useClsact()) return { cookie: '', state: 'skipped' };
    if (!fs.existsSync(netnsPath)) throw new TcBackendError(`tc: prepare ${JSON.stringify(netnsPath)}: no such netns`);
    const cookie = netnsCookie(netnsPath);
    return this.lock.run(cookie, async () => {
      const res = (state: PrepareResult['state']): PrepareResult => ({ cookie: cookie.toString(), state });
      if (this.installed.has(cookie)) return res('enrolled');
      const maps = this.maps!;
      const links = this.links.get(cookie) ?? {};
      const was = this.prepared.get(cookie);
      const place: PodPlace = { ...this.idlePlace(netnsPath), ...(was?.place ? { ifindex: was.place.ifindex } : {}) };
      const keys = prepareKeys(opts.dns !== false);
      const missing = keys.filter((d) => !(links[d] && this.linkLive(links[d], d, place)));
      dropStaleLinks(links, missing);
      // Rule and route of an earlier prepare of this very netns (its record): kept, not re-written.
      const have = was?.place && this.sameNetns(was.place.netnsPath, cookie) ? was.place.state & ALL_ROUTING : 0;
      const attached: Direction[] = [];
      let recorded = false;
      try {
        for (const d of missing) {
          links[d] = (await this.attach(d, cookie, netnsPath, false)).link;
          attached.push(d);
        }
        // The ifindex the links sit on, for enroll's check that they still do (no rtnl_lock).
        place.ifindex = ifIndexIn(netnsPath, this.ifname);
        // Record first (a crash right after leaves nothing unrecorded), then the inert rule and
        // route (README "Lifecycle"), so that enroll takes no rtnl_lock.
        place.state = have | ALL_ROUTING;
        maps.writePrepared(cookie, place);
        recorded = true;
        const got = applyPreparedRouting(netnsPath, this.ifname, have);
        if (got !== place.state) {
          place.state = got;
          maps.writePrepared(cookie, place);
        }
      } catch (err) {
        for (const d of attached.reverse()) {
          await detachLinkAsync(links[d]!).catch(() => links[d]?.close());
          delete links[d];
        }
        if (Object.keys(links).length === 0) {
          // Nothing of ours left attached: the rule and route go too (the netns as found).
          try {
            if (have) removeRouting(netnsPath, have);
          } catch (e) {
            this.node?.log.warn({ netns: netnsPath, err: (e as Error).message }, 'tc: removing the prepared rule/route failed');
          }
          maps.meta.delete(cookie);
          this.links.delete(cookie);
          this.prepared.delete(cookie);
          fs.rmSync(path.join(this.netnsDir, cookie.toString()), { recursive: true, force: true });
        } else if (recorded || was?.place) maps.writePrepared(cookie, { ...place, state: have });
        // Before the CNI's ADD the netns has no eth0 yet: not an error, the caller retries.
        if ((err as { code?: string }).code === 'ENODEV' || /ENODEV|No such device/.test((err as Error).message)) return res('no-interface');
        throw err;
      }
      this.links.set(cookie, links);
      this.prepared.set(cookie, { cookie: cookie.toString(), netnsPath, since: was?.since ?? Date.now(), adopted: (was?.adopted ?? false) && missing.length === 0, place });
      return res(missing.length > 0 || place.state !== have ? 'prepared' : 'adopted');
    });
  }

  /**
   * Detaches the links of a prepared netns no pod claimed (by netns path or cookie) and removes
   * its rule and route, leaving it as found; a netns enrolled meanwhile keeps them ('enrolled').
   * Works on a netns that is gone (by cookie). 'unknown': nothing of ours was there.
   */
  async release(netns: string | bigint): Promise<'released' | 'enrolled' | 'unknown'> {
    const maps = this.requireWritable('release');
    const cookie = typeof netns === 'bigint' ? netns : /^[0-9]+$/.test(netns) ? BigInt(netns) : netnsCookie(netns);
    return this.lock.run(cookie, async () => {
      if (this.installed.has(cookie)) return 'enrolled';
      const links = this.links.get(cookie);
      const entry = this.prepared.get(cookie);
      this.prepared.delete(cookie);
      if (!links && !entry?.place) return 'unknown';
      // Links first (nothing marks packets any more), then the rule and route, then the record.
      if (links) await this.detachAll(links);
      this.links.delete(cookie);
      if (entry?.place) {
        const where = this.sameNetns(entry.place.netnsPath, cookie) ? entry.place.netnsPath : typeof netns === 'string' && this.sameNetns(netns, cookie) ? netns : '';
        if (where) removeRouting(where, entry.place.state & ALL_ROUTING);
        maps.meta.delete(cookie);
      }
      fs.rmSync(path.join(this.netnsDir, cookie.toString()), { recursive: true, force: true });
      return 'released';
    });
  }

  /** Netns whose links are attached and idle, waiting for an enroll (or a release). */
  preparedNetns(): PreparedNetns[] {
    return [...this.prepared.values()].map(({ place: _place, ...p }) => ({ ...p }));
  }

  /** Resolves when the detaches enroll() left running (a DNS link a pod does not need) are done. */
  async settled(): Promise<void> {
    while (this.pending.size > 0) await Promise.all([...this.pending]);
  }

  /** Egress first (stops hairpinning), then dns, lookup, ingress; off the main thread (tcx). */
  private async detachAll(links: PodLinks): Promise<void> {
    for (const d of [...DIRECTIONS].reverse()) {
      const link = links[d];
      if (!link) continue;
      try {
        await detachLinkAsync(link);
      } catch {
        // Defunct (the netns or interface is gone): the kernel holds nothing; drop the handle and pin.
        if (link.pinPath) link.unpin();
        link.close();
      }
      delete links[d];
    }
  }

  /**
   * Installs the pod's redirect: netns routing, then maps (config before anything reads it),
   * then the two links (capture starts here, so the first packet after enroll() returns is
   * redirected). All-or-nothing: a failure removes what this call wrote, and the pod keeps
   * what an earlier enroll installed. A prepared netns already has its links: then enroll
   * writes maps, rules and sysctls only (no RCU grace period on this path).
   */
  async enroll(pod: MeshPod): Promise<void> {
    const maps = this.requireWritable('enroll');
    const who = podName(pod);
    if (pod.membership === 'none' || pod.interceptionMode === 'NONE') return this.unenroll(pod);
    if (pod.membership !== 'ambient')
      throw new PodConfigError(who, 'membership', pod.membership, "the tc backend redirects ambient pods only (profile istio-ambient); sidecar pods need sockops or iptables");
    if (pod.hostNetwork) throw new PodConfigError(who, 'hostNetwork', true, 'a host-network pod shares the node netns and cannot be redirected per pod');
    const tCall = performance.now();
    const want = podConfig(pod);
    const { cookie, netnsPath } = this.cookieOf(pod, who);
    return this.lock.run(cookie, () => this.enrollLocked(maps, who, want, cookie, netnsPath, tCall));
  }

  private async enrollLocked(maps: TcMaps, who: string, want: TcPodConfig, cookie: bigint, netnsPath: string, tCall: number): Promise<void> {
    const same = this.installed.get(cookie);
    if (same && same.ref.uid !== want.ref.uid)
      throw new PodConfigError(who, 'netnsPath', netnsPath, `is enrolled already for pod ${podName(same.ref)}`);
    if (same && canonical(same) === canonical(want) && this.linksLive(cookie, same.place, linkKeys(want))) return;
    // The same pod under another netns (sandbox replaced): drop the old enrolment first.
    for (const p of [...this.installed.values()]) if (p.ref.uid === want.ref.uid && p.netnsCookie !== cookie) await this.dropPod(maps, p);

    // A netns prepared ahead (README "Lifecycle"): its rule and route are there, its links too.
    const prep = same ? undefined : this.prepared.get(cookie)?.place;
    const undo: Array<() => unknown> = [];
    const infoReads0 = this.tcxInfoReads;
    try {
      const families = [...new Set(want.ips.map((ip) => (isIPv4(ip) ? 4 : 6) as 4 | 6))];
      const before = same?.place ?? { state: (prep?.state ?? 0) & ALL_ROUTING, saved: [] };
      const t0 = performance.now();
      const changes = await applyNetnsSetup(netnsPath, this.ifname, families, before);
      const tSetup = performance.now();
      const added = { state: changes.state & ~before.state, saved: changes.saved.map((v, i) => (before.saved[i] ? 0 : v)) };
      undo.push(() => removeNetnsSetup(netnsPath, this.ifname, added));

      const place: PodPlace = { netnsPath, ifname: this.ifname, ifindex: same?.place.ifindex ?? prep?.ifindex ?? 0, state: changes.state, saved: changes.saved };
      maps.writeMeta(cookie, want.ref, place);
      undo.push(() => (same ? maps.writeMeta(cookie, same.ref, same.place) : prep ? maps.writePrepared(cookie, prep) : maps.meta.delete(cookie)));
      const gen = this.nextGen++;
      maps.writePod(want, cookie, gen, same);
      const tMaps = performance.now();
      undo.push(() => {
        if (same) maps.writePod(same, cookie, same.gen, { ...want, netnsCookie: cookie, gen, place });
        else for (const ip of want.ips) maps.pod.delete(encodeAddr(ip));
        maps.deleteSelections(gen, want.ports);
      });

      const links = this.links.get(cookie) ?? {};
      const keys = linkKeys(want);
      // Each tcx link info read takes rtnl_lock (tcx_link_fill_info): the ifindex is kept from the liveness check.
      const seen: { ifindex?: number } = {};
      // Prepared links are trusted without a read while eth0 is still the interface prepare()
      // attached them to (its ifindex, by an ioctl under RCU); a link detached behind our back
      // meanwhile shows in observe() (+links-missing) and the next enroll repairs it.
      if (prep && prep.ifindex !== 0 && keys.every((d) => links[d]) && this.ifindexNow(netnsPath) === prep.ifindex) seen.ifindex = prep.ifindex;
      const missing = seen.ifindex !== undefined ? [] : keys.filter((d) => !(links[d] && this.linkLive(links[d], d, place, d === 'ingress' ? seen : undefined)));
      dropStaleLinks(links, missing);
      // Ingress first: once egress hairpins, ingress must be there to hand the packets to
      // ztunnel (else a SYN is lost and the app waits a retransmit). Not in parallel: each tcx
      // attach holds rtnl_lock across its RCU grace period, so two would serialize anyway.
      const legacy = this.useClsact();
      for (const d of keys.filter((x) => missing.includes(x))) {
        const r = await this.attach(d, cookie, netnsPath, legacy);
        links[d] = r.link;
        if (legacy && d !== 'lookup') place.state |= STATE.CLSACT | (r.createdQdisc ? (d === 'dns' ? STATE.CLSACT_LO_CREATED : STATE.CLSACT_CREATED) : 0);
        undo.push(() => {
          links[d]?.detach();
          delete links[d];
        });
      }
      const ifindex = legacy ? 0 : missing.includes('ingress') || seen.ifindex === undefined ? this.tcxIfindex(links.ingress) : seen.ifindex;
      if (ifindex !== place.ifindex || missing.length > 0) {
        place.ifindex = ifindex;
        maps.writeMeta(cookie, want.ref, place);
      }
      if (same) maps.deleteSelections(same.gen, same.ports);
      // A link the pod no longer needs (DNS capture turned off, or prepared for a pod without
      // it): inert already (its programs read dns_port 0), so detached after this enroll
      // returns, off its path (the detach holds rtnl_lock for a grace period). Unpinned now: a
      // later enroll that wants it pins a new one.
      const unneeded = DIRECTIONS.filter((x) => !keys.includes(x) && links[x]).map((d) => {
        const l = links[d]!;
        delete links[d];
        if (l.pinPath) l.unpin();
        return l;
      });
      this.links.set(cookie, links);
      this.prepared.delete(cookie); // claimed
      this.installed.set(cookie, { ...want, netnsCookie: cookie, gen, place });
      // Where an enroll's time goes (README "Enroll latency"): netns rules/routes/sysctl, maps, link
      // attaches; rtnl: the rtnl_lock takers on its own path (rtnetlink requests, tcx link info reads).
      const rtnl = changes.rtnlOps + this.tcxInfoReads - infoReads0;
      this.node?.log.debug({ pod: who, beforeMs: +(t0 - tCall).toFixed(3), setupMs: +(tSetup - t0).toFixed(3), mapsMs: +(tMaps - tSetup).toFixed(3), linksMs: +(performance.now() - tMaps).toFixed(3), attached: missing, rtnl, prepared: prep !== undefined }, 'tc: enrolled');
      for (const l of unneeded) this.background(detachLinkAsync(l).catch(() => l.close()));
    } catch (err) {
      for (const u of undo.reverse()) {
        try {
          await u();
        } catch (e) {
          this.node?.log.warn({ pod: who, err: (e as Error).message }, 'tc: undo of a failed enroll step failed');
        }
      }
      throw err;
    }
  }

  /**
   * One tcx link, pinned, appended LAST on the hook (BPF_F_AFTER with no anchor) at the revision
   * read just before (ESTALE: re-read and retry, bounded; done natively). A CNI's programs already
   * there run first and see every packet exactly as before; ours decides last and returns
   * TCX_NEXT for what it leaves (a program the CNI attaches later, by default also at the tail,
   * comes after ours and sees only that). The attach runs off the main thread: each tcx attach
   * waits for an RCU grace period (10-20 ms on a busy node) and the event loop must not.
   */
  private useClsact(): boolean {
    if (this.attachMode === 'clsact') return true;
    if (probeTcx().available) return false;
    if (this.attachMode === 'tcx') throw new TcBackendError(`tc: this kernel has no tcx links (${probeTcx().evidence}) and attach is 'tcx'`);
    return true;
  }

  private async attach(d: Direction, cookie: bigint, netnsPath: string, legacy: boolean): Promise<{ link: BpfLink; createdQdisc: boolean }> {
    const obj = this.objects[d];
    if (!obj) throw new TcBackendError('tc: programs not loaded (start() not called?)');
    const prog = obj.program(PROGRAMS[d].program);
    if (d === 'lookup') {
      const link = prog.attachNetns(netnsPath);
      try {
        fs.mkdirSync(path.dirname(this.linkPin(cookie, d)), { recursive: true });
        link.pin(this.linkPin(cookie, d));
      } catch (err) {
        link.detach();
        throw err;
      }
      return { link, createdQdisc: false };
    }
    const h = this.hook(d);
    if (legacy) return attachClsactAt(prog, h.ifname, h.dir, { netns: netnsPath, handle: CLSACT_HANDLE, priority: CLSACT_PRIORITY });
    const link = await attachTcxAsync(prog, h.ifname, h.dir, { netns: netnsPath, position: 'last' });
    try {
      fs.mkdirSync(path.dirname(this.linkPin(cookie, d)), { recursive: true });
      link.pin(this.linkPin(cookie, d));
    } catch (err) {
      link.detach();
      throw err;
    }
    return { link, createdQdisc: false };
  }

  /** The interface a tcx link sits on (0: defunct). A link info read: takes rtnl_lock. */
  private tcxIfindex(link: BpfLink | undefined): number {
    if (!link) return 0;
    this.tcxInfoReads++;
    return link.info().ifindex ?? 0;
  }

  /** ifindex of the pod interface now, 0 when it is gone. */
  private ifindexNow(netnsPath: string): number {
    try {
      return ifIndexIn(netnsPath, this.ifname);
    } catch {
      return 0;
    }
  }

  /** A tcx link is live while its device exists; a cls_bpf filter while the kernel still has it. */
  private linkLive(link: BpfLink, d: Direction, place: PodPlace, seen?: { ifindex?: number }): boolean {
    try {
      if (d === 'lookup') return (link.info().netnsIno ?? 0) !== 0;
      const h = this.hook(d, place.ifname);
      if (link.kind === 'tc-legacy') return clsactProgId(h.ifname, h.dir, { netns: place.netnsPath, handle: CLSACT_HANDLE, priority: CLSACT_PRIORITY }) !== 0;
      const ifindex = this.tcxIfindex(link);
      if (seen) seen.ifindex = ifindex;
      return ifindex !== 0;
    } catch {
      return false;
    }
  }

  /** Exactly the links `keys` live, and no other. */
  private linksLive(cookie: bigint, place: PodPlace, keys: Direction[]): boolean {
    const l = this.links.get(cookie);
    return !!l && keys.every((d) => l[d] !== undefined && this.linkLive(l[d], d, place)) && DIRECTIONS.every((d) => keys.includes(d) || !l[d]);
  }

  private background(p: Promise<void>): void {
    const tracked = p.finally(() => this.pending.delete(tracked));
    this.pending.add(tracked);
  }

  /** Map entries first (the programs stop capturing), then the links, then the netns routing. */
  private async dropPod(maps: TcMaps, p: InstalledPod): Promise<void> {
    maps.deletePod(p);
    this.installed.delete(p.netnsCookie);
    const links = this.links.get(p.netnsCookie) ?? this.adoptLinks(p.netnsCookie);
    // Egress first (stops hairpinning), then ingress; tcx detaches off the main thread (each
    // waits for an RCU grace period).
    for (const d of [...DIRECTIONS].reverse()) {
      const link = links[d]; // egress, dns, ingress
      if (!link) continue;
      if (link.kind === 'tc-legacy' && !this.linkLive(link, d, p.place)) link.close(); // filter or netns gone already
      else await detachLinkAsync(link);
    }
    this.links.delete(p.netnsCookie);
    fs.rmSync(path.join(this.netnsDir, p.netnsCookie.toString()), { recursive: true, force: true });
    if (p.place.state & STATE.CLSACT_CREATED) await removeOwnClsact(p.place.netnsPath, p.place.ifname);
    if (p.place.state & STATE.CLSACT_LO_CREATED) await removeOwnClsact(p.place.netnsPath, 'lo');
    await removeNetnsSetup(p.place.netnsPath, p.place.ifname, p.place);
  }

  async unenroll(pod: PodRef): Promise<void> {
    const maps = this.requireWritable('unenroll');
    for (const p of [...this.installed.values()])
      if (p.ref.uid === pod.uid)
        await this.lock.run(p.netnsCookie, async () => {
          if (this.installed.get(p.netnsCookie) === p) await this.dropPod(maps, p);
        });
  }

  private linkState(p: InstalledPod): Partial<Record<Direction, { kind: 'tcx' | 'clsact' | 'netns'; linkId: number; progId: number; ifindex: number; live: boolean } | null>> {
    const l = this.links.get(p.netnsCookie) ?? {};
    const out = {} as Partial<Record<Direction, { kind: 'tcx' | 'clsact' | 'netns'; linkId: number; progId: number; ifindex: number; live: boolean } | null>>;
    for (const d of linkKeys(p)) {
      const link = l[d];
      out[d] = null;
      if (!link) continue;
      try {
        if (d === 'lookup') {
          const info = link.info();
          out[d] = { kind: 'netns', linkId: info.id, progId: info.progId, ifindex: 0, live: (info.netnsIno ?? 0) !== 0 };
        } else if (link.kind === 'tc-legacy') {
          const h = this.hook(d, p.place.ifname);
          const progId = clsactProgId(h.ifname, h.dir, { netns: p.place.netnsPath, handle: CLSACT_HANDLE, priority: CLSACT_PRIORITY });
          out[d] = { kind: 'clsact', linkId: 0, progId, ifindex: 0, live: progId !== 0 };
        } else {
          const info: KernelLinkInfo = link.info();
          out[d] = { kind: 'tcx', linkId: info.id, progId: info.progId, ifindex: info.ifindex ?? 0, live: (info.ifindex ?? 0) !== 0 };
        }
      } catch {
        out[d] = null;
      }
    }
    return out;
  }

  /**
   * ztunnel (re)connected to the agent's ZDS server, with its pid from SO_PEERCRED (undefined:
   * unreadable): splicing pairs only if that process is under the node cgroup the pairing program
   * sits on (splice.ts, ztunnel-cgroup.ts). Returns where it runs (null before start()).
   */
  ztunnelConnected(pid: number | undefined): ZtunnelPlacement | null {
    return this.splice.ztunnelConnected(pid);
  }

  /** Node-wide part of a reading, shared by observe() and summarize() (counts only). */
  private nodeDetail(): Record<string, unknown> {
    return { pinDir: this.dir, readOnly: this.readOnly, ifname: this.ifname, tcx: probeTcx().available, prepared: this.prepared.size, splice: this.splice.reading() };
  }

  /**
   * observe()'s counts without its per-pod records, for /metrics: pods = tc_pod_meta's entry
   * count (BpfMap.count(), in the addon) less the prepared netns (tc_pod_meta holds those too,
   * flagged PREPARED: the entries of this.prepared with a record, kept by prepare/release and
   * re-read at start), the counters, and the splice reading (entry counts and splice_stats).
   */
  async summarize(): Promise<InstalledSummary> {
    const maps = this.maps;
    let preparedRecords = 0; // prepared netns with a tc_pod_meta record (links-only leftovers have none)
    for (const p of this.prepared.values()) if (p.place) preparedRecords++;
    const pods = maps ? Math.max(0, maps.raw.tc_pod_meta.count() - preparedRecords) : 0;
    return { backend: 'tc', nodeReady: maps !== null, nodeDetail: this.nodeDetail(), pods, counters: maps?.readCounters() ?? {} };
  }

  async observe(): Promise<InstalledState> {
    const maps = this.maps;
    const pods = maps?.readPods() ?? [];
    // The kernel is the truth: a drifted map shows up here, and the next enroll repairs it.
    if (maps) this.installed = new Map(pods.map((p) => [p.netnsCookie, p]));
    for (const p of pods) if (!this.links.has(p.netnsCookie) && this.dir) this.links.set(p.netnsCookie, this.adoptLinks(p.netnsCookie));
    return {
      backend: 'tc',
      nodeReady: maps !== null,
      nodeDetail: this.nodeDetail(),
      pods: pods.map((p) => {
        const links = this.linkState(p);
        const ok = linkKeys(p).every((d) => links[d]?.live === true);
        return {
          ...p.ref,
          fingerprint: fingerprintOf(p) + (ok ? '' : LINKS_MISSING),
          detail: {
            netnsCookie: p.netnsCookie.toString(),
            netnsPath: p.place.netnsPath,
            ifname: p.place.ifname,
            ifindex: p.place.ifindex,
            gen: p.gen,
            ips: p.ips,
            links,
            netnsState: p.place.state,
          },
        };
      }),
      counters: maps?.readCounters() ?? {},
    };
  }

  async stop(opts: { cleanup: boolean }): Promise<void> {
    if (opts.cleanup && this.readOnly) throw new TcBackendError('tc: stop({cleanup: true}) refused: the backend was started read-only, it removes nothing');
    await this.settled();
    if (opts.cleanup && this.maps) {
      const maps = this.maps;
      for (const p of maps.readPods()) await this.dropPod(maps, p);
      // Prepared netns no pod claimed: their links go too (the netns as found).
      for (const cookie of [...this.prepared.keys()]) await this.release(cookie);
    }
    this.splice.stop(opts.cleanup && !this.readOnly);
    for (const l of this.links.values()) for (const d of DIRECTIONS) l[d]?.close();
    this.links.clear();
    this.installed.clear();
    this.prepared.clear();
    this.maps?.close();
    this.maps = null;
    for (const d of DIRECTIONS) this.objects[d]?.close();
    this.objects = {};
    this.node = null;
    if (opts.cleanup && this.dir !== '') fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
