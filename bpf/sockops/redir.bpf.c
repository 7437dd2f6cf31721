// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The sockops backend's splice guard and one-receive-queue verdict, on its splice sockhash. The
 * code is bpf/include/shunt_splice_guard.h (shared with the tc backend's bpf/tc/redir.bpf.c);
 * its top comment says what the guard keeps and why.
 *
 * SHUNT_REDIR_CONTROL builds the failure controls of the bulk-safety suite from this same file
 * (bpf/selftest/redir_*.bpf.c): 1 = unguarded redirect, 2 = the guard's checks per message
 * without the one-way state. Production objects are built with 0.
 */
#include "lib.h"
#include "shunt_splice_guard.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("sk_msg")
int shunt_redir(struct sk_msg_md *msg)
{
	return shunt_splice_msg(msg);
}

SEC("sk_skb/verdict")
int shunt_splice_verdict(struct __sk_buff *skb)
{
	return shunt_splice_skb(skb);
}
