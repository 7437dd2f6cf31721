// /proc/mounts: where cgroup2 and bpffs really are (hybrid cgroup layouts put cgroup2 at
// /sys/fs/cgroup/unified, so it is never hard-coded).

export interface MountEntry {
  device: string;
  mountPoint: string;
  fsType: string;
  options: string[];
}

const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));

export function parseMounts(text: string): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 4) continue;
    out.push({ device: unescape(f[0]!), mountPoint: unescape(f[1]!), fsType: f[2]!, options: f[3]!.split(',') });
  }
  return out;
}

export function findMount(entries: MountEntry[], fsType: string, prefer?: string): MountEntry | undefined {
  const all = entries.filter((e) => e.fsType === fsType);
  return all.find((e) => e.mountPoint === prefer) ?? all[0];
}
