/**
 * A memory cgroup for the receiving side of a test, smaller than the data the test sends: socket
 * memory charged to it beyond the limit is refused, which is what turns an unguarded splice into
 * ENOMEM. cgroup v2 (memory.max on a child of the mount root, when the unified hierarchy has the
 * memory controller) or, on hybrid hosts where memory is a v1 controller, a v1 memory cgroup under
 * this process's own with TCP accounting on (memory.kmem.tcp.limit_in_bytes: sockets are charged
 * to a v1 memcg only once that is set). Processes are moved in by pid; the v2 pod cgroups (where
 * the BPF programs attach) are untouched on v1 hosts. remove() moves them back and deletes it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface MemoryCgroup {
  readonly kind: 'v1' | 'v2';
  readonly dir: string;
  /** Bytes of socket (v1: TCP) memory the cgroup may hold. */
  readonly limit: number;
  add(pid: number): void;
  /** Socket memory charged now (bytes). */
  socketBytes(): number;
  /** Times the limit refused a charge (v1 kmem.tcp.failcnt; v2 memory.events max). */
  failures(): number;
  remove(): void;
}

function mountOf(fsType: string, option?: string): string | null {
  for (const line of fs.readFileSync('/proc/mounts', 'utf8').split('\n')) {
    const [, mnt, type, opts] = line.split(' ');
    if (type === fsType && (!option || (opts ?? '').split(',').includes(option))) return mnt ?? null;
  }
  return null;
}

export function createMemoryCgroup(name: string, limit: number): MemoryCgroup {
  const v1 = mountOf('cgroup', 'memory');
  if (v1) {
    const line = fs.readFileSync('/proc/self/cgroup', 'utf8').split('\n').find((l) => l.split(':')[1]?.split(',').includes('memory'));
    const own = path.join(v1, line ? line.split(':')[2]! : '/');
    const dir = path.join(own, name);
    fs.mkdirSync(dir);
    const moved: number[] = [];
    try {
      fs.writeFileSync(path.join(dir, 'memory.kmem.tcp.limit_in_bytes'), String(limit));
    } catch (err) {
      fs.rmdirSync(dir);
      throw err;
    }
    return {
      kind: 'v1',
      dir,
      limit,
      add(pid) {
        fs.writeFileSync(path.join(dir, 'cgroup.procs'), String(pid));
        moved.push(pid);
      },
      socketBytes: () => Number(fs.readFileSync(path.join(dir, 'memory.kmem.tcp.usage_in_bytes'), 'utf8')),
      failures: () => Number(fs.readFileSync(path.join(dir, 'memory.kmem.tcp.failcnt'), 'utf8')),
      remove() {
        for (const pid of fs.readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean))
          try {
            fs.writeFileSync(path.join(own, 'cgroup.procs'), pid);
          } catch {
            /* exited */
          }
        for (let i = 0; i < 50; i++)
          try {
            fs.rmdirSync(dir);
            return;
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
            Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100);
          }
        throw new Error(`memory cgroup ${dir} could not be removed`);
      },
    };
  }
  const v2 = mountOf('cgroup2');
  if (!v2 || !fs.readFileSync(path.join(v2, 'cgroup.controllers'), 'utf8').split(/\s+/).includes('memory'))
    throw new Error('no memory controller: neither a cgroup v1 memory mount nor memory in the cgroup v2 root');
  throw new Error('cgroup v2 memory: the pod cgroup itself must carry memory.max (not implemented on this host type yet)');
}
