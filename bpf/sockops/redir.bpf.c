// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * sk_msg on the splice sockhash: data sent on a spliced socket goes straight onto the peer
 * socket's receive queue (BPF_F_INGRESS), skipping TCP/IP and loopback. When the peer is not
 * in the sockhash (other node, not marked, already closed) the data takes the normal stack.
 */
#include "lib.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("sk_msg")
int shunt_redir(struct sk_msg_md *msg)
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
	if (bpf_msg_redirect_hash(msg, &splice_socks, &peer, BPF_F_INGRESS) == SK_PASS) {
		count(SHUNT_CNT_MSGS_SPLICED, 1);
		count(SHUNT_CNT_BYTES_SPLICED, size);
	} else {
		count(SHUNT_CNT_MSGS_PASSED, 1);
	}
	return SK_PASS;
}
