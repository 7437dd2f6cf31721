import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

/**
 * The built entry (dist) of a workspace package, for child processes that `require` it with plain
 * Node (jest maps @shunt/* to TS sources, which a child cannot load). Walks up from this file to the
 * workspace's node_modules. Returns the reason when the package has not been built.
 */
export function builtPackageMain(name: string, from: string = __dirname): { path: string } | { unavailable: string } {
  let dir = from;
  for (let i = 0; i < 12; i++) {
    const pkgJson = path.join(dir, 'node_modules', name, 'package.json');
    if (existsSync(pkgJson)) {
      const main = (JSON.parse(readFileSync(pkgJson, 'utf8')) as { main?: string }).main ?? 'index.js';
      const p = path.join(path.dirname(pkgJson), main);
      return existsSync(p) ? { path: p } : { unavailable: `${name} is not built (${p} missing): run npm run build` };
    }
    const parent = path.dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  return { unavailable: `${name} not found in any node_modules above ${from}` };
}
