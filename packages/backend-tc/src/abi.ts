/**
 * TypeScript mirror of bpf/include/shunt_tc.h: constants, struct codecs and the address
 * encoding. map.typed() checks every codec's size against the loaded map, so a change on one
 * side only fails loudly.
 */
import { struct, u8, u16, u32, u64, bytes, pad, ipv4, ipv6 } from '@shunt/libbpf';

/** skb->mark of hairpinned packets (under MARK_MASK) and the policy route that delivers them locally. */
export const TC_MARK = 0x5a0;
export const TC_MARK_MASK = 0xfff;
/** Routing table and rule priority of that route in each pod netns (before main at 32766). */
export const TC_TABLE = 1440;
export const TC_RULE_PRIORITY = 32200;
/** ztunnel's SO_MARK (1337): its packets are never captured. */
export const PROXY_MARK = 0x539;

export const POD_FLAG = { IN_ALL: 1, OUT_ALL: 2 } as const;

export const SEL = { OUT_EXCLUDE: 1, OUT_INCLUDE: 2, IN_EXCLUDE: 3, IN_INCLUDE: 4 } as const;
export type SelKind = (typeof SEL)[keyof typeof SEL];
export const SEL_NAMES: Record<number, string> = { 1: 'out-exclude', 2: 'out-include', 3: 'in-exclude', 4: 'in-include' };

/** Same order as enum shunt_tc_counter. */
export const COUNTER_NAMES = [
  'inbound_to_listener',
  'inbound_to_established',
  'inbound_no_listener',
  'inbound_tunnel_passed',
  'inbound_probe_exempt',
  'inbound_bypassed',
  'outbound_hairpinned_new',
  'outbound_hairpinned_flow',
  'outbound_to_listener',
  'outbound_to_established',
  'outbound_no_listener',
  'outbound_orphan',
  'outbound_proxy_own',
  'outbound_bypassed',
  'assign_failed',
  'redirect_failed',
  'timewait_collision',
  'dns_captured',
  'dns_to_proxy',
  'dns_no_socket',
  'dns_replies_rewritten',
  'timewait_steered',
  'timewait_lost',
  'dns_tcp_to_proxy',
  'sockets_spliced',
  'splice_insert_failed',
  'msgs_spliced',
  'bytes_spliced',
  'splice_close_unread',
  'splice_skipped_short',
  'splice_paired',
  'splice_close_event_lost',
] as const;
export type CounterName = (typeof COUNTER_NAMES)[number];
export const COUNTER_SLOTS = 32;

/** shunt_tc_pod_meta.state bits: what enroll changed in the pod netns (undone on unenroll). */
/**
 * PREPARED marks a netns prepared ahead of its enroll (no pod yet, empty uid/ns/name): its record
 * keeps the netns path, the eth0 ifindex its links were attached on and the (inert) rule/route
 * bits prepare() wrote, so a restarted agent can adopt or release them.
 */
export const STATE = { RULE4: 1, RULE6: 2, ROUTE4: 4, ROUTE6: 8, ACCEPT_LOCAL: 16, CLSACT: 32, CLSACT_CREATED: 64, CLSACT_LO_CREATED: 128, PREPARED: 256 } as const;
/** The policy rule and local route bits (per family). */
export const ROUTING = { 4: STATE.RULE4 | STATE.ROUTE4, 6: STATE.RULE6 | STATE.ROUTE6 } as const;

/**
 * clsact fallback (no tcx): our cls_bpf filters' handle and priority on eth0 ingress/egress. A
 * high priority number runs after filters at lower numbers (a CNI's usually sit at 1..49152 or
 * are auto-assigned from 49152 down), mirroring tcx 'last'. Never replaced: EEXIST if taken.
 */
export const CLSACT_HANDLE = 0x5a0;
export const CLSACT_PRIORITY = 0xc5a0;
/** Indices into shunt_tc_pod_meta.saved: previous value + 1 (0 = not saved). */
export const SAVED = { ACCEPT_LOCAL: 0 } as const;

export const podValue = struct({
  netns: u64,
  gen: u32,
  flags: u32,
  outPort: u16,
  inPort: u16,
  tunnelPort: u16,
  dnsPort: u16,
});
export type PodValue = ReturnType<typeof podValue.decode>;

export const META_SIZES = { uid: 48, ns: 64, name: 256, netnsPath: 256, ifname: 16, saved: 16 } as const;
export const podMeta = struct({
  uid: bytes(META_SIZES.uid),
  ns: bytes(META_SIZES.ns),
  name: bytes(META_SIZES.name),
  netnsPath: bytes(META_SIZES.netnsPath),
  ifname: bytes(META_SIZES.ifname),
  ifindex: u32,
  state: u32,
  saved: bytes(META_SIZES.saved),
});
export type PodMetaValue = ReturnType<typeof podMeta.decode>;

export const portKey = struct({ gen: u32, port: u16, kind: u8, _pad: pad(1) });
export const addr16 = bytes(16);
export const netnsKey = u64;
export const flagValue = u8;
export const u32Key = u32;
export const counterValue = u64;

/** tc_dns: app socket (pod address, port) -> the DNS server it asked. */
export const dnsKey = struct({ client: bytes(16), port: u16, _pad: pad(2) });
export const dnsOrig = struct({ server: bytes(16), port: u16, _pad: pad(2) });

/** tc_tw_handoff: one per-CPU slot, ingress -> sk_lookup (shunt_tc.h: the TIME_WAIT handoff). */
export const twHandoff = struct({ local: bytes(16), remote: bytes(16), atNs: u64, lport: u16, rport: u16, _pad: pad(4) });

export const MAP_NAMES = ['tc_pod', 'tc_pod_meta', 'tc_port_sel', 'tc_counters', 'tc_dns', 'tc_tw_handoff', 'tc_tw_sock'] as const;
export type MapName = (typeof MAP_NAMES)[number];

// Address and text fields as the BPF side keys them: shared codecs in @shunt/libbpf.
export { encodeAddr, decodeAddr, encodeText, decodeText } from '@shunt/libbpf';
