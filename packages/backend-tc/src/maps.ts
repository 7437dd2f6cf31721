/**
 * The backend's view of its pinned maps: typed access, and the multi-map operations that must
 * happen in a fixed order — writing a pod (selections and meta first, tc_pod entries last, so the
 * programs never see half a config) and removing one (tc_pod entries first).
 */
import * as path from 'node:path';
import { BpfMap, type TypedMap } from '@shunt/libbpf';
import {
  COUNTER_NAMES,
  COUNTER_SLOTS,
  MAP_NAMES,
  addr16,
  counterValue,
  decodeAddr,
  dnsKey,
  dnsOrig,
  decodeText,
  encodeAddr,
  encodeText,
  flagValue,
  META_SIZES,
  netnsKey,
  podMeta,
  STATE,
  podValue,
  portKey,
  u32Key,
  twHandoff,
  type MapName,
  type PodMetaValue,
  type PodValue,
  type SelKind,
} from './abi';
import type { TcPodConfig } from './pod-config';

/** Where a pod's links sit and what enroll changed in its netns (kept in tc_pod_meta). */
export interface PodPlace {
  netnsPath: string;
  ifname: string;
  ifindex: number;
  /** STATE bits */
  state: number;
  /** SAVED index -> previous value + 1 (0: nothing saved) */
  saved: number[];
}

export interface InstalledPod extends TcPodConfig {
  netnsCookie: bigint;
  gen: number;
  place: PodPlace;
}

export class TcMaps {
  readonly raw: Record<MapName, BpfMap>;
  readonly pod: TypedMap<Buffer, PodValue>;
  readonly meta: TypedMap<bigint, PodMetaValue>;
  readonly portSel: TypedMap<{ gen: number; port: number; kind: number }, number>;
  readonly counters: TypedMap<number, bigint>;

  private constructor(raw: Record<MapName, BpfMap>) {
    this.raw = raw;
    // typed() throws when a codec's size differs from the map's: the ABI cannot drift silently.
    this.pod = raw.tc_pod.typed(addr16, podValue);
    this.meta = raw.tc_pod_meta.typed(netnsKey, podMeta);
    this.portSel = raw.tc_port_sel.typed(portKey, flagValue);
    this.counters = raw.tc_counters.typed(u32Key, counterValue);
    raw.tc_dns.typed(dnsKey, dnsOrig); // size check only: the programs alone read and write it
    raw.tc_tw_handoff.typed(u32Key, twHandoff); // per-CPU slot: the programs alone use it
    raw.tc_tw_sock.typed(u32Key, counterValue); // sockhash filled by ingress.bpf.c
  }

  /** Opens every map pinned in dir; throws naming the first one missing or mis-sized. */
  static open(dir: string): TcMaps {
    const raw: Partial<Record<MapName, BpfMap>> = {};
    try {
      for (const name of MAP_NAMES) raw[name] = BpfMap.fromPin(path.join(dir, name));
      return new TcMaps(raw as Record<MapName, BpfMap>);
    } catch (err) {
      for (const m of Object.values(raw)) m?.close();
      throw err;
    }
  }

  close(): void {
    for (const m of Object.values(this.raw)) m.close();
  }

  /** Pods as the kernel holds them (one tc_pod_meta entry each, addresses from tc_pod). */
  readPods(): InstalledPod[] {
    const ports = new Map<number, Array<{ kind: SelKind; port: number }>>();
    for (const k of this.portSel.keys()) {
      const list = ports.get(k.gen) ?? [];
      list.push({ kind: k.kind as SelKind, port: k.port });
      ports.set(k.gen, list);
    }
    const byCookie = new Map<bigint, { v: PodValue; ips: string[] }>();
    for (const [ip, v] of this.pod.entries()) {
      const e = byCookie.get(v.netns) ?? { v, ips: [] };
      e.ips.push(decodeAddr(ip));
      byCookie.set(v.netns, e);
    }
    const out: InstalledPod[] = [];
    for (const [cookie, m] of this.meta.entries()) {
      if (m.state & STATE.PREPARED) continue; // a prepared netns, no pod (readPrepared)
      const e = byCookie.get(cookie);
      const v = e?.v;
      out.push({
        ref: { uid: decodeText(m.uid), namespace: decodeText(m.ns), name: decodeText(m.name) },
        netnsCookie: cookie,
        gen: v?.gen ?? 0,
        flags: v?.flags ?? 0,
        outPort: v?.outPort ?? 0,
        inPort: v?.inPort ?? 0,
        tunnelPort: v?.tunnelPort ?? 0,
        dnsPort: v?.dnsPort ?? 0,
        ports: (v ? ports.get(v.gen) ?? [] : []).sort((a, b) => a.kind - b.kind || a.port - b.port),
        ips: (e?.ips ?? []).sort(),
        place: placeOf(m),
      });
    }
    return out;
  }

  /** Netns prepared ahead of their enroll (tc_pod_meta entries with STATE.PREPARED). */
  readPrepared(): Array<{ cookie: bigint; place: PodPlace }> {
    const out: Array<{ cookie: bigint; place: PodPlace }> = [];
    for (const [cookie, m] of this.meta.entries()) if (m.state & STATE.PREPARED) out.push({ cookie, place: placeOf(m) });
    return out;
  }

  /** The record of a prepared netns: no pod, its place (state carries STATE.PREPARED). */
  writePrepared(cookie: bigint, place: PodPlace): void {
    this.writeMeta(cookie, { uid: '', namespace: '', name: '' }, { ...place, state: place.state | STATE.PREPARED });
  }

  /** Generations referenced by selection entries (including orphans of an interrupted write). */
  selectionGens(): Set<number> {
    return new Set(this.portSel.keys().map((k) => k.gen));
  }

  writeMeta(cookie: bigint, ref: TcPodConfig['ref'], place: PodPlace): void {
    const saved = Buffer.alloc(META_SIZES.saved);
    place.saved.forEach((v, i) => (saved[i] = v));
    this.meta.update(cookie, {
      uid: encodeText(ref.uid, META_SIZES.uid),
      ns: encodeText(ref.namespace, META_SIZES.ns),
      name: encodeText(ref.name, META_SIZES.name),
      netnsPath: encodeText(place.netnsPath, META_SIZES.netnsPath),
      ifname: encodeText(place.ifname, META_SIZES.ifname),
      ifindex: place.ifindex,
      state: place.state,
      saved,
    });
  }

  /**
   * Installs c under generation gen: selections, then one tc_pod entry per address (the programs
   * read the selections through the entry, so it goes last). Addresses prev had and c has not
   * are removed. Cost is proportional to this pod's entries, never to the node's.
   */
  writePod(c: TcPodConfig, cookie: bigint, gen: number, prev?: InstalledPod): void {
    for (const e of c.ports) this.portSel.update({ gen, port: e.port, kind: e.kind }, 1);
    const value: PodValue = { netns: cookie, gen, flags: c.flags, outPort: c.outPort, inPort: c.inPort, tunnelPort: c.tunnelPort, dnsPort: c.dnsPort };
    for (const ip of c.ips) this.pod.update(encodeAddr(ip), value);
    if (prev) {
      const want = new Set(c.ips);
      for (const ip of prev.ips) if (!want.has(ip)) this.deleteIpOf(ip, cookie);
    }
  }

  /** Removes a pod's entries: addresses first (the programs stop capturing), then selections, meta. */
  deletePod(p: InstalledPod): void {
    for (const ip of p.ips) this.deleteIpOf(ip, p.netnsCookie);
    this.deleteSelections(p.gen, p.ports);
    this.meta.delete(p.netnsCookie);
  }

  deleteSelections(gen: number, ports: TcPodConfig['ports']): void {
    for (const e of ports) this.portSel.delete({ gen, port: e.port, kind: e.kind });
  }

  /** Removes every selection entry of a generation (full scan: start-up repair only). */
  deleteGen(gen: number): void {
    for (const k of this.portSel.keys()) if (k.gen === gen) this.portSel.delete(k);
  }

  /** An address leaves tc_pod only while it still belongs to this pod (it may be reused already). */
  private deleteIpOf(ip: string, cookie: bigint): void {
    const key = encodeAddr(ip);
    if (this.pod.lookup(key)?.netns === cookie) this.pod.delete(key);
  }

  readCounters(): Record<string, number> {
    const out: Record<string, number> = {};
    COUNTER_NAMES.forEach((name, i) => {
      if (i >= COUNTER_SLOTS) return;
      const perCpu = this.counters.lookupPerCpu(i) ?? [];
      out[name] = Number(perCpu.reduce((a, b) => a + b, 0n));
    });
    return out;
  }
}

function placeOf(m: PodMetaValue): PodPlace {
  return {
    netnsPath: decodeText(m.netnsPath),
    ifname: decodeText(m.ifname),
    ifindex: m.ifindex,
    state: m.state,
    saved: [...m.saved],
  };
}
