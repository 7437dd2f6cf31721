#!/usr/bin/env node
// `npm run testbed:gc [-- --force]`: removes leftovers of crashed testbed runs (by the shunt-tb- prefix).
import { collectGarbage } from './collect-garbage';

async function main(): Promise<void> {
  const force = process.argv.includes('--force');
  const report = await collectGarbage({ force });
  for (const r of report.removed) {
    console.log(`removed run ${r.runId}: ${r.netns.length} netns${r.cgroup ? ', cgroup tree' : ''}${r.stateDir ? ', state dir' : ''}`);
  }
  for (const id of report.skippedLive) console.log(`skipped run ${id}: its process is alive (use --force to remove anyway)`);
  if (!report.removed.length && !report.skippedLive.length) console.log('no testbed leftovers');
  for (const e of report.errors) console.error(`error: ${e}`);
  process.exitCode = report.errors.length ? 1 : 0;
}

void main().catch((e: unknown) => {
  console.error((e as Error).message);
  process.exitCode = 1;
});
