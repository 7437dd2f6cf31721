// *.image.test.ts run the built agent image and need `npm run image` first: only `npm run test:image` runs them.
const base = require('../../jest.preset.js')(__dirname);
module.exports = process.env['SHUNT_IMAGE_TEST'] === '1'
  ? { ...base, testMatch: ['<rootDir>/src/**/*.image.test.ts'], testTimeout: 300000 }
  : { ...base, testPathIgnorePatterns: [...base.testPathIgnorePatterns, '\\.image\\.test\\.ts$'] };
