import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Testbed } from './testbed';
import { ztunnelHarness, type ZtunnelHarness } from './ztunnel/harness';
import type { ZtunnelLogEntry } from './ztunnel/log';

/** The client and server pods a path mode is set up on (both have sidecars). */
export interface ModePods {
  client: string;
  server: string;
}

/**
 * A way traffic can go from client to server: `direct` (no mesh), the hand-written iptables
 * sidecar path, or a backend (supplied by the agent, which may import backends; the testbed may not).
 */
export interface PathMode {
  name: string;
  /** One line for people: what the path is. */
  description: string;
  /** Whether client→server traffic is expected to pass the sidecars (the demo checks the logs). */
  expectsProxy: boolean;
  setup(tb: Testbed, pods: ModePods): Promise<void>;
  teardown(tb: Testbed, pods: ModePods): Promise<void>;
  /** Ambient modes: what the ztunnel stand-in they run has logged so far (the demo shows its legs). */
  ztunnelLog?(): ZtunnelLogEntry[];
  /** Processes the mode runs outside the pods' cgroups whose CPU the bench splits out (the ztunnel stand-in). */
  processes?(): Array<{ name: string; pid: number }>;
}

export const directMode: PathMode = {
  name: 'direct',
  description: 'no mesh redirect: the client talks to the server straight over eth0 (sidecars idle)',
  expectsProxy: false,
  async setup() {},
  async teardown() {},
};

export const iptablesHandwrittenMode: PathMode = {
  name: 'iptables-handwritten',
  description: 'istio-like nat REDIRECT rules written by hand in both pods: client → its sidecar (15001) → server sidecar (15006) → server',
  expectsProxy: true,
  async setup(tb, pods) {
    await tb.applyHandwrittenRedirect(pods.client);
    await tb.applyHandwrittenRedirect(pods.server);
  },
  async teardown(tb, pods) {
    await tb.removeHandwrittenRedirect(pods.client);
    await tb.removeHandwrittenRedirect(pods.server);
  },
};

export const BUILTIN_MODES: readonly PathMode[] = [directMode, iptablesHandwrittenMode];

/**
 * `direct` for ambient pods: no redirect, but the ztunnel stand-in is running and has been handed
 * both pods (its in-pod sockets exist, idle), as in the ambient modes, so only the redirect differs.
 */
export function ambientDirectMode(): PathMode {
  let h: ZtunnelHarness | undefined;
  let dir = '';
  return {
    name: 'direct',
    description: 'no redirect: ambient pods talk straight over eth0 (the ztunnel stand-in holds both pods, idle)',
    expectsProxy: false,
    ztunnelLog: () => h?.zt.entries() ?? [],
    processes: () => (h ? [{ name: 'ztunnel', pid: h.zt.pid }] : []),
    async setup(tb, pods) {
      dir = mkdtempSync(path.join(tmpdir(), 'shunt-tb-zt-'));
      h = await ztunnelHarness({ socketPath: path.join(dir, 'ztunnel.sock'), logPath: path.join(dir, 'ztunnel.log') });
      for (const name of [pods.client, pods.server]) {
        const p = tb.pod(name);
        await h.add({ uid: p.uid, name, namespace: p.namespace, netnsPath: p.netnsPath });
      }
    },
    async teardown() {
      try {
        await h?.stop();
      } finally {
        h = undefined;
        if (dir) rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}
