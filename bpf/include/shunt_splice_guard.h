/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The splice guard and the one-receive-queue verdict: sk_msg and sk_skb on a splice sockhash, with a guard that keeps TCP's memory semantics.
 *
 * A redirect with BPF_F_INGRESS puts the data straight onto the peer socket's receive queue
 * (bpf_tcp_ingress): it is charged to the PEER, the peer's sk_rcvbuf is never checked and the
 * sender is uncharged at once, so an unguarded sender never blocks and a slow reader's queue grows
 * until the memory cgroup or tcp_mem refuses (ENOMEM: the proxy drops the connection). So a message
 * is redirected only while
 *   - the peer is known (splice_peer, written by sockops beside the sockhash insert),
 *   - the peer's queued bytes (sk_rmem_alloc) plus this message stay within the cap
 *     min(splice_guard.queue_cap, peer sk_rcvbuf if the app set it, else max(sk_rcvbuf, tcp_rmem[2])),
 *   - a small message (< small_msg) finds the peer's queue near-empty (<= small_queue): spliced
 *     small writes onto a backlog ran at ~0.4x plain TCP (one sk_msg per write at the reader),
 *     while request/response (queue empty at each send) gains,
 *   - neither the node (tcp_mem) nor the peer's memory cgroup is under TCP memory pressure.
 * Otherwise the flow switches to the TCP path (SK_PASS): the window pushes back on the sender as
 * TCP always does. The switch is one-way at that moment, which is order-safe.
 *
 * One receive queue (shunt_splice_verdict below): the sk_skb verdict program on the same sockhash
 * returns SK_PASS for every skb a spliced socket receives on the TCP path, so the kernel moves it
 * (tcp_read_skb -> sk_psock_verdict_apply -> sk_psock_skb_ingress_self) into the socket's psock
 * queue behind the messages the peer's sk_msg already put there, under the receiver's socket lock
 * and in sequence order. One recvmsg (tcp_bpf_recvmsg_parser) then returns everything available;
 * without it the bytes sit in two queues, one read returns from one of them only, and a reader
 * that takes "short read + EPOLLRDHUP" as end of stream (HAProxy 2.6) loses the tail. The skbs
 * stay charged to sk_rmem_alloc (skb_set_owner_r), so the TCP window still closes while the reader
 * is paused (the sender blocks); a FIN is queued as an empty message after all data (EOF last);
 * copied_seq moves only for TCP-path bytes (copied_from_self) and FIONREAD counts the psock queue.
 *
 * The flow comes back to splicing only when that is order-safe: with one queue, every byte sent on
 * the TCP path has arrived (sender write_seq == peer rcv_nxt) and been moved into the psock queue
 * (the peer's sk_receive_queue and psock ingress_skb backlog empty); a redirected message takes
 * the receiver's socket lock, so it lands after any skb being moved right then. A peer spliced
 * before the verdict program was attached (pins of an older version) still has two queues: there
 * every TCP byte must have been read (write_seq == peer copied_seq). And the peer's queue must be
 * at most cap/2. Never per-message toggling (reorders), never cork (bpf_msg_cork_bytes can drop
 * data), never a sockhash delete (purges the receiver's queue). A flow whose peer is unknown at
 * its first message stays on TCP for good.
 *
 * Built once per backend against its own splice maps (shunt_splice.h): bpf/sockops/redir.bpf.c
 * (sidecars) and bpf/tc/redir.bpf.c (ambient). The includer provides the splice maps and
 * SHUNT_SPLICE_COUNT(which, n) for its own counters (which: MSGS_PASSED, MSGS_SPLICED,
 * BYTES_SPLICED), and scopes tuples its way (shunt_sock.h tuple_scope).
 *
 * SHUNT_REDIR_CONTROL builds the failure controls of the bulk-safety suite from this same code
 * (bpf/selftest/redir_*.bpf.c): 1 = unguarded redirect, 2 = the guard's checks per message
 * without the one-way state. Production objects are built with 0.
 */
#ifndef SHUNT_SPLICE_GUARD_H
#define SHUNT_SPLICE_GUARD_H

#include "shunt_sock.h"
#include <bpf/bpf_core_read.h>

#ifndef SHUNT_SPLICE_COUNT
#error "define SHUNT_SPLICE_COUNT(which, n) (the backend's counters) before including shunt_splice_guard.h"
#endif

#ifndef SHUNT_REDIR_CONTROL
#define SHUNT_REDIR_CONTROL 0
#endif

/* A stat index at or past the map's size would never count (lookups fail): refuse to build. */
_Static_assert(SHUNT_SST_RX_TRIM_FAILED < SHUNT_SST_MAX, "splice_stats has too few slots");

static __always_inline void splice_stat(__u32 idx, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&splice_stats, &idx);
	if (v)
		*v += n; /* per-CPU slot */
}

static __always_inline void splice_stat_max(__u32 idx, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&splice_stats, &idx);
	if (v && *v < n)
		*v = n;
}

/* Node-wide TCP memory: in pressure, or above tcp_mem[1] (where the kernel enters it). */
static __always_inline int node_pressure(struct sock *sk)
{
	struct proto *prot = sk->__sk_common.skc_prot;
	unsigned long pressure = 0;
	long allocated = 0, limit = 0;
	unsigned long *pp = prot->memory_pressure;
	atomic_long_t *ap = prot->memory_allocated;
	long *lp = prot->sysctl_mem;

	if (pp && bpf_probe_read_kernel(&pressure, sizeof(pressure), pp) == 0 && pressure)
		return 1;
	if (ap && lp && bpf_probe_read_kernel(&allocated, sizeof(allocated), ap) == 0 &&
	    bpf_probe_read_kernel(&limit, sizeof(limit), lp + 1) == 0 && limit > 0 && allocated > limit)
		return 1;
	return 0;
}

/* Within 1/8 of a page counter's limit (pages) once `size` more bytes are charged. */
static __always_inline int near_limit(struct page_counter *pc, __u32 size)
{
	__u64 max = pc->max;
	__u64 usage = (__u64)pc->usage.counter + (size >> 12) + 1;
	return max > 0 && max < (1ull << 50) && usage + (max >> 3) >= max;
}

/*
 * The peer's memory cgroup: flagged in pressure (v2 socket_pressure, a jiffies deadline; v1
 * tcpmem_pressure), or near its limit (v1: the tcp counter when tcp accounting is on; v2: the
 * memory counter). A spliced message the memcg refuses is ENOMEM for the sender, so the flow
 * leaves before that; TCP copes with a refused charge (drops, the sender retransmits).
 */
static __always_inline int memcg_pressure(struct sock *sk, __u32 size)
{
	struct mem_cgroup *mc = sk->sk_memcg;
	if (!mc)
		return 0;
	if (bpf_core_field_exists(mc->tcpmem_pressure) && mc->tcpmem_pressure)
		return 1;
	if (bpf_core_field_exists(mc->socket_pressure)) {
		__u64 until = mc->socket_pressure;
		if (until && bpf_jiffies64() < until)
			return 1;
	}
	if (bpf_core_field_exists(mc->tcpmem_active) && mc->tcpmem_active)
		return near_limit(&mc->tcpmem, size);
	return near_limit(&mc->memory, size);
}

/*
 * Has every byte this socket sent on the TCP path reached the peer's one receive queue (or, for a
 * peer with two queues, been read)? Then a redirected message lands behind all of them.
 * *two = 1 when the peer has no verdict program (the copied_seq rule applied).
 */
static __always_inline int tcp_part_queued(struct tcp_sock *otp, struct tcp_sock *ptp, int *two)
{
	struct sock *psk = (struct sock *)ptp;
	__u64 ud = (__u64)psk->sk_user_data;
	*two = 1;
	if (ud & SHUNT_SK_USER_DATA_PSOCK) {
		struct sk_psock *pp = bpf_core_cast((void *)(ud & ~SHUNT_SK_USER_DATA_FLAGS), struct sk_psock);
		if (pp->progs.skb_verdict || pp->progs.stream_verdict) {
			*two = 0;
			return otp->write_seq == ptp->rcv_nxt && psk->sk_receive_queue.qlen == 0 && pp->ingress_skb.qlen == 0;
		}
	}
	return otp->write_seq == ptp->copied_seq;
}

#define SHUNT_SOCK_RCVBUF_LOCK 2 /* include/net/sock.h: the app set SO_RCVBUF */

/*
 * The bound on the peer's queue. A receive buffer the app set (SO_RCVBUF) is a limit it asked for:
 * cap = min(bound, sk_rcvbuf). Otherwise sk_rcvbuf is only where the buffer stands now: it starts at
 * tcp_rmem[1] and grows (seen 4-21 MiB on spliced sockets, through autotuning of the TCP-path part
 * and TCP raising it to match the queue) up to tcp_rmem[2], where TCP itself would let it go:
 * cap = min(bound, max(sk_rcvbuf, tcp_rmem[2])). A cap above sk_rcvbuf also keeps the
 * TCP window open while the flow is on the TCP path (TCP fills the queue only to sk_rcvbuf), so
 * the flow can come back as soon as its TCP bytes have arrived and the queue is under cap/2;
 * memory pressure (node, cgroup) still sends every flow to TCP first.
 */
static __always_inline __u32 queue_cap(struct sock *psk, __u32 bound)
{
	__u32 rcvbuf = (__u32)psk->sk_rcvbuf;
	__u32 limit = rcvbuf;
	if (!(psk->sk_userlocks & SHUNT_SOCK_RCVBUF_LOCK)) {
		struct net *net = psk->__sk_common.skc_net.net;
		__u32 max = net ? (__u32)net->ipv4.sysctl_tcp_rmem[2] : 0;
		if (max > limit)
			limit = max;
	}
	return limit < bound ? limit : bound;
}

static __always_inline void guard_cfg(__u32 *cap, __u32 *small_msg, __u32 *small_queue)
{
	__u32 zero = 0;
	struct shunt_splice_guard *g = bpf_map_lookup_elem(&splice_guard, &zero);
	*cap = g && g->queue_cap ? g->queue_cap : SHUNT_GUARD_QUEUE_CAP;
	*small_msg = g && g->small_msg ? g->small_msg : SHUNT_GUARD_SMALL_MSG;
	*small_queue = g && g->small_queue ? g->small_queue : SHUNT_GUARD_SMALL_QUEUE;
}

static __always_inline int splice_pass(__u32 size)
{
	SHUNT_SPLICE_COUNT(MSGS_PASSED, 1);
	splice_stat(SHUNT_SST_MSGS_TCP, 1);
	splice_stat(SHUNT_SST_BYTES_TCP, size);
	return SK_PASS;
}

/* The guard: the whole sk_msg program of a splice sockhash (see the top of this file). */
static __always_inline int shunt_splice_msg(struct sk_msg_md *msg)
{
	struct shunt_tuple own = {}, peer = {};

	__u32 family = msg->family;
	if (family == SHUNT_AF_INET) {
		addr_from_v4(&own.local, CTX_U32(msg, local_ip4));
		addr_from_v4(&own.remote, CTX_U32(msg, remote_ip4));
	} else if (family == SHUNT_AF_INET6) {
		own.local.a[0] = CTX_U32(msg, local_ip6[0]);
		own.local.a[1] = CTX_U32(msg, local_ip6[1]);
		own.local.a[2] = CTX_U32(msg, local_ip6[2]);
		own.local.a[3] = CTX_U32(msg, local_ip6[3]);
		own.remote.a[0] = CTX_U32(msg, remote_ip6[0]);
		own.remote.a[1] = CTX_U32(msg, remote_ip6[1]);
		own.remote.a[2] = CTX_U32(msg, remote_ip6[2]);
		own.remote.a[3] = CTX_U32(msg, remote_ip6[3]);
	} else {
		return SK_PASS;
	}
	own.lport = (__u16)CTX_U32(msg, local_port); /* host order */
	own.rport = port_from_ctx_be(CTX_U32(msg, remote_port));
	tuple_scope(&own, bpf_get_netns_cookie(msg));
	tuple_reverse(&peer, &own);
	__u32 size = CTX_U32(msg, size);

#if SHUNT_REDIR_CONTROL == 1
	/* Control: the unguarded splice (what Merbridge does). */
	if (bpf_msg_redirect_hash(msg, &splice_socks, &peer, BPF_F_INGRESS) == SK_PASS) {
		splice_stat(SHUNT_SST_MSGS_SPLICED, 1);
		splice_stat(SHUNT_SST_BYTES_SPLICED, size);
		return SK_PASS;
	}
	return splice_pass(size);
#else
	struct shunt_splice_sock *self = bpf_map_lookup_elem(&splice_peer, &own);
	if (!self) {
		splice_stat(SHUNT_SST_NO_SELF, 1);
		return splice_pass(size);
	}
	struct shunt_splice_sock *ps = bpf_map_lookup_elem(&splice_peer, &peer);
	__u32 flags = self->flags;
	int first = !(flags & SHUNT_SPLICE_F_SEEN);
	/* Messages sent (saturating), for splice_learn: one write per message, under our socket lock. */
	if (((flags >> SHUNT_SPLICE_F_MSGS_SHIFT) & 0xff) != 0xff)
		flags += 1u << SHUNT_SPLICE_F_MSGS_SHIFT;
	self->flags = flags | SHUNT_SPLICE_F_SEEN;
	if (!ps) {
		if (first) {
			/* The peer joins later or never (other node, not marked): never splice this flow. */
			self->state = SHUNT_FLOW_TCP_ONLY;
			splice_stat(SHUNT_SST_TO_TCP_NO_PEER, 1);
		} else if (self->state == SHUNT_FLOW_SPLICE) {
			self->state = SHUNT_FLOW_TCP_ONLY;
			splice_stat(SHUNT_SST_PEER_GONE, 1);
		}
		return splice_pass(size);
	}
	if (self->state == SHUNT_FLOW_TCP_ONLY)
		return splice_pass(size);

	__u32 cap, small_msg, small_queue;
	guard_cfg(&cap, &small_msg, &small_queue);
	struct tcp_sock *ptp = bpf_core_cast((void *)ps->sk, struct tcp_sock);
	struct sock *psk = (struct sock *)ptp;
#if SHUNT_REDIR_CONTROL == 2
	/* The toggling control caps at sk_rcvbuf: the TCP window is then closed at each switch, so a
	 * spliced message overtakes the TCP bytes still waiting (the reorder the suite must flag). */
	if ((__u32)psk->sk_rcvbuf < cap)
		cap = (__u32)psk->sk_rcvbuf;
#else
	cap = queue_cap(psk, cap);
#endif
	__u32 queued = (__u32)psk->sk_backlog.rmem_alloc.counter;
	__u64 after = (__u64)queued + size;

#if SHUNT_REDIR_CONTROL == 2
	/* Control: the same checks per message, no one-way state (reorders the stream). */
	if (after <= cap && !(size < small_msg && queued > small_queue) &&
	    bpf_msg_redirect_hash(msg, &splice_socks, &peer, BPF_F_INGRESS) == SK_PASS) {
		splice_stat(SHUNT_SST_MSGS_SPLICED, 1);
		splice_stat(SHUNT_SST_BYTES_SPLICED, size);
		return SK_PASS;
	}
	splice_stat(SHUNT_SST_TO_TCP_QUEUE, 1);
	return splice_pass(size);
#else
	if (self->state == SHUNT_FLOW_TCP) {
		/* Back only when nothing sent on the TCP path is unread, and with room to spare. */
		struct tcp_sock *otp = bpf_core_cast((void *)msg->sk, struct tcp_sock);
		int two = 0;
		if (after > cap / 2 || !tcp_part_queued(otp, ptp, &two) || node_pressure(psk) || memcg_pressure(psk, size))
			return splice_pass(size);
		self->state = SHUNT_FLOW_SPLICE;
		splice_stat(SHUNT_SST_BACK_TO_SPLICE, 1);
		if (two)
			splice_stat(SHUNT_SST_BACK_TWO_QUEUES, 1);
	} else {
		__u32 why = 0;
		if (after > cap)
			why = SHUNT_SST_TO_TCP_QUEUE;
		else if (size < small_msg && queued > small_queue)
			why = SHUNT_SST_TO_TCP_SMALL;
		else if (node_pressure(psk) || memcg_pressure(psk, size))
			why = SHUNT_SST_TO_TCP_PRESSURE;
		if (why) {
			self->state = SHUNT_FLOW_TCP;
			splice_stat(why, 1);
			return splice_pass(size);
		}
	}
	if (bpf_msg_redirect_hash(msg, &splice_socks, &peer, BPF_F_INGRESS) != SK_PASS) {
		/* In splice_peer but not in the sockhash: the peer is closing. */
		self->state = SHUNT_FLOW_TCP_ONLY;
		splice_stat(SHUNT_SST_PEER_GONE, 1);
		return splice_pass(size);
	}
	SHUNT_SPLICE_COUNT(MSGS_SPLICED, 1);
	SHUNT_SPLICE_COUNT(BYTES_SPLICED, size);
	splice_stat(SHUNT_SST_MSGS_SPLICED, 1);
	splice_stat(SHUNT_SST_BYTES_SPLICED, size);
	splice_stat_max(SHUNT_SST_PEAK_QUEUE, after);
	return SK_PASS;
#endif
#endif
}

/*
 * The one receive queue (see the top of this file): attached as BPF_SK_SKB_VERDICT (no strparser)
 * on splice_socks, so every socket put there gets it at insertion. SK_PASS without a redirect =
 * "keep it on this socket", which the kernel does by queueing the skb into the socket's own psock
 * queue in order. Counted so tests can see the TCP path went through it.
 *
 * Partial overlaps: TCP queues a retransmitted segment whose head repeats bytes it already has
 * (seq < rcv_nxt < end_seq, e.g. an out-of-order segment overlapping a retransmission after a drop
 * under memory pressure) as it is, because tcp_recvmsg skips the head by copied_seq. tcp_read_skb,
 * which feeds this program, hands over whole skbs and does not, so the psock queue would get those
 * bytes twice. The program therefore remembers, per socket, the sequence number after the last skb
 * it passed and trims a repeated head (bpf_skb_adjust_room pops at most 0xfff bytes per call).
 */
struct shunt_rx_seq {
	__u32 next;  /* TCP sequence number after the last byte passed to the psock queue */
	__u32 valid;
};

/*
 * Socket cookie -> shunt_rx_seq, created at a socket's first TCP-path skb (sk_skb programs cannot
 * use socket-local storage). LRU, never deleted: a closed socket's entry ages out, so closing costs
 * nothing; an entry evicted while its socket still gets TCP-path data starts again at the next skb
 * (only an overlap in that very skb would then be missed). Not pinned: it belongs to the loaded
 * verdict program, which its link keeps alive.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct shunt_rx_seq);
} splice_rx SEC(".maps");

#define SHUNT_TRIM_STEP 0xfffu
#define SHUNT_TRIM_STEPS 48 /* 48 x 4095 > a 64 KiB GSO segment's head, and > 128 KiB */

/* The one receive queue: the whole sk_skb verdict program of a splice sockhash. */
static __always_inline int shunt_splice_skb(struct __sk_buff *skb)
{
	struct sk_buff *kskb = bpf_cast_to_kern_ctx(skb);
	__u32 cb[2] = {}; /* TCP_SKB_CB(skb)->seq, ->end_seq: the first bytes of skb->cb */

	/* A bare FIN (every closing spliced flow sends one over TCP) has no bytes to repeat: no map work. */
	if (skb->len == 0 || bpf_probe_read_kernel(cb, sizeof(cb), kskb->cb) != 0)
		goto pass;
	__u64 cookie = bpf_get_socket_cookie(skb);
	struct shunt_rx_seq *rx = bpf_map_lookup_elem(&splice_rx, &cookie);
	if (!rx) {
		struct shunt_rx_seq init = { .next = cb[1], .valid = 1 };
		bpf_map_update_elem(&splice_rx, &cookie, &init, BPF_NOEXIST);
		goto pass;
	}
	if (rx->valid && (__s32)(rx->next - cb[0]) > 0) {
		__u32 over = rx->next - cb[0];
		splice_stat(SHUNT_SST_RX_OVERLAP, 1);
		for (int i = 0; i < SHUNT_TRIM_STEPS && over && over < skb->len + 1; i++) {
			__u32 n = over > SHUNT_TRIM_STEP ? SHUNT_TRIM_STEP : over;
			if (bpf_skb_adjust_room(skb, -(__s32)n, 0, 0) != 0)
				break;
			over -= n;
		}
		if (over)
			splice_stat(SHUNT_SST_RX_TRIM_FAILED, 1);
	}
	if (!rx->valid || (__s32)(cb[1] - rx->next) > 0) {
		rx->next = cb[1];
		rx->valid = 1;
	}
pass:
	splice_stat(SHUNT_SST_BYTES_QUEUED, skb->len);
	return SK_PASS;
}

#endif /* SHUNT_SPLICE_GUARD_H */
