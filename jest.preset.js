// Shared jest set-up: ts-jest (transpile only; `tsc` does the type checking in build/lint),
// and @shunt/* resolved to sources so a test never depends on a stale dist/.
const path = require('node:path');
module.exports = (dir) => ({
  displayName: path.basename(dir),
  rootDir: dir,
  testEnvironment: 'node',
  testMatch: ['<rootDir>/src/**/*.test.ts'],
  transform: { '^.+\\.tsx?$': ['ts-jest', { tsconfig: path.join(dir, 'tsconfig.json'), isolatedModules: true, diagnostics: false }] },
  moduleNameMapper: { '^@shunt/(.*)$': path.join(dir, '..', '$1', 'src', 'index.ts') },
  testTimeout: 60000,
  maxWorkers: 1,
});
