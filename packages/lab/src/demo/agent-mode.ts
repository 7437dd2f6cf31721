// A testbed path mode that runs the real agent process with a pods file listing the demo's pods,
// so the demo and the bench show what a user gets from `shunt agent`.
import { mkdirSync, mkdtempSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import type { BackendName, ProfileName } from '@shunt/core';
import { startZtunnel, type ModePods, type PathMode, type Testbed, type ZtunnelStandIn } from '@shunt/testbed';
import { freePort, spawnAgent, type AgentProcess } from '@shunt/agent';

function commonDir(a: string, b: string): string {
  const x = a.split('/');
  const y = b.split('/');
  let i = 0;
  while (i < x.length && i < y.length && x[i] === y[i]) i++;
  return x.slice(0, i).join('/') || '/';
}

export interface AgentModeOptions {
  echo?: (line: string) => void;
  /** The agent's --splice-ports (sockops); absent: the agent's default. */
  splicePorts?: string;
  /**
   * The agent's --profile; absent: the agent's default (istio-sidecar). With istio-ambient the
   * testbed's ztunnel stand-in is started first, connected to the agent's --zds-socket, and setup
   * waits until the agent announced both pods to it (rules first, then AddWorkload).
   */
  profile?: ProfileName;
  /**
   * Bench A/B only: after the agent is ready, overwrite the splice guard's `short_conns` in its pinned
   * `splice_guard` map (bpftool), so one agent build can be measured with the short-connection rule
   * on and off without an agent flag for it. The agent writes that map only at start.
   */
  shortConns?: number;
}

/** struct shunt_splice_guard (bpf/include/shunt_sockops.h): four __u32, short_conns last. */
function setShortConns(bpffs: string, n: number): void {
  const map = path.join(bpffs, 'shunt', 'sockops', 'maps', 'splice_guard');
  const key = ['0', '0', '0', '0'];
  const cur = JSON.parse(execFileSync('bpftool', ['-j', 'map', 'lookup', 'pinned', map, 'key', ...key], { encoding: 'utf8' })) as { value: string[] };
  if (!Array.isArray(cur.value) || cur.value.length !== 16) throw new Error(`splice_guard value ${JSON.stringify(cur.value)}: want 16 bytes`);
  const value = [...cur.value.slice(0, 12), ...[n & 0xff, (n >> 8) & 0xff, 0, 0].map(String)];
  execFileSync('bpftool', ['map', 'update', 'pinned', map, 'key', ...key, 'value', ...value]);
}

export function agentMode(backend: BackendName, opts: AgentModeOptions = {}): PathMode {
  let agent: AgentProcess | null = null;
  let zt: ZtunnelStandIn | null = null;
  let dir = '';
  let bpffs = '';
  let ztCgroup = '';
  const ambient = opts.profile === 'istio-ambient';
  return {
    name: `agent-${backend}`,
    description:
      `the real shunt agent (redirectMode=${backend}${opts.profile ? `, profile=${opts.profile}` : ''}${opts.splicePorts !== undefined ? `, --splice-ports=${opts.splicePorts}` : ''}${opts.shortConns !== undefined ? `, splice_guard.short_conns=${opts.shortConns}` : ''}) ` +
      'watching a pods file with both pods',
    expectsProxy: true,
    ...(ambient ? { ztunnelLog: () => zt?.entries() ?? [], processes: () => [...(zt ? [{ name: 'ztunnel', pid: zt.pid }] : []), ...(agent?.child.pid ? [{ name: 'agent', pid: agent.child.pid }] : [])] } : {}),
    async setup(tb: Testbed, pods: ModePods): Promise<void> {
      const client = tb.kubePod(pods.client);
      const server = tb.kubePod(pods.server);
      dir = mkdtempSync(path.join(tmpdir(), 'shunt-demo-'));
      const podsFile = path.join(dir, 'pods.json');
      writeFileSync(podsFile, JSON.stringify([client, server], null, 2));
      // Pins and cgroup programs stay inside the testbed: a bpffs directory of our own and the
      // run's cgroup, never the machine's root cgroup.
      bpffs = `/sys/fs/bpf/shunt-demo-${randomBytes(4).toString('hex')}`;
      mkdirSync(bpffs, { recursive: true });
      const port = await freePort();
      const zdsSocket = path.join(dir, 'ztunnel.sock');
      // It retries the connect until the agent serves the socket.
      // The log not next to the pods file: the agent watches that directory, and the stand-in's
      // appends would wake it (inotify) all through a benchmark.
      // Ambient: the stand-in runs in a cgroup of its own next to the node's (as ztunnel's pod is a
      // cgroup of its own on a real node), and the agent's cgroup programs (the tc backend's splice
      // pairing) are attached at the run's cgroup, which covers both: the node cgroup's CPU (the
      // bench's "pods" figure) stays the pods' alone.
      if (ambient) {
        ztCgroup = path.join(tb.cgroupRoot, `ztunnel-${randomBytes(3).toString('hex')}`);
        mkdirSync(ztCgroup);
        zt = await startZtunnel({ socketPath: zdsSocket, logPath: path.join(dir, 'ztunnel', 'ztunnel.log'), cgroupPath: ztCgroup });
      }
      agent = spawnAgent(
        [
          '--pods-file', podsFile,
          '--node-name', client.spec.nodeName,
          '--redirect-mode', backend,
          '--metrics-address', `127.0.0.1:${port}`,
          '--bpffs-path', bpffs,
          // Its own records too: it must never adopt (or clean up) a node agent's pods.
          '--state-dir', path.join(dir, 'state'),
          '--cgroup-path', ambient ? tb.cgroupRoot : commonDir(client.shunt.cgroupPath, server.shunt.cgroupPath),
          '--cleanup-on-exit',
          ...(opts.splicePorts !== undefined ? ['--splice-ports', opts.splicePorts] : []),
          ...(opts.profile ? ['--profile', opts.profile] : []),
          // No netns preparing: its pods exist before the agent (nothing to prepare), and this agent
          // watches the whole machine's /var/run/netns, where other runs' netns must stay untouched.
          ...(ambient ? ['--zds-socket', zdsSocket, '--netns-prepare-grace-ms', '0'] : []),
        ],
        opts.echo ? { echo: opts.echo } : {},
      );
      await agent.waitLog((l) => l['msg'] === 'ready: first full sync done', 60_000);
      if (opts.shortConns !== undefined) setShortConns(bpffs, opts.shortConns);
      if (zt) {
        const uids = new Set([client.metadata.uid, server.metadata.uid]);
        await zt.waitFor((e) => e.event === 'add' && !e.error && uids.has(e.uid), { count: 2, timeoutMs: 30_000, what: 'AddWorkload of both pods from the agent' });
      }
    },
    async teardown(): Promise<void> {
      try {
        await agent?.stop();
        await zt?.stop();
      } finally {
        agent = null;
        zt = null;
        // Empty once the stand-in exited (the testbed's dispose removes the run's cgroup tree anyway).
        if (ztCgroup) {
          try {
            rmdirSync(ztCgroup);
          } catch {
            // still busy: removed with the run's cgroup tree by the testbed's dispose
          }
        }
        ztCgroup = '';
        if (bpffs) rmSync(bpffs, { recursive: true, force: true });
        if (dir) rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}
