// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The sockops backend's reset of spliced connections closed with unread data: the code is
 * bpf/include/shunt_splice_close.h (shared with bpf/tc/splice_close.bpf.c); its top comment says
 * why TCP's RST needs the agent's help here.
 */
#include "lib.h"
#include "shunt_splice_close.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("cgroup/sock_release")
int shunt_splice_release(struct bpf_sock *ctx)
{
	return shunt_splice_release_sock(ctx);
}
