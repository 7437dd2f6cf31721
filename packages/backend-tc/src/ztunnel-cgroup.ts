/**
 * Where ztunnel runs, relative to the cgroup the tc pairing program sits on. The pairing program
 * (bpf/tc/splice.bpf.c) is a sockops program on the node cgroup: it sees ztunnel's sockets only
 * if ztunnel's process is in that cgroup or below it. Outside it, every app socket of an ambient
 * pod would be put into the splice sockhash (psock set-up) and switch to TCP at its first
 * message, for nothing: the backend turns pairing off then (splice.ts).
 *
 * The process's cgroup is read from /proc/<pid>/cgroup (the cgroup v2 line `0::/path`) and
 * resolved against the cgroup2 mount from /proc/self/mountinfo (the path is relative to the
 * mount's root). Both are the agent's own view, the same one cgroupRoot is given in.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface ZtunnelPlacement {
  pid: number;
  /** ztunnel's cgroup v2 directory as a path on this host (null: could not be resolved). */
  cgroup: string | null;
  /** true: under cgroupRoot (pairing can see its sockets); false: not; null: cannot tell. */
  under: boolean | null;
  /** One sentence for status / doctor / logs. */
  reason: string;
}

/** mountinfo escapes space, tab, newline and backslash as \ooo. */
function unescapeMountinfo(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** The cgroup2 mounts in a mountinfo text: mount point and the root of the mount in the hierarchy. */
export function cgroup2Mounts(mountinfo: string): { mountPoint: string; root: string }[] {
  const out: { mountPoint: string; root: string }[] = [];
  for (const line of mountinfo.split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const pre = line.slice(0, sep).split(' ');
    const post = line.slice(sep + 3).split(' ');
    if (post[0] !== 'cgroup2' || pre.length < 5) continue;
    out.push({ root: unescapeMountinfo(pre[3]!), mountPoint: unescapeMountinfo(pre[4]!) });
  }
  return out;
}

/** The cgroup v2 path (`0::/…`) in a /proc/<pid>/cgroup text; undefined if there is none. */
export function cgroupV2Path(procCgroup: string): string | undefined {
  for (const line of procCgroup.split('\n')) if (line.startsWith('0::')) return line.slice(3).trim();
  return undefined;
}

function within(p: string, root: string): boolean {
  const rel = path.relative(root, p);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

/**
 * The host path of a process's cgroup v2 directory. Throws with the pid and what failed (process
 * gone, no v2 line, no cgroup2 mount covering the path).
 */
export function processCgroupDir(pid: number, procRoot = '/proc'): string {
  if (!Number.isInteger(pid) || pid <= 0) throw new Error(`pid ${pid} is not a visible process (a peer outside the agent's pid namespace reads as 0)`);
  let text: string;
  try {
    text = fs.readFileSync(path.join(procRoot, String(pid), 'cgroup'), 'utf8');
  } catch (err) {
    throw new Error(`cannot read ${path.join(procRoot, String(pid), 'cgroup')}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const rel = cgroupV2Path(text);
  if (rel === undefined) throw new Error(`pid ${pid} has no cgroup v2 line (0::/…) in ${path.join(procRoot, String(pid), 'cgroup')}`);
  const mounts = cgroup2Mounts(fs.readFileSync(path.join(procRoot, 'self', 'mountinfo'), 'utf8'));
  if (mounts.length === 0) throw new Error('no cgroup2 mount in /proc/self/mountinfo');
  for (const m of mounts) {
    if (!within(rel, m.root)) continue;
    const dir = path.join(m.mountPoint, path.relative(m.root, rel));
    if (fs.existsSync(dir)) return dir;
  }
  throw new Error(`pid ${pid}'s cgroup ${rel} is under no cgroup2 mount of the agent (${mounts.map((m) => `${m.mountPoint} = ${m.root}`).join(', ')})`);
}

function real(p: string): string {
  try {
    return fs.realpathSync(p);
  } catch {
    return path.resolve(p);
  }
}

/** Whether ztunnel's process (pid, from SO_PEERCRED) lies under cgroupRoot. Never throws. */
export function ztunnelPlacement(pid: number, cgroupRoot: string, procRoot = '/proc'): ZtunnelPlacement {
  let dir: string;
  try {
    dir = processCgroupDir(pid, procRoot);
  } catch (err) {
    return { pid, cgroup: null, under: null, reason: `cannot tell where ztunnel pid ${pid} runs: ${(err as Error).message}` };
  }
  const under = within(real(dir), real(cgroupRoot));
  return { pid, cgroup: dir, under, reason: `ztunnel pid ${pid} in cgroup ${dir} is ${under ? '' : 'not '}under ${cgroupRoot}` };
}
