import type { Testbed } from './testbed';

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
