// Turns "what is installed" and "what we want" for one table into one iptables-restore --noflush
// transaction. Pure, so the same function builds the change, the rollback (swap the arguments)
// and the cleanup (desired = undefined).
//
// Inside the transaction: declaring `:SHUNT_X - [0:0]` creates the chain or flushes it (with
// --noflush only declared chains are touched); jumps from built-in chains are kept when already
// right, so a changed rule set keeps its place among other people's rules, and deleted with
// `-D <exact rule>` when stale or duplicated; chains we no longer need are deleted after the flush.
// iptables-restore commits a table all at once or not at all.

import { canonicalTable, chainOf, type Table, type TableRules, sameTable } from './plan';

export function buildTransaction(table: Table, current: TableRules | undefined, desired: TableRules | undefined): string | null {
  if (sameTable(current, desired)) return null;
  const cur = canonicalTable(current);
  // The desired side keeps its authoring order (Istio's), which is easier to review.
  const want: TableRules = desired ?? { chains: [], rules: [], jumps: [] };

  const lines: string[] = [`*${table}`];
  const chains = [...new Set([...want.chains, ...cur.chains])];
  for (const c of chains) lines.push(`:${c} - [0:0]`);

  const wanted = new Set(want.jumps);
  const kept = new Set<string>();
  for (const j of cur.jumps) {
    if (wanted.has(j) && !kept.has(j)) kept.add(j);
  }
  // New jumps are appended after the kept ones; when that would not give the wanted order within a
  // built-in chain (e.g. INVALID_DROP's jump must precede the TPROXY one), that chain's jumps are all
  // re-added, so the installed order always equals the rendered one.
  for (const chain of new Set(want.jumps.map(chainOf))) {
    const wantHere = want.jumps.filter((j) => chainOf(j) === chain);
    const keptHere = [...new Set(cur.jumps.filter((j) => chainOf(j) === chain && kept.has(j)))];
    const result = [...keptHere, ...wantHere.filter((j) => !kept.has(j))];
    if (JSON.stringify(result) !== JSON.stringify(wantHere)) for (const j of keptHere) kept.delete(j);
  }
  const dropped = new Set<string>();
  for (const j of cur.jumps) {
    if (kept.has(j) && !dropped.has(j)) {
      dropped.add(j);
      continue;
    }
    lines.push(`-D${j.slice(2)}`);
  }
  lines.push(...want.rules);
  const wantedChains = new Set(want.chains);
  for (const c of cur.chains) if (!wantedChains.has(c)) lines.push(`-X ${c}`);
  for (const j of want.jumps) if (!kept.has(j)) lines.push(j);
  lines.push('COMMIT', '');
  return lines.join('\n');
}

/** The transaction that installs `desired` into a table holding none of our rules (what the golden files show). */
export function freshRestoreText(table: Table, desired: TableRules): string {
  return buildTransaction(table, undefined, desired) ?? '';
}

/**
 * Installs `desired` into a table that must hold none of our chains: each chain is created with
 * `-N`, which iptables-restore refuses (for the whole table: nothing of it is committed) when the
 * chain exists, where `:SHUNT_X` would create or flush it. A table with none of our chains has no
 * jump to them either, so no read of the table is needed first: a new pod costs one restore run,
 * not a save and a restore. Refused means something of ours is there after all: read and diff.
 */
export function guardedFreshTransaction(table: Table, desired: TableRules): string {
  return [`*${table}`, ...desired.chains.map((c) => `-N ${c}`), ...desired.rules, ...desired.jumps, 'COMMIT', ''].join('\n');
}
