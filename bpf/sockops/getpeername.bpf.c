// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * cgroup/getpeername4 + getpeername6: a socket whose connect was rewritten (to its proxy's
 * outbound port, a same-node pod's inbound port, or the DNS port) shows the address it asked
 * for as its peer, as it would under iptables NAT, where the reply packets carry it. Sockets
 * without a record keep the kernel's answer.
 *
 * The record is found by socket cookie while the connect is pending (orig_by_cookie) or for a
 * connected UDP DNS socket (dns_orig), and by the peer's view of the connection once it is
 * established (orig_by_tuple, which sockops keys by the accepting socket's 4-tuple).
 */
#include "lib.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

static __always_inline struct shunt_orig *find_orig(struct bpf_sock_addr *ctx, const struct shunt_addr *peer,
						   __u16 peer_port)
{
	__u64 cookie = bpf_get_socket_cookie(ctx);
	struct shunt_orig *o;

	if (ctx->type == SHUNT_SOCK_DGRAM) {
		o = bpf_map_lookup_elem(&dns_orig, &cookie);
		/* Only while the socket is still connected to the DNS port it was sent to. */
		return o && o->via_port == peer_port ? o : NULL;
	}
	if (ctx->type != SHUNT_SOCK_STREAM)
		return NULL;
	o = bpf_map_lookup_elem(&orig_by_cookie, &cookie);
	if (o)
		return o;

	struct bpf_sock *sk = ctx->sk;
	if (!sk)
		return NULL;
	struct shunt_tuple t = {};
	t.local = *peer; /* the accepting socket's view: its local end is our peer */
	t.lport = peer_port;
	if (sk->family == SHUNT_AF_INET) {
		addr_from_v4(&t.remote, sk->src_ip4);
	} else {
		t.remote.a[0] = sk->src_ip6[0];
		t.remote.a[1] = sk->src_ip6[1];
		t.remote.a[2] = sk->src_ip6[2];
		t.remote.a[3] = sk->src_ip6[3];
	}
	t.rport = (__u16)sk->src_port; /* host order */
	tuple_scope(&t, bpf_get_netns_cookie(ctx));
	o = bpf_map_lookup_elem(&orig_by_tuple, &t);
	/* NO_ANSWER: the proxy delivering to its own app was not rewritten. */
	return o && !(o->flags & SHUNT_ORIG_NO_ANSWER) ? o : NULL;
}

SEC("cgroup/getpeername4")
int shunt_getpeername4(struct bpf_sock_addr *ctx)
{
	struct shunt_addr peer;

	addr_from_v4(&peer, ctx->user_ip4);
	struct shunt_orig *o = find_orig(ctx, &peer, bpf_ntohs((__u16)ctx->user_port));
	if (!o || o->family != 4)
		return 1;
	ctx->user_ip4 = o->addr.a[3];
	ctx->user_port = bpf_htons(o->port);
	count(SHUNT_CNT_PEER_REWRITTEN, 1);
	return 1;
}

SEC("cgroup/getpeername6")
int shunt_getpeername6(struct bpf_sock_addr *ctx)
{
	struct shunt_addr peer;

	addr_from_ctx6(&peer, ctx);
	struct shunt_orig *o = find_orig(ctx, &peer, bpf_ntohs((__u16)ctx->user_port));
	if (!o)
		return 1;
	/* An IPv4 original on a dual-stack socket is shown IPv4-mapped, as it was asked. */
	ctx6_set_addr(ctx, &o->addr, o->port);
	count(SHUNT_CNT_PEER_REWRITTEN, 1);
	return 1;
}
