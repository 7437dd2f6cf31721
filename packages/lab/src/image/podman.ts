// Runs the built agent image with podman as the Helm chart runs the agent container: rootful, host
// network and PID, every capability dropped and the chart's list added back, read-only root, no
// privilege escalation, the chart's mounts. Podman keeps its images and containers in a storage
// directory of this run, so nothing outside it (other podman users, other test runs) is touched.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** The capabilities the chart adds back after dropping ALL (deploy/helm/shunt/templates/daemonset.yaml). */
export function chartCapabilities(repoRoot: string): string[] {
  const tpl = readFileSync(path.join(repoRoot, 'deploy', 'helm', 'shunt', 'templates', 'daemonset.yaml'), 'utf8');
  const m = /capabilities:\s*\n\s*drop:\s*\n\s*- ALL\s*\n(?:\s*#.*\n)*\s*add:\s*\n((?:\s*- [A-Z_]+\s*\n)+)/.exec(tpl);
  if (!m) throw new Error('deploy/helm/shunt/templates/daemonset.yaml: no `capabilities: drop: [ALL] add: [...]` block found');
  return [...m[1]!.matchAll(/- ([A-Z_]+)/g)].map((x) => x[1]!);
}

export interface ChartMounts {
  /** Host directory mounted at /run/shunt (the chart's hostPaths.state). */
  stateDir: string;
  /** Extra read-only bind mounts host → container (the pods file of standalone mode). */
  extraReadOnly?: Record<string, string>;
}

export interface RunSpec {
  name: string;
  capabilities: string[];
  mounts: ChartMounts;
  /** Arguments after the image (the entrypoint is `node …/cli.js`): e.g. ['doctor', '--json']. */
  args: string[];
  /** Another entrypoint than the image's (`node …/cli.js`). */
  entrypoint?: string;
  /** No seccomp filter instead of the runtime's default profile (to tell seccomp from capability checks). */
  seccompUnconfined?: boolean;
}

/** The chart's host paths and where the container sees them (values.yaml defaults). */
export const CHART_MOUNTS = {
  bpffs: { host: '/sys/fs/bpf', container: '/sys/fs/bpf' },
  cgroup: { host: '/sys/fs/cgroup', container: '/host/sys/fs/cgroup' },
  netns: { host: '/var/run/netns', container: '/var/run/netns' },
  xtablesLock: { host: '/run/xtables.lock', container: '/run/xtables.lock' },
} as const;

/** A host cgroup path as the container sees it under the chart's cgroup mount. */
export function containerCgroupPath(hostPath: string): string {
  const { host, container } = CHART_MOUNTS.cgroup;
  if (hostPath !== host && !hostPath.startsWith(host + '/')) throw new Error(`cgroup path ${hostPath} is not under ${host}`);
  return container + hostPath.slice(host.length);
}

export class Podman {
  private constructor(
    readonly dir: string,
    readonly runtime: string,
  ) {}

  /**
   * Podman with storage of its own. `runtime`: runc by default, because crun 1.8 (Debian 12)
   * refuses hybrid cgroup hosts ("cgroups in hybrid mode not supported, drop all controllers from
   * cgroupv2"), which this kind of machine is; SHUNT_IMAGE_RUNTIME=crun picks crun elsewhere.
   */
  static create(runtime = process.env['SHUNT_IMAGE_RUNTIME'] ?? 'runc'): Podman {
    return new Podman(mkdtempSync(path.join(tmpdir(), 'shunt-podman-')), runtime);
  }

  /** Global flags: private storage, no daemon-style services (events journal, systemd cgroups). */
  globalArgs(): string[] {
    return [
      '--root', path.join(this.dir, 'root'),
      '--runroot', path.join(this.dir, 'runroot'),
      '--storage-driver', 'overlay',
      '--cgroup-manager', 'cgroupfs',
      '--events-backend', 'none',
      '--runtime', this.runtime,
    ];
  }

  async podman(args: string[], timeoutMs = 120_000): Promise<string> {
    try {
      const { stdout } = await run('podman', [...this.globalArgs(), ...args], { timeout: timeoutMs, maxBuffer: 64 << 20 });
      return stdout;
    } catch (e) {
      const err = e as Error & { stderr?: string; stdout?: string };
      throw new Error(`podman ${args.join(' ')}: ${err.message}\n${err.stderr ?? ''}`);
    }
  }

  /** Imports the image from an OCI layout (`<dir>:<tag>`); returns its id. */
  async pull(layout: string, tag: string): Promise<string> {
    return (await this.podman(['pull', '--quiet', `oci:${layout}:${tag}`], 300_000)).trim();
  }

  /**
   * `podman run` arguments of the chart's agent container. Process limits: this VM's root lacks
   * CAP_SYS_RESOURCE, so podman's defaults (nofile 1048576, nproc 4194304) cannot be set
   * ("setrlimit RLIMIT_NOFILE: Operation not permitted"); the container gets the limits the
   * caller already has instead, as a kubelet node's containers get the runtime's.
   */
  runArgs(image: string, spec: RunSpec): string[] {
    const m = CHART_MOUNTS;
    const ro = Object.entries(spec.mounts.extraReadOnly ?? {}).flatMap(([h, c]) => ['-v', `${h}:${c}:ro`]);
    return [
      ...this.globalArgs(),
      'run', '--rm', '--name', spec.name,
      '--network', 'host', '--pid', 'host',
      '--user', '0:0',
      '--cap-drop', 'all', ...(spec.capabilities.length ? ['--cap-add', spec.capabilities.join(',')] : []),
      '--security-opt', 'no-new-privileges',
      // The chart: seccompProfile RuntimeDefault (podman's default profile), appArmorProfile Unconfined.
      '--security-opt', 'apparmor=unconfined',
      ...(spec.seccompUnconfined ? ['--security-opt', 'seccomp=unconfined'] : []),
      '--read-only', '--read-only-tmpfs=false', '--tmpfs', '/tmp:size=16m',
      '--ulimit', 'nofile=20000:20000', '--ulimit', 'nproc=4096:4096',
      // HostToContainer propagation is rslave.
      '-v', `${m.bpffs.host}:${m.bpffs.container}:rslave`,
      '-v', `${m.cgroup.host}:${m.cgroup.container}:rslave`,
      '-v', `${m.netns.host}:${m.netns.container}:rslave`,
      '-v', `${spec.mounts.stateDir}:/run/shunt`,
      '-v', `${m.xtablesLock.host}:${m.xtablesLock.container}`,
      ...ro,
      ...(spec.entrypoint ? ['--entrypoint', spec.entrypoint] : []),
      image,
      ...spec.args,
    ];
  }

  /** Runs a short command of the image to its end: exit code and output. */
  async runToEnd(image: string, spec: RunSpec, timeoutMs = 120_000): Promise<{ code: number; stdout: string; stderr: string }> {
    try {
      const { stdout, stderr } = await run('podman', this.runArgs(image, spec), { timeout: timeoutMs, maxBuffer: 64 << 20 });
      return { code: 0, stdout, stderr };
    } catch (e) {
      const err = e as Error & { code?: number | string; stdout?: string; stderr?: string };
      if (typeof err.code !== 'number') throw e;
      return { code: err.code, stdout: err.stdout ?? '', stderr: err.stderr ?? '' };
    }
  }

  /** Removes every container and image of this storage and the storage itself. */
  async dispose(): Promise<void> {
    try {
      await this.podman(['rm', '--all', '--force', '--time', '5'], 60_000).catch(() => undefined);
      await this.podman(['image', 'rm', '--all', '--force'], 120_000).catch(() => undefined);
      // Not `podman system reset`: it also resets machine-wide settings (networks), not ours.
      // Overlay mounts of the storage must go before its directory can.
      const mounts = readFileSync('/proc/self/mounts', 'utf8').split('\n').map((l) => l.split(' ')[1] ?? '').filter((m) => m.startsWith(this.dir + '/'));
      for (const m of mounts.sort().reverse()) await run('umount', ['-l', m]).catch(() => undefined);
    } finally {
      rmSync(this.dir, { recursive: true, force: true });
    }
  }
}
