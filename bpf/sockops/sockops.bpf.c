// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * sockops: when a connection is established, carry the original destination recorded at
 * connect time (keyed by the connecting socket's cookie) over to the accepting socket's
 * 4-tuple, which is all getsockopt can see; and put both ends of connections marked for
 * splicing into the sockhash so sk_msg can hand data straight to the peer socket.
 *
 * Records live exactly as long as the socket that needs them: sockets holding one get the
 * state callback, and their TCP_CLOSE deletes it. The accepting socket's close is the right
 * moment for orig_by_tuple (a proxy may ask SO_ORIGINAL_DST any number of times, as with
 * conntrack, and a client that already closed must not take the answer away from a proxy
 * that has not accepted yet). Sockhash entries need nothing: the kernel unlinks a socket
 * from every sockmap/sockhash when it closes; a spliced socket's splice_peer entry (its address,
 * for the guard in redir.bpf.c) is deleted at its TCP_CLOSE.
 */
#include "lib.h"
#include "shunt_splice_learn.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

static __always_inline int splice(struct bpf_sock_ops *skops, struct shunt_tuple *t, __u64 netns, __u32 flags)
{
	/* Only sockets of enrolled pods are spliced; a host caller's half stays on the stack. */
	if (!bpf_map_lookup_elem(&pod_cfg, &netns))
		return 0;
	/* Sockhash and splice_peer (shunt_splice.h); the entry goes at TCP_CLOSE (watch_state). */
	if (!splice_insert(skops, t, flags)) {
		count(SHUNT_CNT_SPLICE_FAILED, 1);
		return 0;
	}
	count(SHUNT_CNT_SOCKETS_SPLICED, 1);
	return 1;
}

SEC("sockops")
int shunt_sockops(struct bpf_sock_ops *skops)
{
	__u32 op = skops->op;
	struct shunt_tuple t = {};
	__u64 cookie;

	if (skops->family != SHUNT_AF_INET && skops->family != SHUNT_AF_INET6)
		return 1;

	switch (op) {
	case BPF_SOCK_OPS_TCP_CONNECT_CB:
		/* A redirected connect may never establish (refused, reset, abandoned in SYN_SENT):
		 * watch it so its cookie record goes when it closes. */
		cookie = bpf_get_socket_cookie(skops);
		if (bpf_map_lookup_elem(&orig_by_cookie, &cookie))
			watch_state(skops, 1);
		return 1;
	case BPF_SOCK_OPS_STATE_CB:
		if (skops->args[1] != BPF_TCP_CLOSE)
			return 1;
		/* Per-connection cost: delete only what this socket can own. A cookie record outlives
		 * only a connect that never established (ACTIVE_ESTABLISHED moves it). */
		if (skops->args[0] == BPF_TCP_SYN_SENT) {
			cookie = bpf_get_socket_cookie(skops);
			if (bpf_map_delete_elem(&orig_by_cookie, &cookie) == 0)
				count(SHUNT_CNT_ORIG_RELEASED, 1);
			return 1;
		}
		/* Runs before the kernel unhashes the socket, so its 4-tuple is still intact. */
		skops_tuple(skops, &t, bpf_get_netns_cookie(skops));
		/* The accepting socket owns its record; only when the record says spliced is there a
		 * splice_peer entry to look for (most closes, short connections not spliced, skip it). */
		struct shunt_orig *o = bpf_map_lookup_elem(&orig_by_tuple, &t);
		if (o) {
			__u8 of = o->flags;
			__u16 port = o->port;
			if (of & SHUNT_ORIG_SPLICE) {
				struct shunt_splice_sock *sp = bpf_map_lookup_elem(&splice_peer, &t);
				if (sp) {
					__u32 flags = sp->flags;
					bpf_map_delete_elem(&splice_peer, &t);
					learn_spliced(&t, flags, skops, port);
				}
			} else if (of & SHUNT_ORIG_LEARN) {
				/* Not spliced because its port's connections were short: does this one confirm
				 * it? TCP's own counts (data segments each way; only spliced bytes bypass them). */
				learn(&t, skops->data_segs_out, skops->data_segs_in, skops, port);
			}
			if (bpf_map_delete_elem(&orig_by_tuple, &t) == 0)
				count(SHUNT_CNT_ORIG_RELEASED, 1);
			return 1;
		}
		/* No record: a spliced connecting socket (the accepting side holds the record); it hands
		 * its message count to the accepting peer, which learns. */
		struct shunt_splice_sock *sp = bpf_map_lookup_elem(&splice_peer, &t);
		if (sp) {
			__u32 flags = sp->flags;
			bpf_map_delete_elem(&splice_peer, &t);
			if (!(flags & SHUNT_SPLICE_F_OWNS_ORIG))
				hand_over_msgs(&t, flags);
		}
		return 1;
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		break;
	default:
		return 1;
	}

	__u64 netns = bpf_get_netns_cookie(skops);
	skops_tuple(skops, &t, netns);

	if (op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB) {
		cookie = bpf_get_socket_cookie(skops);
		struct shunt_orig *o = bpf_map_lookup_elem(&orig_by_cookie, &cookie);
		if (!o)
			return 1;
		struct shunt_orig copy = *o;
		struct shunt_tuple peer = {};
		tuple_reverse(&peer, &t);
		/* Written before the ACK leaves, so the accepting side always finds it. */
		bpf_map_update_elem(&orig_by_tuple, &peer, &copy, BPF_ANY);
		bpf_map_delete_elem(&orig_by_cookie, &cookie);
		count(SHUNT_CNT_ORIG_RECORDED, 1);
		/* The record now belongs to the accepting socket; this one needs no more callbacks
		 * unless it is spliced (its splice_peer entry goes at close). */
		if (!(copy.flags & SHUNT_ORIG_SPLICE) || !splice(skops, &t, netns, 0))
			watch_state(skops, 0);
		return 1;
	}

	/* Passive side: this socket owns the record from now on; splice it when marked. */
	struct shunt_orig *o = bpf_map_lookup_elem(&orig_by_tuple, &t);
	if (!o)
		return 1;
	watch_state(skops, 1);
	if (o->flags & SHUNT_ORIG_SPLICE)
		splice(skops, &t, netns, SHUNT_SPLICE_F_OWNS_ORIG);
	return 1;
}
