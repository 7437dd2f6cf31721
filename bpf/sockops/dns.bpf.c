// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * DNS capture (profile option, pod_cfg.dns_port != 0), as istio-iptables' DNS rules do it:
 *  - cgroup/sendmsg4/6: an app's UDP query to any non-loopback :53 goes to the proxy's DNS
 *    port on loopback instead (connected UDP sockets are handled by connect4/6);
 *  - cgroup/recvmsg4/6: a reply read from that port is shown as coming from the server the
 *    app asked, so resolvers that check the reply's source (glibc does) accept it;
 *  - cgroup/sock_release: the socket's record goes with the socket.
 */
#include "lib.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

static __always_inline int is_udp(struct bpf_sock_addr *ctx)
{
	return ctx->type == SHUNT_SOCK_DGRAM && ctx->protocol == SHUNT_IPPROTO_UDP;
}

SEC("cgroup/sendmsg4")
int shunt_sendmsg4(struct bpf_sock_addr *ctx)
{
	struct shunt_addr dst;

	if (!is_udp(ctx))
		return 1;
	addr_from_v4(&dst, ctx->user_ip4);
	__u16 port = dns_capture(ctx, &dst, bpf_ntohs((__u16)ctx->user_port), 4);
	if (port) {
		ctx->user_ip4 = bpf_htonl(0x7f000001);
		ctx->user_port = bpf_htons(port);
	}
	return 1;
}

SEC("cgroup/sendmsg6")
int shunt_sendmsg6(struct bpf_sock_addr *ctx)
{
	struct shunt_addr dst;

	if (!is_udp(ctx))
		return 1;
	addr_from_ctx6(&dst, ctx);
	__u8 family = addr_is_v4mapped(&dst) ? 4 : 6;
	__u16 port = dns_capture(ctx, &dst, bpf_ntohs((__u16)ctx->user_port), family);
	if (port) {
		ctx->user_ip6[0] = 0;
		ctx->user_ip6[1] = 0;
		ctx->user_ip6[2] = family == 4 ? bpf_htonl(0x0000ffff) : 0;
		ctx->user_ip6[3] = family == 4 ? bpf_htonl(0x7f000001) : bpf_htonl(1);
		ctx->user_port = bpf_htons(port);
	}
	return 1;
}

/* The record for this socket when src:sport is the proxy DNS port it was sent to, else NULL. */
static __always_inline struct shunt_orig *dns_reply_origin(struct bpf_sock_addr *ctx,
							     const struct shunt_addr *src, __u16 sport)
{
	if (!addr_is_loopback(src))
		return NULL;
	__u64 cookie = bpf_get_socket_cookie(ctx);
	struct shunt_orig *o = bpf_map_lookup_elem(&dns_orig, &cookie);
	if (!o || o->via_port != sport)
		return NULL;
	return o;
}

SEC("cgroup/recvmsg4")
int shunt_recvmsg4(struct bpf_sock_addr *ctx)
{
	struct shunt_addr src;

	if (!is_udp(ctx))
		return 1;
	addr_from_v4(&src, ctx->user_ip4);
	struct shunt_orig *o = dns_reply_origin(ctx, &src, bpf_ntohs((__u16)ctx->user_port));
	if (!o || o->family != 4)
		return 1;
	ctx->user_ip4 = o->addr.a[3];
	ctx->user_port = bpf_htons(o->port);
	count(SHUNT_CNT_DNS_REPLIES, 1);
	return 1;
}

SEC("cgroup/recvmsg6")
int shunt_recvmsg6(struct bpf_sock_addr *ctx)
{
	struct shunt_addr src;

	if (!is_udp(ctx))
		return 1;
	addr_from_ctx6(&src, ctx);
	struct shunt_orig *o = dns_reply_origin(ctx, &src, bpf_ntohs((__u16)ctx->user_port));
	if (!o)
		return 1;
	/* stored IPv4-mapped for IPv4 servers: exactly what a dual-stack socket shows */
	ctx6_set_addr(ctx, &o->addr, o->port);
	count(SHUNT_CNT_DNS_REPLIES, 1);
	return 1;
}

SEC("cgroup/sock_release")
int shunt_sock_release(struct bpf_sock *sk)
{
	if (sk->type != SHUNT_SOCK_DGRAM)
		return 1;
	__u64 cookie = bpf_get_socket_cookie(sk);
	if (bpf_map_delete_elem(&dns_orig, &cookie) == 0)
		count(SHUNT_CNT_ORIG_RELEASED, 1);
	return 1;
}
