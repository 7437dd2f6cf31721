// Lets `node -r ./tools/ts-register.js src/cli.ts …` run the agent from its TypeScript sources
// (end-to-end tests spawn the real CLI as a process without a build): transpiles .ts on load
// with the workspace's TypeScript and resolves @shunt/<pkg> to packages/<pkg>/src/index.ts, as
// the jest preset does.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const Module = require('node:module');
const ts = require('typescript');

const packagesDir = path.resolve(__dirname, '..', '..');
const originalResolve = Module._resolveFilename;
Module._resolveFilename = function (request, parent, ...rest) {
  const m = /^@shunt\/([^/]+)$/.exec(request);
  if (m) {
    const src = path.join(packagesDir, m[1], 'src', 'index.ts');
    if (fs.existsSync(src)) return src;
  }
  return originalResolve.call(this, request, parent, ...rest);
};

require.extensions['.ts'] = function (module, filename) {
  const source = fs.readFileSync(filename, 'utf8');
  const out = ts.transpileModule(source, {
    fileName: filename,
    compilerOptions: {
      module: ts.ModuleKind.CommonJS,
      target: ts.ScriptTarget.ES2022,
      esModuleInterop: true,
      sourceMap: false,
      inlineSourceMap: true,
    },
  });
  module._compile(out.outputText, filename);
};
