#!/usr/bin/env node
// `npm run bench [-- --rounds N --seconds S --connections C --out DIR]`: direct vs the hand-written
// iptables sidecar path. The agent's `shunt bench` calls runBench with backend modes added.
import { runBench } from './benchmark/run-bench';

function flag(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

function num(name: string): number | undefined {
  const v = flag(name);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new Error(`--${name} ${JSON.stringify(v)}: want a number`);
  return n;
}

async function main(): Promise<void> {
  const rounds = num('rounds');
  const seconds = num('seconds');
  const wrkConnections = num('connections');
  const outDir = flag('out');
  await runBench({
    ...(rounds !== undefined ? { rounds } : {}),
    ...(seconds !== undefined ? { seconds } : {}),
    ...(wrkConnections !== undefined ? { wrkConnections } : {}),
    ...(outDir !== undefined ? { outDir } : {}),
  });
}

void main().catch((e: unknown) => {
  console.error(`bench failed: ${(e as Error).message}`);
  process.exitCode = 1;
});
