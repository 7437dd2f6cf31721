/**
 * SockopsBackend: Merbridge-style redirect driven by control-plane data.
 *
 * Kernel state, all under <bpffsRoot>/sockops/:
 *   maps/<name>     every map of bpf/include/shunt_sockops.h (pinned by name by libbpf)
 *   links/<prog>    one bpf_link per node-wide program (cgroup links coexist with other
 *                   programs on the same cgroup; the sk_msg link is on the splice sockhash)
 *   netns/<cookie>  one sk_lookup link per enrolled pod netns (inbound from outside the pod)
 * A restarted process adopts links and maps from the pins; nothing is detached on a plain
 * stop(), so redirects keep working while no agent runs. The pod registry is the kernel
 * itself: pod_meta (netns cookie -> uid/namespace/name) next to pod_cfg.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { isIPv4 } from 'node:net';
import { BpfError, BpfLink, BpfMap, BpfObject, NetnsPidIndex, attachSpecs, bpfObjectPath, netnsCookie, type AttachSpec } from '@shunt/libbpf';
import { InternPool } from '@shunt/core';
import type {
  InstalledState,
  InstalledSummary,
  MeshPod,
  NodeCapabilities,
  NodeContext,
  PodRef,
  RedirectBackend,
  Support,
} from '@shunt/core';
import { SockopsMaps, type InstalledPodProgram } from './maps';
import {
  DEFAULT_SPLICE,
  effectiveSplice,
  probeSpliceGuard,
  validGuard,
  validSplice,
  type EffectiveSplice,
  type GuardProbe,
  type SpliceGuard,
  type SpliceSetting,
} from './splice';
import { PodConfigError, assertPodSupported, canonical, fingerprintOf, podProgram, type PodProgram } from './pod-program';
import { sockopsSupport } from './support';
import { sockopsPodSupport } from './pod-support';
import { findListener, withBorrowedSocket } from './proxy-listener';
import { CapacityError, DEFAULT_MAX_PODS, mapSizes, type Capacity, type MapSizes } from './capacity';
import { MAP_NAMES, type MapName } from './abi';
import { SpliceResetter } from './splice-reset';

export interface SockopsOptions {
  /**
   * Which redirected connections are spliced, by the port of the destination the app asked for
   * (for proxy -> app inbound legs: the app's port). Default: DEFAULT_SPLICE ('auto':
   * every captured connection, guarded, where the guard loads; none elsewhere); see src/splice.ts.
   */
  splice?: SpliceSetting;
  /** The splice guard's bounds; default DEFAULT_GUARD. */
  guard?: Partial<SpliceGuard>;
  /** Replaces probeSpliceGuard() (tests). */
  guardProbe?: () => GuardProbe;
  /**
   * How many pods this node's maps hold; every map size derives from it (src/capacity.ts).
   * Default DEFAULT_MAX_PODS. Pinned maps keep the size they were created with.
   */
  maxPods?: number;
  /** Replaces the process index (tests). */
  pidIndex?: NetnsPidIndex;
  /**
   * Reset the connection of a spliced socket closed with unread data, as TCP does (src/splice-reset.ts).
   * Default true; false only for tests (the kernel then sends FIN, and the sender waits out the fin timeout).
   */
  spliceCloseReset?: boolean;
}

interface ProgramSpec extends AttachSpec {
  /** Part of splicing: attached only where the splice guard loads (it reads psocks the same way). */
  splice?: true;
}

const DNS_OBJECT = 'sockops/dns.bpf.o';

export const PROGRAMS: readonly ProgramSpec[] = [
  { object: 'sockops/connect.bpf.o', program: 'shunt_connect4', attach: 'cgroup' },
  { object: 'sockops/connect.bpf.o', program: 'shunt_connect6', attach: 'cgroup' },
  { object: 'sockops/sockops.bpf.o', program: 'shunt_sockops', attach: 'cgroup' },
  { object: 'sockops/getsockopt.bpf.o', program: 'shunt_getsockopt', attach: 'cgroup' },
  // Before shunt_redir: a socket gets the map's programs when it is inserted, and every spliced
  // socket needs the verdict (one receive queue, redir.bpf.c) from its first byte.
  { object: 'sockops/redir.bpf.o', program: 'shunt_splice_verdict', attach: 'sk_skb' },
  { object: 'sockops/redir.bpf.o', program: 'shunt_redir', attach: 'sk_msg' },
  // A spliced socket closed with unread data: reported to the agent, which resets the connection.
  { object: 'sockops/splice_close.bpf.o', program: 'shunt_splice_release', attach: 'cgroup', splice: true },
  // DNS capture: inert unless a pod's config has a DNS port (see dns.bpf.c).
  { object: DNS_OBJECT, program: 'shunt_sendmsg4', attach: 'cgroup' },
  { object: DNS_OBJECT, program: 'shunt_sendmsg6', attach: 'cgroup' },
  { object: DNS_OBJECT, program: 'shunt_recvmsg4', attach: 'cgroup' },
  { object: DNS_OBJECT, program: 'shunt_recvmsg6', attach: 'cgroup' },
  { object: DNS_OBJECT, program: 'shunt_sock_release', attach: 'cgroup' },
  // A redirected socket shows the address it asked for as its peer, as under iptables NAT.
  { object: 'sockops/getpeername.bpf.o', program: 'shunt_getpeername4', attach: 'cgroup' },
  { object: 'sockops/getpeername.bpf.o', program: 'shunt_getpeername6', attach: 'cgroup' },
];

/** Attached per pod netns at enroll (not node-wide): steers inbound SYNs from outside the pod. */
export const SK_LOOKUP = { object: 'sockops/sk_lookup.bpf.o', program: 'shunt_sk_lookup' } as const;

/**
 * Appended to an observed pod's fingerprint while its inbound steering is incomplete (no netns
 * link, or a proxy listener missing from the sockhash, e.g. after a proxy restart), so the
 * reconciler sees drift and re-enrolls, which puts the new listener in.
 */
export const INBOUND_PENDING = '+inbound-pending';

/** The maps whose used/max capacity reports (each fills with pods; a full one fails the next enroll). */
const CAPACITY_MAPS: readonly MapName[] = ['pod_cfg', 'pod_meta', 'pod_by_ip', 'port_sel', 'cidr4', 'cidr6'];

type Family = 4 | 6;

export class SockopsBackendError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SockopsBackendError';
  }
}

export class SockopsBackend implements RedirectBackend {
  readonly name = 'sockops' as const;
  private readonly splice: SpliceSetting;
  private readonly guard: SpliceGuard;
  private readonly guardProbe: () => GuardProbe;
  /** What the kernel was told at start(), and why ('auto' resolved by the probe). */
  private spliceState: { splice: EffectiveSplice; reason: string; guard: GuardProbe } | null = null;
  private readonly wantMaxPods: number;
  /** max_entries the maps really have (from the pins when adopted); maxPods is sizes.pod_cfg. */
  private sizes: MapSizes = {};
  private readonly pidIndex: NetnsPidIndex;
  /** uid -> netns cookies installed for it (a replaced sandbox briefly has two), so enroll and unenroll never scan every pod. */
  private byUid = new Map<string, bigint[]>();
  private node: NodeContext | null = null;
  private dir = '';
  private maps: SockopsMaps | null = null;
  private links = new Map<string, BpfLink>();
  private nextGen = 1;
  /**
   * What the kernel holds per netns cookie, read back at start() and by every observe(), and
   * kept current by enroll/unenroll, so those touch only the pod's own entries instead of
   * scanning the node's maps (enroll latency stays flat with the number of pods).
   */
  private installed = new Map<bigint, InstalledPodProgram>();
  private readonly pool = new InternPool();
  /** Fingerprint of each installed record (a record is replaced, never changed, when the kernel differs). */
  private fingerprints = new WeakMap<InstalledPodProgram, string>();
  private readOnly = false;
  /** The loaded sk_lookup program, attached to each enrolled pod's netns (not in read-only mode). */
  private skLookup: BpfObject | null = null;
  /**
   * Pod netns with an sk_lookup link. The pin under netns/ keeps each link alive, so no fd per
   * pod is held (10,000 pods would otherwise cost 10,000 fds); a link is opened from its pin
   * only to detach it.
   */
  private netnsLinked = new Set<bigint>();
  /**
   * Families whose proxy listener a pod's steering needs: those found at its last enroll, or
   * present in the sockhash when this process adopted the pod. A family the proxy never listened
   * on (a v4-only proxy in a dual-stack pod) is not drift; one that vanished (restart) is.
   */
  private listenerFamilies = new Map<bigint, Set<Family>>();
  /**
   * start() has just read every map and nothing was written since: the next observe() (the
   * reconciler's first, right after start) answers from that scan instead of reading 10,000
   * pods' entries a second time. Any enroll or unenroll clears it; later observes read the kernel.
   */
  private scanFresh = false;
  private readonly spliceCloseReset: boolean;
  private resetter: SpliceResetter | null = null;
  /** Enrolled pods' netns paths by cookie, for the resetter (it destroys sockets inside them). */
  private netnsPaths = new Map<bigint, string>();

  constructor(opts: SockopsOptions = {}) {
    try {
      this.splice = validSplice(opts.splice ?? DEFAULT_SPLICE);
      this.guard = validGuard(opts.guard);
      this.wantMaxPods = opts.maxPods ?? DEFAULT_MAX_PODS;
      mapSizes(this.wantMaxPods);
    } catch (err) {
      throw new SockopsBackendError(`sockops: ${(err as Error).message}`);
    }
    this.guardProbe = opts.guardProbe ?? probeSpliceGuard;
    this.pidIndex = opts.pidIndex ?? new NetnsPidIndex();
    this.spliceCloseReset = opts.spliceCloseReset ?? true;
  }

  /** Programs this node attaches: the sk_msg guard and its verdict only where the guard loads (nothing splices otherwise). */
  private programs(): readonly ProgramSpec[] {
    const guard = this.guardProbe();
    return guard.available ? PROGRAMS : PROGRAMS.filter((s) => s.attach === 'cgroup' && !s.splice);
  }

  /** How many pods the maps hold (the pinned size when the maps were adopted). */
  get maxPods(): number {
    return this.sizes.pod_cfg ?? this.wantMaxPods;
  }

  support(caps: NodeCapabilities): Support {
    return sockopsSupport(caps);
  }

  /**
   * Can this backend capture this pod as its Istio settings ask? No for the options that have no
   * meaning at the socket layer (pod-support.ts); enroll refuses such a pod with the same reasons.
   */
  supportPod(pod: MeshPod): Support {
    return sockopsPodSupport(pod);
  }

  fingerprint(pod: MeshPod): string {
    return fingerprintOf(podProgram(pod, 0n));
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

  async start(node: NodeContext): Promise<void> {
    if (this.node) return;
    this.node = node;
    this.readOnly = node.readOnly === true;
    this.dir = path.join(node.bpffsRoot, 'sockops');
    if (this.readOnly) return this.adoptReadOnly();
    const guard = this.guardProbe();
    let eff: { splice: EffectiveSplice; reason: string };
    try {
      eff = effectiveSplice(this.splice, () => guard);
    } catch (err) {
      this.node = null;
      throw new SockopsBackendError(`sockops: ${(err as Error).message}`);
    }
    this.spliceState = { ...eff, guard };
    if (this.splice === 'auto' && eff.splice === 'none') node.log.warn({ reason: eff.reason }, 'sockops: splicing off');
    const { mapsDir, linksDir } = this;
    fs.mkdirSync(mapsDir, { recursive: true });
    fs.mkdirSync(linksDir, { recursive: true });
    fs.mkdirSync(this.netnsDir, { recursive: true });
    this.sizes = this.effectiveSizes(node);

    const programs = this.programs();
    // Pins of a version without the splice guard (no splice_peer map yet): its sk_msg program
    // splices unguarded and its sockops program records no peers. Both are replaced: the sk_msg
    // link goes first (until the new one is in, new sockets are not spliced: plain TCP); the old
    // sockops link is kept until the new one is attached (cgroup links coexist), then detached.
    const legacy = fs.existsSync(path.join(mapsDir, 'pod_cfg')) && !fs.existsSync(path.join(mapsDir, 'splice_peer'));
    const replaced: BpfLink[] = [];
    if (legacy) {
      const redir = path.join(linksDir, 'shunt_redir');
      if (fs.existsSync(redir)) BpfLink.fromPin(redir).detach();
      const sockops = path.join(linksDir, 'shunt_sockops');
      if (fs.existsSync(sockops)) {
        const old = BpfLink.fromPin(sockops);
        old.unpin();
        replaced.push(old);
      }
      node.log.info({ dir: this.dir }, 'sockops: replacing the sk_msg and sockops programs of a version without the splice guard');
    }
    for (const spec of programs) {
      const pin = path.join(linksDir, spec.program);
      if (fs.existsSync(pin)) this.links.set(spec.program, BpfLink.fromPin(pin));
    }
    const missing = programs.filter((s) => !this.links.has(s.program));
    if (missing.length > 0) attachSpecs(missing, { mapsDir, linksDir, cgroupRoot: node.cgroupRoot, maxEntries: this.sizes }, this.links);
    for (const old of replaced) old.detach();
    if (missing.length < programs.length)
      node.log.info({ adopted: programs.length - missing.length, attached: missing.length, dir: this.dir }, 'sockops: adopted pinned links');
    // Kept loaded for the per-pod netns links; loading it also pins any map an older
    // version's pins lack (inbound_listener), before the maps are opened.
    this.skLookup = BpfObject.open(bpfObjectPath(SK_LOOKUP.object), { pinMaps: mapsDir, maxEntries: this.sizes });

    this.maps = SockopsMaps.open(mapsDir);
    // The guard's bounds first, then the mode that makes sockets splice.
    this.maps.setGuard(this.guard);
    this.maps.setSplice(eff.splice);
    // One batch scan of every map: the pods and the generations selections reference.
    const { pods: installed, gens } = this.maps.scan();
    this.setInstalled(installed);
    let maxGen = 0;
    for (const p of installed) maxGen = Math.max(maxGen, p.gen);
    for (const g of gens) maxGen = Math.max(maxGen, g);
    this.nextGen = maxGen + 1;
    // Selections of a generation no pod points at are leftovers of an interrupted write.
    const live = new Set(installed.map((p) => p.gen));
    for (const gen of gens) if (!live.has(gen)) this.maps.deleteGen(gen);
    // Addresses, names and listeners of a netns with no pod_cfg: an enroll or unenroll interrupted between its writes.
    const orphans = this.maps.deleteOrphans();
    if (orphans.ips + orphans.meta + orphans.listeners > 0) node.log.info(orphans, 'sockops: removed entries of pods an interrupted enroll/unenroll left');

    for (const name of fs.readdirSync(this.netnsDir)) {
      const pin = path.join(this.netnsDir, name);
      const cookie = /^[0-9]+$/.test(name) ? BigInt(name) : null;
      // A link of a pod no longer enrolled: an unenroll interrupted between map and link.
      if (cookie === null || !this.installed.has(cookie)) BpfLink.fromPin(pin).detach();
      else this.netnsLinked.add(cookie);
    }
    this.rememberListeners(installed);
    this.scanFresh = true;
    this.startResetter(node, programs);
  }

  /** Reads splice_resets when its program is attached here (src/splice-reset.ts). */
  private startResetter(node: NodeContext, programs: readonly ProgramSpec[]): void {
    const pin = path.join(this.mapsDir, 'splice_resets');
    if (!this.spliceCloseReset || !programs.some((s) => s.program === 'shunt_splice_release') || !fs.existsSync(pin)) return;
    this.resetter = new SpliceResetter({ map: BpfMap.fromPin(pin), netnsPathOf: (c) => this.netnsPaths.get(c), pidIndex: this.pidIndex, log: node.log });
    this.resetter.start();
  }

  /** The listener families present now become the ones each installed pod is expected to keep. */
  private rememberListeners(installed: readonly InstalledPodProgram[]): void {
    const present = this.requireMaps('rememberListeners').inboundListeners();
    for (const p of installed) this.listenerFamilies.set(p.netnsCookie, sharedFamilies(present.get(p.netnsCookie)));
  }

  /** readOnly: open what is pinned, create, attach and delete nothing. */
  private adoptReadOnly(): void {
    for (const spec of this.programs()) {
      const pin = path.join(this.linksDir, spec.program);
      if (fs.existsSync(pin)) this.links.set(spec.program, BpfLink.fromPin(pin));
    }
    if (!fs.existsSync(this.mapsDir)) return;
    try {
      this.maps = SockopsMaps.open(this.mapsDir);
    } catch (err) {
      // Partial or foreign pins: report the node as not ready rather than fail status.
      this.node?.log.warn({ dir: this.mapsDir, err: (err as Error).message }, 'sockops: pinned maps not readable (read-only)');
      return;
    }
    this.sizes = Object.fromEntries(MAP_NAMES.map((n) => [n, this.maps!.raw[n].maxEntries]));
    const installed = this.maps.readPods();
    this.setInstalled(installed);
    this.rememberListeners(installed);
  }

  private requireMaps(op: string): SockopsMaps {
    if (!this.maps) throw new SockopsBackendError(`sockops: ${op} called before start()`);
    return this.maps;
  }

  private requireWritable(op: string): SockopsMaps {
    if (this.readOnly)
      throw new SockopsBackendError(`sockops: ${op} refused: the backend was started read-only (NodeContext.readOnly), it changes nothing`);
    return this.requireMaps(op);
  }

  private cookieOf(pod: MeshPod): bigint {
    if (pod.netnsCookie !== undefined) {
      if (!/^[0-9]+$/.test(pod.netnsCookie))
        throw new PodConfigError(`${pod.namespace}/${pod.name} (uid ${pod.uid})`, 'netnsCookie', pod.netnsCookie, 'not a decimal netns cookie');
      return BigInt(pod.netnsCookie);
    }
    if (pod.netnsPath) return netnsCookie(pod.netnsPath);
    throw new PodConfigError(`${pod.namespace}/${pod.name} (uid ${pod.uid})`, 'netnsPath', pod.netnsPath, 'sockops needs the pod netns (path or cookie)');
  }

  async enroll(pod: MeshPod): Promise<void> {
    this.scanFresh = false;
    const maps = this.requireWritable('enroll');
    const who = `${pod.namespace}/${pod.name} (uid ${pod.uid})`;
    if (pod.membership === 'none' || pod.interceptionMode === 'NONE') return this.unenroll(pod);
    if (pod.membership !== 'sidecar')
      throw new PodConfigError(who, 'membership', pod.membership, 'the sockops backend redirects sidecar pods only');
    if (pod.hostNetwork)
      throw new PodConfigError(who, 'hostNetwork', true, 'a host-network pod shares the node netns and cannot be redirected per pod');
    // Options with no meaning at the socket layer: refuse the pod rather than capture it differently.
    assertPodSupported(pod);
    const since = Date.now();
    const want = podProgram(pod, this.cookieOf(pod));
    const same = this.installed.get(want.netnsCookie);
    const fresh = !same;
    if (!same || canonical(same) !== canonical(want)) {
      // The same pod under another netns (sandbox replaced): drop the old enrolment first.
      for (const p of this.podsOf(want.ref.uid)) if (p.netnsCookie !== want.netnsCookie) this.dropPod(maps, p);
      if (!same && this.installed.size >= this.maxPods)
        throw new CapacityError(who, 'pod_cfg', this.maxPods, `${this.installed.size} of ${this.maxPods} pods enrolled`);
      const gen = this.nextGen++;
      try {
        // All or nothing: a failed write removes what it wrote (maps.writePod undoes itself).
        maps.writePod(want, gen, same);
      } catch (err) {
        throw this.asCapacity(err, who);
      }
      this.addInstalled({ ...want, gen });
      if (same) maps.deleteSelections(same);
    }
    if (pod.netnsPath) this.netnsPaths.set(want.netnsCookie, pod.netnsPath);
    try {
      this.ensureNetnsLink(pod, want, who);
    } catch (err) {
      // A pod enrolled by this call leaves no entries behind when its link cannot be made.
      if (fresh) this.dropPod(maps, this.installed.get(want.netnsCookie)!);
      throw this.asCapacity(err, who);
    }
    // Last, after everything the pod's own connects need: this part may wait for the proxy. Its
    // config is complete and stays (app connects go to the proxy, as with Istio's rules installed
    // before the proxy runs); only connections from outside wait for the listener.
    this.ensureInboundListeners(pod, want, maps, who, since);
  }

  /** A full map (E2BIG from hash/sockhash maps, ENOSPC from LPM tries) as the error naming maxPods. */
  private asCapacity(err: unknown, who: string): unknown {
    if (!(err instanceof BpfError) || (err.code !== 'E2BIG' && err.code !== 'ENOSPC')) return err;
    const map = /map[ :]+([a-z0-9_]+)/.exec(err.message)?.[1] ?? err.target;
    return new CapacityError(who, map, this.maxPods, err.message);
  }

  private podsOf(uid: string): InstalledPodProgram[] {
    const out: InstalledPodProgram[] = [];
    for (const c of this.byUid.get(uid) ?? []) {
      const p = this.installed.get(c);
      if (p) out.push(p);
    }
    return out;
  }

  private setInstalled(pods: readonly InstalledPodProgram[]): void {
    this.installed = new Map();
    this.byUid = new Map();
    for (const p of pods) this.addInstalled(p);
  }

  /**
   * The kernel's reading becomes what is installed, keeping each record that reads the same: an
   * observe at 10,000 pods then replaces only what changed, instead of swapping 10,000 long-lived
   * records for new ones (old-space garbage at every scrape and resync).
   */
  private refreshInstalled(pods: readonly InstalledPodProgram[]): void {
    const seen = new Set<bigint>();
    for (const p of pods) {
      seen.add(p.netnsCookie);
      const have = this.installed.get(p.netnsCookie);
      if (!have || !sameInstalled(have, p)) this.addInstalled(p);
    }
    for (const [cookie, p] of this.installed) if (!seen.has(cookie)) this.removeInstalled(p);
  }

  private addInstalled(pod: InstalledPodProgram): void {
    // Most pods select the same ports, CIDRs and owners: one shared frozen copy each (memory at 10,000 pods).
    const pool = this.pool;
    // A literal of every field (not a spread): all pods share one hidden class, no property backing store.
    const p: InstalledPodProgram = {
      ref: { uid: pod.ref.uid, namespace: pool.string(pod.ref.namespace), name: pod.ref.name },
      netnsCookie: pod.netnsCookie,
      flags: pod.flags,
      proxyUid: pod.proxyUid,
      proxyGid: pod.proxyGid,
      outPort: pod.outPort,
      inPort: pod.inPort,
      dnsPort: pod.dnsPort,
      ports: pool.value(pod.ports),
      cidrs: pool.value(pod.cidrs),
      ips: pod.ips.slice(), // exact length (the built arrays carry spare capacity)
      loNet4: pod.loNet4,
      loPrefix4: pod.loPrefix4,
      tunnelPort: pod.tunnelPort,
      owners: pool.value(pod.owners),
      gen: pod.gen,
    };
    const old = this.installed.get(p.netnsCookie);
    if (old) this.removeInstalled(old);
    this.installed.set(p.netnsCookie, p);
    // An array, not a Set: almost always one cookie (a replaced sandbox briefly has two).
    const cookies = this.byUid.get(p.ref.uid);
    if (!cookies) this.byUid.set(p.ref.uid, [p.netnsCookie]);
    else if (!cookies.includes(p.netnsCookie)) cookies.push(p.netnsCookie);
  }

  private removeInstalled(p: InstalledPodProgram): void {
    this.installed.delete(p.netnsCookie);
    const cookies = this.byUid.get(p.ref.uid)?.filter((c) => c !== p.netnsCookie);
    if (cookies && cookies.length > 0) this.byUid.set(p.ref.uid, cookies);
    else this.byUid.delete(p.ref.uid);
  }

  /**
   * The map sizes to load with: maxPods-derived, except for maps already pinned, which keep
   * theirs (libbpf cannot reuse a pin of another size, and resizing means rewriting every
   * pod's state: a changed maxPods takes effect after a restart with cleanup).
   */
  private effectiveSizes(node: NodeContext): MapSizes {
    const want = mapSizes(this.wantMaxPods);
    const out: MapSizes = { ...want };
    const kept: string[] = [];
    for (const name of MAP_NAMES) {
      const pin = path.join(this.mapsDir, name);
      if (!fs.existsSync(pin)) continue;
      const m = BpfMap.fromPin(pin);
      try {
        if (want[name] !== undefined && m.maxEntries !== want[name]) kept.push(`${name}=${m.maxEntries}`);
        if (want[name] !== undefined) out[name] = m.maxEntries;
      } finally {
        m.close();
      }
    }
    if (kept.length > 0)
      node.log.warn(
        { maxPods: this.wantMaxPods, pinned: kept },
        'sockops: pinned maps keep their size; the new maxPods takes effect after `shunt cleanup` (or a stop with cleanup) and a restart',
      );
    return out;
  }

  /**
   * Used and left of every per-pod map: the kernel's entry counts (orphans of a crashed write
   * count too: they take room), not what this process remembers writing.
   */
  private capacity(maps: SockopsMaps): Capacity {
    const used = maps.count(CAPACITY_MAPS);
    const pods = used['pod_cfg'] ?? 0;
    const out: Capacity = { maxPods: this.maxPods, pods, podsLeft: Math.max(0, this.maxPods - pods), maps: {} };
    for (const name of CAPACITY_MAPS) out.maps[name] = { used: used[name] ?? 0, max: this.sizes[name] ?? 0 };
    return out;
  }

  /**
   * Attaches the sk_lookup link to the pod netns (once) and puts the proxy's inbound listener
   * in the sockhash for every family the pod has addresses of and whose entry is missing. No
   * listener at all yet (proxy not started) throws a retryable error; until then connections
   * from outside the pod to captured ports are refused, as under iptables.
   */
  private ensureNetnsLink(pod: MeshPod, want: PodProgram, who: string): void {
    const cookie = want.netnsCookie;
    const netnsPath = pod.netnsPath;
    if (!netnsPath)
      throw new PodConfigError(who, 'netnsPath', netnsPath, 'inbound capture attaches sk_lookup to the pod netns, which needs its path');
    if (!this.netnsLinked.has(cookie)) {
      if (pod.netnsCookie !== undefined && netnsCookie(netnsPath) !== cookie)
        throw new PodConfigError(who, 'netnsPath', netnsPath, `is not the netns of netnsCookie ${cookie}`);
      const pin = path.join(this.netnsDir, cookie.toString());
      if (!fs.existsSync(pin)) {
        if (!this.skLookup) throw new SockopsBackendError('sockops: sk_lookup program not loaded (start() not called?)');
        const link = this.skLookup.program(SK_LOOKUP.program).attachNetns(netnsPath);
        try {
          link.pin(pin);
        } catch (err) {
          link.detach();
          throw err;
        }
        link.close(); // the pin keeps it
      }
      this.netnsLinked.add(cookie);
    }
  }

  /**
   * Puts the proxy's inbound listener in the sockhash for every family the pod has addresses of
   * and whose entry is missing. No listener at all yet (proxy not started) throws a retryable
   * error; until then connections from outside the pod to captured ports are refused, as under
   * iptables.
   */
  private ensureInboundListeners(pod: MeshPod, want: PodProgram, maps: SockopsMaps, who: string, since: number): void {
    const cookie = want.netnsCookie;
    const netnsPath = pod.netnsPath!;
    const families = podFamilies(want);
    if (families.length === 0) return; // no address to steer to
    const have = this.presentListeners(want);
    const absent = families.filter((f) => !have.has(f));
    if (absent.length > 0) {
      for (const family of absent) {
        const l = findListener(this.pidIndex, netnsPath, want.inPort, family, since);
        if (!l) continue;
        try {
          withBorrowedSocket(l, (fd) => maps.setInboundListener(cookie, family, fd));
        } catch (err) {
          throw this.asCapacity(err, who);
        }
        have.add(family);
      }
    }
    this.listenerFamilies.set(cookie, sharedFamilies(have));
    if (have.size === 0)
      throw new SockopsBackendError(
        `pod ${who}: proxy inbound listener :${want.inPort} not found yet in netns ${netnsPath} ` +
          '(no process there listens on it); connections from outside the pod to its captured ports are refused until it is (retry)',
      );
    const missing = families.filter((f) => !have.has(f));
    if (missing.length > 0)
      this.node?.log.warn({ pod: who, port: want.inPort, families: missing }, 'sockops: proxy has no inbound listener for these families; they stay refused');
  }

  /** Families whose inbound listener entry is in the sockhash now (the kernel drops closed ones). */
  private presentListeners(p: PodProgram): Set<Family> {
    const maps = this.requireMaps('presentListeners');
    return new Set(([4, 6] as const).filter((f) => maps.inboundListener(p.netnsCookie, f) !== null));
  }

  /** Map entries first (the programs stop capturing), then the netns link. */
  private dropPod(maps: SockopsMaps, p: InstalledPodProgram): void {
    this.netnsPaths.delete(p.netnsCookie);
    maps.deletePod(p);
    this.removeInstalled(p);
    this.listenerFamilies.delete(p.netnsCookie);
    const pin = path.join(this.netnsDir, p.netnsCookie.toString());
    if (fs.existsSync(pin)) BpfLink.fromPin(pin).detach();
    this.netnsLinked.delete(p.netnsCookie);
  }

  async unenroll(pod: PodRef): Promise<void> {
    this.scanFresh = false;
    const maps = this.requireWritable('unenroll');
    for (const p of this.podsOf(pod.uid)) this.dropPod(maps, p);
  }

  /** Whether connections from outside the pod reach its proxy: link attached, listeners in. */
  private inboundState(p: InstalledPodProgram, present: ReadonlySet<Family> = this.presentListeners(p)): InboundState {
    const link = this.netnsLinked.has(p.netnsCookie) || (this.dir !== '' && fs.existsSync(path.join(this.netnsDir, p.netnsCookie.toString())));
    const families = podFamilies(p);
    const expected = this.listenerFamilies.get(p.netnsCookie) ?? NO_FAMILIES;
    const needed = families.filter((f) => expected.has(f));
    const ready = link && (families.length === 0 || (needed.length > 0 && needed.every((f) => present.has(f))));
    return inboundStateOf(link, families, present, ready);
  }

  /** A record's fingerprint, computed once per record (records are kept while the kernel reads the same). */
  private fingerprintOf(p: InstalledPodProgram): string {
    let f = this.fingerprints.get(p);
    if (f === undefined) this.fingerprints.set(p, (f = fingerprintOf(p)));
    return f;
  }

  /** Node-wide part of a reading (links, splice, capacity), shared by observe() and summarize(). */
  private nodeReading(maps: SockopsMaps | null): { nodeReady: boolean; nodeDetail: Record<string, unknown>; capacity: Capacity | null } {
    const linksDir = path.join(this.dir, 'links');
    const links = Object.fromEntries(
      this.programs().map((s) => [s.program, this.links.has(s.program) || (this.dir !== '' && fs.existsSync(path.join(linksDir, s.program)))]),
    );
    const capacity = maps ? this.capacity(maps) : null;
    return {
      nodeReady: maps !== null && Object.values(links).every(Boolean),
      capacity,
      nodeDetail: {
        pinDir: this.dir,
        cgroupRoot: this.node?.cgroupRoot ?? null,
        readOnly: this.readOnly,
        links,
        splice: maps?.spliceSetting() ?? null,
        spliceSetting: this.splice,
        spliceReason: this.spliceState?.reason ?? null,
        spliceGuard: maps?.guard() ?? null,
        guardProbe: this.spliceState?.guard ?? null,
        capacity,
        spliceResets: this.resetter ? { ...this.resetter.stats } : null,
      },
    };
  }

  async observe(): Promise<InstalledState> {
    const maps = this.maps;
    const { nodeReady, nodeDetail } = this.nodeReading(maps);
    const reuse = this.scanFresh && maps !== null;
    this.scanFresh = false;
    const pods = reuse || !maps ? [] : maps.readPods();
    const listening = reuse ? this.listenerFamilies : (maps?.inboundListeners() ?? new Map<bigint, Set<Family>>());
    // The kernel is the truth: a drifted map shows up here, and the next enroll repairs it.
    if (maps && !reuse) this.refreshInstalled(pods);
    // The answer is built from the kept records (equal to the scan after refreshInstalled): their
    // strings, fingerprints and inbound details are shared, so a resync at 10,000 pods allocates
    // one small object per pod instead of a new fingerprint and detail tree each.
    const out: InstalledState['pods'] = [];
    for (const p of this.installed.values()) {
      const inbound = this.inboundState(p, listening.get(p.netnsCookie) ?? NO_FAMILIES);
      out.push({
        uid: p.ref.uid,
        namespace: p.ref.namespace,
        name: p.ref.name,
        fingerprint: inbound.ready ? this.fingerprintOf(p) : this.fingerprintOf(p) + INBOUND_PENDING,
        detail: { netnsCookie: p.netnsCookie.toString(), gen: p.gen, ips: p.ips, inbound },
      });
    }
    return { backend: 'sockops', nodeReady, nodeDetail, pods: out, counters: maps?.readCounters() ?? {} };
  }

  /**
   * observe()'s counts without its records, for /metrics: the per-pod maps' entry counts and the
   * counters, read from the kernel in the addon. Costs a few syscalls per thousand pods and no
   * per-pod JS object (a full observe at 10,000 pods grew the heap by 25-40 MiB per scrape).
   */
  async summarize(): Promise<InstalledSummary> {
    const maps = this.maps;
    const { nodeReady, nodeDetail, capacity } = this.nodeReading(maps);
    return { backend: 'sockops', nodeReady, nodeDetail, pods: capacity?.pods ?? 0, counters: maps?.readCounters() ?? {} };
  }

  /** Per-connection map entries alive now (O(entries) syscalls: for status and tests, not hot paths). */
  liveRecords(): ReturnType<SockopsMaps['liveRecords']> {
    return this.requireMaps('liveRecords').liveRecords();
  }

  async stop(opts: { cleanup: boolean }): Promise<void> {
    if (opts.cleanup && this.readOnly)
      throw new SockopsBackendError('sockops: stop({cleanup: true}) refused: the backend was started read-only, it removes nothing');
    if (opts.cleanup) {
      // detach() also removes the link's pin; netns links first, while their pods' maps exist.
      if (this.dir !== '' && fs.existsSync(this.netnsDir))
        for (const name of fs.readdirSync(this.netnsDir)) BpfLink.fromPin(path.join(this.netnsDir, name)).detach();
      for (const link of this.links.values()) link.detach();
    }
    this.resetter?.close();
    this.resetter = null;
    this.netnsPaths.clear();
    this.maps?.close();
    this.maps = null;
    this.scanFresh = false;
    this.installed.clear();
    this.listenerFamilies.clear();
    for (const link of this.links.values()) link.close();
    this.links.clear();
    this.netnsLinked.clear();
    this.byUid.clear();
    this.skLookup?.close();
    this.skLookup = null;
    this.node = null;
    if (opts.cleanup && this.dir !== '') fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Field by field, lists in order (a list read in another order counts as changed: replaced, never wrongly kept). */
function sameInstalled(a: InstalledPodProgram, b: InstalledPodProgram): boolean {
  const sameList = <T>(x: readonly T[], y: readonly T[], eq: (u: T, v: T) => boolean): boolean =>
    x.length === y.length && x.every((u, i) => eq(u, y[i]!));
  return (
    a.gen === b.gen && a.flags === b.flags && a.proxyUid === b.proxyUid && a.proxyGid === b.proxyGid &&
    a.outPort === b.outPort && a.inPort === b.inPort && a.dnsPort === b.dnsPort && a.loNet4 === b.loNet4 &&
    a.loPrefix4 === b.loPrefix4 && a.tunnelPort === b.tunnelPort &&
    a.ref.uid === b.ref.uid && a.ref.namespace === b.ref.namespace && a.ref.name === b.ref.name &&
    sameList(a.ips, b.ips, (u, v) => u === v) &&
    sameList(a.ports, b.ports, (u, v) => u.kind === v.kind && u.port === v.port) &&
    sameList(a.cidrs, b.cidrs, (u, v) => u.kind === v.kind && u.family === v.family && u.address === v.address && u.prefix === v.prefix) &&
    sameList(a.owners, b.owners, (u, v) => u.kind === v.kind && u.id === v.id)
  );
}

type InboundState = Readonly<{ link: boolean; listeners: Readonly<Record<string, boolean>>; ready: boolean }>;
const NO_FAMILIES: ReadonlySet<Family> = new Set<Family>();
/** The few distinct inbound states, one frozen copy each (observe() answers one per pod). */
const INBOUND_STATES = new Map<string, InboundState>();
function inboundStateOf(link: boolean, families: readonly Family[], present: ReadonlySet<Family>, ready: boolean): InboundState {
  const key = `${+link}${+ready}${families.map((f) => `${f}${+present.has(f)}`).join('')}`;
  let st = INBOUND_STATES.get(key);
  if (!st) {
    const listeners = Object.freeze(Object.fromEntries(families.map((f) => [`ipv${f}`, present.has(f)])));
    INBOUND_STATES.set(key, (st = Object.freeze({ link, listeners, ready })));
  }
  return st;
}

// listenerFamilies holds one of these four per pod instead of a Set of its own (memory at 10,000
// pods); they are never changed.
const FAMILY_SETS: ReadonlySet<Family>[] = [new Set<Family>(), new Set<Family>([4]), new Set<Family>([6]), new Set<Family>([4, 6])];
function sharedFamilies(s: ReadonlySet<Family> | undefined): Set<Family> {
  return FAMILY_SETS[(s?.has(4) ? 1 : 0) + (s?.has(6) ? 2 : 0)] as Set<Family>;
}

/** Address families a pod has addresses in: the families its inbound listener must take. */
function podFamilies(p: PodProgram): Family[] {
  const out: Family[] = [];
  if (p.ips.some((ip) => isIPv4(ip))) out.push(4);
  if (p.ips.some((ip) => !isIPv4(ip))) out.push(6);
  return out;
}
