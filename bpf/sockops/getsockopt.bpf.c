// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * cgroup/getsockopt: answer SO_ORIGINAL_DST (SOL_IP, 80) and IP6T_SO_ORIGINAL_DST
 * (SOL_IPV6, 80) on a proxy's accepted TCP socket the way conntrack would, from the record
 * sockops keyed by this socket's 4-tuple. Runs after the kernel's own handler, for every
 * getsockopt in the cgroup, so everything else is left exactly as the kernel answered; a
 * miss keeps the kernel's answer too (conntrack's, when iptables also redirects).
 */
#include "lib.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define SHUNT_SOL_IP 0
#define SHUNT_SOL_IPV6 41
#define SHUNT_SO_ORIGINAL_DST 80
#define SHUNT_PAGE_SIZE 4096

/*
 * Kernel docs (prog_cgroup_sockopt, "Large optval"): for optlen beyond PAGE_SIZE the program
 * only sees the first page; optlen = 0 tells the kernel to keep the original optval. Older
 * kernels return EFAULT to the caller otherwise (iptables-save hit that under Merbridge).
 */
static __always_inline int pass(struct bpf_sockopt *ctx)
{
	if (ctx->optlen > SHUNT_PAGE_SIZE) {
		ctx->optlen = 0;
		count(SHUNT_CNT_SOCKOPT_LARGE, 1);
	}
	return 1;
}

/*
 * A socket of an enrolled pod, on the pod's address and a captured inbound port, from outside the
 * pod: how a connection sk_lookup.bpf.c handed to the proxy's inbound listener looks (its local
 * port is the original one, not the listener's). The same checks as sk_lookup's, so the answer
 * is given exactly for the connections it steers.
 */
static __always_inline int accepted_inbound(__u64 netns, const struct shunt_tuple *t)
{
	if (addr_is_loopback(&t->local) || addr_is_pod_internal(&t->remote))
		return 0;
	__u64 *owner = bpf_map_lookup_elem(&pod_by_ip, &t->local);
	if (!owner || *owner != netns)
		return 0;
	__u64 *from = bpf_map_lookup_elem(&pod_by_ip, &t->remote);
	if (from && *from == netns)
		return 0;
	struct shunt_pod_cfg *cfg = bpf_map_lookup_elem(&pod_cfg, &netns);
	return cfg && inbound_selected(cfg, t->lport);
}

SEC("cgroup/getsockopt")
int shunt_getsockopt(struct bpf_sockopt *ctx)
{
	if (ctx->optname != SHUNT_SO_ORIGINAL_DST ||
	    (ctx->level != SHUNT_SOL_IP && ctx->level != SHUNT_SOL_IPV6))
		return pass(ctx);

	struct bpf_sock *sk = ctx->sk;
	if (!sk || sk->protocol != SHUNT_IPPROTO_TCP)
		return pass(ctx);

	struct shunt_tuple t = {};
	if (sk->family == SHUNT_AF_INET) {
		addr_from_v4(&t.local, sk->src_ip4);
		addr_from_v4(&t.remote, sk->dst_ip4);
	} else if (sk->family == SHUNT_AF_INET6) {
		t.local.a[0] = sk->src_ip6[0];
		t.local.a[1] = sk->src_ip6[1];
		t.local.a[2] = sk->src_ip6[2];
		t.local.a[3] = sk->src_ip6[3];
		t.remote.a[0] = sk->dst_ip6[0];
		t.remote.a[1] = sk->dst_ip6[1];
		t.remote.a[2] = sk->dst_ip6[2];
		t.remote.a[3] = sk->dst_ip6[3];
	} else {
		return pass(ctx);
	}
	t.lport = (__u16)sk->src_port; /* host order */
	t.rport = bpf_ntohs(sk->dst_port);

	__u64 netns = bpf_get_netns_cookie(ctx);
	tuple_scope(&t, netns);

	struct shunt_orig local_answer = {};
	struct shunt_orig *o = bpf_map_lookup_elem(&orig_by_tuple, &t);
	if (o && (o->flags & SHUNT_ORIG_NO_ANSWER))
		o = NULL;
	if (!o && accepted_inbound(netns, &t)) {
		/* sk_lookup handed this connection to the proxy unchanged: the original destination
		 * is the socket's own address, which is what conntrack answers after REDIRECT. */
		local_answer.addr = t.local;
		local_answer.port = t.lport;
		local_answer.family = addr_is_v4mapped(&t.local) ? 4 : 6;
		o = &local_answer;
		count(SHUNT_CNT_ORIG_LOCAL, 1);
	}
	if (!o) {
		count(SHUNT_CNT_ORIG_MISSED, 1);
		return pass(ctx);
	}

	if (ctx->level == SHUNT_SOL_IP) {
		/* conntrack's IPv4 getorigdst only knows IPv4 connections */
		if (o->family != 4) {
			count(SHUNT_CNT_ORIG_MISSED, 1);
			return pass(ctx);
		}
		struct sockaddr_in *sin = ctx->optval;
		/* conntrack: a buffer shorter than sockaddr_in is EINVAL; keep the kernel's error */
		if (ctx->optlen < (int)sizeof(*sin) || (void *)(sin + 1) > ctx->optval_end) {
			count(SHUNT_CNT_ORIG_MISSED, 1);
			return pass(ctx);
		}
		sin->sin_family = SHUNT_AF_INET;
		sin->sin_port = bpf_htons(o->port);
		sin->sin_addr.s_addr = o->addr.a[3];
		__builtin_memset(sin->__pad, 0, sizeof(sin->__pad));
		ctx->optlen = sizeof(*sin);
	} else {
		struct sockaddr_in6 *sin6 = ctx->optval;
		if (ctx->optlen < (int)sizeof(*sin6) || (void *)(sin6 + 1) > ctx->optval_end) {
			count(SHUNT_CNT_ORIG_MISSED, 1);
			return pass(ctx);
		}
		sin6->sin6_family = SHUNT_AF_INET6;
		sin6->sin6_port = bpf_htons(o->port);
		sin6->sin6_flowinfo = 0;
		/* an IPv4 original asked through IPv6 comes back IPv4-mapped */
		sin6->sin6_addr.in6_u.u6_addr32[0] = o->addr.a[0];
		sin6->sin6_addr.in6_u.u6_addr32[1] = o->addr.a[1];
		sin6->sin6_addr.in6_u.u6_addr32[2] = o->addr.a[2];
		sin6->sin6_addr.in6_u.u6_addr32[3] = o->addr.a[3];
		sin6->sin6_scope_id = 0;
		ctx->optlen = sizeof(*sin6);
	}
	ctx->retval = 0;
	count(SHUNT_CNT_ORIG_ANSWERED, 1);
	return 1;
}
