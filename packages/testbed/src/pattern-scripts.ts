import * as path from 'node:path';

/**
 * The splice suites' pattern-stream apps (scripts/, plain Node.js, run with process.execPath as
 * processes in testbed pods): `server` is pattern-server.js (argv: port [host]); `lib` is
 * pattern.js (pattern/check/writeAll), which each suite's own client requires as
 * '@shunt/testbed/scripts/pattern'. Resolved from src/ and dist/ alike.
 */
export const PATTERN_SCRIPTS = {
  server: path.resolve(__dirname, '..', 'scripts', 'pattern-server.js'),
  lib: path.resolve(__dirname, '..', 'scripts', 'pattern.js'),
} as const;
