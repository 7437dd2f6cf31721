// A short digest of a rule plan in canonical form. The backend reports the digest of what it
// reads back from the kernel, so it equals fingerprint(pod) exactly when the installed rules are
// the rendered ones.

import { createHash } from 'node:crypto';
import { canonicalRouting, canonicalTable, FAMILIES, familyRules, isEmptyTable, policyRuleText, type RulePlan, TABLES } from './plan';

/** Version tag: bump when the canonical form changes, so old and new digests never compare equal by accident. */
const FORMAT = 'ipt1';

export function canonicalPlanText(plan: RulePlan): string {
  const parts: string[] = [];
  for (const fam of FAMILIES) {
    for (const table of TABLES) {
      const t = familyRules(plan, fam)[table];
      if (isEmptyTable(t)) continue;
      const c = canonicalTable(t);
      parts.push(`v${fam} ${table}`, ...c.chains.map((x) => `:${x}`), ...c.rules, ...c.jumps);
    }
  }
  const r = canonicalRouting(plan.routing);
  // Sidecar rules (no mask/priority) keep the text they always had, so their digests do not change.
  parts.push(...r.policyRules.map((p) => (p.fwmask === undefined && p.priority === undefined ? `rule v${p.family} fwmark ${p.fwmark} lookup ${p.table}` : `rule v${p.family} ${policyRuleText(p)}`)));
  parts.push(...r.localRoutes.map((p) => `route v${p.family} local default dev lo table ${p.table}`));
  parts.push(...r.loopbackAddresses.map((a) => `addr lo ${a}`));
  return parts.join('\n');
}

export function planFingerprint(plan: RulePlan): string {
  return `${FORMAT}:${createHash('sha256').update(canonicalPlanText(plan)).digest('hex').slice(0, 16)}`;
}
