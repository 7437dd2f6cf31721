// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * sk_lookup, one netns link per enrolled pod: the listener lookup the kernel makes when a
 * captured SYN met a TIME_WAIT socket of the same 4-tuple (ztunnel's side of an earlier
 * connection closed first; TCP_TW_SYN). The lookup is for the SYN's own destination port, where
 * ztunnel does not listen (hairpinned outbound: nothing listens on the remote port in the pod;
 * inbound: the app does), so without this the SYN would stall until the TIME_WAIT expired, or
 * reach the app around ztunnel. ingress.bpf.c armed this CPU's tc_tw_handoff slot with the SYN's
 * tuple and put ztunnel's listener in tc_tw_sock[cpu] just before (shunt_tc.h: why a handoff and
 * not an address rule). A lookup matching the slot (tuple, and armed within TW_MAX_AGE_NS) gets
 * that listener; the slot is consumed. Everything else: SK_PASS untouched.
 */
#include "lib.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* The handoff happens within one softirq pass: microseconds. An older slot is stale. */
#define TW_MAX_AGE_NS 1000000ULL

static __always_inline int addr_eq(const struct shunt_tc_addr *x, const struct shunt_tc_addr *y)
{
	return x->a[0] == y->a[0] && x->a[1] == y->a[1] && x->a[2] == y->a[2] && x->a[3] == y->a[3];
}

SEC("sk_lookup")
int shunt_tc_sk_lookup(struct bpf_sk_lookup *ctx)
{
	__u32 zero = 0;
	struct shunt_tc_tw *h = bpf_map_lookup_elem(&tc_tw_handoff, &zero);
	if (!h || h->at_ns == 0 || ctx->protocol != IPPROTO_TCP_)
		return SK_PASS;
	if (bpf_ktime_get_ns() - h->at_ns > TW_MAX_AGE_NS) {
		h->at_ns = 0;
		return SK_PASS;
	}
	/* Every ctx field read once, unconditionally: the verifier refuses ctx accesses through a
	 * pointer the compiler offset (what per-family branches turn into). */
	__u32 family = ctx->family;
	__u32 lport = ctx->local_port;
	__u16 rport = bpf_ntohs(ctx->remote_port);
	__u32 l4 = ctx->local_ip4, r4 = ctx->remote_ip4;
	__u32 l6_0 = ctx->local_ip6[0], l6_1 = ctx->local_ip6[1], l6_2 = ctx->local_ip6[2], l6_3 = ctx->local_ip6[3];
	__u32 r6_0 = ctx->remote_ip6[0], r6_1 = ctx->remote_ip6[1], r6_2 = ctx->remote_ip6[2], r6_3 = ctx->remote_ip6[3];
	/* Keeps the loads here (clang would sink them into the branches as ctx+offset accesses). */
	asm volatile("" : "+r"(l4), "+r"(r4), "+r"(l6_0), "+r"(l6_1), "+r"(l6_2), "+r"(l6_3));
	asm volatile("" : "+r"(r6_0), "+r"(r6_1), "+r"(r6_2), "+r"(r6_3), "+r"(lport), "+r"(family));
	struct shunt_tc_addr local, remote;
	if (family == AF_INET) {
		addr_v4(&local, l4);
		addr_v4(&remote, r4);
	} else if (family == AF_INET6) {
		local.a[0] = l6_0;
		local.a[1] = l6_1;
		local.a[2] = l6_2;
		local.a[3] = l6_3;
		remote.a[0] = r6_0;
		remote.a[1] = r6_1;
		remote.a[2] = r6_2;
		remote.a[3] = r6_3;
	} else {
		return SK_PASS;
	}
	if (lport != h->lport || rport != h->rport || !addr_eq(&local, &h->local) || !addr_eq(&remote, &h->remote))
		return SK_PASS;
	h->at_ns = 0;
	__u32 cpu = bpf_get_smp_processor_id();
	struct bpf_sock *sk = bpf_map_lookup_elem(&tc_tw_sock, &cpu);
	if (!sk) {
		/* ztunnel closed that listener meanwhile: the captured SYN must not reach the app. */
		count(SHUNT_TC_CNT_TW_LOST);
		return SK_DROP;
	}
	long err = bpf_sk_assign(ctx, sk, 0);
	bpf_sk_release(sk);
	if (err) {
		count(SHUNT_TC_CNT_ASSIGN_FAILED);
		return SK_DROP;
	}
	count(SHUNT_TC_CNT_TW_STEERED);
	return SK_PASS;
}
