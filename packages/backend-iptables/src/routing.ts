// TPROXY's policy routing and the ::6 passthrough address, read and written through @shunt/netlink.
// Only entries matching our mark and table (and ::6 on lo) are ever read or touched.

import { Netlink, NetlinkError } from '@shunt/netlink';
import type { Family } from './addr';
import type { RenderOptions } from './options';
import { canonicalRouting, type LocalRoute, type PolicyRule, policyRuleText, type RoutingPlan } from './plan';
import { AMBIENT, inpodPolicyRule } from './render-ambient';

const PASSTHROUGH_V6 = '::6/128';

function tableMissing(e: unknown): boolean {
  return e instanceof NetlinkError && /FIB table does not exist/i.test(e.stderr);
}

export interface RoutingRead {
  families: Family[];
  /** Read the mark rule and the local route (skipped for pods that never had TPROXY, to save two `ip` runs). */
  policy: boolean;
  /** Read ambient's in-pod connmark rule and its local route (pods that are or were ambient). */
  inpod?: boolean;
  /**
   * Read whether ::6/128 is on lo (sidecar pods with IPv6; default true). Ambient pods never add
   * it, and one that is there anyway (ours from an earlier sidecar life, or someone else's) must
   * not count as drift of their rules.
   */
  passthrough?: boolean;
}

async function hasLocalDefault(nl: Netlink, family: Family, table: number): Promise<boolean> {
  let routes: Awaited<ReturnType<Netlink['routes']>> = [];
  try {
    routes = await nl.routes({ family, table });
  } catch (e) {
    if (!tableMissing(e)) throw e;
  }
  return routes.some((r) => r.type === 'local' && r.dst === 'default' && r.dev === 'lo');
}

export async function readRouting(nl: Netlink, what: RoutingRead, opts: RenderOptions): Promise<RoutingPlan> {
  const plan: RoutingPlan = { policyRules: [], localRoutes: [], loopbackAddresses: [] };
  for (const family of what.families) {
    if (what.policy) {
      const rules = await nl.rules({ family });
      if (rules.some((r) => r.fwmark === opts.tproxyMark && (r.fwmask === undefined || r.fwmask === 0xffffffff) && r.table === String(opts.tproxyTable))) {
        plan.policyRules.push({ family, fwmark: opts.tproxyMark, table: opts.tproxyTable });
      }
      if (await hasLocalDefault(nl, family, opts.tproxyTable)) plan.localRoutes.push({ family, table: opts.tproxyTable });
    }
    if (what.inpod) {
      const want = inpodPolicyRule(family);
      const rules = await nl.rules({ family });
      if (rules.some((r) => r.fwmark === want.fwmark && r.fwmask === want.fwmask && r.priority === want.priority && r.table === String(want.table))) {
        plan.policyRules.push(want);
      }
      if (AMBIENT.routeTable !== opts.tproxyTable || !what.policy) {
        if (await hasLocalDefault(nl, family, AMBIENT.routeTable)) plan.localRoutes.push({ family, table: AMBIENT.routeTable });
      }
    }
    if (family === 6 && what.passthrough !== false) {
      const addrs = await nl.addresses({ family: 6, dev: 'lo' });
      if (addrs.some((a) => a.cidr === PASSTHROUGH_V6)) plan.loopbackAddresses.push(PASSTHROUGH_V6);
    }
  }
  return canonicalRouting(plan);
}

const ruleKey = (r: PolicyRule) => `${r.family} ${policyRuleText(r)}`;
const routeKey = (r: LocalRoute) => `${r.family}/${r.table}`;

export interface RoutingChange {
  addRules: PolicyRule[];
  addRoutes: LocalRoute[];
  addAddresses: string[];
  delRules: PolicyRule[];
  delRoutes: LocalRoute[];
}

/**
 * What to add and delete to go from `current` to `desired`. The ::6 address is never deleted:
 * Istio never removes it either, it is harmless, and we cannot tell whether we added it.
 */
export function routingChange(current: RoutingPlan, desired: RoutingPlan): RoutingChange {
  const has = <T>(xs: T[], key: (x: T) => string, x: T) => xs.some((y) => key(y) === key(x));
  return {
    addRules: desired.policyRules.filter((r) => !has(current.policyRules, ruleKey, r)),
    addRoutes: desired.localRoutes.filter((r) => !has(current.localRoutes, routeKey, r)),
    addAddresses: desired.loopbackAddresses.filter((a) => !current.loopbackAddresses.includes(a)),
    delRules: current.policyRules.filter((r) => !has(desired.policyRules, ruleKey, r)),
    delRoutes: current.localRoutes.filter((r) => !has(desired.localRoutes, routeKey, r)),
  };
}

/** Additions go in before the TPROXY rules need them. */
export async function applyRoutingAdditions(nl: Netlink, c: RoutingChange): Promise<void> {
  for (const a of c.addAddresses) await nl.addAddress('lo', a);
  for (const r of c.addRoutes) await nl.replaceRoute({ family: r.family, type: 'local', dst: 'default', dev: 'lo', table: r.table });
  for (const r of c.addRules) await nl.addRule(ruleSpec(r));
}

/** Deletions go after the rules that used them are gone. */
export async function applyRoutingDeletions(nl: Netlink, c: Pick<RoutingChange, 'delRules' | 'delRoutes'>): Promise<void> {
  for (const r of c.delRules) await nl.deleteRule(ruleSpec(r), { ignoreMissing: true });
  for (const r of c.delRoutes) await nl.deleteRoute({ family: r.family, type: 'local', dst: 'default', dev: 'lo', table: r.table }, { ignoreMissing: true });
}

function ruleSpec(r: PolicyRule): Parameters<Netlink['addRule']>[0] {
  return { family: r.family, fwmark: r.fwmark, table: r.table, ...(r.fwmask === undefined ? {} : { fwmask: r.fwmask }), ...(r.priority === undefined ? {} : { priority: r.priority }) };
}
