const preset = require('../../jest.preset.js')(__dirname);
// The cross-package chaos suite (test/chaos) runs with the agent's tests: it drives the built agent.
module.exports = { ...preset, roots: ['<rootDir>/src', '<rootDir>/../../test/chaos'], testMatch: [...preset.testMatch, '<rootDir>/../../test/chaos/**/*.test.ts'] };
