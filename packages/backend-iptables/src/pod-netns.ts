// Reads back and changes our rules in one pod netns. A change is: routing additions, then one
// iptables-restore run per family whose input holds a transaction for each table that differs
// (raw, mangle, nat, each ending in its own COMMIT), then routing deletions. Both variants commit
// table by table, so a refused run may have committed the tables before the one that failed: the
// families touched are read back and every table put back as it was (the rollback is the same pure
// transaction, from what is there now to what was there before), and the error names the pod.

import type { PodRef } from '@shunt/core';
import { Netlink } from '@shunt/netlink';
import type { Family } from './addr';
import { podName, RestoreError } from './errors';
import { NetnsIptables, RestoreRefused, type IptablesRunOptions } from './netns-iptables';
import type { RenderOptions } from './options';
import { emptyRouting, type FamilyRules, familyRules, type RulePlan, type Table, TABLES, type TableRules } from './plan';
import { applyRoutingAdditions, applyRoutingDeletions, readRouting, type RoutingRead, routingChange } from './routing';
import { parseSave, type SavedFamily } from './save';
import { buildTransaction, guardedFreshTransaction } from './transaction';

export interface Installed {
  plan: RulePlan;
  saved: Partial<Record<Family, SavedFamily>>;
}

export interface ApplyResult {
  /** Whether anything in the kernel was changed. */
  changed: boolean;
  /** Table transactions committed (0 when the rules were already right); one restore run per family holds them. */
  transactions: number;
}

interface TableTx {
  table: Table;
  before: TableRules | undefined;
  after: TableRules | undefined;
  /** 1-based line range of this table's transaction in the family's restore input. */
  firstLine: number;
  lastLine: number;
}

interface FamilyTx {
  family: Family;
  tables: TableTx[];
  text: string;
}

/** One restore input for a family: the tables' transactions back to back, with their line ranges. */
function familyTx(family: Family, current: RulePlan, desired: RulePlan): FamilyTx | null {
  const tables: TableTx[] = [];
  let text = '';
  let line = 1;
  for (const table of TABLES) {
    const before = familyRules(current, family)[table];
    const after = familyRules(desired, family)[table];
    const t = buildTransaction(table, before, after);
    if (!t) continue;
    const lines = t.endsWith('\n') ? t.split('\n').length - 1 : t.split('\n').length;
    tables.push({ table, before, after, firstLine: line, lastLine: line + lines - 1 });
    line += lines;
    text += t;
  }
  return tables.length ? { family, tables, text } : null;
}

/** The table whose transaction holds the line iptables-restore blamed ("Error occurred at line: N", "line N failed"). */
function blamedTable(tx: FamilyTx, output: string): string {
  const m = /line:? (\d+)/i.exec(output);
  const n = m ? Number(m[1]) : NaN;
  const hit = tx.tables.find((t) => n >= t.firstLine && n <= t.lastLine);
  return hit ? hit.table : tx.tables.map((t) => t.table).join('+');
}

function oursOf(saved: SavedFamily): FamilyRules {
  const out: FamilyRules = {};
  for (const t of TABLES) {
    const s = saved[t];
    if (s && (s.ours.chains.length || s.ours.rules.length || s.ours.jumps.length)) out[t] = s.ours;
  }
  return out;
}

export class PodNetns {
  readonly ipt: NetnsIptables;
  readonly nl: Netlink;

  constructor(
    readonly netnsPath: string,
    run: IptablesRunOptions,
    private readonly renderOpts: RenderOptions,
  ) {
    this.ipt = new NetnsIptables(netnsPath, run);
    this.nl = Netlink.at(netnsPath);
  }

  async readInstalled(families: Family[], routing: RoutingRead): Promise<Installed> {
    const plan: RulePlan = { v4: {}, v6: {}, routing: emptyRouting() };
    const saved: Installed['saved'] = {};
    for (const fam of families) {
      const s = parseSave(await this.ipt.save(fam));
      saved[fam] = s;
      if (fam === 4) plan.v4 = oursOf(s);
      else plan.v6 = oursOf(s);
    }
    plan.routing = await readRouting(this.nl, routing, this.renderOpts);
    return { plan, saved };
  }

  /**
   * For a pod with no record (nothing of ours should be in its netns): installs `desired` with one
   * guarded restore and no read first (see guardedFreshTransaction). Undefined when it does not
   * apply (more than one table or family, routing wanted: TPROXY, IPv6's passthrough address) or
   * when the restore is refused (nothing committed) — then the caller runs apply(), which reads
   * what is there and makes it right, with its rollback.
   */
  async installFresh(desired: RulePlan, families: Family[]): Promise<ApplyResult | undefined> {
    const r = desired.routing;
    if (r.policyRules.length + r.localRoutes.length + r.loopbackAddresses.length > 0) return undefined;
    const txs: Array<{ family: Family; text: string; tables: number }> = [];
    for (const family of families) {
      const rules = familyRules(desired, family);
      const tables = TABLES.filter((t) => {
        const tr = rules[t];
        return tr !== undefined && (tr.chains.length > 0 || tr.rules.length > 0 || tr.jumps.length > 0);
      });
      if (tables.length > 0) txs.push({ family, text: tables.map((t) => guardedFreshTransaction(t, rules[t]!)).join(''), tables: tables.length });
    }
    // One table of one family only (an IPv4 REDIRECT pod: nat): a refused run then has committed
    // nothing. With more, a refusal after a committed table would leave part of a rule set if the
    // fallback failed too (apply() rolls back to what it read), so those take the usual path.
    if (txs.length !== 1 || txs[0]!.tables !== 1) return undefined;
    const tx = txs[0]!;
    try {
      await this.ipt.restore(tx.family, tx.text);
    } catch {
      return undefined;
    }
    return { changed: true, transactions: 1 };
  }

  /** Makes our state in this netns equal `desired` for `families` (an empty plan removes everything of ours). */
  async apply(pod: PodRef, desired: RulePlan, families: Family[], routing: RoutingRead): Promise<ApplyResult> {
    const current = (await this.readInstalled(families, routing)).plan;
    const route = routingChange(current.routing, desired.routing);
    const txs = families
      .map((f) => familyTx(f, current, desired))
      .filter((t): t is FamilyTx => t !== null);
    const routingChanges = route.addRules.length + route.addRoutes.length + route.addAddresses.length + route.delRules.length + route.delRoutes.length;
    if (txs.length === 0 && routingChanges === 0) return { changed: false, transactions: 0 };

    try {
      await applyRoutingAdditions(this.nl, route);
    } catch (e) {
      const rollbackError = await this.rollback([], route);
      throw new Error(`pod ${podName(pod)}: TPROXY policy routing in ${this.netnsPath} failed: ${(e as Error).message}` + (rollbackError ? `; undoing it also failed: ${rollbackError}` : ''));
    }
    const started: FamilyTx[] = [];
    for (const tx of txs) {
      started.push(tx);
      try {
        await this.ipt.restore(tx.family, tx.text);
      } catch (e) {
        const refused = e instanceof RestoreRefused ? e : new RestoreRefused(this.ipt.restoreArgv(tx.family), (e as Error).message);
        const rollbackError = await this.rollback(started, route);
        throw new RestoreError(pod, tx.family, blamedTable(tx, refused.output), refused.command, refused.output, tx.text, rollbackError);
      }
    }
    await applyRoutingDeletions(this.nl, route);
    return { changed: true, transactions: txs.reduce((n, t) => n + t.tables.length, 0) };
  }

  /**
   * Puts every table of the started families back as it was, whatever part of them was committed
   * (read back, not guessed), and removes routing we just added; returns what failed, if anything.
   */
  private async rollback(started: FamilyTx[], route: ReturnType<typeof routingChange>): Promise<string | undefined> {
    const failures: string[] = [];
    for (const tx of [...started].reverse()) {
      try {
        const now = oursOf(parseSave(await this.ipt.save(tx.family)));
        const undo = tx.tables.map((t) => buildTransaction(t.table, now[t.table], t.before) ?? '').join('');
        if (undo) await this.ipt.restore(tx.family, undo);
      } catch (e) {
        failures.push(`v${tx.family}: ${(e as Error).message}`);
      }
    }
    try {
      await applyRoutingDeletions(this.nl, { delRules: route.addRules, delRoutes: route.addRoutes });
    } catch (e) {
      failures.push(`routing: ${(e as Error).message}`);
    }
    return failures.length ? failures.join('; ') : undefined;
  }
}
