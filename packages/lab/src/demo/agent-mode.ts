// A testbed path mode that runs the real agent process with a pods file listing the demo's pods,
// so the demo and the bench show what a user gets from `shunt agent`.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import type { BackendName } from '@shunt/core';
import type { ModePods, PathMode, Testbed } from '@shunt/testbed';
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
}

export function agentMode(backend: BackendName, opts: AgentModeOptions = {}): PathMode {
  let agent: AgentProcess | null = null;
  let dir = '';
  let bpffs = '';
  return {
    name: `agent-${backend}`,
    description:
      `the real shunt agent (redirectMode=${backend}${opts.splicePorts !== undefined ? `, --splice-ports=${opts.splicePorts}` : ''}) ` +
      'watching a pods file with both pods',
    expectsProxy: true,
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
      agent = spawnAgent(
        [
          '--pods-file', podsFile,
          '--node-name', client.spec.nodeName,
          '--redirect-mode', backend,
          '--metrics-address', `127.0.0.1:${port}`,
          '--bpffs-path', bpffs,
          // Its own records too: it must never adopt (or clean up) a node agent's pods.
          '--state-dir', path.join(dir, 'state'),
          '--cgroup-path', commonDir(client.shunt.cgroupPath, server.shunt.cgroupPath),
          '--cleanup-on-exit',
          ...(opts.splicePorts !== undefined ? ['--splice-ports', opts.splicePorts] : []),
        ],
        opts.echo ? { echo: opts.echo } : {},
      );
      await agent.waitLog((l) => l['msg'] === 'ready: first full sync done', 60_000);
    },
    async teardown(): Promise<void> {
      try {
        await agent?.stop();
      } finally {
        agent = null;
        if (bpffs) rmSync(bpffs, { recursive: true, force: true });
        if (dir) rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}
