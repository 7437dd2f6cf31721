// Reads SHUNT_* iptables state in a network namespace straight from the kernel (iptables-save),
// for `shunt status` and the end-to-end tests. Removal is the iptables backend's job (its
// records, then its sweep), which `shunt cleanup` calls.
import { existsSync } from 'node:fs';
import { runCommand } from '@shunt/netlink';

export type Variant = 'legacy' | 'nft';
export type IpFamily = 4 | 6;

export interface ShuntChains {
  variant: Variant;
  family: IpFamily;
  /** table → our chains in it. */
  tables: Record<string, string[]>;
  /** Packets counted by the rules that redirect (first packets of connections). */
  redirectedPackets: number;
}

const SBIN = ['/usr/sbin', '/sbin', '/usr/bin', '/bin'];
function tool(variant: Variant, family: IpFamily, kind: 'save' | 'restore'): string | null {
  const name = `${family === 4 ? 'iptables' : 'ip6tables'}-${variant}-${kind}`;
  for (const dir of SBIN) if (existsSync(`${dir}/${name}`)) return `${dir}/${name}`;
  return null;
}

/** Parses iptables-save output: our chains per table, the jumps into them, the redirect counters. */
export function parseShuntState(save: string): { tables: Record<string, { chains: string[]; jumps: string[] }>; redirectedPackets: number } {
  const tables: Record<string, { chains: string[]; jumps: string[] }> = {};
  let table = '';
  let redirectedPackets = 0;
  for (const raw of save.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('*')) {
      table = line.slice(1);
      continue;
    }
    const chain = /^:(SHUNT_[A-Z0-9_]+) /.exec(line);
    if (chain && table) {
      (tables[table] ??= { chains: [], jumps: [] }).chains.push(chain[1]!);
      continue;
    }
    // With -c, rules read "[pkts:bytes] -A CHAIN …".
    const rule = /^(?:\[(\d+):\d+\] )?-A (\S+) (.*)$/.exec(line);
    if (!rule || !table) continue;
    const [, pkts, from, rest] = rule;
    if (!from!.startsWith('SHUNT_') && /-j SHUNT_[A-Z0-9_]+(\s|$)/.test(rest!)) {
      (tables[table] ??= { chains: [], jumps: [] }).jumps.push(`${from} ${rest}`);
    }
    if (from!.startsWith('SHUNT_') && /-j (REDIRECT|TPROXY)\b/.test(rest!)) redirectedPackets += Number(pkts ?? 0);
  }
  for (const [t, v] of Object.entries(tables)) if (v.chains.length === 0) delete tables[t];
  return { tables, redirectedPackets };
}

// A read that fails throws: "no SHUNT_ chains" must never be the answer to "iptables-save failed"
// (the old `null` made every "nothing left" check pass when the tool could not run).
async function save(netnsPath: string, variant: Variant, family: IpFamily): Promise<string> {
  const bin = tool(variant, family, 'save');
  if (!bin) throw new Error(`${family === 4 ? 'iptables' : 'ip6tables'}-${variant}-save not found in ${SBIN.join(', ')}: cannot read SHUNT_ chains`);
  try {
    return await runCommand([bin, '-c'], { netns: netnsPath, timeoutMs: 15_000 });
  } catch (err) {
    throw new Error(`${bin} -c in ${netnsPath} failed: ${(err as Error).message}`, { cause: err });
  }
}

/** Our chains in one netns, for every variant and family that has any; throws when any read fails. */
export async function readShuntChains(netnsPath: string): Promise<ShuntChains[]> {
  const found: ShuntChains[] = [];
  for (const variant of ['legacy', 'nft'] as const) {
    for (const family of [4, 6] as const) {
      const text = await save(netnsPath, variant, family);
      if (!text.includes(':SHUNT_')) continue;
      const parsed = parseShuntState(text);
      const tables = Object.fromEntries(Object.entries(parsed.tables).map(([t, v]) => [t, v.chains]));
      if (Object.keys(tables).length) found.push({ variant, family, tables, redirectedPackets: parsed.redirectedPackets });
    }
  }
  return found;
}
