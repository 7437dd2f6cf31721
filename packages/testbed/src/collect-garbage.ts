import { existsSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { deleteNetns, listNetns } from '@shunt/netlink';
import { cgroup2Mount, removeCgroupTree } from './cgroup';
import { runIdOfNetns, runPrefix } from './names';
import { ownerAlive, readOwner } from './owner';

const RUN_DIR_RE = /^shunt-tb-([0-9a-f]{4})$/;

export interface GcReport {
  /** Runs whose leftovers were removed. */
  removed: { runId: string; netns: string[]; cgroup: boolean; stateDir: boolean }[];
  /** Runs left alone because their owning process is alive. */
  skippedLive: string[];
  errors: string[];
}

/**
 * Removes leftovers of crashed testbed runs: netns named shunt-tb-<id>-*, the cgroup tree
 * <cgroup2>/shunt-tb-<id> (killing what still runs in it) and the state dir. A run whose owner
 * process is still alive is skipped unless `force`. Nothing without the shunt-tb-<4 hex> prefix is
 * ever touched.
 */
export async function collectGarbage(opts: { force?: boolean; onlyRunIds?: string[] } = {}): Promise<GcReport> {
  const cgRoot = cgroup2Mount();
  const tmp = os.tmpdir();
  const netns = await listNetns();
  const runIds = new Set<string>();
  for (const n of netns) {
    const id = runIdOfNetns(n);
    if (id) runIds.add(id);
  }
  for (const dir of [cgRoot, tmp]) {
    for (const e of safeReaddir(dir)) {
      const m = RUN_DIR_RE.exec(e);
      if (m) runIds.add(m[1]!);
    }
  }
  const report: GcReport = { removed: [], skippedLive: [], errors: [] };
  for (const runId of [...runIds].sort()) {
    if (opts.onlyRunIds && !opts.onlyRunIds.includes(runId)) continue;
    const stateDir = path.join(tmp, runPrefix(runId));
    if (!opts.force && ownerAlive(readOwner(stateDir))) {
      report.skippedLive.push(runId);
      continue;
    }
    const entry = { runId, netns: [] as string[], cgroup: false, stateDir: false };
    const cg = path.join(cgRoot, runPrefix(runId));
    try {
      if (existsSync(cg)) {
        await removeCgroupTree(cg);
        entry.cgroup = true;
      }
    } catch (e) {
      report.errors.push(`${cg}: ${(e as Error).message}`);
    }
    for (const n of netns.filter((x) => runIdOfNetns(x) === runId)) {
      try {
        await deleteNetns(n, { ignoreMissing: true });
        entry.netns.push(n);
      } catch (e) {
        report.errors.push(`netns ${n}: ${(e as Error).message}`);
      }
    }
    if (existsSync(stateDir)) {
      rmSync(stateDir, { recursive: true, force: true });
      entry.stateDir = true;
    }
    report.removed.push(entry);
  }
  return report;
}

function safeReaddir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}
