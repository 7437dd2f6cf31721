/**
 * What the hairpin needs in the pod netns besides the programs, set by enroll (the rule and route
 * by prepare() already, for a prepared netns) and undone by unenroll/release (each verified on
 * 6.18 by removing it and watching the hairpinned SYN die):
 *  - a policy rule `fwmark TC_MARK/TC_MARK_MASK iif <if> lookup TC_TABLE` and `local default dev lo` in
 *    that table (IPv4 and IPv6): a hairpinned packet's destination is another host, and an
 *    sk_assign'ed packet still takes the input route; without a local route it is forwarded
 *    (i.e. dropped, forwarding is off in a pod);
 *  - IPv4 only: net.ipv4.conf.<if>.accept_local=1, since the hairpinned packet arrives on eth0
 *    with the pod's own address as source (a martian otherwise). IPv6 has no such check.
 *    rp_filter needs no change: strict mode accepts it too once accept_local is on.
 * The previous accept_local is saved (in tc_pod_meta) and restored; the rule and routes are ours
 * alone (own table, own mark), so removing them restores the netns as found.
 *
 * Speed matters (enroll latency, goal p99 <= 5 ms): rtnetlink requests take rtnl_lock, which
 * other netns/link work on the node holds for long stretches (a tcx attach: a grace period), so a
 * prepared netns gets its rule and route at prepare() time and its enroll sends none; the sysctl
 * is a /proc write without rtnl_lock (devinet_conf_proc). Sysctls are written through /proc/sys from
 * inside the netns (withNetns, no process), rules and routes with @shunt/libbpf's rtnlApply (a raw
 * rtnetlink socket in the netns). Spawning `nsenter ip -batch` twice per enroll measured 66 ms
 * p50 on the 2-core test machine; @shunt/netlink (iproute2) stays the reader for observe/tests.
 */
import * as fs from 'node:fs';
import { destroyClsact, rtnlApply, withNetns, type RtnlOp } from '@shunt/libbpf';
import { runCommand } from '@shunt/netlink';
import { ROUTING, SAVED, STATE, TC_MARK, TC_MARK_MASK, TC_RULE_PRIORITY, TC_TABLE } from './abi';

export interface NetnsChanges {
  state: number;
  saved: number[];
}

const IFNAME_RE = /^[A-Za-z0-9_.@-]{1,15}$/;

/**
 * `iif <pod interface>`: only packets arriving there (the hairpinned ones: bpf_redirect to eth0's
 * ingress) take the local route; a local socket carrying the mark (SO_MARK) is not affected, and a
 * packet from outside the netns has its mark scrubbed at the veth. A delete without iif matches
 * the rule with or without it (rules written before iif was added too).
 */
const ruleOp = (op: 'add' | 'del', family: 4 | 6, iif?: string): RtnlOp => ({ kind: 'rule', op, family, table: TC_TABLE, priority: TC_RULE_PRIORITY, mark: TC_MARK, mask: TC_MARK_MASK, ...(iif ? { iif } : {}) });
const routeOp = (op: 'add' | 'del', family: 4 | 6): RtnlOp => ({ kind: 'route', op, family, table: TC_TABLE });

/** Applies ops; an answer in `tolerated` (EEXIST on add, ENOENT/ESRCH on delete) is success. */
function apply(netnsPath: string, ops: RtnlOp[], tolerated: readonly string[]): void {
  for (const r of rtnlApply(netnsPath, ops))
    if (r.errno !== 0 && !tolerated.includes(r.code))
      throw new Error(`netns ${netnsPath}: ${r.op.kind} ${r.op.op} (IPv${r.op.family}, table ${r.op.table}) failed: ${r.code}`);
}

const sysctlPath = (ifname: string, key: string): string => `/proc/sys/net/ipv4/conf/${ifname}/${key}`;

/** Reads/writes a per-interface IPv4 sysctl of the netns (through /proc/sys while inside it). */
function readSysctl(netnsPath: string, ifname: string, key: string): number {
  return withNetns(netnsPath, () => Number(fs.readFileSync(sysctlPath(ifname, key), 'utf8').trim()));
}

/** Sets a sysctl to `value` in one netns entry; returns what it was (unchanged when equal). */
function swapSysctl(netnsPath: string, ifname: string, key: string, value: number): number {
  return withNetns(netnsPath, () => {
    const before = Number(fs.readFileSync(sysctlPath(ifname, key), 'utf8').trim());
    if (before !== value) fs.writeFileSync(sysctlPath(ifname, key), `${value}\n`);
    return before;
  });
}

function writeSysctl(netnsPath: string, ifname: string, key: string, value: number): void {
  withNetns(netnsPath, () => fs.writeFileSync(sysctlPath(ifname, key), `${value}\n`));
}

/**
 * Makes the netns deliver hairpinned packets locally. Idempotent; `have` is what an earlier
 * enroll already did (its saved values are kept, not overwritten with ours). On failure, what
 * this call added is removed again before it throws (all-or-nothing).
 */
export async function applyNetnsSetup(netnsPath: string, ifname: string, families: ReadonlyArray<4 | 6>, have?: NetnsChanges): Promise<NetnsChanges & { rtnlOps: number }> {
  if (!IFNAME_RE.test(ifname)) throw new Error(`invalid interface name ${JSON.stringify(ifname)}`);
  // rtnlOps: rtnetlink requests sent (each takes rtnl_lock), for enroll's step log.
  const out: NetnsChanges & { rtnlOps: number } = { state: have?.state ?? 0, saved: [...(have?.saved ?? [])], rtnlOps: 0 };
  const added: NetnsChanges = { state: 0, saved: [] };
  try {
    // A /proc write (devinet_conf_proc: no rtnl_lock; only a 1 -> 0 change flushes the route
    // cache), so it stays on the enroll path: a prepared netns whose pod is not ambient never has
    // it changed.
    if (families.includes(4) && !(out.state & STATE.ACCEPT_LOCAL)) {
      const before = swapSysctl(netnsPath, ifname, 'accept_local', 1);
      if (before !== 1) {
        out.saved[SAVED.ACCEPT_LOCAL] = before + 1;
        added.saved[SAVED.ACCEPT_LOCAL] = before + 1;
        out.state |= STATE.ACCEPT_LOCAL;
        added.state |= STATE.ACCEPT_LOCAL;
      }
    }
    for (const family of families) {
      // Written already (at prepare() time, or by an earlier enroll): rtnetlink takes rtnl_lock,
      // which a warm enroll must not wait for (README "Enroll latency").
      if ((out.state & ROUTING[family]) === ROUTING[family]) continue;
      // route add replaces (idempotent); rule add answers EEXIST when the rule is there.
      out.rtnlOps += 2;
      apply(netnsPath, [routeOp('add', family), ruleOp('add', family, ifname)], ['EEXIST']);
      added.state |= ROUTING[family] & ~out.state;
      out.state |= ROUTING[family];
    }
    return out;
  } catch (err) {
    await removeNetnsSetup(netnsPath, ifname, added).catch(() => undefined);
    throw err;
  }
}

/**
 * prepare() time: the policy rule and local route of every family, written before the pod is
 * known. Inert until then: the rule matches only packets arriving on the pod interface carrying
 * TC_MARK, which only our egress program sets (on the packets it hairpins), and only for an
 * address with a tc_pod entry (written by enroll). Returns the
 * ROUTING bits now present (`have` included). IPv6 answering EAFNOSUPPORT (a kernel without
 * IPv6) is skipped; any other failure removes what this call added and throws.
 */
export function applyPreparedRouting(netnsPath: string, ifname: string, have: number): number {
  if (!IFNAME_RE.test(ifname)) throw new Error(`invalid interface name ${JSON.stringify(ifname)}`);
  let state = have;
  try {
    for (const family of [4, 6] as const) {
      if ((state & ROUTING[family]) === ROUTING[family]) continue;
      const res = rtnlApply(netnsPath, [routeOp('add', family), ruleOp('add', family, ifname)]);
      if (family === 6 && res.some((r) => r.code === 'EAFNOSUPPORT')) continue;
      // Recorded before the check: a half-written family (route without rule) is removed too.
      state |= ROUTING[family];
      for (const r of res) if (r.errno !== 0 && r.code !== 'EEXIST') throw new Error(`netns ${netnsPath}: ${r.op.kind} ${r.op.op} (IPv${r.op.family}, table ${r.op.table}) failed: ${r.code}`);
    }
    return state;
  } catch (err) {
    removeRouting(netnsPath, state & ~have);
    throw err;
  }
}

/** Removes the rule/route of the ROUTING bits in `state` (ENOENT: already gone). */
export function removeRouting(netnsPath: string, state: number): void {
  if (!netnsPath || !fs.existsSync(netnsPath)) return;
  for (const family of [4, 6] as const) {
    const rule = family === 4 ? STATE.RULE4 : STATE.RULE6;
    const route = family === 4 ? STATE.ROUTE4 : STATE.ROUTE6;
    const ops = [...(state & rule ? [ruleOp('del', family)] : []), ...(state & route ? [routeOp('del', family)] : [])];
    if (ops.length > 0) apply(netnsPath, ops, ['ENOENT', 'ESRCH']);
  }
}

/** Undoes exactly what `changes` records. A netns that is gone took everything with it. */
export async function removeNetnsSetup(netnsPath: string, ifname: string, changes: NetnsChanges): Promise<void> {
  if (!netnsPath || !fs.existsSync(netnsPath)) return;
  removeRouting(netnsPath, changes.state);
  const saved = changes.saved[SAVED.ACCEPT_LOCAL] ?? 0;
  if (changes.state & STATE.ACCEPT_LOCAL && saved > 0 && IFNAME_RE.test(ifname)) {
    try {
      writeSysctl(netnsPath, ifname, 'accept_local', saved - 1);
    } catch (err) {
      // The interface is gone (pod torn down): its sysctls went with it.
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
}

/** What the netns holds of ours now (for observe() and tests). */
export async function readNetnsSetup(netnsPath: string, ifname: string): Promise<{ rules: Record<string, boolean>; routes: Record<string, boolean>; acceptLocal: number | null }> {
  const rules: Record<string, boolean> = {};
  const routes: Record<string, boolean> = {};
  for (const family of [4, 6] as const) {
    const r = await runCommand(['ip', `-${family}`, 'rule', 'show', 'priority', String(TC_RULE_PRIORITY)], { netns: netnsPath });
    rules[`ipv${family}`] = r.includes(`lookup ${TC_TABLE}`);
    const rt = await runCommand(['ip', `-${family}`, 'route', 'show', 'table', String(TC_TABLE)], { netns: netnsPath }).catch(() => '');
    routes[`ipv${family}`] = /local default dev lo/.test(rt);
  }
  let acceptLocal: number | null = null;
  try {
    acceptLocal = readSysctl(netnsPath, ifname, 'accept_local');
  } catch {
    acceptLocal = null;
  }
  return { rules, routes, acceptLocal };
}

/**
 * The clsact fallback created the interface's clsact qdisc: remove it again, but only while no
 * filter is left on it (someone else's filter added since keeps it, and it stays).
 */
export async function removeOwnClsact(netnsPath: string, ifname: string): Promise<void> {
  if (!netnsPath || !fs.existsSync(netnsPath)) return;
  for (const dir of ['ingress', 'egress']) {
    const out = await runCommand(['tc', '-j', 'filter', 'show', 'dev', ifname, dir], { netns: netnsPath }).catch(() => null);
    if (out === null) return; // interface gone, or no clsact: nothing to remove
    const filters = out.trim() ? (JSON.parse(out) as unknown[]) : [];
    if (filters.length > 0) return;
  }
  destroyClsact(ifname, { netns: netnsPath });
}
