// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * sk_lookup, one netns link per enrolled pod: the listener lookup the kernel makes when a
 * hairpinned SYN meets a TIME_WAIT socket of the same 4-tuple (ztunnel's side of an earlier
 * connection closed first; TCP_TW_SYN). The lookup is for the original destination's port, where
 * nothing listens in the pod, so without this the SYN would be answered with a TIME_WAIT ACK and
 * the app's connect would stall until the TIME_WAIT expires. Here: a lookup whose remote address
 * is an enrolled pod's own address and whose local address is not (only a hairpinned packet
 * looks like that: nothing from outside carries the pod's address as source, traffic inside the
 * pod has a pod address as destination) goes to that pod's ztunnel outbound listener
 * (tc_listeners, filled by ingress.bpf.c). Everything else: SK_PASS untouched.
 */
#include "lib.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("sk_lookup")
int shunt_tc_sk_lookup(struct bpf_sk_lookup *ctx)
{
	struct shunt_tc_addr local, remote;
	if (ctx->protocol != IPPROTO_TCP_)
		return SK_PASS;
	if (ctx->family == AF_INET) {
		addr_v4(&local, ctx->local_ip4);
		addr_v4(&remote, ctx->remote_ip4);
	} else if (ctx->family == AF_INET6) {
		local.a[0] = ctx->local_ip6[0];
		local.a[1] = ctx->local_ip6[1];
		local.a[2] = ctx->local_ip6[2];
		local.a[3] = ctx->local_ip6[3];
		remote.a[0] = ctx->remote_ip6[0];
		remote.a[1] = ctx->remote_ip6[1];
		remote.a[2] = ctx->remote_ip6[2];
		remote.a[3] = ctx->remote_ip6[3];
	} else {
		return SK_PASS;
	}
	if (!bpf_map_lookup_elem(&tc_pod, &remote) || bpf_map_lookup_elem(&tc_pod, &local))
		return SK_PASS;
	struct bpf_sock *sk = bpf_map_lookup_elem(&tc_listeners, &remote);
	if (!sk)
		return SK_PASS;
	long err = bpf_sk_assign(ctx, sk, 0);
	bpf_sk_release(sk);
	if (!err)
		count(SHUNT_TC_CNT_TW_STEERED);
	return SK_PASS;
}
