/** Where things are: built BPF objects and the cgroup v2 mount. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { notFound } from './errors';

/**
 * Absolute path of a built object, bpf/build/<relName> (e.g. 'sockops/connect.bpf.o').
 * SHUNT_BPF_BUILD_DIR overrides the folder for installs that ship objects elsewhere.
 */
export function bpfObjectPath(relName: string): string {
  // src/ and dist/ are both packages/libbpf/<x>/, three levels below the repo root.
  const dir = process.env['SHUNT_BPF_BUILD_DIR'] ?? path.resolve(__dirname, '..', '..', '..', 'bpf', 'build');
  return path.join(dir, relName);
}

/** Mount point of the cgroup v2 hierarchy, read from /proc/mounts (hybrid layouts differ). */
export function cgroup2Mount(mountsFile = '/proc/mounts'): string {
  const text = fs.readFileSync(mountsFile, 'utf8');
  for (const line of text.split('\n')) {
    const [, mountPoint, fsType] = line.split(' ');
    if (fsType === 'cgroup2' && mountPoint) return mountPoint.replace(/\\040/g, ' ');
  }
  throw notFound('find cgroup2 mount', mountsFile, 'no cgroup2 filesystem is mounted');
}
