#!/usr/bin/env node
// Bench table: direct vs the testbed's hand-written iptables path vs this backend, with the
// testbed's harness (fresh pods per round, A-B-A-B). The agent's `npm run bench` wires the same
// mode in; this script exists to produce the numbers for the iptables backend on its own.
// Needs the testbed, netlink, core and this package built.
//
//   node packages/backend-iptables/scripts/bench.js [--variant nft|legacy] [--rounds N] [--seconds S] [--out DIR]
'use strict';
const { runBench, directMode, iptablesHandwrittenMode } = require('@shunt/testbed');
const { iptablesBenchMode } = require('../dist');

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
