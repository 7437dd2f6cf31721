// Where this node's bpffs and cgroup v2 are, as the agent sees them (inside the chart's
// container the host's cgroup root is mounted at /host/sys/fs/cgroup; hybrid hosts have cgroup2
// at …/unified): always read from the mount table, never assumed.
import { readFileSync } from 'node:fs';

interface Mount {
  mountPoint: string;
  fsType: string;
}

export function readMounts(file = '/proc/self/mounts'): Mount[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .map((l) => l.split(' '))
    .filter((f) => f.length >= 3)
    .map(([, mp, type]) => ({ mountPoint: mp!.replace(/\\040/g, ' '), fsType: type! }));
}

function under(p: string, prefix: string): boolean {
  const pre = prefix.replace(/\/+$/, '');
  return p === pre || p.startsWith(pre + '/');
}

/** The cgroup v2 directory cgroup programs attach to. */
export function resolveCgroupRoot(opts: { cgroupPath?: string; cgroupSearch?: string }, mounts = readMounts()): string {
  if (opts.cgroupPath) return opts.cgroupPath;
  const v2 = mounts.filter((m) => m.fsType === 'cgroup2');
  const candidates = opts.cgroupSearch ? v2.filter((m) => under(m.mountPoint, opts.cgroupSearch!)) : v2;
  // The shortest mount point is the hierarchy root when several views are mounted.
  const best = candidates.sort((a, b) => a.mountPoint.length - b.mountPoint.length)[0];
  if (!best) {
    throw new Error(
      opts.cgroupSearch
        ? `no cgroup2 filesystem is mounted under ${opts.cgroupSearch} (check the chart's hostPaths.cgroup, or set cgroupPath)`
        : 'no cgroup2 filesystem is mounted (see /proc/mounts); set --cgroup-path',
    );
  }
  return best.mountPoint;
}

/** The bpffs mount (not shunt's directory in it). */
export function resolveBpffs(opts: { bpffsPath?: string }, mounts = readMounts()): string {
  if (opts.bpffsPath) return opts.bpffsPath.replace(/\/+$/, '') || '/';
  const bpf = mounts.find((m) => m.fsType === 'bpf');
  if (!bpf) throw new Error('no bpffs is mounted (mount -t bpf bpf /sys/fs/bpf), or set --bpffs-path');
  return bpf.mountPoint;
}

/** shunt's own directory in bpffs; each backend pins under <root>/<backend>/. */
export function pinRoot(bpffs: string): string {
  return `${bpffs.replace(/\/+$/, '')}/shunt`;
}
