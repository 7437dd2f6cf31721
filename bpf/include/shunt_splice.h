/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The splice ABI, shared by the sockops backend (sidecars: app <-> proxy sockets) and the tc
 * backend (ambient: app <-> ztunnel sockets in the pod netns): the connection tuple, the guard's
 * policy and per-socket state, the short-connection learning, the splice stats, the maps that
 * hold them, and the insert both pairing programs splice a socket with (splice_insert). Each
 * backend pins its own copies of these maps in its own directory
 * (<bpffs>/shunt/sockops/maps, <bpffs>/shunt/tc/maps); the guard and verdict programs
 * (shunt_splice_guard.h) and the learning (shunt_splice_learn.h) are built once per backend
 * against them. The TypeScript codecs mirror these structs (backend-sockops/src/abi.ts, the
 * shared splice codecs in libbpf) and check their sizes against the objects' BTF at load time.
 *
 * Moved here from shunt_sockops.h unchanged (names, layouts, map attributes): pins made by
 * earlier versions stay compatible.
 */
#ifndef SHUNT_SPLICE_H
#define SHUNT_SPLICE_H

/* shunt_splice_cfg.mode */
#define SHUNT_SPLICE_NONE 0
#define SHUNT_SPLICE_ALL 1
#define SHUNT_SPLICE_LISTED 2

struct shunt_addr {
	__u32 a[4];
};

/* A TCP connection as one of its sockets sees it. */
struct shunt_tuple {
	__u64 netns; /* netns cookie: sockops if either address is loopback, else 0; tc always (shunt_sock.h tuple_scope) */
	struct shunt_addr local;
	struct shunt_addr remote;
	__u16 lport;
	__u16 rport;
	__u32 _pad;
};

struct shunt_splice_cfg {
	__u32 mode; /* SHUNT_SPLICE_* */
};

/*
 * The splice guard (shunt_splice_guard.h, built into bpf/sockops/redir.bpf.c and bpf/tc/redir.bpf.c). A spliced message is charged to the PEER's receive memory and
 * never blocks the sender (bpf_tcp_ingress checks no sk_rcvbuf), so sk_msg redirects only while
 * the peer's queue stays bounded; otherwise the flow takes the TCP path (SK_PASS), where TCP's
 * own window pushes back, and returns only when no byte of the TCP path is unread.
 * splice_guard (ARRAY, 1 entry): the policy; all zero = built-in defaults (SHUNT_GUARD_*).
 */
#define SHUNT_GUARD_QUEUE_CAP (4u << 20)   /* bound on a peer's queued bytes (and by its sk_rcvbuf if set by the app) */
#define SHUNT_GUARD_SMALL_MSG (8u << 10)   /* messages below this splice only onto a near-empty queue */
#define SHUNT_GUARD_SMALL_QUEUE (64u << 10) /* "near-empty" for small messages */
struct shunt_splice_guard {
	__u32 queue_cap;   /* bytes; 0 = SHUNT_GUARD_QUEUE_CAP */
	__u32 small_msg;   /* bytes; 0 = SHUNT_GUARD_SMALL_MSG */
	__u32 small_queue; /* bytes; 0 = SHUNT_GUARD_SMALL_QUEUE */
	__u32 short_conns; /* short connections in a row after which a port is not spliced; 0 = always splice (was padding: old pins hold 0) */
};

/*
 * Short connections (connect.bpf.c, sockops.bpf.c): a spliced connection costs a psock and
 * sockhash work per socket (psock init, sockhash insert and unlink, RCU-deferred psock teardown in
 * a kworker: ~60 us of a ~360 us proxied connection here, perf record -a) and a message or two
 * gain little from it. When the last short_conns connections to a port of a pod were all short
 * (both ends sent 1..SHUNT_SHORT_MSGS messages, or for a connection that was not spliced, data
 * segments), connect4 stops marking that port's connections for splicing. Every connection
 * teaches, spliced or not: the accepting socket, which holds the original-destination record and
 * so has the state callback anyway, counts at its close (sk_msg message counts when spliced, its
 * TCP data_segs_in/out otherwise), so one longer connection makes the next one splice again.
 * Connections whose accepting socket holds no record (the sidecar's connect to its own app, when
 * not spliced) teach nothing; the same key is taught by the connection into the sidecar, and one in
 * SHUNT_SHORT_PROBE is spliced anyway so that a port only such connections reach still relearns.
 * Key: the netns of the accepting socket + the original destination port.
 */
#define SHUNT_SHORT_MSGS 2u
#define SHUNT_SHORT_PROBE 64u
struct shunt_learn_key {
	__u64 netns;
	__u16 port;
	__u16 _pad0;
	__u32 _pad1;
};
struct shunt_learn {
	__u32 short_run; /* short connections in a row (saturates at 255) */
	__u32 skipped;   /* connections not spliced since the run started (every SHUNT_SHORT_PROBE-th is spliced) */
};

/* shunt_splice_sock.state: the flow's path for what this socket sends */
#define SHUNT_FLOW_SPLICE 0  /* redirect to the peer (while the guard holds) */
#define SHUNT_FLOW_TCP 1     /* TCP path; back to splice once order-safe (every TCP byte in the peer's psock queue) */
#define SHUNT_FLOW_TCP_ONLY 2 /* peer unknown at the first message: TCP for the flow's life */

/*
 * splice_peer: own view of a spliced socket (shunt_tuple) -> the socket, so sk_msg can read the
 * PEER's queue (sockhash lookups are rejected in sk_msg). Written by sockops next to the sockhash
 * insert (splice_insert below), deleted at TCP_CLOSE. `sk` is a kernel address, only ever read through
 * bpf_rdonly_cast (faulting reads are safe): a stale value is never dereferenced for writing.
 */
struct shunt_splice_sock {
	__u64 sk;     /* struct sock * */
	__u32 state;  /* SHUNT_FLOW_*, written by this socket's own sk_msg (under its socket lock) */
	__u32 flags;  /* SHUNT_SPLICE_F_* */
};
#define SHUNT_SPLICE_F_SEEN 1u      /* sk_msg ran for this socket (written by sk_msg) */
#define SHUNT_SPLICE_F_OWNS_ORIG 2u /* passive side: its orig_by_tuple record goes at its close */
/* Messages each end sent while spliced (sk_msg calls, saturating at 255), for splice_learn:
 * bits 8..15 this socket's own (written by its sk_msg), bits 16..23 its peer's (written by the
 * active peer at its close, so the passive socket, which learns, has both). */
#define SHUNT_SPLICE_F_MSGS_SHIFT 8
#define SHUNT_SPLICE_F_PEER_MSGS_SHIFT 16

/* Indices into the per-CPU splice_stats array; names in abi.ts SPLICE_STAT_NAMES (same order). */
enum shunt_splice_stat {
	SHUNT_SST_MSGS_SPLICED = 0,  /* messages redirected to the peer */
	SHUNT_SST_BYTES_SPLICED,
	SHUNT_SST_MSGS_TCP,          /* messages sent on the TCP path by a spliced socket */
	SHUNT_SST_BYTES_TCP,
	SHUNT_SST_TO_TCP_QUEUE,      /* flow switched to TCP: peer queue + message over the cap */
	SHUNT_SST_TO_TCP_SMALL,      /* flow switched to TCP: small message onto a non-empty queue */
	SHUNT_SST_TO_TCP_PRESSURE,   /* flow switched to TCP: node or cgroup TCP memory pressure */
	SHUNT_SST_TO_TCP_NO_PEER,    /* first message, peer unknown: TCP for this flow */
	SHUNT_SST_PEER_GONE,         /* peer vanished mid-flow (closed): TCP */
	SHUNT_SST_BACK_TO_SPLICE,    /* flow switched back: all TCP bytes read, queue <= cap/2 */
	SHUNT_SST_NO_SELF,           /* sk_msg on a socket without its splice_peer entry: TCP */
	SHUNT_SST_PEAK_QUEUE,        /* highest peer queue + message ever redirected (max, not a sum) */
	SHUNT_SST_BYTES_QUEUED,      /* TCP-path bytes the sk_skb verdict put into spliced sockets' psock queues */
	SHUNT_SST_BACK_TWO_QUEUES,   /* of BACK_TO_SPLICE: peer without the verdict (spliced before it was attached) */
	SHUNT_SST_RX_OVERLAP,        /* TCP-path skbs whose head repeated bytes already queued (partial retransmission): trimmed */
	SHUNT_SST_RX_TRIM_FAILED,    /* ... of those, ones that could not be trimmed (they pass as they are) */
	SHUNT_SST_MAX = 16,          /* slots of the pinned splice_stats map: every index above must stay below it */
};

/*
 * splice_resets (ring buffer, shunt_splice_close.h -> the agent): a spliced socket was closed with
 * bytes still in its psock queue. TCP would reset the connection (tcp_close counts only
 * sk_receive_queue, and sock_map_close purges the psock queue first, so the kernel sends FIN);
 * the agent destroys the receiver (RST to the sender) and then the sender.
 */
struct shunt_splice_reset {
	struct shunt_tuple own; /* the closing socket's own view (addresses network order, ports host order) */
	__u64 netns;            /* its netns cookie */
	__u64 cookie;           /* its socket cookie */
	__u64 peer_netns;       /* the spliced peer's netns cookie; 0 = peer unknown (already closing) */
	__u64 peer_cookie;      /* the peer's socket cookie; 0 = none generated */
	__u32 family;           /* 2 or 10 */
	__u32 unread;           /* bytes left unread in the psock queue (+1 if its backlog was not empty) */
	__u32 state;            /* TCP state at close (BPF_TCP_*) */
	__u32 _pad;
};

#if defined(__bpf__) && !defined(SHUNT_SPLICE_NO_MAPS)
/* ---- map definitions (BPF side only) ---- */

/* own view of a spliced socket -> the socket (sockops -> sk_msg) */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 65536);
	__type(key, struct shunt_tuple);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} splice_socks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct shunt_splice_cfg);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} splice_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct shunt_splice_guard);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} splice_guard SEC(".maps");

/* One entry per spliced socket, as splice_socks. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct shunt_tuple);
	__type(value, struct shunt_splice_sock);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} splice_peer SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SHUNT_SST_MAX);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} splice_stats SEC(".maps");

/* (accepting socket's netns, original port) -> how its recent spliced connections went. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct shunt_learn_key);
	__type(value, struct shunt_learn);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} splice_learn SEC(".maps");

/*
 * Splices a socket from its sockops callback: into splice_socks under its own view t, then its
 * splice_peer entry, through which the guard (shunt_splice_guard.h) reads the peer's queue (sk_msg
 * cannot look up the sockhash; a socket without the entry never splices). flags: SHUNT_SPLICE_F_*
 * and the backend's own bits. What differs per backend stays with the caller: which sockets, the
 * tuple's scope (shunt_sock.h tuple_scope), its counters, and the state callback whose TCP_CLOSE
 * deletes the entry. Returns 1, or 0 when the sockhash update failed (then nothing was written).
 */
static __always_inline int splice_insert(struct bpf_sock_ops *skops, struct shunt_tuple *t, __u32 flags)
{
	if (bpf_sock_hash_update(skops, &splice_socks, t, BPF_ANY) != 0)
		return 0;
	struct bpf_sock *sk = skops->sk;
	struct shunt_splice_sock v = { .state = SHUNT_FLOW_SPLICE, .flags = flags };
	if (sk) {
		v.sk = (__u64)sk;
		bpf_map_update_elem(&splice_peer, t, &v, BPF_ANY);
	}
	return 1;
}

#endif /* __bpf__ && !SHUNT_SPLICE_NO_MAPS */
#endif /* SHUNT_SPLICE_H */
