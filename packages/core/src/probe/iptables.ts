// Which iptables the kernel actually evaluates, found the way istio-iptables does: a functional test,
// not a version check. In a scratch network namespace each variant appends a counting rule, a UDP
// datagram is sent over loopback, and the rule's packet counter must have moved. TPROXY is usable when
// the mangle-table TPROXY target is accepted there. The variant choice then follows Istio: legacy when
// the host already has legacy rules (kube-proxy or the CNI chose it), else nft, else legacy.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import type { Feature } from '../types';
import { firstLine, run, type RunResult } from './run';

export type IptablesVariant = 'legacy' | 'nft';

export interface IptablesProbe {
  legacy: Feature;
  nft: Feature;
  tproxy: Feature;
  variant: IptablesVariant | null;
  variantEvidence: string;
}

const BIN: Record<IptablesVariant, string> = { legacy: 'iptables-legacy', nft: 'iptables-nft' };

/** Istio's rule: respect existing legacy rules, else prefer nft, else legacy. */
export function chooseVariant(legacyWorks: boolean, nftWorks: boolean, hostLegacyRuleLines: number): { variant: IptablesVariant | null; why: string } {
  if (legacyWorks && hostLegacyRuleLines >= 3) return { variant: 'legacy', why: `the host netns already has ${hostLegacyRuleLines} lines of iptables-legacy rules` };
  if (nftWorks) return { variant: 'nft', why: 'iptables-nft works and the host has no legacy rules' };
  if (legacyWorks) return { variant: 'legacy', why: 'only iptables-legacy works' };
  return { variant: null, why: 'neither iptables-legacy nor iptables-nft works' };
}

const ruleLines = (save: RunResult) => save.stdout.split('\n').filter((l) => l.trim() !== '' && !l.startsWith('#')).length;

async function versionOf(v: IptablesVariant): Promise<{ ok: boolean; text: string }> {
  const r = await run(BIN[v], ['--version']);
  const text = firstLine(r.stdout) || firstLine(r.stderr) || `exit ${r.code}`;
  return { ok: r.code === 0, text };
}

export const PROBE_NETNS_PREFIX = 'shunt-probe-';

/** Scratch netns of probes whose process is gone (`shunt-probe-<pid>-<rand>`); returns the names removed. */
export async function removeOrphanedProbeNetns(dir = '/var/run/netns'): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    const m = new RegExp(`^${PROBE_NETNS_PREFIX}(\\d+)-[0-9a-f]+$`).exec(name);
    if (!m) continue;
    const pid = Number(m[1]);
    if (pid === process.pid || processAlive(pid)) continue;
    const del = await run('ip', ['netns', 'del', name]);
    if (del.code === 0) removed.push(name);
  }
  return removed;
}

const SCRATCH_SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

/**
 * While the scratch netns exists, a SIGINT/SIGTERM/SIGHUP removes it first (Ctrl-C during an
 * agent's or doctor's start-up would otherwise leave it until the next probe). Then the signal
 * takes its course: when nobody else listens for it, its default action (the process ends), as it
 * would have without this handler. Returns the disarm function.
 */
function removeOnSignal(ns: string): () => void {
  const onSignal = (sig: NodeJS.Signals): void => {
    disarm();
    spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore', timeout: 5000 });
    if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
  };
  const disarm = (): void => {
    for (const sig of SCRATCH_SIGNALS) process.off(sig, onSignal);
  };
  for (const sig of SCRATCH_SIGNALS) process.on(sig, onSignal);
  return disarm;
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export async function probeIptables(opts: { scratch: boolean }): Promise<IptablesProbe> {
  const versions = { legacy: await versionOf('legacy'), nft: await versionOf('nft') };
  const hostLegacy = versions.legacy.ok ? ruleLines(await run('iptables-legacy-save', [])) : 0;

  if (!opts.scratch) {
    const f = (v: IptablesVariant): Feature => ({
      available: versions[v].ok,
      evidence: versions[v].ok ? `${BIN[v]} --version: ${versions[v].text}; functional test skipped (iptablesScratch=false)` : `${BIN[v]} --version failed: ${versions[v].text}`,
    });
    const c = chooseVariant(versions.legacy.ok, versions.nft.ok, hostLegacy);
    return {
      legacy: f('legacy'),
      nft: f('nft'),
      tproxy: { available: false, evidence: 'not probed (iptablesScratch=false)' },
      variant: c.variant,
      variantEvidence: c.why,
    };
  }

  // The creator's pid is in the name, so a probe killed before its `finally` (SIGKILL during start-up;
  // other signals remove it, removeOnSignal) leaves a netns the next probe (or `shunt cleanup`) can
  // tell is orphaned and remove.
  await removeOrphanedProbeNetns();
  const ns = `${PROBE_NETNS_PREFIX}${process.pid}-${randomBytes(4).toString('hex')}`;
  const nsPath = `/var/run/netns/${ns}`;
  const inNs = (file: string, args: string[]) => run('nsenter', [`--net=${nsPath}`, file, ...args]);
  const disarm = removeOnSignal(ns);
  const add = await run('ip', ['netns', 'add', ns]);
  if (add.code !== 0) {
    disarm();
    const why = `cannot create scratch netns ${ns}: ${firstLine(add.stderr)}`;
    const failed = { available: false, evidence: why };
    return { legacy: failed, nft: failed, tproxy: failed, variant: null, variantEvidence: why };
  }
  try {
    await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    const results = {} as Record<IptablesVariant, Feature>;
    const rule = ['-t', 'filter', '-A', 'OUTPUT', '-o', 'lo', '-p', 'udp', '--dport', '9', '-m', 'comment', '--comment', 'shunt-probe', '-j', 'ACCEPT'];
    for (const v of ['legacy', 'nft'] as const) {
      if (!versions[v].ok) {
        results[v] = { available: false, evidence: `${BIN[v]} --version failed: ${versions[v].text}` };
        continue;
      }
      const r = await inNs(BIN[v], rule);
      results[v] = r.code === 0 ? { available: false, evidence: '' } : { available: false, evidence: `${BIN[v]} ${rule.join(' ')} in netns ${ns}: exit ${r.code}: ${firstLine(r.stderr)}` };
    }
    // One datagram over loopback; every variant whose rule the kernel evaluates counts it.
    await inNs('bash', ['-c', 'echo shunt-probe > /dev/udp/127.0.0.1/9']);
    for (const v of ['legacy', 'nft'] as const) {
      if (results[v].evidence !== '') continue;
      const save = await inNs(`${BIN[v]}-save`, ['-c', '-t', 'filter']);
      const line = save.stdout.split('\n').find((l) => l.includes('shunt-probe'));
      const packets = Number(/^\[(\d+):/.exec(line ?? '')?.[1] ?? 0);
      results[v] = {
        available: packets > 0,
        evidence: `${versions[v].text}: counting rule in scratch netns ${ns} saw ${packets} packet(s) of 1 sent over lo`,
      };
    }
    const c = chooseVariant(results.legacy.available, results.nft.available, hostLegacy);
    let tproxy: Feature = { available: false, evidence: 'no working iptables variant to test TPROXY with' };
    if (c.variant) {
      const args = ['-t', 'mangle', '-A', 'PREROUTING', '-p', 'tcp', '-j', 'TPROXY', '--on-port', '15006', '--tproxy-mark', '0x539/0xffffffff'];
      const t = await inNs(BIN[c.variant], args);
      tproxy = {
        available: t.code === 0,
        evidence: `${BIN[c.variant]} ${args.join(' ')} in scratch netns ${ns}: ${t.code === 0 ? 'accepted' : `exit ${t.code}: ${firstLine(t.stderr)}`}`,
      };
    }
    return { legacy: results.legacy, nft: results.nft, tproxy, variant: c.variant, variantEvidence: c.why };
  } finally {
    await run('ip', ['netns', 'del', ns]);
    disarm();
  }
}
