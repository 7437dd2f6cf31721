// Shared jest set-up: ts-jest (transpile only; each package's `test` script runs `tsc --noEmit` over
// sources and test files first, so a type error in a test fails `npm test`),
// and @shunt/* resolved to sources so a test never depends on a stale dist/.
const path = require('node:path');
module.exports = (dir) => ({
  displayName: path.basename(dir),
  rootDir: dir,
  testEnvironment: 'node',
  testMatch: ['<rootDir>/src/**/*.test.ts'],
  // *.manual.test.ts are measurements, not tests: run them explicitly with
  // `npx jest --testPathIgnorePatterns=/node_modules/ src/<file>.manual.test.ts`.
  testPathIgnorePatterns: ['/node_modules/', '\\.manual\\.test\\.ts$'],
  // ts-jest 29.4 deprecates its own `isolatedModules` option in favour of the compiler option.
  // An object `tsconfig` is merged over the package's tsconfig.json (ts-jest finds it from
  // rootDir), so each package keeps its own settings and every file is transpiled alone.
  transform: { '^.+\\.tsx?$': ['ts-jest', { tsconfig: { isolatedModules: true }, diagnostics: false }] },
  moduleNameMapper: { '^@shunt/(.*)$': path.join(dir, '..', '$1', 'src', 'index.ts') },
  testTimeout: 60000,
  maxWorkers: 1,
  // A red CI run ends with what failed (scripts/test.sh prints it; CI keeps only the tail).
  reporters: ['default', path.join(__dirname, 'scripts', 'jest-failure-digest.js')],
});
