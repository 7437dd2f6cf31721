// The uninstall of last resort: finds our state in network namespaces without any record of it.
// Every netns reachable from /run/netns (and, unless limited to a name prefix, from /proc/<pid>/ns/net)
// is read with both iptables variants and both families; SHUNT_* chains and the jumps into them
// are removed with the same pure transaction the backend uses (installed → nothing). Our TPROXY
// mark rule and local route are removed only where they are evidently ours: the netns had SHUNT_*
// chains, a record names it, or no ISTIO_* chains are there (istio-iptables installs the same
// 1337 → 133 rule, and a pod it set up must keep it). The host netns is never touched.

import { existsSync, promises as fs, statSync } from 'node:fs';
import path from 'node:path';
import { Netlink, NETNS_RUN_DIR, NetlinkError } from '@shunt/netlink';
import type { Family } from './addr';
import type { NetnsIdentity } from './netns-identity';
import { commandsFor, NetnsIptables } from './netns-iptables';
import type { IptablesVariant } from './options';
import { FAMILIES, TABLES } from './plan';
import { parseSave } from './save';
import { inpodPolicyRule } from './render-ambient';
import { buildTransaction } from './transaction';

export interface SweepOptions {
  /** Only named netns whose name starts with this, and no /proc scan (tests; a known naming scheme). */
  netnsPrefix?: string;
  procRoot?: string;
  runDir?: string;
  /** Mark/table pairs of policy routing that may be ours. */
  routing: { tproxyMark: number; tproxyTable: number }[];
  /** Netns that records say we installed into. */
  recorded: NetnsIdentity[];
  run: { lockWaitSeconds: number; timeoutMs: number };
  /** Bounds a scan on pathological nodes. */
  maxNetns?: number;
}

export interface SweptNetns {
  netnsPath: string;
  /** `<variant>/v<family>/<table>` cleaned. */
  tables: string[];
  /** Policy routing removed, as `ip` would print it. */
  routing: string[];
}

export interface SweepReport {
  /** Network namespaces looked at. */
  scanned: number;
  /** `dev:inode` of each, so the caller can match records. */
  scannedIds: string[];
  swept: SweptNetns[];
  recordsRemoved: string[];
  errors: string[];
}

const SEARCH_DIRS = ['/usr/sbin', '/sbin', '/usr/bin', '/bin'];

function onPath(bin: string): boolean {
  const dirs = [...(process.env.PATH ?? '').split(':').filter(Boolean), ...SEARCH_DIRS];
  return dirs.some((d) => existsSync(path.join(d, bin)));
}

/** Variants whose save and restore binaries exist for both families. */
function installedVariants(): IptablesVariant[] {
  return (['legacy', 'nft'] as const).filter((v) => FAMILIES.every((f) => onPath(commandsFor(v, f).save) && onPath(commandsFor(v, f).restore)));
}

function idOf(p: string): string | null {
  try {
    const st = statSync(p);
    return `${st.dev}:${st.ino}`;
  } catch {
    return null;
  }
}

async function listCandidates(o: SweepOptions): Promise<{ path: string; id: string }[]> {
  const host = idOf('/proc/self/ns/net');
  const seen = new Set<string>(host ? [host] : []);
  const out: { path: string; id: string }[] = [];
  const max = o.maxNetns ?? 20_000;
  const add = (p: string) => {
    const id = idOf(p);
    if (!id || seen.has(id) || out.length >= max) return;
    seen.add(id);
    out.push({ path: p, id });
  };
  const runDir = o.runDir ?? NETNS_RUN_DIR;
  const named = await fs.readdir(runDir).catch(() => [] as string[]);
  for (const n of named.sort()) if (!o.netnsPrefix || n.startsWith(o.netnsPrefix)) add(path.join(runDir, n));
  if (!o.netnsPrefix) {
    const procRoot = o.procRoot ?? '/proc';
    const pids = (await fs.readdir(procRoot).catch(() => [] as string[])).filter((d) => /^\d+$/.test(d));
    for (const pid of pids) add(path.join(procRoot, pid, 'ns', 'net'));
  }
  return out;
}

function fullMask(m: number | undefined): boolean {
  return m === undefined || m === 0xffffffff;
}

async function sweepRouting(netnsPath: string, pairs: SweepOptions['routing']): Promise<string[]> {
  const nl = Netlink.at(netnsPath);
  const removed: string[] = [];
  for (const family of FAMILIES) {
    let rules;
    try {
      rules = await nl.rules({ family });
    } catch {
      continue; // e.g. IPv6 disabled in this netns
    }
    for (const p of pairs) {
      if (rules.some((r) => r.fwmark === p.tproxyMark && fullMask(r.fwmask) && r.table === String(p.tproxyTable))) {
        await nl.deleteRule({ family, fwmark: p.tproxyMark, table: p.tproxyTable }, { ignoreMissing: true });
        removed.push(`ip -${family} rule fwmark 0x${p.tproxyMark.toString(16)} lookup ${p.tproxyTable}`);
      }
      let routes: Awaited<ReturnType<Netlink['routes']>> = [];
      try {
        routes = await nl.routes({ family, table: p.tproxyTable });
      } catch (e) {
        if (!(e instanceof NetlinkError)) throw e; // the table does not exist
      }
      if (routes.some((r) => r.type === 'local' && r.dst === 'default' && r.dev === 'lo')) {
        await nl.deleteRoute({ family, type: 'local', dst: 'default', dev: 'lo', table: p.tproxyTable }, { ignoreMissing: true });
        removed.push(`ip -${family} route local default dev lo table ${p.tproxyTable}`);
      }
    }
    // Ambient's in-pod connmark rule (its route is covered when its table is among the pairs).
    const inpod = inpodPolicyRule(family);
    if (rules.some((r) => r.fwmark === inpod.fwmark && r.fwmask === inpod.fwmask && r.priority === inpod.priority && r.table === String(inpod.table))) {
      await nl.deleteRule({ family, fwmark: inpod.fwmark, fwmask: inpod.fwmask!, priority: inpod.priority!, table: inpod.table }, { ignoreMissing: true });
      removed.push(`ip -${family} rule fwmark 0x${inpod.fwmark.toString(16)}/0x${inpod.fwmask!.toString(16)} pref ${inpod.priority} lookup ${inpod.table}`);
    }
  }
  return removed;
}

function firstLine(e: unknown): string {
  const m = e instanceof NetlinkError ? e.stderr.trim() || e.message : (e as Error).message;
  return m.split('\n')[0] ?? m;
}

/** A save that failed because there is nothing to read: the netns is gone, or the kernel lacks the family/table support. */
function unreadableBecauseAbsent(e: unknown, ns: { path: string; id: string }): boolean {
  if (idOf(ns.path) !== ns.id) return true;
  const text = e instanceof NetlinkError ? `${e.stderr}\n${e.message}` : String((e as Error)?.message ?? e);
  if (/permission denied|operation not permitted|you must be root|timed out/i.test(text)) return false;
  return /(address family|protocol) not supported|not supported by (the )?kernel|table does not exist/i.test(text);
}

async function sweepOne(ns: { path: string; id: string }, o: SweepOptions, variants: IptablesVariant[], recorded: Set<string>): Promise<SweptNetns> {
  const out: SweptNetns = { netnsPath: ns.path, tables: [], routing: [] };
  let istio = false;
  for (const variant of variants) {
    const ipt = new NetnsIptables(ns.path, { variant, ...o.run });
    for (const family of FAMILIES as readonly Family[]) {
      let text: string;
      try {
        text = await ipt.save(family);
      } catch (e) {
        // A family or variant this kernel lacks, or a netns that went away, holds none of our
        // chains; any other failure (no CAP_NET_ADMIN, a timeout) leaves this netns unread, which
        // must not pass for clean: the caller reports it and exits non-zero.
        if (unreadableBecauseAbsent(e, ns)) continue;
        throw new Error(`${commandsFor(variant, family).save} failed, SHUNT_* chains there may remain: ${firstLine(e)}`);
      }
      if (text.includes(':ISTIO_')) istio = true;
      if (!text.includes('SHUNT_')) continue;
      const saved = parseSave(text);
      for (const table of TABLES) {
        const tx = buildTransaction(table, saved[table]?.ours, undefined);
        if (!tx) continue;
        await ipt.restore(family, tx);
        out.tables.push(`${variant}/v${family}/${table}`);
      }
    }
  }
  const pairs = [...new Map(o.routing.map((p) => [`${p.tproxyMark}/${p.tproxyTable}`, p])).values()];
  if (out.tables.length > 0 || recorded.has(ns.id) || !istio) out.routing = await sweepRouting(ns.path, pairs);
  return out;
}

export async function sweepNetns(o: SweepOptions): Promise<SweepReport> {
  const candidates = await listCandidates(o);
  const variants = installedVariants();
  const recorded = new Set(o.recorded.map((r) => `${r.dev}:${r.inode}`));
  const report: SweepReport = { scanned: candidates.length, scannedIds: candidates.map((c) => c.id), swept: [], recordsRemoved: [], errors: [] };
  for (const ns of candidates) {
    try {
      const r = await sweepOne(ns, o, variants, recorded);
      if (r.tables.length || r.routing.length) report.swept.push(r);
    } catch (e) {
      report.errors.push(`${ns.path}: ${(e as Error).message}`);
    }
  }
  return report;
}
