// Typed views of `ip -json` answers (iproute2 6.x). Only fields we use are typed; the rest stay in `raw`.

export interface LinkCounters {
  bytes: number;
  packets: number;
  errors: number;
  dropped: number;
}

export interface LinkStats {
  rx: LinkCounters;
  tx: LinkCounters;
}

export interface Link {
  ifindex: number;
  name: string;
  flags: string[];
  /** Administratively up (IFF_UP). */
  up: boolean;
  operstate: string;
  mtu: number;
  mac?: string;
  /** Bridge (or other master) this link is enslaved to. */
  master?: string;
  /** Peer name for a veth whose peer is in the same netns, or `if<N>` otherwise. */
  peer?: string;
  /** `linkinfo.info_kind` when details were asked for: veth, bridge, … */
  kind?: string;
  /** Present when stats were asked for (`ip -s`). */
  stats?: LinkStats;
  raw: Record<string, unknown>;
}

export type Family = 4 | 6;

export interface Address {
  ifname: string;
  ifindex: number;
  family: Family;
  address: string;
  prefixLength: number;
  scope: string;
  /** `address/prefix`, handy for logs and comparisons. */
  cidr: string;
}

export interface Route {
  family: Family;
  /** `default` or a CIDR/host address. */
  dst: string;
  type: string;
  table: string;
  dev?: string;
  via?: string;
  src?: string;
  protocol?: string;
  scope?: string;
  metric?: number;
  raw: Record<string, unknown>;
}

export interface RouteSpec {
  family?: Family;
  /** `default` or a CIDR; a bare address is a host route. */
  dst: string;
  dev?: string;
  via?: string;
  /** Preferred source address. */
  src?: string;
  /** Numeric table id or a name from rt_tables; default `main`. */
  table?: number | string;
  /** Route type: unicast (default), local, blackhole, … */
  type?: 'unicast' | 'local' | 'blackhole' | 'unreachable';
  scope?: 'global' | 'link' | 'host';
  metric?: number;
  /** Treat the next hop as directly attached even if no prefix covers it. */
  onlink?: boolean;
}

export interface Rule {
  family: Family;
  priority: number;
  table: string;
  fwmark?: number;
  fwmask?: number;
  src?: string;
  dst?: string;
  iif?: string;
  oif?: string;
  action?: string;
  raw: Record<string, unknown>;
}

export interface RuleSpec {
  family?: Family;
  priority?: number;
  table: number | string;
  fwmark?: number;
  fwmask?: number;
  src?: string;
  dst?: string;
  iif?: string;
}
