// The data a rendered rule set is made of, shared by the renderer, the iptables-save reader, the
// transaction builder and the fingerprint. Rules are kept as the exact text iptables-save prints,
// so "what we want" and "what the kernel has" compare as plain strings.

import type { Family } from './addr';

export type Table = 'raw' | 'mangle' | 'nat';
/** Order transactions run in: mangle/raw before nat so a TPROXY pod never has outbound capture without its inbound half. */
export const TABLES: readonly Table[] = ['raw', 'mangle', 'nat'];
export const FAMILIES: readonly Family[] = [4, 6];

export const CHAIN_PREFIX = 'SHUNT_';
export const BUILTIN_CHAINS = ['PREROUTING', 'INPUT', 'FORWARD', 'OUTPUT', 'POSTROUTING'] as const;

/** Our part of one table: chains we own, their rules, and the jumps into them from built-in chains. */
export interface TableRules {
  /** Chains we own (all named SHUNT_*). */
  chains: string[];
  /** `-A SHUNT_X …` lines, grouped by chain. */
  rules: string[];
  /** `-A <built-in> … -j SHUNT_X` lines. */
  jumps: string[];
}

export type FamilyRules = Partial<Record<Table, TableRules>>;

export interface PolicyRule {
  family: Family;
  fwmark: number;
  /** Unset: the whole mark (the sidecar TPROXY rule); ambient's in-pod rule matches 0x111/0xfff. */
  fwmask?: number;
  /** Unset: the kernel picks; ambient's in-pod rule sits at 32764 like istio-cni's. */
  priority?: number;
  table: number;
}

/** `fwmark 0x111/0xfff pref 32764 lookup 100`: the text rule keys, fingerprints and logs use. */
export function policyRuleText(p: PolicyRule): string {
  const mark = `0x${p.fwmark.toString(16)}${p.fwmask === undefined ? '' : `/0x${p.fwmask.toString(16)}`}`;
  return `fwmark ${mark}${p.priority === undefined ? '' : ` pref ${p.priority}`} lookup ${p.table}`;
}

export interface LocalRoute {
  family: Family;
  table: number;
}

/** The TPROXY policy routing and the ::6 passthrough address (set through @shunt/netlink). */
export interface RoutingPlan {
  /** `ip rule add fwmark <mark>[/<mask>] [pref <n>] lookup <table>` */
  policyRules: PolicyRule[];
  /** `ip route add local default dev lo table <table>` */
  localRoutes: LocalRoute[];
  /** Addresses on lo, e.g. `::6/128` (Envoy's inbound-passthrough source for IPv6). */
  loopbackAddresses: string[];
}

export interface RulePlan {
  v4: FamilyRules;
  v6: FamilyRules;
  routing: RoutingPlan;
}

export function familyRules(plan: RulePlan, family: Family): FamilyRules {
  return family === 4 ? plan.v4 : plan.v6;
}

export function emptyRouting(): RoutingPlan {
  return { policyRules: [], localRoutes: [], loopbackAddresses: [] };
}

export function isEmptyTable(t: TableRules | undefined): boolean {
  return !t || (t.chains.length === 0 && t.rules.length === 0 && t.jumps.length === 0);
}

export function isEmptyFamily(f: FamilyRules): boolean {
  return TABLES.every((t) => isEmptyTable(f[t]));
}

/** Chain a `-A CHAIN …` line appends to. */
export function chainOf(line: string): string {
  const m = /^-A (\S+)/.exec(line);
  if (!m) throw new Error(`not an append line: ${line}`);
  return m[1]!;
}

/** Target chain of a jump line (`-j X` or `-g X`), if any. */
export function targetOf(line: string): string | undefined {
  const m = / -[jg] (\S+)/.exec(line);
  return m?.[1];
}

/**
 * The order iptables-save lists a table in: chains sorted by name, rules grouped by chain
 * (built-ins first, in hook order), rule order kept within a chain. Two TableRules with the same
 * canonical form are the same installed state.
 */
export function canonicalTable(t: TableRules | undefined): TableRules {
  if (!t) return { chains: [], rules: [], jumps: [] };
  const chains = [...new Set(t.chains)].sort();
  const byChain = new Map<string, string[]>();
  for (const line of t.rules) {
    const c = chainOf(line);
    byChain.set(c, [...(byChain.get(c) ?? []), line]);
  }
  const rules = [...byChain.keys()].sort().flatMap((c) => byChain.get(c)!);
  const rank = (line: string) => {
    const i = (BUILTIN_CHAINS as readonly string[]).indexOf(chainOf(line));
    return i === -1 ? BUILTIN_CHAINS.length : i;
  };
  const jumps = t.jumps.map((l, i) => ({ l, i })).sort((a, b) => rank(a.l) - rank(b.l) || a.i - b.i).map((x) => x.l);
  return { chains, rules, jumps };
}

export function sameTable(a: TableRules | undefined, b: TableRules | undefined): boolean {
  const ca = canonicalTable(a);
  const cb = canonicalTable(b);
  return JSON.stringify(ca) === JSON.stringify(cb);
}

export function canonicalRouting(r: RoutingPlan): RoutingPlan {
  const byKey = <T>(xs: T[], key: (x: T) => string) => [...new Map(xs.map((x) => [key(x), x])).entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, x]) => x);
  return {
    policyRules: byKey(r.policyRules, (p) => `${p.family} ${policyRuleText(p)}`),
    localRoutes: byKey(r.localRoutes, (p) => `${p.family}/${p.table}`),
    loopbackAddresses: [...new Set(r.loopbackAddresses)].sort(),
  };
}
