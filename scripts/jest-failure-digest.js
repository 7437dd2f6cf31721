// A jest reporter that appends every failed test (and every suite that failed to run) to the
// file named by SHUNT_TEST_DIGEST. scripts/test.sh prints that file at the very end of a red run:
// CI keeps only the tail of the output, and the failure itself scrolls out of it long before.
'use strict';
const fs = require('node:fs');

const ANSI = /\x1b\[[0-9;]*m/g;
const MAX_LINES = 40;

function clip(text) {
  const lines = String(text).replace(ANSI, '').split('\n').filter((l) => !/^\s+at .*\/node_modules\//.test(l));
  return lines.length > MAX_LINES ? [...lines.slice(0, MAX_LINES), `  … ${lines.length - MAX_LINES} more lines`].join('\n') : lines.join('\n');
}

class FailureDigestReporter {
  onRunComplete(_contexts, results) {
    const file = process.env.SHUNT_TEST_DIGEST;
    if (!file) return;
    const out = [];
    for (const suite of results.testResults) {
      if (suite.testExecError) out.push(`FAILED TO RUN ${suite.testFilePath}\n${clip(suite.testExecError.message ?? suite.failureMessage ?? '')}`);
      for (const t of suite.testResults) {
        if (t.status !== 'failed') continue;
        out.push(`FAILED ${suite.testFilePath}\n  ${t.fullName}\n${clip(t.failureMessages.join('\n'))}`);
      }
    }
    if (out.length) fs.appendFileSync(file, `${out.join('\n\n')}\n\n`);
  }
}

module.exports = FailureDigestReporter;
