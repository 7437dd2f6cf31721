// Reads our part of an iptables-save dump: SHUNT_* chains, their rules, the jumps into them from
// built-in chains, and packet counters when the dump was taken with -c. Everything else is ignored.

import { BUILTIN_CHAINS, CHAIN_PREFIX, chainOf, type Table, type TableRules, targetOf } from './plan';

export interface Counter {
  packets: number;
  bytes: number;
}

export interface SavedTable {
  ours: TableRules;
  /** Counters of our rules and jumps, in dump order (empty without -c). */
  counters: { line: string; counter: Counter }[];
  /** Every rule line of the table (without counters), ours or not: for before/after comparisons. */
  all: string[];
}

export type SavedFamily = Partial<Record<Table, SavedTable>>;

const COUNTER_RE = /^\[(\d+):(\d+)\] (.*)$/;

export function parseSave(text: string): SavedFamily {
  const out: SavedFamily = {};
  let cur: SavedTable | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.trimEnd();
    if (line === '' || line.startsWith('#')) continue;
    if (line.startsWith('*')) {
      const name = line.slice(1);
      cur = { ours: { chains: [], rules: [], jumps: [] }, counters: [], all: [] };
      if (name === 'nat' || name === 'mangle' || name === 'raw') out[name] = cur;
      continue;
    }
    if (!cur) continue;
    if (line === 'COMMIT') {
      cur = undefined;
      continue;
    }
    if (line.startsWith(':')) {
      const chain = line.slice(1).split(' ')[0]!;
      if (chain.startsWith(CHAIN_PREFIX)) cur.ours.chains.push(chain);
      continue;
    }
    const m = COUNTER_RE.exec(line);
    const rule = m ? m[3]! : line;
    if (!rule.startsWith('-A ')) continue;
    cur.all.push(rule);
    const chain = chainOf(rule);
    const target = targetOf(rule);
    let mine = false;
    if (chain.startsWith(CHAIN_PREFIX)) {
      cur.ours.rules.push(rule);
      mine = true;
    } else if ((BUILTIN_CHAINS as readonly string[]).includes(chain) && target?.startsWith(CHAIN_PREFIX)) {
      // Only jumps from built-in chains are ours; a foreign chain jumping to us is left alone.
      cur.ours.jumps.push(rule);
      mine = true;
    }
    if (mine && m) cur.counters.push({ line: rule, counter: { packets: Number(m[1]), bytes: Number(m[2]) } });
  }
  return out;
}
