import { existsSync, promises as fs, readFileSync } from 'node:fs';
import path from 'node:path';

/** The cgroup v2 mount point from /proc/mounts (hybrid hosts mount it at e.g. /sys/fs/cgroup/unified). */
export function cgroup2Mount(mountsText: string = readFileSync('/proc/mounts', 'utf8')): string {
  for (const line of mountsText.split('\n')) {
    const [, mountPoint, fsType] = line.split(' ');
    if (fsType === 'cgroup2' && mountPoint) return mountPoint.replace(/\\040/g, ' ');
  }
  throw new Error('no cgroup2 mount in /proc/mounts: the testbed needs cgroup v2 for pod cgroups');
}

export async function createCgroup(dir: string): Promise<void> {
  await fs.mkdir(dir, { recursive: true });
}

/** PIDs currently in a cgroup (not its children). */
export function cgroupPids(dir: string): number[] {
  try {
    return readFileSync(path.join(dir, 'cgroup.procs'), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Kills every process in the cgroup subtree and removes the directories, children first.
 * Uses cgroup.kill (kernel >= 5.14) and falls back to SIGKILL per pid. Bounded: gives up after ~5 s
 * per directory with an error naming the cgroup and the pids still in it.
 */
export async function removeCgroupTree(dir: string): Promise<void> {
  if (!existsSync(dir)) return;
  const entries = await fs.readdir(dir, { withFileTypes: true });
  for (const e of entries) {
    if (e.isDirectory()) await removeCgroupTree(path.join(dir, e.name));
  }
  const killFile = path.join(dir, 'cgroup.kill');
  for (let attempt = 0; attempt < 50; attempt++) {
    const pids = cgroupPids(dir);
    if (pids.length === 0) {
      try {
        await fs.rmdir(dir);
        return;
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') return;
        if (code !== 'EBUSY') throw e;
      }
    } else if (existsSync(killFile)) {
      await fs.writeFile(killFile, '1').catch(() => undefined);
    } else {
      for (const pid of pids) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* already gone */
        }
      }
    }
    await sleep(100);
  }
  throw new Error(`cgroup ${dir} could not be removed: pids still inside: ${cgroupPids(dir).join(',') || 'none (EBUSY)'}`);
}
