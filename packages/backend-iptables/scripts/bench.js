#!/usr/bin/env node
// Bench table: direct vs the testbed's hand-written iptables path vs this backend, with the
// testbed's harness (fresh pods per round, A-B-A-B). `shunt bench` runs this backend through the
// real agent; this script measures the backend on its own next to the hand-written rules.
// Runs the workspace's TypeScript sources (no build needed), like the adoption test's child.
//
//   node packages/backend-iptables/scripts/bench.js [--variant nft|legacy] [--rounds N] [--seconds S] [--out DIR]
'use strict';
require('../src/__fixtures__/ts-register.js');
const { runBench, directMode, iptablesHandwrittenMode } = require('@shunt/testbed');
const { iptablesBenchMode } = require('../src/__fixtures__/bench-mode.ts');

function flag(name, dflt) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : dflt;
}

runBench({
  modes: [directMode, iptablesHandwrittenMode, iptablesBenchMode({ variant: flag('variant', 'nft') })],
  rounds: Number(flag('rounds', 3)),
  seconds: Number(flag('seconds', 3)),
  ...(flag('out') ? { outDir: flag('out') } : {}),
}).catch((e) => {
  console.error(`bench failed: ${e.message}`);
  process.exitCode = 1;
});
