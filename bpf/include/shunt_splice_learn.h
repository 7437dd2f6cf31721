/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The short-connection rule (shunt_splice.h "Short connections"), shared by the sockops backend
 * (connect.bpf.c decides, sockops.bpf.c learns) and the tc backend (bpf/tc/splice.bpf.c does
 * both at ESTABLISHED / TCP_CLOSE). The includer provides the splice maps (splice_guard,
 * splice_peer, splice_learn) and SHUNT_SPLICE_COUNT(which, n) (which: SPLICE_SKIPPED_SHORT).
 * The learning key is (netns of the accepting socket, the original destination port).
 */
#ifndef SHUNT_SPLICE_LEARN_H
#define SHUNT_SPLICE_LEARN_H

#include "shunt_sock.h"

#ifndef SHUNT_SPLICE_COUNT
#error "define SHUNT_SPLICE_COUNT(which, n) (the backend's counters) before including shunt_splice_learn.h"
#endif

/* Were the last connections to this port of the accepting pod short (see splice_learn)? Then not
 * worth a psock per socket: skip the splice (the record then says LEARN: its accepting socket
 * still teaches), but for every SHUNT_SHORT_PROBE-th connection. */
static __always_inline int short_port(__u64 accept_netns, __u16 orig_port)
{
	__u32 zero = 0;
	struct shunt_splice_guard *g = bpf_map_lookup_elem(&splice_guard, &zero);
	__u32 n = g ? g->short_conns : 0;
	if (!n)
		return 0;
	struct shunt_learn_key k = { .netns = accept_netns, .port = orig_port };
	struct shunt_learn *l = bpf_map_lookup_elem(&splice_learn, &k);
	if (!l || l->short_run < n)
		return 0;
	if (++l->skipped % SHUNT_SHORT_PROBE == 0)
		return 0;
	SHUNT_SPLICE_COUNT(SPLICE_SKIPPED_SHORT, 1);
	return 1;
}

/* The active end's close: its sent-message count into the passive peer's entry (if still there). */
static __always_inline void hand_over_msgs(const struct shunt_tuple *t, __u32 flags)
{
	struct shunt_tuple peer = {};
	tuple_reverse(&peer, t);
	struct shunt_splice_sock *pp = bpf_map_lookup_elem(&splice_peer, &peer);
	if (!pp)
		return;
	__u32 mine = (flags >> SHUNT_SPLICE_F_MSGS_SHIFT) & 0xff;
	pp->flags = (pp->flags & ~(0xffu << SHUNT_SPLICE_F_PEER_MSGS_SHIFT)) | (mine << SHUNT_SPLICE_F_PEER_MSGS_SHIFT);
}

/*
 * The passive end's close: was this a short connection (both ends sent 1..SHUNT_SHORT_MSGS
 * messages, or data segments when it was not spliced)? A run of them makes connect4 stop splicing
 * the port (splice_learn in shunt_sockops.h); a longer one ends the run. Connections that carried
 * nothing (probes) teach nothing. Counts can be off by a message when both ends close at once
 * (unlocked writes): a heuristic, never a question of correctness.
 */
static __always_inline void learn(const struct shunt_tuple *t, __u32 mine, __u32 theirs, struct bpf_sock_ops *skops, __u16 port)
{
	if (mine + theirs == 0)
		return;
	struct shunt_learn_key k = { .netns = bpf_get_netns_cookie(skops), .port = port };
	struct shunt_learn *l = bpf_map_lookup_elem(&splice_learn, &k);
	if (mine <= SHUNT_SHORT_MSGS && theirs <= SHUNT_SHORT_MSGS) {
		if (!l) {
			struct shunt_learn init = { .short_run = 1 };
			bpf_map_update_elem(&splice_learn, &k, &init, BPF_NOEXIST);
		} else if (l->short_run < 255) {
			l->short_run++;
		}
	} else if (l) {
		l->short_run = 0;
		l->skipped = 0;
	}
}

/* A spliced passive socket: messages each end sent through sk_msg (the active end handed its count over at its close, or is still there). */
static __always_inline void learn_spliced(const struct shunt_tuple *t, __u32 flags, struct bpf_sock_ops *skops, __u16 port)
{
	__u32 mine = (flags >> SHUNT_SPLICE_F_MSGS_SHIFT) & 0xff;
	__u32 theirs = (flags >> SHUNT_SPLICE_F_PEER_MSGS_SHIFT) & 0xff;
	struct shunt_tuple peer = {};
	tuple_reverse(&peer, t);
	struct shunt_splice_sock *pp = bpf_map_lookup_elem(&splice_peer, &peer);
	if (pp)
		theirs = (pp->flags >> SHUNT_SPLICE_F_MSGS_SHIFT) & 0xff;
	learn(t, mine, theirs, skops, port);
}

#endif /* SHUNT_SPLICE_LEARN_H */
