/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The sockops backend's map ABI: every key/value struct and every map is defined here,
 * once. The TypeScript codecs in packages/backend-sockops/src/abi.ts mirror these structs
 * and check their sizes against the objects' BTF at load time.
 *
 * Conventions (why they are what they are):
 *  - Addresses are always 16 bytes (4 x __u32, network order); IPv4 is stored IPv4-mapped
 *    (::ffff:a.b.c.d) so a v4 socket and a dual-stack v6 socket with a mapped address
 *    produce the same key.
 *  - Ports in keys/values are host order; the BPF side converts once at the edge, because
 *    each context (sock_addr, sock_ops, sk_msg, bpf_sock) encodes ports differently.
 *  - A pod's port selections and CIDRs are keyed by a config generation (`gen`) rather than
 *    by the netns cookie: the agent writes a new generation, then flips pod_cfg to it in one
 *    map update, then deletes the old generation. Readers never see half a config.
 *  - Socket 4-tuples are unique only per netns when a loopback address is involved, so the
 *    tuple key carries the netns cookie in that case and 0 otherwise (pod IPs are unique
 *    node-wide, and a proxy-to-proxy connection crosses two netns).
 */
#ifndef SHUNT_SOCKOPS_H
#define SHUNT_SOCKOPS_H

/* The splice ABI (tuple, guard, learn, splice maps) is shared with the tc backend. */
#include "shunt_splice.h"

#define SHUNT_SEL_OUT_EXCLUDE 1
#define SHUNT_SEL_OUT_INCLUDE 2
#define SHUNT_SEL_IN_EXCLUDE 3
#define SHUNT_SEL_IN_INCLUDE 4
#define SHUNT_SEL_DNS_SERVER 5 /* cidr4/cidr6 host entries: the pod's DNS servers (SHUNT_POD_DNS_LISTED) */

/* owner_sel kinds: ids beyond pod_cfg's proxy_uid/proxy_gid, and the owner-group list. */
#define SHUNT_OWNER_PROXY_UID 1
#define SHUNT_OWNER_PROXY_GID 2
#define SHUNT_OWNER_GROUP 3

/* shunt_pod_cfg.flags */
#define SHUNT_POD_INBOUND_ALL (1u << 0) /* inbound include '*' */
#define SHUNT_POD_EXTRA_IDS (1u << 1)   /* owner_sel holds more proxy uids/gids (istio-iptables -u/-g lists) */
#define SHUNT_POD_GROUPS_ONLY (1u << 2) /* ISTIO_OUTBOUND_OWNER_GROUPS list: only listed groups are captured */
#define SHUNT_POD_GROUPS_EXCEPT (1u << 3) /* ..._EXCLUDE: listed groups are not captured */
#define SHUNT_POD_LO_INCLUDED (1u << 4) /* an include CIDR is loopback (Istio drops its -o lo RETURN) */
#define SHUNT_POD_DNS_LISTED (1u << 5)  /* DNS capture only to SHUNT_SEL_DNS_SERVER addresses */

/* shunt_orig.flags */
#define SHUNT_ORIG_SPLICE (1u << 0)  /* both ends of this connection go into the sockhash */
#define SHUNT_ORIG_NO_ANSWER (1u << 1) /* splice-only record: never answers SO_ORIGINAL_DST */
#define SHUNT_ORIG_INBOUND (1u << 2) /* same-node caller rewritten to the pod's inbound port */
#define SHUNT_ORIG_DNS (1u << 3)     /* DNS query rewritten to the proxy's DNS port */
#define SHUNT_ORIG_LEARN (1u << 4)   /* not spliced by the short-connection rule: the accepting socket learns from its TCP counters at close */

#define SHUNT_DNS_PORT 53


/* Indices into the per-CPU counters array; names in abi.ts COUNTER_NAMES (same order). */
enum shunt_counter {
	SHUNT_CNT_CONNECT_REDIRECTED = 0, /* app connect -> own proxy outbound port */
	SHUNT_CNT_CONNECT_INBOUND,        /* same-node connect -> destination pod's inbound port */
	SHUNT_CNT_CONNECT_BYPASSED,       /* enrolled pod's connect left alone (loopback, excluded, not included) */
	SHUNT_CNT_CONNECT_PROXY,          /* enrolled proxy's own connect left alone */
	SHUNT_CNT_ORIG_RECORDED,          /* sockops moved an original destination to its 4-tuple */
	SHUNT_CNT_ORIG_ANSWERED,          /* SO_ORIGINAL_DST answered from a record */
	SHUNT_CNT_ORIG_MISSED,            /* SO_ORIGINAL_DST asked, no record (kernel answer kept) */
	SHUNT_CNT_SOCKETS_SPLICED,        /* sockets added to the sockhash */
	SHUNT_CNT_SPLICE_FAILED,          /* sockhash insert refused */
	SHUNT_CNT_MSGS_SPLICED,           /* sk_msg redirected to the peer socket */
	SHUNT_CNT_BYTES_SPLICED,
	SHUNT_CNT_MSGS_PASSED,            /* sk_msg peer not in the sockhash: normal stack */
	SHUNT_CNT_SOCKOPT_LARGE,          /* foreign getsockopt with optlen > PAGE_SIZE: optlen reset to 0 */
	SHUNT_CNT_ORIG_RELEASED,          /* original-destination record deleted when its socket closed */
	SHUNT_CNT_DNS_REDIRECTED,         /* UDP sendmsg/connect or TCP connect to :53 -> proxy DNS port */
	SHUNT_CNT_DNS_REPLIES,            /* UDP recvmsg source rewritten back to the address the app asked */
	SHUNT_CNT_INBOUND_STEERED,        /* sk_lookup handed a SYN from outside the pod to its proxy's listener */
	SHUNT_CNT_INBOUND_NO_LISTENER,    /* captured SYN, proxy listener not in inbound_listener: refused */
	SHUNT_CNT_INBOUND_ASSIGN_FAILED,  /* bpf_sk_assign refused the listener (e.g. v6-only for IPv4): refused */
	SHUNT_CNT_ORIG_LOCAL,             /* SO_ORIGINAL_DST without record answered with the local address */
	SHUNT_CNT_PEER_REWRITTEN,         /* getpeername shows the original destination instead of the proxy */
	SHUNT_CNT_CLOSE_UNREAD,           /* spliced socket closed with unread bytes in its psock queue: reset asked (splice_close.bpf.c) */
	SHUNT_CNT_CLOSE_EVENT_LOST,       /* ... and the splice_resets ring buffer was full: that peer is not reset */
	SHUNT_CNT_SPLICE_SKIPPED_SHORT,   /* connection not spliced: its port's recent connections were short (splice_learn) */
	SHUNT_CNT_MAX = 24,
};


/* pod_cfg: netns cookie -> this. The presence of an entry is what "enrolled" means. */
struct shunt_pod_cfg {
	__u32 gen;       /* generation of this pod's port_sel / cidr entries */
	__u32 flags;     /* SHUNT_POD_* */
	__u32 proxy_uid;
	__u32 proxy_gid;
	__u16 out_port;  /* proxy outbound listener (15001) */
	__u16 in_port;   /* proxy inbound listener (15006) */
	__u16 dns_port;  /* proxy DNS listener (15053) for UDP/TCP :53 capture; 0 = off */
	__u16 _pad;
	/* Added for the Istio capture options (kept at the end so older fields keep their offsets). */
	__u32 lo_net4;     /* host loopback network (ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR), host byte order */
	__u8 lo_prefix4;   /* its prefix length, 8..32 */
	__u8 _pad2;
	__u16 tunnel_port; /* never sent to the inbound port by the proxy's loopback rule (15008) */
};

/* pod_meta: netns cookie -> who this pod is. Only user space reads it (observe()). */
struct shunt_pod_meta {
	char uid[48];
	char ns[64];
	char name[256];
};

/* port_sel: (gen, port, kind) -> 1 */
struct shunt_port_key {
	__u32 gen;
	__u16 port;
	__u8 kind; /* SHUNT_SEL_* */
	__u8 _pad;
};

/* cidr4 / cidr6 (LPM tries): prefixlen counts the 64 bits of gen+kind plus the CIDR prefix. */
struct shunt_cidr4_key {
	__u32 prefixlen;
	__u32 gen;
	__u32 kind;
	__u8 addr[4];
};

struct shunt_cidr6_key {
	__u32 prefixlen;
	__u32 gen;
	__u32 kind;
	__u8 addr[16];
};

/* owner_sel: (gen, id, kind) -> 1. Per generation like port_sel, so a config flip is one update. */
struct shunt_owner_key {
	__u32 gen;
	__u32 id;
	__u32 kind; /* SHUNT_OWNER_* */
};


/* The destination the application asked for. */
struct shunt_orig {
	struct shunt_addr addr;
	__u16 port;
	__u8 family;    /* 4 or 6: which sockaddr SO_ORIGINAL_DST answers with */
	__u8 flags;     /* SHUNT_ORIG_* */
	__u16 via_port; /* DNS: the proxy port the query went to (replies come from it); else 0 */
	__u16 _pad;
};


/* inbound_listener key: the proxy's inbound listening socket of one pod netns, per family. */
struct shunt_listener_key {
	__u64 netns;  /* netns cookie of the pod */
	__u32 family; /* 4 or 6: the family of the connections it takes */
	__u32 _pad;
};



#ifdef __bpf__
/* ---- map definitions (BPF side only) ---- */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct shunt_pod_cfg);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pod_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct shunt_pod_meta);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pod_meta SEC(".maps");

/* pod IP -> netns cookie, for same-node inbound rewrites and "is this my own pod" checks. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct shunt_addr);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pod_by_ip SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct shunt_port_key);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} port_sel SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct shunt_cidr4_key);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cidr4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct shunt_cidr6_key);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cidr6 SEC(".maps");

/* socket cookie of the connecting socket -> original destination (connect -> sockops) */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct shunt_orig);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} orig_by_cookie SEC(".maps");

/* accepting socket's view of the connection -> original destination (sockops -> getsockopt) */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct shunt_tuple);
	__type(value, struct shunt_orig);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} orig_by_tuple SEC(".maps");

/*
 * UDP socket cookie -> the DNS server it last asked (sendmsg/connect -> recvmsg): replies from
 * the proxy's DNS port are shown as coming from there. Deleted when the socket is released.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct shunt_orig);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dns_orig SEC(".maps");

/* original destination port -> 1, consulted when splice mode is LISTED */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u16);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} splice_ports SEC(".maps");

/*
 * The proxy's inbound listener (15006) per pod netns and family, put in by the agent (a copy
 * of the proxy's fd, borrowed with pidfd_getfd): sk_lookup hands it connections from outside
 * the pod. The kernel drops an entry when its socket closes (proxy restart), and the agent's
 * next enroll puts the new listener in. Value: fd on update, socket cookie on lookup.
 */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 8192);
	__type(key, struct shunt_listener_key);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} inbound_listener SEC(".maps");

/* Extra proxy uids/gids and the owner-group list of each pod generation. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct shunt_owner_key);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} owner_sel SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SHUNT_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} counters SEC(".maps");

#endif /* __bpf__ */
#endif /* SHUNT_SOCKOPS_H */
