// Human-readable form of a plan: the iptables-restore input for a pod netns holding none of our
// rules, per family and table, then the routing commands. Used by the golden files and for logs.

import { canonicalRouting, FAMILIES, familyRules, policyRuleText, type RulePlan, TABLES } from './plan';
import { freshRestoreText } from './transaction';

export function describePlan(plan: RulePlan): string {
  const out: string[] = [];
  for (const fam of FAMILIES) {
    for (const table of TABLES) {
      const t = familyRules(plan, fam)[table];
      if (!t) continue;
      out.push(`# ${fam === 4 ? 'iptables' : 'ip6tables'}-restore --noflush (${table})`, freshRestoreText(table, t).trimEnd());
    }
  }
  const r = canonicalRouting(plan.routing);
  const routing = [
    ...r.policyRules.map((p) => `ip -${p.family} rule add ${policyRuleText(p)}`),
    ...r.localRoutes.map((p) => `ip -${p.family} route add local default dev lo table ${p.table}`),
    ...r.loopbackAddresses.map((a) => `ip -6 addr add ${a} dev lo`),
  ];
  if (routing.length > 0) out.push('# routing (through @shunt/netlink)', ...routing);
  if (out.length === 0) out.push('# nothing to install');
  return `${out.join('\n')}\n`;
}
