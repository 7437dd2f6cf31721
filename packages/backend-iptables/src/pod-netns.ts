// Reads back and changes our rules in one pod netns. A change is: routing additions, then one
// iptables-restore transaction per family and table that differs, then routing deletions. If a
// transaction is refused, the tables already changed are put back as they were (the rollback is
// the same pure transaction with the two states swapped) and the error names the pod.

import type { PodRef } from '@shunt/core';
import { Netlink } from '@shunt/netlink';
import type { Family } from './addr';
import { podName, RestoreError } from './errors';
import { NetnsIptables, RestoreRefused, type IptablesRunOptions } from './netns-iptables';
import type { RenderOptions } from './options';
import { emptyRouting, type FamilyRules, familyRules, type RulePlan, type Table, TABLES, type TableRules } from './plan';
import { applyRoutingAdditions, applyRoutingDeletions, readRouting, type RoutingRead, routingChange } from './routing';
import { parseSave, type SavedFamily } from './save';
import { buildTransaction } from './transaction';

export interface Installed {
  plan: RulePlan;
  saved: Partial<Record<Family, SavedFamily>>;
}

export interface ApplyResult {
  /** Whether anything in the kernel was changed. */
  changed: boolean;
  /** Restore transactions run (0 when the rules were already right). */
  transactions: number;
}

interface Tx {
  family: Family;
  table: Table;
  text: string;
  before: TableRules | undefined;
  after: TableRules | undefined;
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

  /** Makes our state in this netns equal `desired` for `families` (an empty plan removes everything of ours). */
  async apply(pod: PodRef, desired: RulePlan, families: Family[], routing: RoutingRead): Promise<ApplyResult> {
    const current = (await this.readInstalled(families, routing)).plan;
    const route = routingChange(current.routing, desired.routing);
    const txs: Tx[] = [];
    for (const family of families) {
      for (const table of TABLES) {
        const before = familyRules(current, family)[table];
        const after = familyRules(desired, family)[table];
        const text = buildTransaction(table, before, after);
        if (text) txs.push({ family, table, text, before, after });
      }
    }
    const routingChanges = route.addRules.length + route.addRoutes.length + route.addAddresses.length + route.delRules.length + route.delRoutes.length;
    if (txs.length === 0 && routingChanges === 0) return { changed: false, transactions: 0 };

    try {
      await applyRoutingAdditions(this.nl, route);
    } catch (e) {
      const rollbackError = await this.rollback([], route);
      throw new Error(`pod ${podName(pod)}: TPROXY policy routing in ${this.netnsPath} failed: ${(e as Error).message}` + (rollbackError ? `; undoing it also failed: ${rollbackError}` : ''));
    }
    const done: Tx[] = [];
    for (const tx of txs) {
      try {
        await this.ipt.restore(tx.family, tx.text);
        done.push(tx);
      } catch (e) {
        const refused = e instanceof RestoreRefused ? e : new RestoreRefused(this.ipt.restoreArgv(tx.family), (e as Error).message);
        const rollbackError = await this.rollback(done, route);
        throw new RestoreError(pod, tx.family, tx.table, refused.command, refused.output, tx.text, rollbackError);
      }
    }
    await applyRoutingDeletions(this.nl, route);
    return { changed: true, transactions: txs.length };
  }

  /** Puts changed tables back and removes routing we just added; returns what failed, if anything. */
  private async rollback(done: Tx[], route: ReturnType<typeof routingChange>): Promise<string | undefined> {
    const failures: string[] = [];
    for (const tx of [...done].reverse()) {
      const undo = buildTransaction(tx.table, tx.after, tx.before);
      if (!undo) continue;
      try {
        await this.ipt.restore(tx.family, undo);
      } catch (e) {
        failures.push(`v${tx.family} ${tx.table}: ${(e as Error).message}`);
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
