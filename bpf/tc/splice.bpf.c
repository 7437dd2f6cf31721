// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * sockops at the node's cgroup (the one the sockops backend uses; it must cover the app pods and
 * ztunnel's pod): pairs the two sockets of a captured connection inside an ambient pod's netns,
 * the app's and ztunnel's, in the tc backend's splice sockhash, so redir.bpf.c (the shared guard)
 * hands data straight from one to the other instead of through two TCP stacks and the hairpin.
 *
 *  - outbound: the app's ACTIVE_ESTABLISHED (local address an enrolled pod of this netns, not
 *    ztunnel's mark, a destination port egress.bpf.c captures: the same outbound_selected()) ->
 *    splice, kind APP_OUT; ztunnel's PASSIVE_ESTABLISHED (mark 1337: an accepted socket inherits
 *    its listener's mark, inet_csk_clone_lock sets sk_mark from the request's ir_mark, which is
 *    the listener's sk_mark) whose reverse tuple is an APP_OUT entry -> splice.
 *  - inbound: ztunnel's ACTIVE_ESTABLISHED (mark 1337) to an enrolled address of this netns on a
 *    port ingress.bpf.c captures (inbound_selected(), never the HBONE port) -> splice, kind
 *    ZT_IN; the app's PASSIVE_ESTABLISHED whose reverse tuple is a ZT_IN entry -> splice.
 *  - never ztunnel <-> ztunnel (HBONE): neither rule matches a socket pair that both carry 1337.
 *
 * The first end of a pair is always established first: its ESTABLISHED callback runs before its
 * ACK leaves (tcp_finish_connect), and the ACK reaches the accepting end through the hairpin or
 * lo, i.e. a later softirq. Short connections (shunt_splice.h, shunt_splice_learn.h) are not
 * spliced, as in sockops: the connecting end checks splice_learn, the accepting end learns at its
 * close (spliced: sk_msg message counts; not: TCP data segments, through tc_splice_pending).
 * TCP_CLOSE deletes what the socket owns (its splice_peer or tc_splice_pending entry); the kernel
 * unlinks a closed socket from the sockhash itself.
 */
#define SHUNT_TUPLE_NETNS_ALWAYS 1
#include "lib.h"
#include "shunt_sock.h"

#define SHUNT_SPLICE_COUNT(which, n) count_n(SHUNT_TC_CNT_##which, n)
#include "shunt_splice_learn.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct shunt_tuple);
	__type(value, struct shunt_tc_pending);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tc_splice_pending SEC(".maps");

/* An enrolled pod address of this very netns (tc_pod is keyed by address, node-wide). */
static __always_inline struct shunt_tc_pod *pod_here(const struct shunt_addr *a, __u64 netns)
{
	struct shunt_tc_pod *cfg = bpf_map_lookup_elem(&tc_pod, (const struct shunt_tc_addr *)a);
	return cfg && cfg->netns == netns ? cfg : NULL;
}

static __always_inline int splice_on(void)
{
	__u32 zero = 0;
	struct shunt_splice_cfg *sc = bpf_map_lookup_elem(&splice_cfg, &zero);
	return sc && sc->mode != SHUNT_SPLICE_NONE;
}

/* Into the sockhash and splice_peer (shunt_splice.h splice_insert); its TCP_CLOSE deletes the entry. */
static __always_inline int splice(struct bpf_sock_ops *skops, struct shunt_tuple *t, __u32 flags)
{
	if (!splice_insert(skops, t, flags)) {
		count(SHUNT_TC_CNT_SPLICE_FAILED);
		return 0;
	}
	count(SHUNT_TC_CNT_SOCKETS_SPLICED);
	watch_state(skops, 1);
	return 1;
}

/* The connecting end of a captured connection: spliced, or (short rule) left for learning. */
static __always_inline void first_end(struct bpf_sock_ops *skops, struct shunt_tuple *t, __u64 netns, __u32 kind)
{
	if (short_port(netns, t->rport)) {
		struct shunt_tc_pending p = { .kind = kind };
		bpf_map_update_elem(&tc_splice_pending, t, &p, BPF_ANY);
		return;
	}
	splice(skops, t, kind);
}

/* The accepting end: pairs with a first end of the expected kind, or takes over its learning. */
static __always_inline void second_end(struct bpf_sock_ops *skops, struct shunt_tuple *t, __u32 kind)
{
	struct shunt_tuple peer = {};
	tuple_reverse(&peer, t);
	struct shunt_splice_sock *ps = bpf_map_lookup_elem(&splice_peer, &peer);
	if (ps) {
		if ((ps->flags & SHUNT_TC_SPLICE_F_KINDS) == kind && splice(skops, t, kind | SHUNT_SPLICE_F_OWNS_ORIG))
			count(SHUNT_TC_CNT_PAIRED);
		return;
	}
	struct shunt_tc_pending *pp = bpf_map_lookup_elem(&tc_splice_pending, &peer);
	if (!pp || pp->kind != kind)
		return;
	bpf_map_delete_elem(&tc_splice_pending, &peer);
	struct shunt_tc_pending own = { .kind = kind | SHUNT_SPLICE_F_OWNS_ORIG };
	bpf_map_update_elem(&tc_splice_pending, t, &own, BPF_ANY);
	watch_state(skops, 1);
}

static __always_inline int proxy_socket(struct bpf_sock_ops *skops)
{
	struct bpf_sock *sk = skops->sk;
	return sk && is_proxy_mark(sk->mark);
}

static __always_inline void closed(struct bpf_sock_ops *skops)
{
	struct shunt_tuple t = {};
	skops_tuple(skops, &t, bpf_get_netns_cookie(skops));
	struct shunt_splice_sock *sp = bpf_map_lookup_elem(&splice_peer, &t);
	if (sp) {
		__u32 flags = sp->flags;
		bpf_map_delete_elem(&splice_peer, &t);
		if (flags & SHUNT_SPLICE_F_OWNS_ORIG)
			learn_spliced(&t, flags, skops, t.lport);
		else
			hand_over_msgs(&t, flags);
		return;
	}
	struct shunt_tc_pending *pp = bpf_map_lookup_elem(&tc_splice_pending, &t);
	if (!pp)
		return;
	if (pp->kind & SHUNT_SPLICE_F_OWNS_ORIG)
		learn(&t, skops->data_segs_out, skops->data_segs_in, skops, t.lport);
	bpf_map_delete_elem(&tc_splice_pending, &t);
}

SEC("sockops")
int shunt_tc_splice(struct bpf_sock_ops *skops)
{
	__u32 op = skops->op;
	if (skops->family != SHUNT_AF_INET && skops->family != SHUNT_AF_INET6)
		return 1;
	if (op == BPF_SOCK_OPS_STATE_CB) {
		if (skops->args[1] == BPF_TCP_CLOSE)
			closed(skops);
		return 1;
	}
	if (op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB && op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB)
		return 1;
	if (!splice_on())
		return 1;
	__u64 netns = bpf_get_netns_cookie(skops);
	struct shunt_tuple t = {};
	skops_tuple(skops, &t, netns);
	int zt = proxy_socket(skops);
	struct shunt_tc_pod *cfg;
	if (op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB) {
		if (!zt) {
			/* The app's connect, captured by egress.bpf.c (DNS over TCP goes to ztunnel's DNS
			 * listener, not a relay: left alone). */
			cfg = pod_here(&t.local, netns);
			if (!cfg || (t.rport == SHUNT_TC_DNS_PORT && cfg->dns_port != 0) || !outbound_selected(cfg, t.rport))
				return 1;
			/* To the pod's own address: routed over lo, never through eth0's capture. */
			if (pod_here(&t.remote, netns))
				return 1;
			first_end(skops, &t, netns, SHUNT_TC_SPLICE_F_APP_OUT);
		} else {
			/* ztunnel's inbound leg to the app, on a port ingress.bpf.c captures. */
			cfg = pod_here(&t.remote, netns);
			if (!cfg || t.rport == cfg->tunnel_port || !inbound_selected(cfg, t.rport))
				return 1;
			first_end(skops, &t, netns, SHUNT_TC_SPLICE_F_ZT_IN);
		}
		return 1;
	}
	if (zt) {
		/* ztunnel's socket accepted on 15001 for an app of this netns (local = the original
		 * destination; the HBONE listener's sockets have another pod's address as peer). */
		if (!pod_here(&t.remote, netns))
			return 1;
		second_end(skops, &t, SHUNT_TC_SPLICE_F_APP_OUT);
	} else {
		/* The app's accepted socket of ztunnel's inbound leg. */
		if (!pod_here(&t.local, netns))
			return 1;
		second_end(skops, &t, SHUNT_TC_SPLICE_F_ZT_IN);
	}
	return 1;
}
