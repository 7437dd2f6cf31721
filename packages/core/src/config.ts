// One typed agent configuration from command-line flags, environment and a config file (in that order
// of precedence, then defaults), validated with errors that name the key, where it came from and why.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, isAbsolute, join } from 'node:path';
import { ConfigError, errorMessage } from './errors';
import {
  DEFAULT_MESH_CAPTURE,
  parseLoopbackCidr,
  parseOwnerGroups,
  parseStrictBool,
  splitAddresses,
  type MeshCaptureDefaults,
} from './capture-options';
import { parseIp } from './netaddr';
import type { ProfileName, RedirectMode } from './types';

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
const MODES: readonly RedirectMode[] = ['auto', 'sockops', 'tc', 'iptables'];
const PROFILE_NAMES: readonly ProfileName[] = ['istio-sidecar', 'istio-ambient'];

/**
 * Which redirected connections the sockops backend splices (sk_msg hands data straight to the peer
 * socket), by the port of the destination the app asked for. Every splice is guarded (the sockops
 * backend's redir.bpf.c bounds the peer's queue and moves a flow to TCP when it would exceed it).
 * `auto` (the default) splices every captured connection where the guard can load, nothing
 * elsewhere (each spliced socket keeps one receive queue, so readers see TCP's semantics); `all`
 * the same but refuses to start without the guard; `listed` uses `splicePorts`; `none` splices
 * nothing.
 */
export type SpliceMode = 'auto' | 'none' | 'all' | 'listed';
/** Entries of the sockops backend's splice_ports map (bpf/include/shunt_sockops.h). */
export const MAX_SPLICE_PORTS = 1024;

/**
 * Pods one node's sockops maps hold; every map size derives from it (backend-sockops
 * src/capacity.ts). 1,024 leaves head-room over the kubelet's default of 110 pods and the
 * largest managed node pools (250-ish); raising it costs kernel memory, not CPU.
 */
export const DEFAULT_MAX_PODS = 1024;
export const MAX_MAX_PODS = 65_536;

export type PodSourceConfig = { kind: 'kubernetes'; kubeconfig?: string; inCluster: boolean } | { kind: 'podsFile'; path: string };

export interface ShuntConfig {
  mode: RedirectMode;
  profile: ProfileName;
  nodeName: string;
  source: PodSourceConfig;
  /** cgroup v2 directory for the node-wide cgroup programs; null = the cgroup2 mount found in /proc/mounts. */
  cgroupPath: string | null;
  /** bpffs mount; our pins live under `<bpffsPath>/shunt/<backend>/`. */
  bpffsPath: string;
  /** host:port of the metrics and health HTTP server. */
  metricsAddress: string;
  logLevel: LogLevel;
  /** See SpliceMode; from the `splicePorts` setting (`none`, `all` or a port list). */
  spliceMode: SpliceMode;
  /** Sorted, unique; non-empty exactly when spliceMode is `listed`. */
  splicePorts: number[];
  /** The ZDS unix socket the agent serves for ztunnel (profile istio-ambient; istio-cni's default path). */
  zdsSocket: string;
  /**
   * Mesh-wide istio-iptables settings a pod's istio-proxy env may override (istio-cni reads them from
   * its own environment): outboundOwnerGroups(+Exclude), dropInvalid, hostLoopbackCidr; and
   * clusterDnsServers (kubelet --cluster-dns) so a ClusterFirst pod's DNS servers are known.
   */
  meshCapture: MeshCaptureDefaults;
  /** See DEFAULT_MAX_PODS. */
  maxPods: number;
}

export type ConfigOrigin = 'flag' | 'env' | 'file' | 'default';

export interface LoadedConfig {
  config: ShuntConfig;
  /** Where each setting came from (for `doctor` and the start-up log line). */
  origins: Record<ConfigKey, ConfigOrigin>;
}

const KEYS = ['mode', 'profile', 'nodeName', 'kubeconfig', 'inCluster', 'podsFile', 'cgroupPath', 'bpffsPath', 'metricsAddress', 'logLevel', 'splicePorts', 'maxPods', 'zdsSocket', 'outboundOwnerGroups', 'outboundOwnerGroupsExclude', 'dropInvalid', 'hostLoopbackCidr', 'clusterDnsServers'] as const;
export type ConfigKey = (typeof KEYS)[number];

/** Environment variables read for each key (first one set wins). NODE_NAME is what the downward API sets. */
export const CONFIG_ENV: Record<ConfigKey, string[]> = {
  mode: ['SHUNT_MODE'],
  profile: ['SHUNT_PROFILE'],
  nodeName: ['SHUNT_NODE_NAME', 'NODE_NAME'],
  kubeconfig: ['SHUNT_KUBECONFIG', 'KUBECONFIG'],
  inCluster: ['SHUNT_IN_CLUSTER'],
  podsFile: ['SHUNT_PODS_FILE'],
  cgroupPath: ['SHUNT_CGROUP_PATH'],
  bpffsPath: ['SHUNT_BPFFS_PATH'],
  metricsAddress: ['SHUNT_METRICS_ADDRESS'],
  logLevel: ['SHUNT_LOG_LEVEL'],
  splicePorts: ['SHUNT_SPLICE_PORTS'],
  zdsSocket: ['SHUNT_ZDS_SOCKET'],
  // Istio's own names second: istio-cni takes these from its environment, so a drop-in agent can too.
  outboundOwnerGroups: ['SHUNT_OUTBOUND_OWNER_GROUPS', 'ISTIO_OUTBOUND_OWNER_GROUPS'],
  outboundOwnerGroupsExclude: ['SHUNT_OUTBOUND_OWNER_GROUPS_EXCLUDE', 'ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE'],
  dropInvalid: ['SHUNT_DROP_INVALID', 'INVALID_DROP'],
  hostLoopbackCidr: ['SHUNT_HOST_LOOPBACK_CIDR', 'ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR'],
  clusterDnsServers: ['SHUNT_CLUSTER_DNS_SERVERS'],
  maxPods: ['SHUNT_MAX_PODS'],
};

export const CONFIG_DEFAULTS = {
  mode: 'auto',
  profile: 'istio-sidecar',
  bpffsPath: '/sys/fs/bpf',
  metricsAddress: '0.0.0.0:9464',
  logLevel: 'info',
  zdsSocket: '/var/run/ztunnel/ztunnel.sock',
  maxPods: DEFAULT_MAX_PODS,
} as const;

export interface ConfigInputs {
  /** Parsed flags (commander's camelCase names); undefined values are ignored. */
  flags?: Partial<Record<ConfigKey, string | boolean | undefined>>;
  env?: Record<string, string | undefined>;
  /** Path of a YAML or JSON file with the same camelCase keys; SHUNT_CONFIG in env is used when absent. */
  file?: string;
}

type Raw = { value: unknown; origin: ConfigOrigin; where: string };

function readFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError('config file', path, `cannot read: ${errorMessage(err)}`);
  }
  let doc: unknown;
  try {
    // Loaded only when there is a config file to read (most agents have none).
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    doc = (require('yaml') as typeof import('yaml')).parse(text);
  } catch (err) {
    throw new ConfigError('config file', path, `not valid YAML/JSON: ${errorMessage(err)}`);
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new ConfigError('config file', path, 'must be a mapping of settings');
  const unknown = Object.keys(doc).filter((k) => !(KEYS as readonly string[]).includes(k));
  if (unknown.length > 0) throw new ConfigError(unknown.join(', '), `file ${path}`, `unknown setting; known: ${KEYS.join(', ')}`);
  return doc as Record<string, unknown>;
}

function text(r: Raw, key: string): string {
  if (typeof r.value === 'string') return r.value.trim();
  if (typeof r.value === 'number') return String(r.value);
  throw new ConfigError(key, r.where, `expected text, got ${JSON.stringify(r.value)}`);
}

function bool(r: Raw, key: string): boolean {
  if (typeof r.value === 'boolean') return r.value;
  const t = text(r, key).toLowerCase();
  if (t === 'true' || t === '1') return true;
  if (t === 'false' || t === '0') return false;
  throw new ConfigError(key, r.where, `expected true or false, got ${JSON.stringify(r.value)}`);
}

function oneOf<T extends string>(r: Raw, key: string, allowed: readonly T[]): T {
  const t = text(r, key);
  if ((allowed as readonly string[]).includes(t)) return t as T;
  throw new ConfigError(key, r.where, `${JSON.stringify(t)} is not one of ${allowed.join(', ')}`);
}

function absolutePath(r: Raw, key: string): string {
  const t = text(r, key);
  if (!isAbsolute(t)) throw new ConfigError(key, r.where, `${JSON.stringify(t)} must be an absolute path`);
  return t;
}

/** RFC 1123 subdomain, which is what Kubernetes accepts as a node name. */
function nodeName(r: Raw): string {
  const t = text(r, 'nodeName');
  if (t.length === 0 || t.length > 253 || !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/.test(t)) {
    throw new ConfigError('nodeName', r.where, `${JSON.stringify(t)} is not a valid Kubernetes node name (lower-case RFC 1123 subdomain)`);
  }
  return t;
}

/**
 * `none` (or empty), `all`, or ports: a comma/space-separated list in text (flag, env, file) or a
 * YAML list / single number in the file. Returns an error text naming the offending value.
 */
export function parseSplicePorts(value: unknown): { mode: SpliceMode; ports: number[] } | string {
  let items: unknown[];
  if (Array.isArray(value)) items = value;
  else if (typeof value === 'number') items = [value];
  else if (typeof value === 'string') {
    const t = value.trim().toLowerCase();
    if (t === '' || t === 'none') return { mode: 'none', ports: [] };
    if (t === 'all') return { mode: 'all', ports: [] };
    if (t === 'auto') return { mode: 'auto', ports: [] };
    items = t.split(/[\s,]+/).filter((x) => x !== '');
  } else return `expected "auto", "none", "all" or a list of ports, got ${JSON.stringify(value)}`;
  const ports = new Set<number>();
  for (const it of items) {
    const text = typeof it === 'number' ? String(it) : typeof it === 'string' ? it.trim() : JSON.stringify(it);
    if (text === 'all' || text === 'none' || text === 'auto')
      return `${JSON.stringify(text)} cannot be combined with ports (got ${JSON.stringify(value)}); use it alone`;
    const port = /^[0-9]{1,5}$/.test(text) ? Number(text) : NaN;
    if (!(port >= 1 && port <= 65535)) return `${JSON.stringify(text)} is not a port (1-65535) in ${JSON.stringify(value)}`;
    ports.add(port);
  }
  if (ports.size === 0) return { mode: 'none', ports: [] };
  if (ports.size > MAX_SPLICE_PORTS) return `${ports.size} ports, at most ${MAX_SPLICE_PORTS} can be listed`;
  return { mode: 'listed', ports: [...ports].sort((a, b) => a - b) };
}

/** host:port, :port or [v6]:port; port 1-65535. */
export function parseListenAddress(value: string): { host: string; port: number } | string {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d+)$/.exec(value);
  if (!m) return 'expected host:port, :port or [ipv6]:port';
  const host = m[1] ?? m[2] ?? '';
  const port = Number(m[3]);
  if (!Number.isInteger(port) || port < 1 || port > 65535) return `port ${m[3]} out of range 1-65535`;
  if (m[1] !== undefined) {
    const ip = parseIp(host);
    if (!ip.ok || ip.value.family !== 6) return `${JSON.stringify(host)} in brackets must be an IPv6 address`;
  } else if (host !== '' && !parseIp(host).ok && !/^[a-zA-Z0-9]([-a-zA-Z0-9.]*[a-zA-Z0-9])?$/.test(host)) {
    return `${JSON.stringify(host)} is neither an address nor a host name`;
  }
  return { host, port };
}

export function loadConfig(inputs: ConfigInputs = {}): LoadedConfig {
  const env = inputs.env ?? {};
  const filePath = inputs.file ?? env.SHUNT_CONFIG;
  const file = filePath ? readFile(filePath) : {};

  const lookup = (key: ConfigKey): Raw | undefined => {
    const flag = inputs.flags?.[key];
    if (flag !== undefined) return { value: flag, origin: 'flag', where: `flag --${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}` };
    for (const name of CONFIG_ENV[key]) {
      const v = env[name];
      if (v !== undefined && v !== '') return { value: v, origin: 'env', where: `env ${name}` };
    }
    if (file[key] !== undefined && file[key] !== null) return { value: file[key], origin: 'file', where: `file ${filePath}` };
    return undefined;
  };
  const origins = {} as Record<ConfigKey, ConfigOrigin>;
  const get = (key: ConfigKey): Raw | undefined => {
    const r = lookup(key);
    origins[key] = r?.origin ?? 'default';
    return r;
  };
  const orDefault = (key: keyof typeof CONFIG_DEFAULTS): Raw => get(key) ?? { value: CONFIG_DEFAULTS[key], origin: 'default', where: 'default' };

  const mode = oneOf(orDefault('mode'), 'mode', MODES);
  const profile = oneOf(orDefault('profile'), 'profile', PROFILE_NAMES);
  const nodeRaw = get('nodeName');
  if (!nodeRaw) throw new ConfigError('nodeName', 'flags/env/file', 'required: pass --node-name or set NODE_NAME (the downward API field spec.nodeName)');
  const node = nodeName(nodeRaw);

  const kubeRaw = get('kubeconfig');
  const inClusterRaw = get('inCluster');
  const podsRaw = get('podsFile');
  const inCluster = inClusterRaw ? bool(inClusterRaw, 'inCluster') : false;
  let source: PodSourceConfig;
  if (podsRaw) {
    if (kubeRaw || inCluster) {
      const other = kubeRaw ? kubeRaw.where : inClusterRaw!.where;
      throw new ConfigError('podsFile', podsRaw.where, `choose one pod source: a pods file or the Kubernetes API (also set: ${other})`);
    }
    const path = absolutePath(podsRaw, 'podsFile');
    if (!existsSync(dirname(path))) throw new ConfigError('podsFile', podsRaw.where, `directory ${dirname(path)} does not exist`);
    source = { kind: 'podsFile', path };
  } else if (kubeRaw || inClusterRaw) {
    if (kubeRaw && inCluster) throw new ConfigError('inCluster', inClusterRaw!.where, `conflicts with kubeconfig from ${kubeRaw.where}`);
    if (kubeRaw) {
      const path = text(kubeRaw, 'kubeconfig');
      if (!existsSync(path) || !statSync(path).isFile()) throw new ConfigError('kubeconfig', kubeRaw.where, `${JSON.stringify(path)} is not a readable file`);
      source = { kind: 'kubernetes', kubeconfig: path, inCluster: false };
    } else {
      if (!inCluster) throw new ConfigError('inCluster', inClusterRaw!.where, 'is false and no other pod source is set (kubeconfig or podsFile)');
      source = { kind: 'kubernetes', inCluster: true };
    }
  } else if (env.KUBERNETES_SERVICE_HOST) {
    // Running in a pod with a service account: the DaemonSet case needs no flag.
    source = { kind: 'kubernetes', inCluster: true };
    origins.inCluster = 'env';
  } else {
    throw new ConfigError('source', 'flags/env/file', 'no pod source: pass --pods-file <path>, --kubeconfig <path> or --in-cluster');
  }

  const cgroupRaw = get('cgroupPath');
  const cgroupPath = cgroupRaw ? absolutePath(cgroupRaw, 'cgroupPath') : null;
  const bpffsPath = absolutePath(orDefault('bpffsPath'), 'bpffsPath');
  const metricsRaw = orDefault('metricsAddress');
  const metricsAddress = text(metricsRaw, 'metricsAddress');
  const listen = parseListenAddress(metricsAddress);
  if (typeof listen === 'string') throw new ConfigError('metricsAddress', metricsRaw.where, `${JSON.stringify(metricsAddress)}: ${listen}`);
  const logLevel = oneOf(orDefault('logLevel'), 'logLevel', LOG_LEVELS);
  const spliceRaw = get('splicePorts');
  const splice = spliceRaw ? parseSplicePorts(spliceRaw.value) : { mode: 'auto' as const, ports: [] };
  if (typeof splice === 'string') throw new ConfigError('splicePorts', spliceRaw!.where, splice);
  const zdsRaw = orDefault('zdsSocket');
  const zdsSocket = absolutePath(zdsRaw, 'zdsSocket');
  // sockaddr_un.sun_path holds 107 bytes and a NUL.
  if (Buffer.byteLength(zdsSocket) > 107) throw new ConfigError('zdsSocket', zdsRaw.where, `${JSON.stringify(zdsSocket)} is longer than a unix socket path can be (107 bytes)`);

  const meshCapture = meshCaptureFrom(get);

  const maxPodsRaw = orDefault('maxPods');
  const maxPodsText = text(maxPodsRaw, 'maxPods');
  const maxPods = /^[0-9]{1,6}$/.test(maxPodsText) ? Number(maxPodsText) : NaN;
  if (!(maxPods >= 1 && maxPods <= MAX_MAX_PODS))
    throw new ConfigError('maxPods', maxPodsRaw.where, `${JSON.stringify(maxPodsText)} is not a pod count (1-${MAX_MAX_PODS})`);

  return {
    config: { mode, profile, nodeName: node, source, cgroupPath, bpffsPath, metricsAddress, logLevel, spliceMode: splice.mode, splicePorts: splice.ports, maxPods, zdsSocket, meshCapture },
    origins,
  };
}

/** A list setting: comma/space-separated text, or a YAML list in the file. */
function listText(r: Raw, key: string): string {
  if (Array.isArray(r.value)) return r.value.map((v) => String(v).trim()).join(',');
  return text(r, key).split(/[\s,]+/).filter((x) => x !== '').join(',');
}

function meshCaptureFrom(get: (key: ConfigKey) => Raw | undefined): MeshCaptureDefaults {
  const d = DEFAULT_MESH_CAPTURE;
  const incRaw = get('outboundOwnerGroups');
  const excRaw = get('outboundOwnerGroupsExclude');
  let ownerGroups = d.ownerGroups;
  if (incRaw || excRaw) {
    const inc = incRaw ? (incRaw.value === '*' || (typeof incRaw.value === 'string' && incRaw.value.trim() === '*') ? '*' : listText(incRaw, 'outboundOwnerGroups')) : '*';
    const exc = excRaw ? listText(excRaw, 'outboundOwnerGroupsExclude') : '';
    const g = parseOwnerGroups(inc, exc);
    if (!g.ok) {
      const bad = g.error.startsWith('ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE') ? excRaw : incRaw;
      throw new ConfigError(bad === excRaw ? 'outboundOwnerGroupsExclude' : 'outboundOwnerGroups', bad?.where ?? 'default', g.error);
    }
    ownerGroups = g.value;
  }
  const dropRaw = get('dropInvalid');
  let dropInvalid = d.dropInvalid;
  if (dropRaw) {
    const b = typeof dropRaw.value === 'boolean' ? { ok: true as const, value: dropRaw.value } : parseStrictBool(text(dropRaw, 'dropInvalid'));
    if (!b.ok) throw new ConfigError('dropInvalid', dropRaw.where, `${JSON.stringify(dropRaw.value)}: ${b.error}`);
    dropInvalid = b.value;
  }
  const loRaw = get('hostLoopbackCidr');
  let hostLoopbackCidr = d.hostLoopbackCidr;
  if (loRaw) {
    const c = parseLoopbackCidr(text(loRaw, 'hostLoopbackCidr'));
    if (!c.ok) throw new ConfigError('hostLoopbackCidr', loRaw.where, `${JSON.stringify(loRaw.value)}: ${c.error}`);
    hostLoopbackCidr = c.value;
  }
  const dnsRaw = get('clusterDnsServers');
  let clusterDnsServers = d.clusterDnsServers;
  if (dnsRaw) {
    const items = listText(dnsRaw, 'clusterDnsServers').split(',').filter((x) => x !== '');
    const a = splitAddresses(items);
    if (!a.ok) throw new ConfigError('clusterDnsServers', dnsRaw.where, a.error);
    // Kept in the order given: kubelet writes them in that order and keeps the first three.
    const canonical = new Set([...a.value.v4, ...a.value.v6]);
    clusterDnsServers = items.map((i) => splitAddresses([i])).flatMap((r) => (r.ok ? [...r.value.v4, ...r.value.v6] : [])).filter((x) => canonical.delete(x));
  }
  return { ownerGroups, dropInvalid, hostLoopbackCidr, clusterDnsServers };
}

/** Where a backend's pins go: `<bpffs>/shunt/<backend>`. */
export function pinRoot(config: Pick<ShuntConfig, 'bpffsPath'>): string {
  return join(config.bpffsPath, 'shunt');
}
