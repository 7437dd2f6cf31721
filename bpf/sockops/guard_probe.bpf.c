// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Feature probe for the splice guard (redir.bpf.c), loaded and never attached: the same kernel
 * reads the guard makes (bpf_rdonly_cast of sockets, CO-RE field reads, bpf_probe_read_kernel of
 * sk_prot's memory state, the peer's psock through sk_user_data, bpf_jiffies64), an sk_skb
 * verdict program like the one-receive-queue verdict, and a cgroup/sock_release program like the
 * close-with-unread-data report (splice_close.bpf.c), with one 4 KiB ring buffer as its only map,
 * so it is cheap to load. Loading
 * needs what the guard needs (CAP_BPF + CAP_PERFMON, kfunc and BTF support); if it loads, so does
 * the guard.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("sk_msg")
int shunt_guard_probe(struct sk_msg_md *msg)
{
	struct bpf_sock *sk = msg->sk;
	if (!sk)
		return SK_PASS;
	struct tcp_sock *tp = bpf_core_cast(sk, struct tcp_sock);
	struct sock *s = (struct sock *)tp;
	unsigned long pressure = 0;
	unsigned long *pp = s->__sk_common.skc_prot->memory_pressure;
	if (pp)
		bpf_probe_read_kernel(&pressure, sizeof(pressure), pp);
	struct mem_cgroup *mc = s->sk_memcg;
	__u64 seq = tp->write_seq + tp->copied_seq + (__u32)s->sk_rcvbuf + (__u32)s->sk_backlog.rmem_alloc.counter;
	if (mc)
		seq += mc->memory.max;
	__u64 ud = (__u64)s->sk_user_data;
	if (ud & 4) {
		struct sk_psock *ps = bpf_core_cast((void *)(ud & ~7ull), struct sk_psock);
		seq += ps->ingress_skb.qlen + s->sk_receive_queue.qlen + tp->rcv_nxt + (ps->progs.skb_verdict ? 1 : 0);
	}
	return seq + pressure + bpf_jiffies64() == 42 ? SK_DROP : SK_PASS;
}

/* What the one-receive-queue verdict does: read TCP_SKB_CB through the kernel skb, trim a head. */
SEC("sk_skb/verdict")
int shunt_guard_probe_verdict(struct __sk_buff *skb)
{
	struct sk_buff *kskb = bpf_cast_to_kern_ctx(skb);
	__u32 cb[2] = {};
	if (bpf_probe_read_kernel(cb, sizeof(cb), kskb->cb) != 0)
		return SK_PASS;
	if (cb[0] == 42 && bpf_get_socket_cookie(skb) == 42)
		bpf_skb_adjust_room(skb, -1, 0, 0);
	return SK_PASS;
}

/* What the close-with-unread-data report (splice_close.bpf.c) does: the socket behind a
 * cgroup/sock_release context, its psock's unread bytes, the netns cookie, a ring buffer write. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} guard_probe_ring SEC(".maps");

SEC("cgroup/sock_release")
int shunt_guard_probe_release(struct bpf_sock *ctx)
{
	struct sock *sk = bpf_core_cast(ctx, struct sock);
	__u64 ud = (__u64)sk->sk_user_data;
	__u64 v = sk->__sk_common.skc_num + bpf_get_netns_cookie(ctx) + bpf_get_socket_cookie(ctx);
	if (ud & 4) {
		struct sk_psock *ps = bpf_core_cast((void *)(ud & ~7ull), struct sk_psock);
		v += ps->ingress_skb.qlen;
		if (bpf_core_field_exists(ps->msg_tot_len))
			v += ps->msg_tot_len;
		else
			v += (__u64)ps->ingress_msg.next + bpf_core_field_offset(struct sk_psock, ingress_msg);
	}
	if (v == 42)
		bpf_ringbuf_output(&guard_probe_ring, &v, sizeof(v), 0);
	return 1;
}
