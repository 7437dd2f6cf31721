// Lets a child `node` process run this workspace's TypeScript sources directly, the way jest's
// moduleNameMapper does (`@shunt/<pkg>` → packages/<pkg>/src/index.ts), so a test can drive the
// backend from a second process without depending on a possibly stale dist/.
// Usage: node -r ./ts-register.js child.ts
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const Module = require('node:module');
const ts = require('typescript');

const PACKAGES = path.resolve(__dirname, '..', '..', '..');
const resolve = Module._resolveFilename;
Module._resolveFilename = function (request, parent, ...rest) {
  const m = /^@shunt\/([^/]+)$/.exec(request);
  if (m) return path.join(PACKAGES, m[1], 'src', 'index.ts');
  return resolve.call(this, request, parent, ...rest);
};

require.extensions['.ts'] = function (module, filename) {
  const out = ts.transpileModule(fs.readFileSync(filename, 'utf8'), {
    fileName: filename,
    compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true, isolatedModules: true },
  });
  module._compile(out.outputText, filename);
};
