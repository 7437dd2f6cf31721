/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Helpers shared by the tc backend's two programs (one object per hook, maps shared by pin). */
#ifndef SHUNT_TC_LIB_H
#define SHUNT_TC_LIB_H

#include "pkt.h"

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&tc_counters, &idx);
	if (v)
		*v += 1; /* per-CPU slot: no atomics needed */
}

static __always_inline void count_n(__u32 idx, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&tc_counters, &idx);
	if (v)
		*v += n;
}

static __always_inline int is_proxy_mark(__u32 mark)
{
	return (mark & SHUNT_TC_MARK_MASK) == SHUNT_TC_PROXY_MARK;
}

static __always_inline int is_hairpin_mark(__u32 mark)
{
	return (mark & SHUNT_TC_MARK_MASK) == SHUNT_TC_MARK;
}

static __always_inline int port_selected(__u32 gen, __u16 port, __u8 kind)
{
	struct shunt_tc_port_key k = { .gen = gen, .port = port, .kind = kind, ._pad = 0 };
	return bpf_map_lookup_elem(&tc_port_sel, &k) != NULL;
}

/*
 * The capture predicates, shared by the datapath (egress.bpf.c for an app's SYN, ingress.bpf.c for
 * an inbound SYN) and the splice pairing (splice.bpf.c), so a connection is spliced exactly when
 * it was captured. Port selections only: the tc backend has no CIDR selection.
 */
/* Is an app's connection to dport captured (hairpinned to ztunnel's outbound listener)? */
static __always_inline int outbound_selected(const struct shunt_tc_pod *cfg, __u16 dport)
{
	if (port_selected(cfg->gen, dport, SHUNT_TC_SEL_OUT_EXCLUDE))
		return 0;
	if (cfg->flags & SHUNT_TC_OUT_ALL)
		return 1;
	return port_selected(cfg->gen, dport, SHUNT_TC_SEL_OUT_INCLUDE);
}

/* Is an inbound connection to the pod's dport captured (to ztunnel's inbound listener)? */
static __always_inline int inbound_selected(const struct shunt_tc_pod *cfg, __u16 dport)
{
	if (port_selected(cfg->gen, dport, SHUNT_TC_SEL_IN_EXCLUDE))
		return 0;
	if (cfg->flags & SHUNT_TC_IN_ALL)
		return 1;
	return port_selected(cfg->gen, dport, SHUNT_TC_SEL_IN_INCLUDE);
}

static __always_inline struct bpf_sock *lookup(struct __sk_buff *skb, struct bpf_sock_tuple *t, __u8 family)
{
	/* The verifier wants a constant tuple size. */
	if (family == 4)
		return bpf_skc_lookup_tcp(skb, t, sizeof(t->ipv4), BPF_F_CURRENT_NETNS, 0);
	return bpf_skc_lookup_tcp(skb, t, sizeof(t->ipv6), BPF_F_CURRENT_NETNS, 0);
}

/*
 * A socket of this netns that owns the packet's connection (the kernel's own 4-tuple lookup):
 * an established, SYN-received or closing socket, never a listener or a TIME_WAIT one (a SYN
 * hitting TIME_WAIT would be handed to whatever listens on the port, i.e. the app).
 * *tw is set when the owner is a TIME_WAIT socket. Returns a referenced socket the caller must
 * release, or NULL.
 */
static __always_inline struct bpf_sock *owner_socket_tw(struct __sk_buff *skb, struct pkt *p, int *tw)
{
	struct bpf_sock *sk = lookup(skb, &p->tuple, p->family);
	*tw = 0;
	if (!sk)
		return NULL;
	if (sk->state == BPF_TCP_LISTEN || sk->state == BPF_TCP_TIME_WAIT) {
		*tw = sk->state == BPF_TCP_TIME_WAIT;
		bpf_sk_release(sk);
		return NULL;
	}
	return sk;
}

static __always_inline struct bpf_sock *owner_socket(struct __sk_buff *skb, struct pkt *p)
{
	int tw;
	return owner_socket_tw(skb, p, &tw);
}

/* ztunnel's listener on port (any local address), or NULL. Referenced: release it. */
static __always_inline struct bpf_sock *listener_socket(struct __sk_buff *skb, struct pkt *p, __u16 port)
{
	struct bpf_sock_tuple t = p->tuple;
	if (p->family == 4)
		t.ipv4.dport = bpf_htons(port);
	else
		t.ipv6.dport = bpf_htons(port);
	struct bpf_sock *sk = lookup(skb, &t, p->family);
	if (!sk)
		return NULL;
	if (sk->state != BPF_TCP_LISTEN) {
		bpf_sk_release(sk);
		return NULL;
	}
	return sk;
}

/* ztunnel's TCP DNS listener on the family's loopback address (127.0.0.1 / ::1):port, or NULL. */
static __always_inline struct bpf_sock *dns_listener_socket(struct __sk_buff *skb, struct pkt *p, __u16 port)
{
	struct bpf_sock_tuple t = p->tuple;
	if (p->family == 4) {
		t.ipv4.daddr = bpf_htonl(0x7f000001);
		t.ipv4.dport = bpf_htons(port);
	} else {
		t.ipv6.daddr[0] = 0;
		t.ipv6.daddr[1] = 0;
		t.ipv6.daddr[2] = 0;
		t.ipv6.daddr[3] = bpf_htonl(1);
		t.ipv6.dport = bpf_htons(port);
	}
	struct bpf_sock *sk = lookup(skb, &t, p->family);
	if (!sk)
		return NULL;
	if (sk->state != BPF_TCP_LISTEN) {
		bpf_sk_release(sk);
		return NULL;
	}
	return sk;
}

#endif /* SHUNT_TC_LIB_H */
