// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The tc backend's splice guard and one-receive-queue verdict, on its own splice sockhash
 * (<bpffs>/shunt/tc/maps/splice_socks, filled by splice.bpf.c). The same code as the sockops
 * backend's bpf/sockops/redir.bpf.c: bpf/include/shunt_splice_guard.h (its top comment says what
 * the guard keeps and why); only the maps (pinned in the tc directory), the counters
 * (tc_counters) and the tuple scope (always the netns cookie) are the tc backend's.
 */
#define SHUNT_TUPLE_NETNS_ALWAYS 1
#include "lib.h"
#include "shunt_sock.h"

#define SHUNT_SPLICE_COUNT(which, n) count_n(SHUNT_TC_CNT_##which, n)
#include "shunt_splice_guard.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("sk_msg")
int shunt_tc_redir(struct sk_msg_md *msg)
{
	return shunt_splice_msg(msg);
}

SEC("sk_skb/verdict")
int shunt_tc_splice_verdict(struct __sk_buff *skb)
{
	return shunt_splice_skb(skb);
}
