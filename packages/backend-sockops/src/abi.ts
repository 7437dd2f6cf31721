/**
 * TypeScript mirror of bpf/include/shunt_sockops.h: constants, struct codecs and the
 * address encoding. map.typed() checks every codec's size against the loaded map, so a
 * change on one side only fails loudly.
 */
import { struct, u8, u16, u32, u64, bytes, pad, ipv4, ipv6 } from '@shunt/libbpf';

export const SEL = {
  OUT_EXCLUDE: 1,
  OUT_INCLUDE: 2,
  IN_EXCLUDE: 3,
  IN_INCLUDE: 4,
  /** cidr4/cidr6 host entries: the pod's DNS servers (POD_FLAG.DNS_LISTED). */
  DNS_SERVER: 5,
} as const;
export type SelKind = (typeof SEL)[keyof typeof SEL];
export const SEL_NAMES: Record<number, string> = {
  1: 'out-exclude',
  2: 'out-include',
  3: 'in-exclude',
  4: 'in-include',
  5: 'dns-server',
};

/** owner_sel kinds (shunt_sockops.h SHUNT_OWNER_*). */
export const OWNER = { PROXY_UID: 1, PROXY_GID: 2, GROUP: 3 } as const;
export type OwnerKind = (typeof OWNER)[keyof typeof OWNER];

export const POD_FLAG_INBOUND_ALL = 1;
/** shunt_pod_cfg.flags beyond INBOUND_ALL (shunt_sockops.h SHUNT_POD_*). */
export const POD_FLAG = {
  INBOUND_ALL: 1,
  EXTRA_IDS: 1 << 1,
  GROUPS_ONLY: 1 << 2,
  GROUPS_EXCEPT: 1 << 3,
  LO_INCLUDED: 1 << 4,
  DNS_LISTED: 1 << 5,
} as const;

export const ORIG_FLAG = { SPLICE: 1, NO_ANSWER: 2, INBOUND: 4, DNS: 8 } as const;

export const SPLICE_MODE = { none: 0, all: 1, listed: 2 } as const;

/** Same order as enum shunt_counter. */
export const COUNTER_NAMES = [
  'connects_redirected',
  'connects_inbound_redirected',
  'connects_bypassed',
  'connects_proxy_own',
  'orig_dst_recorded',
  'orig_dst_answered',
  'orig_dst_missed',
  'sockets_spliced',
  'splice_insert_failed',
  'msgs_spliced',
  'bytes_spliced',
  'msgs_passed',
  'getsockopt_large_passed',
  'orig_dst_released',
  'dns_redirected',
  'dns_replies_rewritten',
  'inbound_steered',
  'inbound_no_listener',
  'inbound_assign_failed',
  'orig_dst_local_answered',
  'peer_rewritten',
  'splice_close_unread',
  'splice_close_event_lost',
  'splice_skipped_short',
] as const;
export type CounterName = (typeof COUNTER_NAMES)[number];
export const COUNTER_SLOTS = 24;

// The splice ABI (shunt_splice.h) is shared with the tc backend: its codecs live in libbpf.
export { SPLICE_STAT_NAMES, SPLICE_STAT_SLOTS, SPLICE_STAT_MAX, GUARD_DEFAULTS, type SpliceStatName } from '@shunt/libbpf';
export { spliceGuardValue as spliceGuard, spliceSockValue as spliceSock, spliceCfgValue as spliceCfg, spliceTuple as tuple } from '@shunt/libbpf';

/** Prefix bits that gen + kind occupy in an LPM key before the address. */
export const LPM_HEADER_BITS = 64;

export const podCfg = struct({
  gen: u32,
  flags: u32,
  proxyUid: u32,
  proxyGid: u32,
  outPort: u16,
  inPort: u16,
  dnsPort: u16,
  _pad: pad(2),
  loNet4: u32,
  loPrefix4: u8,
  _pad2: pad(1),
  tunnelPort: u16,
});
export type PodCfg = ReturnType<typeof podCfg.decode>;

export const POD_META_SIZES = { uid: 48, ns: 64, name: 256 } as const;
export const podMeta = struct({
  uid: bytes(POD_META_SIZES.uid),
  ns: bytes(POD_META_SIZES.ns),
  name: bytes(POD_META_SIZES.name),
});

export const netnsKey = u64;
export const addr16 = bytes(16);

export const ownerKey = struct({ gen: u32, id: u32, kind: u32 });

export const portKey = struct({ gen: u32, port: u16, kind: u8, _pad: pad(1) });
export type PortKey = ReturnType<typeof portKey.decode>;

export const cidr4Key = struct({ prefixlen: u32, gen: u32, kind: u32, addr: ipv4 });
export const cidr6Key = struct({ prefixlen: u32, gen: u32, kind: u32, addr: ipv6 });
export const flagValue = u8;


export const orig = struct({
  addr: bytes(16),
  port: u16,
  family: u8,
  flags: u8,
  viaPort: u16,
  _pad: pad(2),
});

/** inbound_listener key: pod netns cookie + the family of the connections the listener takes. */
export const listenerKey = struct({ netns: u64, family: u32, _pad: pad(4) });
export const u32Key = u32;
export const u16Key = u16;
export const counterValue = u64;

/** Every map the objects declare, and the codecs that must fit them. */
export const MAP_NAMES = [
  'pod_cfg',
  'pod_meta',
  'pod_by_ip',
  'port_sel',
  'cidr4',
  'cidr6',
  'orig_by_cookie',
  'orig_by_tuple',
  'splice_socks',
  'dns_orig',
  'splice_cfg',
  'splice_ports',
  'inbound_listener',
  'counters',
  'owner_sel',
  'splice_guard',
  'splice_peer',
  'splice_stats',
] as const;
export type MapName = (typeof MAP_NAMES)[number];

// Address and text fields as the BPF side keys them: shared codecs in @shunt/libbpf.
export { encodeAddr, decodeAddr, encodeText, decodeText } from '@shunt/libbpf';
