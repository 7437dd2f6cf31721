/**
 * A native L4 relay engine running in a pod netns (native/relay.cc, its own addon
 * build/Release/shunt_relay.node, test-only: the production addon @shunt/libbpf does not carry it): the data path of the
 * testbed's ztunnel stand-in, so that a benchmark measures the redirect and not a Node.js proxy.
 * One engine is one thread inside the netns serving the listeners it is handed (outbound 15001,
 * inbound 15006, tunnel 15008) and appending one JSON line per connection to `logPath`.
 */
import * as path from 'node:path';

interface RelayHandleNative {
  readonly __relayHandle: unique symbol;
}
interface RelayAddon {
  relayStart(opts: Record<string, unknown>): RelayHandleNative;
  relayStop(h: RelayHandleNative): void;
}

let addon: RelayAddon | undefined;
/** Loaded on first use, so that importing the testbed needs no compiled addon. */
function native(): RelayAddon {
  if (addon) return addon;
  const file = path.resolve(__dirname, '..', '..', 'build', 'Release', 'shunt_relay.node');
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    addon = require(file) as RelayAddon;
  } catch (err) {
    throw new Error(`@shunt/testbed: cannot load the relay addon ${file} (${(err as Error).message}); build it with \`npm run build -w @shunt/testbed\``);
  }
  return addon;
}

const invalidArgument = (op: string, target: string, detail: string): Error => new TypeError(`${op} ${target}: ${detail}`);

export interface RelayListener {
  /** A listening TCP socket (netnsListen); owned by the engine from start on. */
  fd: number;
  leg: 'outbound' | 'inbound' | 'hbone';
  /** The port it listens on (a connection accepted with this local port was NAT-redirected). */
  port: number;
}

export interface RelayOptions {
  /** An open fd of the netns the engine runs in (its connections are made there). */
  netns: number;
  listeners: RelayListener[];
  /** Appended with one JSON line per connection ({event:'conn', ...}). */
  logPath: string;
  /** Written into each line: the instance name, the pod and its uid. */
  zt: string;
  pod: string;
  uid: string;
  /** SO_MARK of every socket the engine makes. */
  mark: number;
  /** The peer's tunnel port (15008). */
  tunnelPort: number;
  connectTimeoutMs?: number;
}

export interface Relay {
  /** Stops the thread and closes every socket it holds (listeners included). Idempotent. */
  stop(): void;
}

export function startRelay(opts: RelayOptions): Relay {
  if (!Number.isInteger(opts.netns) || opts.netns < 0) throw invalidArgument('startRelay', `relay for ${opts.pod}`, `netns must be an open fd, got ${String(opts.netns)}`);
  for (const l of opts.listeners)
    if (!Number.isInteger(l.fd) || l.fd < 0 || !['outbound', 'inbound', 'hbone'].includes(l.leg) || !(l.port > 0 && l.port < 65536))
      throw invalidArgument('startRelay', `relay for ${opts.pod}`, `bad listener ${JSON.stringify(l)}`);
  let h: RelayHandleNative | null = native().relayStart({ ...opts, connectTimeoutMs: opts.connectTimeoutMs ?? 3000 });
  return {
    stop() {
      if (h) native().relayStop(h);
      h = null;
    },
  };
}
