// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * sk_lookup, one link per enrolled pod netns: a TCP SYN that reaches the pod from outside
 * (another node, the node itself, a caller whose connect was not rewritten) for a captured
 * inbound port is handed to the pod proxy's inbound listener, the way the pod's iptables
 * PREROUTING REDIRECT would. Unlike REDIRECT nothing is rewritten: the accepted socket's local
 * address is the original destination (getsockname; getsockopt.bpf.c answers SO_ORIGINAL_DST
 * with it too).
 *
 * sk_lookup programs cannot read the netns cookie, so the pod is found by the destination
 * address (pod_by_ip), which is the pod's own address for anything worth capturing. Traffic
 * inside the pod (the proxy delivering to its app from 127.0.0.6, ::6 or the pod address) is
 * never captured, as iptables only redirects in PREROUTING.
 *
 * A captured port whose listener is missing (proxy not started yet, or restarting until the
 * agent puts the new socket in) is refused, as REDIRECT to a port nobody listens on would be:
 * the mesh fails closed, never around the proxy.
 */
#include "lib.h"
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define SHUNT_LOOPBACK_IFINDEX 1 /* lo is ifindex 1 in every netns */

SEC("sk_lookup")
int shunt_sk_lookup(struct bpf_sk_lookup *ctx)
{
	struct shunt_addr local, remote;
	__u8 family;

	if (ctx->protocol != SHUNT_IPPROTO_TCP)
		return SK_PASS;
	/* ingress_ifindex is 5.17+; and IPv6 reports the address's device rather than lo for a pod
	 * talking to its own address, so the address checks below are what really decide. */
	if (bpf_core_field_exists(ctx->ingress_ifindex) && ctx->ingress_ifindex == SHUNT_LOOPBACK_IFINDEX)
		return SK_PASS;
	if (ctx->family == SHUNT_AF_INET) {
		addr_from_v4(&local, ctx->local_ip4);
		addr_from_v4(&remote, ctx->remote_ip4);
		family = 4;
	} else if (ctx->family == SHUNT_AF_INET6) {
		local.a[0] = ctx->local_ip6[0];
		local.a[1] = ctx->local_ip6[1];
		local.a[2] = ctx->local_ip6[2];
		local.a[3] = ctx->local_ip6[3];
		remote.a[0] = ctx->remote_ip6[0];
		remote.a[1] = ctx->remote_ip6[1];
		remote.a[2] = ctx->remote_ip6[2];
		remote.a[3] = ctx->remote_ip6[3];
		family = 6;
	} else {
		return SK_PASS;
	}
	if (addr_is_loopback(&local) || addr_is_pod_internal(&remote))
		return SK_PASS;

	__u64 *netns = bpf_map_lookup_elem(&pod_by_ip, &local);
	if (!netns)
		return SK_PASS;
	__u64 pod = *netns;
	/* The pod talking to its own address (the proxy's delivery on pre-5.17 kernels). */
	__u64 *from = bpf_map_lookup_elem(&pod_by_ip, &remote);
	if (from && *from == pod)
		return SK_PASS;
	struct shunt_pod_cfg *cfg = bpf_map_lookup_elem(&pod_cfg, &pod);
	if (!cfg || !inbound_selected(cfg, (__u16)ctx->local_port /* host order */))
		return SK_PASS;

	struct shunt_listener_key key = { .netns = pod, .family = family, ._pad = 0 };
	struct bpf_sock *sk = bpf_map_lookup_elem(&inbound_listener, &key);
	if (!sk) {
		count(SHUNT_CNT_INBOUND_NO_LISTENER, 1);
		return SK_DROP;
	}
	long err = bpf_sk_assign(ctx, sk, 0);
	bpf_sk_release(sk);
	if (err) {
		count(SHUNT_CNT_INBOUND_ASSIGN_FAILED, 1);
		return SK_DROP;
	}
	count(SHUNT_CNT_INBOUND_STEERED, 1);
	return SK_PASS;
}
