/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The tc (ambient) backend's map ABI: every key/value struct and every map, defined once. The
 * TypeScript codecs in packages/backend-tc/src/abi.ts mirror these structs and check their sizes
 * against the objects' BTF at load time.
 *
 * Design (packages/backend-tc/README.md has the whole picture): two programs on the pod's own
 * eth0, inside the pod netns, steer TCP to ztunnel's sockets in that netns with bpf_sk_assign:
 *  - ingress: a connection from outside to the pod -> ztunnel's established socket, else its
 *    inbound listener (15006); a packet the egress program hairpinned (mark SHUNT_TC_MARK) ->
 *    ztunnel's established socket, else its outbound listener (15001);
 *  - egress: an app's new outbound connection, and any packet of a connection ztunnel owns the
 *    other end of (its 15001 accepted sockets, its spoofed-source sockets towards the app), is
 *    marked and redirected to eth0's own ingress.
 * The mark makes policy routing (fwmark -> table with `local default dev lo`) deliver the
 * hairpinned packet locally although its destination is another host.
 *
 * Conventions:
 *  - Pods are found by address, not by netns cookie: tc programs cannot read the netns cookie
 *    before 6.15, and a pod IP is unique on the node. Key: 16 bytes, IPv4 stored IPv4-mapped.
 *    egress and hairpinned ingress packets carry the pod address as source, inbound ones as
 *    destination, so each packet needs one lookup.
 *  - Ports in keys/values are host order.
 *  - Port selections are keyed by a config generation (gen): the agent writes a new gen, flips
 *    the pod entries to it, then deletes the old one, so readers never see half a config.
 */
#ifndef SHUNT_TC_H
#define SHUNT_TC_H

/* skb->mark of hairpinned packets: outside ztunnel's 0x539 and Istio's 0x111, under the same
 * 0xfff mask Istio uses, so a pod's own marks above 0xfff are not disturbed. */
#define SHUNT_TC_MARK 0x5a0
#define SHUNT_TC_MARK_MASK 0xfff
/* ztunnel's SO_MARK on every one of its sockets (1337): never captured. */
#define SHUNT_TC_PROXY_MARK 0x539

/* shunt_tc_pod.flags */
#define SHUNT_TC_IN_ALL (1u << 0)  /* inbound include '*' (else: only SHUNT_TC_SEL_IN_INCLUDE ports) */
#define SHUNT_TC_OUT_ALL (1u << 1) /* outbound includeCidrs '*' (else: only SHUNT_TC_SEL_OUT_INCLUDE ports) */

#define SHUNT_TC_SEL_OUT_EXCLUDE 1
#define SHUNT_TC_SEL_OUT_INCLUDE 2
#define SHUNT_TC_SEL_IN_EXCLUDE 3
#define SHUNT_TC_SEL_IN_INCLUDE 4

/* Indices into the per-CPU counters array; names in abi.ts COUNTER_NAMES (same order). */
enum shunt_tc_counter {
	SHUNT_TC_CNT_IN_LISTENER = 0,   /* inbound SYN assigned to ztunnel's inbound listener */
	SHUNT_TC_CNT_IN_ESTABLISHED,    /* inbound packet assigned to an established socket */
	SHUNT_TC_CNT_IN_NO_LISTENER,    /* inbound SYN, no inbound listener: dropped (fail closed) */
	SHUNT_TC_CNT_IN_TUNNEL,         /* inbound to the HBONE port: left alone */
	SHUNT_TC_CNT_IN_PROBE,          /* inbound from the kubelet probe source: left alone */
	SHUNT_TC_CNT_IN_BYPASSED,       /* inbound to an uncaptured port */
	SHUNT_TC_CNT_OUT_HAIRPIN_NEW,   /* egress SYN of an app connection hairpinned */
	SHUNT_TC_CNT_OUT_HAIRPIN_FLOW,  /* egress packet of a ztunnel-owned connection hairpinned */
	SHUNT_TC_CNT_OUT_LISTENER,      /* hairpinned SYN assigned to ztunnel's outbound listener */
	SHUNT_TC_CNT_OUT_ESTABLISHED,   /* hairpinned packet assigned to ztunnel's socket */
	SHUNT_TC_CNT_OUT_NO_LISTENER,   /* hairpinned SYN, no outbound listener: dropped (fail closed) */
	SHUNT_TC_CNT_OUT_ORPHAN,        /* hairpinned non-SYN whose socket is gone */
	SHUNT_TC_CNT_OUT_PROXY,         /* egress packet of ztunnel itself (mark 1337): left alone */
	SHUNT_TC_CNT_OUT_BYPASSED,      /* egress SYN to an uncaptured destination */
	SHUNT_TC_CNT_ASSIGN_FAILED,     /* bpf_sk_assign refused: dropped */
	SHUNT_TC_CNT_REDIRECT_FAILED,   /* MAC rewrite or bpf_redirect failed: passed unchanged */
	SHUNT_TC_CNT_TW_COLLISION,      /* captured SYN whose 4-tuple is in TIME_WAIT on ztunnel's side: handed to sk_lookup */
	SHUNT_TC_CNT_DNS_CAPTURED,      /* app UDP query to :53 hairpinned (DNS capture on) */
	SHUNT_TC_CNT_DNS_TO_PROXY,      /* hairpinned query assigned to ztunnel's DNS socket */
	SHUNT_TC_CNT_DNS_NO_SOCKET,     /* hairpinned query, no DNS socket: dropped */
	SHUNT_TC_CNT_DNS_REPLIES,       /* DNS reply source rewritten back to the server the app asked */
	SHUNT_TC_CNT_TW_STEERED,        /* sk_lookup: a SYN that met a TIME_WAIT handed to ztunnel's listener */
	SHUNT_TC_CNT_TW_LOST,           /* sk_lookup: such a SYN whose listener was gone: dropped (fail closed) */
	SHUNT_TC_CNT_DNS_TCP,           /* hairpinned TCP SYN to :53 assigned to ztunnel's TCP DNS listener */
	/* Splicing app <-> ztunnel sockets (splice.bpf.c pairs them, redir.bpf.c is the shared guard). */
	SHUNT_TC_CNT_SOCKETS_SPLICED,   /* sockets put into the tc splice sockhash */
	SHUNT_TC_CNT_SPLICE_FAILED,     /* sockhash insert refused */
	SHUNT_TC_CNT_MSGS_SPLICED,      /* sk_msg redirected to the peer socket */
	SHUNT_TC_CNT_BYTES_SPLICED,
	SHUNT_TC_CNT_CLOSE_UNREAD,      /* spliced socket closed with unread bytes in its psock queue: reset asked (shunt_splice_close.h) */
	SHUNT_TC_CNT_SPLICE_SKIPPED_SHORT, /* connection not spliced: its port's recent connections were short */
	SHUNT_TC_CNT_PAIRED,            /* ztunnel's / the app's second end found its first end's entry: the pair is complete */
	SHUNT_TC_CNT_CLOSE_EVENT_LOST,  /* ... and the splice_resets ring buffer was full: that peer is not reset */
	SHUNT_TC_CNT_MAX = 32,
	/* Not counted here (a lookup past the array fails): the guard's TCP-path messages, which
	 * splice_stats counts already (splice_tcp_msgs); the 32 pinned slots are all in use. */
	SHUNT_TC_CNT_MSGS_PASSED = SHUNT_TC_CNT_MAX,
};

struct shunt_tc_addr {
	__u32 a[4];
};

/* tc_pod: pod address -> this. The presence of an entry is what "enrolled" means. */
struct shunt_tc_pod {
	__u64 netns;       /* netns cookie of the pod (user space: which pod an address is) */
	__u32 gen;         /* generation of this pod's tc_port_sel entries */
	__u32 flags;       /* SHUNT_TC_* */
	__u16 out_port;    /* ztunnel outbound listener (15001) */
	__u16 in_port;     /* ztunnel plaintext inbound listener (15006) */
	__u16 tunnel_port; /* ztunnel HBONE listener (15008): inbound to it is never captured */
	__u16 dns_port;    /* ztunnel's DNS port (15053) for UDP :53 capture; 0 = off */
};

/* tc_pod_meta: netns cookie -> who this pod is and where; only user space reads it. A netns
 * prepared ahead of its enroll has an entry too, with empty uid/ns/name and the PREPARED state
 * bit (abi.ts STATE): its path, ifindex and the inert rule/route prepare() wrote. */
struct shunt_tc_pod_meta {
	char uid[48];
	char ns[64];
	char name[256];
	char netns_path[256]; /* for unenroll/cleanup after an agent restart */
	char ifname[16];      /* the pod interface the links sit on (eth0) */
	__u32 ifindex;        /* its index inside the pod netns */
	__u32 state;          /* SHUNT_TC_STATE_* bits: what enroll changed in the netns */
	__u8 saved[16];       /* previous sysctl values, restored on unenroll (abi.ts SAVED_SYSCTLS) */
};

/* tc_dns: the app's UDP socket (pod address, port) -> the DNS server it asked, for the reply
 * rewrite on lo (ztunnel answers from its 127.0.0.1/::1 DNS socket). */
struct shunt_tc_dns_key {
	struct shunt_tc_addr client;
	__u16 port;
	__u16 _pad;
};

struct shunt_tc_dns_orig {
	struct shunt_tc_addr server;
	__u16 port;
	__u16 _pad;
};

/* tc_port_sel: (gen, port, kind) -> 1 */
struct shunt_tc_port_key {
	__u32 gen;
	__u16 port;
	__u8 kind; /* SHUNT_TC_SEL_* */
	__u8 _pad;
};

/*
 * Splicing (bpf/tc/splice.bpf.c): the two sockets of one captured connection inside a pod netns,
 * the app's and ztunnel's, go into the tc backend's own splice sockhash (shunt_splice.h maps,
 * pinned under <bpffs>/shunt/tc/maps) so sk_msg hands data straight to the peer, behind the same
 * guard as the sockops backend (shunt_splice_guard.h). Tuples always carry the netns cookie.
 * shunt_splice_sock.flags bits 2..3 say which end of which leg a splice_peer entry is, so the
 * second end pairs only with the first end of the same kind of leg:
 *  - APP_OUT: the app's connecting socket (ACTIVE_ESTABLISHED, not ztunnel's mark, to a captured
 *    destination); its peer is ztunnel's socket accepted on 15001 (PASSIVE, mark 1337);
 *  - ZT_IN: ztunnel's inbound leg (ACTIVE, mark 1337, to an enrolled address of this netns on a
 *    captured port); its peer is the app's accepted socket.
 * The accepting end carries SHUNT_SPLICE_F_OWNS_ORIG (it learns at its close, as in sockops).
 */
#define SHUNT_TC_SPLICE_F_APP_OUT (1u << 2)
#define SHUNT_TC_SPLICE_F_ZT_IN (1u << 3)
#define SHUNT_TC_SPLICE_F_KINDS (SHUNT_TC_SPLICE_F_APP_OUT | SHUNT_TC_SPLICE_F_ZT_IN)

/*
 * tc_splice_pending: a connection the short-connection rule did not splice still teaches at its
 * accepting socket's close (from TCP's data segment counts). The connecting end leaves its tuple
 * here (kind = its SHUNT_TC_SPLICE_F_* leg); the accepting end takes it over (its own tuple,
 * kind | SHUNT_SPLICE_F_OWNS_ORIG) and deletes it at TCP_CLOSE. LRU: a connecting end whose peer
 * never accepts ages out.
 */
struct shunt_tc_pending {
	__u32 kind;
	__u32 _pad;
};

_Static_assert(SHUNT_TC_CNT_CLOSE_EVENT_LOST < SHUNT_TC_CNT_MAX, "tc_counters has too few slots");

/* Map definitions: BPF side only, and not for test programs that only parse (SHUNT_TC_NO_MAPS). */
#if defined(__bpf__) && !defined(SHUNT_TC_NO_MAPS)
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct shunt_tc_addr);
	__type(value, struct shunt_tc_pod);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tc_pod SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct shunt_tc_pod_meta);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tc_pod_meta SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct shunt_tc_port_key);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tc_port_sel SEC(".maps");

/*
 * TIME_WAIT handoff (ingress.bpf.c -> sk_lookup.bpf.c). bpf_sk_assign keeps the 4-tuple, so
 * ztunnel's accepted socket and the app's socket of one connection share it in one netns; when
 * ztunnel's side closed first and sits in TIME_WAIT, a SYN reusing the tuple cannot be queued
 * by ztunnel's listener (duplicate in the established hash). ingress then leaves the SYN to the
 * stack: the TIME_WAIT socket takes it (TCP_TW_SYN), ends itself and asks for a listener of the
 * packet's own port, and sk_lookup answers with ztunnel's listener. An sk_lookup program cannot
 * tell which pod's netns it runs in (no netns cookie helper there), and a same-node packet
 * looks alike in the sender's netns (hairpinned) and the receiver's (inbound), so ingress hands
 * over the exact decision: the packet's tuple in this CPU's tc_tw_handoff slot and the listener
 * in tc_tw_sock[cpu]. Both run in the same softirq pass on the same CPU (tc ingress -> ip_rcv
 * -> tcp_v4_rcv -> TIME_WAIT -> listener lookup), nothing else runs on that CPU in between; the
 * slot is matched by tuple and age and consumed once.
 */
struct shunt_tc_tw {
	struct shunt_tc_addr local;  /* the SYN's destination (the lookup's local address) */
	struct shunt_tc_addr remote; /* its source */
	__u64 at_ns;                 /* bpf_ktime_get_ns() when armed; 0 = empty */
	__u16 lport;                 /* host order */
	__u16 rport;
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct shunt_tc_tw);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tc_tw_handoff SEC(".maps");

/* CPU id -> the listener ingress chose for the SYN in that CPU's tc_tw_handoff slot. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tc_tw_sock SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct shunt_tc_dns_key);
	__type(value, struct shunt_tc_dns_orig);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tc_dns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SHUNT_TC_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tc_counters SEC(".maps");
#endif /* __bpf__ && !SHUNT_TC_NO_MAPS */

#endif /* SHUNT_TC_H */
