/**
 * Every sockops map size, derived from one setting: maxPods (the agent's --max-pods). The
 * per-pod maps hold exactly maxPods pods; the shared pools (addresses, port selections, CIDRs,
 * inbound listeners) hold maxPods times an average per-pod need, so one pod with many exclude
 * ports borrows from pods with none; the per-connection tables grow with the pods they serve.
 * A full map fails the pod with CapacityError, which names the setting to raise.
 */
import { DEFAULT_MAX_PODS, MAX_MAX_PODS } from '@shunt/core';
import type { MapName } from './abi';

// The setting lives in core's config (one place for flag, env, file and Helm); its bounds too.
export { DEFAULT_MAX_PODS, MAX_MAX_PODS };

/** Average per-pod need the shared pools are sized for. */
export const PER_POD = {
  /** dual-stack: one IPv4 and one IPv6 address */
  ips: 2,
  /** port selections (include/exclude inbound/outbound) */
  ports: 16,
  /** outbound include/exclude CIDRs of each family */
  cidrs: 8,
  /** inbound listener per family */
  listeners: 2,
  /** concurrently open redirected connections (per-connection tables; LRU) */
  connections: 16,
} as const;

/** Room for the next generation of pods being updated (old and new selections coexist briefly). */
const UPDATE_SLACK_PODS = 64;
/** Per-connection tables never shrink below what the build had before maxPods existed. */
const MIN_CONNECTION_ENTRIES = 65_536;

export type MapSizes = Partial<Record<MapName, number>>;

/** max_entries per map for maxPods (maps not listed keep their compiled size: fixed-size tables). */
export function mapSizes(maxPods: number): MapSizes {
  if (!Number.isInteger(maxPods) || maxPods < 1 || maxPods > MAX_MAX_PODS)
    throw new RangeError(`maxPods must be an integer 1..${MAX_MAX_PODS}, got ${String(maxPods)}`);
  const pool = (per: number) => (maxPods + UPDATE_SLACK_PODS) * per;
  const conns = Math.max(MIN_CONNECTION_ENTRIES, maxPods * PER_POD.connections);
  return {
    pod_cfg: maxPods,
    pod_meta: maxPods,
    pod_by_ip: maxPods * PER_POD.ips,
    port_sel: pool(PER_POD.ports),
    cidr4: pool(PER_POD.cidrs),
    cidr6: pool(PER_POD.cidrs),
    inbound_listener: maxPods * PER_POD.listeners,
    orig_by_cookie: conns,
    orig_by_tuple: conns,
    splice_socks: conns,
    dns_orig: Math.max(16_384, maxPods * 4),
  };
}

/** The per-pod capacity maps, and what an enroll needs of each. */
export const POD_MAPS = ['pod_cfg', 'pod_meta', 'pod_by_ip', 'port_sel', 'cidr4', 'cidr6', 'inbound_listener'] as const satisfies readonly MapName[];

export class CapacityError extends Error {
  /** Retrying cannot help until a pod leaves or the setting is raised: the reconciler backs off long. */
  readonly retryable = false;
  constructor(
    readonly pod: string,
    readonly map: string,
    readonly maxPods: number,
    detail: string,
  ) {
    super(
      `pod ${pod}: sockops map ${map} is full (${detail}); raise maxPods (--max-pods / SHUNT_MAX_PODS / Helm maxPods, now ${maxPods}) ` +
        'and restart the agent with cleanup to resize, or remove pods',
    );
    this.name = 'CapacityError';
  }
}

export interface Capacity {
  maxPods: number;
  pods: number;
  podsLeft: number;
  /** Per map: entries in use of max_entries. */
  maps: Record<string, { used: number; max: number }>;
}
