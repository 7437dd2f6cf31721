// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The tc backend's reset of spliced app <-> ztunnel connections closed with unread data (cgroup
 * sock_release at the node cgroup, next to splice.bpf.c): the same code as the sockops backend's,
 * bpf/include/shunt_splice_close.h, against the tc splice maps; the agent's resetter (libbpf
 * SpliceResetter) reads <bpffs>/shunt/tc/maps/splice_resets.
 */
#define SHUNT_TUPLE_NETNS_ALWAYS 1
#include "lib.h"
#include "shunt_sock.h"

#define SHUNT_SPLICE_COUNT(which, n) count_n(SHUNT_TC_CNT_##which, n)
#include "shunt_splice_close.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("cgroup/sock_release")
int shunt_tc_splice_release(struct bpf_sock *ctx)
{
	return shunt_splice_release_sock(ctx);
}
