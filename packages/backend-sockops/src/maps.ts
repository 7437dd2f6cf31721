/**
 * The backend's view of its pinned maps: typed access, and the two multi-map operations
 * that must happen in a fixed order — writing a pod (selections first, pod_cfg last, so
 * the programs never see half a config) and removing one (pod_cfg first).
 */
import * as path from 'node:path';
import { BpfMap, readSpliceStats, type TypedMap } from '@shunt/libbpf';
import {
  COUNTER_NAMES,
  COUNTER_SLOTS,
  LPM_HEADER_BITS,
  MAP_NAMES,
  SPLICE_MODE,
  spliceGuard,
  spliceSock,
  addr16,
  cidr4Key,
  cidr6Key,
  counterValue,
  decodeAddr,
  decodeText,
  encodeAddr,
  encodeText,
  flagValue,
  listenerKey,
  netnsKey,
  orig,
  ownerKey,
  podCfg,
  podMeta,
  portKey,
  spliceCfg,
  tuple,
  u16Key,
  u32Key,
  type MapName,
  type OwnerKind,
  type PodCfg,
  type SelKind,
} from './abi';
import type { PodProgram } from './pod-program';
import type { SpliceSetting } from './splice';

export interface InstalledPodProgram extends PodProgram {
  gen: number;
}

type Bytes = Buffer;

export class SockopsMaps {
  readonly raw: Record<MapName, BpfMap>;
  readonly podCfg: TypedMap<bigint, PodCfg>;
  readonly podMeta: TypedMap<bigint, { uid: Bytes; ns: Bytes; name: Bytes }>;
  readonly podByIp: TypedMap<Bytes, bigint>;
  readonly portSel: TypedMap<{ gen: number; port: number; kind: number }, number>;
  readonly cidr4: TypedMap<{ prefixlen: number; gen: number; kind: number; addr: string }, number>;
  readonly cidr6: TypedMap<{ prefixlen: number; gen: number; kind: number; addr: string }, number>;
  readonly origByTuple: TypedMap<ReturnType<typeof tuple.decode>, ReturnType<typeof orig.decode>>;
  readonly spliceCfg: TypedMap<number, { mode: number }>;
  readonly splicePorts: TypedMap<number, number>;
  readonly counters: TypedMap<number, bigint>;
  readonly ownerSel: TypedMap<{ gen: number; id: number; kind: number }, number>;
  readonly spliceGuard: TypedMap<number, ReturnType<typeof spliceGuard.decode>>;
  readonly spliceStats: TypedMap<number, bigint>;

  private constructor(raw: Record<MapName, BpfMap>) {
    this.raw = raw;
    // typed() throws when a codec's size differs from the map's: the ABI cannot drift silently.
    this.podCfg = raw.pod_cfg.typed(netnsKey, podCfg);
    this.podMeta = raw.pod_meta.typed(netnsKey, podMeta);
    this.podByIp = raw.pod_by_ip.typed(addr16, netnsKey);
    this.portSel = raw.port_sel.typed(portKey, flagValue);
    this.cidr4 = raw.cidr4.typed(cidr4Key, flagValue);
    this.cidr6 = raw.cidr6.typed(cidr6Key, flagValue);
    raw.orig_by_cookie.typed(netnsKey, orig);
    this.origByTuple = raw.orig_by_tuple.typed(tuple, orig);
    raw.splice_socks.typed(tuple, u32Key);
    raw.dns_orig.typed(netnsKey, orig);
    this.spliceCfg = raw.splice_cfg.typed(u32Key, spliceCfg);
    this.splicePorts = raw.splice_ports.typed(u16Key, flagValue);
    this.counters = raw.counters.typed(u32Key, counterValue);
    raw.inbound_listener.typed(listenerKey, counterValue);
    this.ownerSel = raw.owner_sel.typed(ownerKey, flagValue);
    this.spliceGuard = raw.splice_guard.typed(u32Key, spliceGuard);
    raw.splice_peer.typed(tuple, spliceSock);
    this.spliceStats = raw.splice_stats.typed(u32Key, counterValue);
  }

  /** The splice guard's policy (bytes); 0 in a field = the built-in default (GUARD_DEFAULTS). */
  setGuard(g: { queueCap: number; smallMsg: number; smallQueue: number; shortConns: number }): void {
    this.spliceGuard.update(0, g);
  }

  guard(): { queueCap: number; smallMsg: number; smallQueue: number; shortConns: number } | null {
    const g = this.spliceGuard.lookup(0);
    return g ? { queueCap: g.queueCap, smallMsg: g.smallMsg, smallQueue: g.smallQueue, shortConns: g.shortConns } : null;
  }

  /** The guard's decision counters (sums over CPUs; maxima for SPLICE_STAT_MAX). */
  readSpliceStats(): Record<string, number> {
    return readSpliceStats(this.spliceStats);
  }


  /** Puts a listening socket (an fd of ours) in as the pod's inbound listener for one family. */
  setInboundListener(netns: bigint, family: 4 | 6, socketFd: number): void {
    this.raw.inbound_listener.updateSocket(listenerKey.encode({ netns, family }), socketFd, 'any');
  }

  /** Socket cookie of the pod's inbound listener for a family, or null when none is in (or it closed). */
  inboundListener(netns: bigint, family: 4 | 6): bigint | null {
    return this.raw.inbound_listener.socketCookie(listenerKey.encode({ netns, family }));
  }

  deleteInboundListeners(netns: bigint): void {
    for (const family of [4, 6] as const) this.raw.inbound_listener.delete(listenerKey.encode({ netns, family }));
  }

  /** Opens every map pinned in dir; throws naming the first one missing or mis-sized. */
  static open(dir: string): SockopsMaps {
    const raw: Partial<Record<MapName, BpfMap>> = {};
    try {
      for (const name of MAP_NAMES) raw[name] = BpfMap.fromPin(path.join(dir, name));
      return new SockopsMaps(raw as Record<MapName, BpfMap>);
    } catch (err) {
      for (const m of Object.values(raw)) m?.close();
      throw err;
    }
  }

  close(): void {
    for (const m of Object.values(this.raw)) m.close();
  }

  /**
   * Applies to connections established from now on; spliced ones stay spliced until they close
   * (moving a live connection off the sockhash would reorder its data). Ports are written before a
   * mode that reads them, and removed after one that stops reading them.
   */
  setSplice(setting: SpliceSetting): void {
    const mode = setting === 'all' ? SPLICE_MODE.all : setting === 'none' ? SPLICE_MODE.none : SPLICE_MODE.listed;
    const want = new Set(Array.isArray(setting) ? setting : []);
    for (const p of want) this.splicePorts.update(p, 1);
    this.spliceCfg.update(0, { mode });
    for (const p of this.splicePorts.keys()) if (!want.has(p)) this.splicePorts.delete(p);
  }

  spliceSetting(): SpliceSetting {
    const mode = this.spliceCfg.lookup(0)?.mode ?? SPLICE_MODE.none;
    if (mode === SPLICE_MODE.all) return 'all';
    if (mode === SPLICE_MODE.listed) return this.splicePorts.keys().sort((a, b) => a - b);
    return 'none';
  }

  /**
   * Families whose inbound listener is in the sockhash now, by netns cookie: one walk of the
   * sockhash (one syscall per entry present) instead of two lookups per pod.
   */
  inboundListeners(): Map<bigint, Set<4 | 6>> {
    const out = new Map<bigint, Set<4 | 6>>();
    for (const k of this.raw.inbound_listener.keys()) {
      const { netns, family } = listenerKey.decode(k);
      if (family !== 4 && family !== 6) continue;
      let set = out.get(netns);
      if (!set) out.set(netns, (set = new Set()));
      set.add(family);
    }
    return out;
  }

  /**
   * Pods as the kernel holds them, selections grouped by their generation, and every generation
   * a selection entry references (orphans of a crashed write included). Every map is read whole
   * in batch (one syscall per chunk where the map type allows, one per key for the LPM tries):
   * the cost of a start or an observe at 10,000 pods is a few scans, not 10,000 lookups.
   */
  scan(): { pods: InstalledPodProgram[]; gens: Set<number> } {
    const gens = new Set<number>();
    const ports = new Map<number, Array<{ kind: SelKind; port: number }>>();
    for (const k of this.portSel.keys()) push(ports, k.gen, { kind: k.kind as SelKind, port: k.port });
    const cidrs = new Map<number, PodProgram['cidrs']>();
    for (const k of this.cidr4.keys())
      push(cidrs, k.gen, { kind: k.kind as SelKind, family: 4, address: k.addr, prefix: k.prefixlen - LPM_HEADER_BITS });
    for (const k of this.cidr6.keys())
      push(cidrs, k.gen, { kind: k.kind as SelKind, family: 6, address: k.addr, prefix: k.prefixlen - LPM_HEADER_BITS });
    const owners = new Map<number, PodProgram['owners']>();
    for (const k of this.ownerSel.keys()) push(owners, k.gen, { kind: k.kind as OwnerKind, id: k.id });
    for (const m of [ports, cidrs, owners]) for (const g of m.keys()) gens.add(g);
    const ips = new Map<bigint, string[]>();
    for (const [ip, cookie] of this.podByIp.entries()) {
      const list = ips.get(cookie) ?? [];
      list.push(decodeAddr(ip));
      ips.set(cookie, list);
    }
    const metas = new Map(this.podMeta.entries());
    const out: InstalledPodProgram[] = [];
    for (const [cookie, cfg] of this.podCfg.entries()) {
      const meta = metas.get(cookie);
      out.push({
        ref: meta
          ? { uid: decodeText(meta.uid), namespace: decodeText(meta.ns), name: decodeText(meta.name) }
          : { uid: `unknown-netns-${cookie}`, namespace: '', name: '' },
        netnsCookie: cookie,
        gen: cfg.gen,
        flags: cfg.flags,
        proxyUid: cfg.proxyUid,
        proxyGid: cfg.proxyGid,
        outPort: cfg.outPort,
        inPort: cfg.inPort,
        dnsPort: cfg.dnsPort,
        ports: ports.get(cfg.gen) ?? [],
        cidrs: cidrs.get(cfg.gen) ?? [],
        ips: (ips.get(cookie) ?? []).sort(),
        loNet4: cfg.loNet4,
        loPrefix4: cfg.loPrefix4,
        tunnelPort: cfg.tunnelPort,
        owners: owners.get(cfg.gen) ?? [],
      });
    }
    return { pods: out, gens };
  }

  /** Pods as the kernel holds them (see scan()). */
  readPods(): InstalledPodProgram[] {
    return this.scan().pods;
  }


  /**
   * Installs p under generation gen: selections, addresses, meta, then the pod_cfg flip. `prev`
   * is what the kernel holds for this netns now (if anything): its addresses that p no longer
   * has are removed here, its selections by the caller (deleteSelections) after the flip.
   * Cost is proportional to this pod's entries, never to the node's: enroll latency must not
   * grow with the number of pods.
   */
  writePod(p: PodProgram, gen: number, prev?: InstalledPodProgram): void {
    // All or nothing: every write registers how to take it back; a failing write (a full map)
    // undoes the ones before it, newest first, so a failed enroll leaves the maps as they were.
    const undo: Array<() => void> = [];
    try {
      for (const e of p.ports) {
        const key = { gen, port: e.port, kind: e.kind };
        this.portSel.update(key, 1);
        undo.push(() => this.portSel.delete(key));
      }
      for (const o of p.owners) {
        const key = { gen, id: o.id, kind: o.kind };
        this.ownerSel.update(key, 1);
        undo.push(() => this.ownerSel.delete(key));
      }
      for (const c of p.cidrs) {
        const key = { prefixlen: LPM_HEADER_BITS + c.prefix, gen, kind: c.kind, addr: c.address };
        const map = c.family === 4 ? this.cidr4 : this.cidr6;
        map.update(key, 1);
        undo.push(() => map.delete(key));
      }
      const had = new Set(prev && prev.netnsCookie === p.netnsCookie ? prev.ips : []);
      const want = new Set(p.ips);
      for (const ip of had) {
        if (want.has(ip)) continue;
        if (this.deleteIpOf(ip, p.netnsCookie)) undo.push(() => this.podByIp.update(encodeAddr(ip), p.netnsCookie));
      }
      for (const ip of p.ips) {
        const key = encodeAddr(ip);
        const before = had.has(ip) ? undefined : this.podByIp.lookup(key);
        this.podByIp.update(key, p.netnsCookie);
        if (!had.has(ip)) undo.push(() => (before == null ? this.podByIp.delete(key) : this.podByIp.update(key, before)));
      }
      const prevMeta = prev ? this.podMeta.lookup(p.netnsCookie) : null;
      this.podMeta.update(p.netnsCookie, {
        uid: encodeText(p.ref.uid, 48),
        ns: encodeText(p.ref.namespace, 64),
        name: encodeText(p.ref.name, 256),
      });
      undo.push(() => (prevMeta ? this.podMeta.update(p.netnsCookie, prevMeta) : this.podMeta.delete(p.netnsCookie)));
      // The flip: one update, so the programs see the old config or the new one, never a mix.
      this.podCfg.update(p.netnsCookie, {
        gen,
        flags: p.flags,
        proxyUid: p.proxyUid,
        proxyGid: p.proxyGid,
        outPort: p.outPort,
        inPort: p.inPort,
        dnsPort: p.dnsPort,
        loNet4: p.loNet4,
        loPrefix4: p.loPrefix4,
        tunnelPort: p.tunnelPort,
      });
    } catch (err) {
      for (const u of undo.reverse()) {
        try {
          u();
        } catch {
          // best effort: start() also removes selections of generations no pod points at
        }
      }
      throw err;
    }
  }

  /** Un-enrolls an installed pod: pod_cfg goes first so no connect sees a partial pod. */
  deletePod(p: InstalledPodProgram): void {
    this.podCfg.delete(p.netnsCookie);
    for (const ip of p.ips) this.deleteIpOf(ip, p.netnsCookie);
    this.podMeta.delete(p.netnsCookie);
    this.deleteInboundListeners(p.netnsCookie);
    this.deleteSelections(p);
  }

  /**
   * Start-up repair: removes pod_by_ip, pod_meta and inbound_listener entries of netns that have no
   * pod_cfg. An enroll writes those before its pod_cfg flip and an unenroll deletes pod_cfg first,
   * so an agent killed in between leaves them behind, and readPods() (keyed by pod_cfg) would never
   * see them again. Returns how many of each went.
   */
  deleteOrphans(): { ips: number; meta: number; listeners: number } {
    const live = new Set<bigint>([...this.podCfg.entries()].map(([cookie]) => cookie));
    let ips = 0;
    let meta = 0;
    let listeners = 0;
    for (const [ip, cookie] of this.podByIp.entries()) if (!live.has(cookie) && this.podByIp.delete(ip)) ips++;
    for (const cookie of this.podMeta.keys()) if (!live.has(cookie) && this.podMeta.delete(cookie)) meta++;
    for (const raw of this.raw.inbound_listener.keys()) {
      if (!live.has(listenerKey.decode(raw).netns) && this.raw.inbound_listener.delete(raw)) listeners++;
    }
    return { ips, meta, listeners };
  }

  /** Removes exactly the selection entries of p's generation. */
  deleteSelections(p: InstalledPodProgram): void {
    const gen = p.gen;
    for (const e of p.ports) this.portSel.delete({ gen, port: e.port, kind: e.kind });
    for (const o of p.owners) this.ownerSel.delete({ gen, id: o.id, kind: o.kind });
    for (const c of p.cidrs) {
      const key = { prefixlen: LPM_HEADER_BITS + c.prefix, gen, kind: c.kind, addr: c.address };
      (c.family === 4 ? this.cidr4 : this.cidr6).delete(key);
    }
  }

  /** An address leaves pod_by_ip only while it still points at this pod (it may be reused already). */
  private deleteIpOf(ip: string, cookie: bigint): boolean {
    const key = encodeAddr(ip);
    return this.podByIp.lookup(key) === cookie && this.podByIp.delete(key);
  }

  /** Removes every selection entry of a generation (full scan: for start-up repair only). */
  deleteGen(gen: number): void {
    for (const k of this.portSel.keys()) if (k.gen === gen) this.portSel.delete(k);
    for (const k of this.cidr4.keys()) if (k.gen === gen) this.cidr4.delete(k);
    for (const k of this.cidr6.keys()) if (k.gen === gen) this.cidr6.delete(k);
    for (const k of this.ownerSel.keys()) if (k.gen === gen) this.ownerSel.delete(k);
  }

  /**
   * Entries alive right now in the per-connection maps. Each should track open connections
   * only: records are deleted when their socket closes, sockets leave the sockhash on close.
   */
  liveRecords(): { origByCookie: number; origByTuple: number; splicedSockets: number; splicePeers: number; dnsSockets: number } {
    return {
      origByCookie: this.raw.orig_by_cookie.keys().length,
      origByTuple: this.raw.orig_by_tuple.keys().length,
      splicedSockets: this.raw.splice_socks.keys().length,
      splicePeers: this.raw.splice_peer.keys().length,
      dnsSockets: this.raw.dns_orig.keys().length,
    };
  }

  /** Entries each map holds now, counted in the addon (no per-entry objects: scrape-cheap at any N). */
  count(names: readonly MapName[]): Record<string, number> {
    const out: Record<string, number> = {};
    for (const name of names) out[name] = this.raw[name].count();
    return out;
  }

  readCounters(): Record<string, number> {
    const out: Record<string, number> = {};
    COUNTER_NAMES.forEach((name, i) => {
      if (i >= COUNTER_SLOTS) return;
      const perCpu = this.counters.lookupPerCpu(i) ?? [];
      out[name] = Number(perCpu.reduce((a, b) => a + b, 0n));
    });
    return { ...out, ...this.readSpliceStats() };
  }
}

function push<K, V>(m: Map<K, V[]>, k: K, v: V): void {
  const list = m.get(k);
  if (list) list.push(v);
  else m.set(k, [v]);
}
