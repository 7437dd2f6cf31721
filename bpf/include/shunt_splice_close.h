/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * A spliced socket closed with unread data must reset the connection, as TCP does.
 *
 * tcp_close() sends RST instead of FIN when bytes were left unread, counting them in
 * sk_receive_queue. A spliced socket keeps everything it has not read in its psock queue (the
 * peer's redirected messages and, through the verdict, its own TCP-path skbs), and its close runs
 * sock_map_close() first, which drops the psock (its queue purged by a deferred work item) before
 * tcp_close() looks: the kernel sends FIN, the sender is never told its bytes were discarded and,
 * with the window closed, keeps them queued (zero-window probes) until the receiver's orphan
 * leaves FIN-WAIT-2 (tcp_fin_timeout). Nothing in BPF can turn that FIN into a RST: no hook runs
 * between the purge and tcp_close's count that can change either, and bpf_sock_destroy is an
 * iterator-only kfunc.
 *
 * The one hook that runs before sock_map_close() is cgroup/sock_release (inet_release, before
 * sk_prot->close). Here the psock is intact: its msg_tot_len is exactly the unread bytes of the
 * one receive queue (a queued FIN is an empty message and adds 0, as tcp_close does not count a
 * FIN either). A spliced socket (splice_peer entry) closing with unread bytes is reported on the
 * splice_resets ring buffer; the agent then destroys it (SOCK_DESTROY: tcp_abort sends RST from
 * FIN-WAIT-1/2) and its peer (the sender, for the case the receiver already became a time-wait
 * socket, which has no RST to send). The agent is woken by the ring buffer, so the reset follows
 * within milliseconds, not the fin timeout.
 *
 * Cost for every other socket of the cgroup: the type and state checks and two field reads (no
 * psock: done); the map lookups only for a socket that does have unread bytes in a psock.
  *
 * Built once per backend (bpf/sockops/splice_close.bpf.c, bpf/tc/splice_close.bpf.c) against its
 * own splice maps; the includer provides SHUNT_SPLICE_COUNT(which, n) (which: CLOSE_UNREAD,
 * CLOSE_EVENT_LOST). splice_resets is pinned by name in the backend's maps directory.
 */
#ifndef SHUNT_SPLICE_CLOSE_H
#define SHUNT_SPLICE_CLOSE_H

#include "shunt_sock.h"
#include <bpf/bpf_core_read.h>

#ifndef SHUNT_SPLICE_COUNT
#error "define SHUNT_SPLICE_COUNT(which, n) (the backend's counters) before including shunt_splice_close.h"
#endif

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024); /* ~800 events while the agent is away; more are counted lost */
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} splice_resets SEC(".maps");

#define SHUNT_TCP_LISTEN 10
#define SHUNT_TCP_CLOSE 7

/* Bytes the socket's psock holds unread; +1 when its backlog of skbs still to move is not empty. */
static __always_inline __u32 psock_unread(struct sock *sk)
{
	__u64 ud = (__u64)sk->sk_user_data;
	if (!(ud & SHUNT_SK_USER_DATA_PSOCK))
		return 0;
	__u64 addr = ud & ~SHUNT_SK_USER_DATA_FLAGS;
	struct sk_psock *ps = bpf_core_cast((void *)addr, struct sk_psock);
	__u32 n = ps->ingress_skb.qlen ? 1 : 0;
	if (bpf_core_field_exists(ps->msg_tot_len))
		return n + ps->msg_tot_len;
	/* Older kernels without the byte count: any queued message (a lone FIN would count too). */
	__u64 head = addr + bpf_core_field_offset(struct sk_psock, ingress_msg);
	return n + ((__u64)ps->ingress_msg.next != head ? 1 : 0);
}

/* The whole cgroup/sock_release program (see the top of this file). */
static __always_inline int shunt_splice_release_sock(struct bpf_sock *ctx)
{
	if (ctx->type != SHUNT_SOCK_STREAM || ctx->protocol != SHUNT_IPPROTO_TCP)
		return 1;
	__u32 state = ctx->state;
	if (state == SHUNT_TCP_LISTEN || state == SHUNT_TCP_CLOSE)
		return 1;
	/* cgroup/sock_release may not read the addresses from the context: read the socket itself.
	 * Unread bytes first: a socket without a psock (not spliced) costs no map work. */
	struct sock *sk = bpf_core_cast(ctx, struct sock);
	__u32 unread = psock_unread(sk);
	if (!unread)
		return 1;
	struct sock_common *c = &sk->__sk_common;
	struct shunt_splice_reset ev = { .unread = unread };
	__u32 family = c->skc_family;
	if (family == SHUNT_AF_INET) {
		addr_from_v4(&ev.own.local, c->skc_rcv_saddr);
		addr_from_v4(&ev.own.remote, c->skc_daddr);
	} else if (family == SHUNT_AF_INET6) {
		ev.own.local.a[0] = c->skc_v6_rcv_saddr.in6_u.u6_addr32[0];
		ev.own.local.a[1] = c->skc_v6_rcv_saddr.in6_u.u6_addr32[1];
		ev.own.local.a[2] = c->skc_v6_rcv_saddr.in6_u.u6_addr32[2];
		ev.own.local.a[3] = c->skc_v6_rcv_saddr.in6_u.u6_addr32[3];
		ev.own.remote.a[0] = c->skc_v6_daddr.in6_u.u6_addr32[0];
		ev.own.remote.a[1] = c->skc_v6_daddr.in6_u.u6_addr32[1];
		ev.own.remote.a[2] = c->skc_v6_daddr.in6_u.u6_addr32[2];
		ev.own.remote.a[3] = c->skc_v6_daddr.in6_u.u6_addr32[3];
	} else {
		return 1;
	}
	ev.own.lport = c->skc_num; /* host order */
	ev.own.rport = bpf_ntohs(c->skc_dport);
	__u64 netns = bpf_get_netns_cookie(ctx);
	tuple_scope(&ev.own, netns);
	/* Ours (a psock of another sockmap user is none of our business). */
	if (!bpf_map_lookup_elem(&splice_peer, &ev.own))
		return 1;
	ev.netns = netns;
	ev.cookie = bpf_get_socket_cookie(ctx);
	ev.family = family;
	ev.state = state;
	struct shunt_tuple peer = {};
	tuple_reverse(&peer, &ev.own);
	struct shunt_splice_sock *ps = bpf_map_lookup_elem(&splice_peer, &peer);
	if (ps) {
		struct sock *psk = bpf_core_cast((void *)ps->sk, struct sock);
		struct net *pnet = psk->__sk_common.skc_net.net;
		ev.peer_netns = pnet ? pnet->net_cookie : 0;
		ev.peer_cookie = psk->__sk_common.skc_cookie.counter;
	}
	SHUNT_SPLICE_COUNT(CLOSE_UNREAD, 1);
	if (bpf_ringbuf_output(&splice_resets, &ev, sizeof(ev), 0) != 0)
		SHUNT_SPLICE_COUNT(CLOSE_EVENT_LOST, 1);
	return 1;
}

#endif /* SHUNT_SPLICE_CLOSE_H */
