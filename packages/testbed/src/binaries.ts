import { accessSync, constants } from 'node:fs';
import path from 'node:path';

const EXTRA_DIRS = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

/** PATH for processes in pods: the caller's PATH plus the sbin dirs (haproxy, conntrack live there). */
export const POD_PATH = [...new Set([...(process.env.PATH ?? '').split(':').filter(Boolean), ...EXTRA_DIRS])].join(':');

const cache = new Map<string, string>();

/** Absolute path of a program, or a clear error naming it (and the apt package to install). */
export function which(name: string, aptPackage?: string): string {
  if (name.includes('/')) return name;
  const hit = cache.get(name);
  if (hit) return hit;
  for (const dir of POD_PATH.split(':')) {
    const p = path.join(dir, name);
    try {
      accessSync(p, constants.X_OK);
      cache.set(name, p);
      return p;
    } catch {
      /* next */
    }
  }
  throw new Error(`${name} not found in ${POD_PATH}${aptPackage ? `: install the ${aptPackage} package (npm run setup)` : ''}`);
}
