// SPDX-License-Identifier: GPL-2.0
/* Fixture for @shunt/libbpf's netns-attach tests: an sk_lookup program that hands TCP
 * connections for configured ports to a listening socket held in a sockhash (how the
 * sockops backend brings inbound traffic from other nodes to the proxy's 15006 without
 * iptables), and a flow_dissector program that only defers to the kernel's dissector. */
#include "shunt_bpf.h"

/* Which listener a steered port goes to; also the sockhash key. */
struct listener_key {
	__u16 port;
	__u8 family;
	__u8 pad;
};

/* local port (host order) -> listener that takes its connections. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u16);
	__type(value, struct listener_key);
} steer_ports SEC(".maps");

/* Listening sockets userspace put in (value: the socket fd on update, its cookie on lookup). */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 8);
	__type(key, struct listener_key);
	__type(value, __u64);
} listeners SEC(".maps");

enum sklookup_counter {
	SKL_TCP_LOOKUPS = 0, /* the program ran for a TCP lookup */
	SKL_ASSIGNED,        /* a connection was handed to a listener */
	SKL_NO_LISTENER,     /* a steered port whose listener is not in the map: left alone */
	SKL_ASSIGN_FAILED,   /* bpf_sk_assign refused the socket: dropped */
	SKL_MAX,
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SKL_MAX);
	__type(key, __u32);
	__type(value, __u64);
} sklookup_counters SEC(".maps");

static __always_inline void bump(__u32 slot)
{
	__u64 *v = bpf_map_lookup_elem(&sklookup_counters, &slot);

	if (v)
		__sync_fetch_and_add(v, 1);
}

SEC("sk_lookup")
int selftest_sk_lookup(struct bpf_sk_lookup *ctx)
{
	struct listener_key *key;
	struct bpf_sock *sk;
	__u16 port;
	long err;

	if (ctx->protocol != IPPROTO_TCP)
		return SK_PASS;
	bump(SKL_TCP_LOOKUPS);
	port = (__u16)ctx->local_port; /* host byte order, unlike remote_port */
	key = bpf_map_lookup_elem(&steer_ports, &port);
	if (!key || key->family != ctx->family)
		return SK_PASS;
	sk = bpf_map_lookup_elem(&listeners, key);
	if (!sk) {
		/* No listener (proxy not up yet): the normal lookup decides, as without us. */
		bump(SKL_NO_LISTENER);
		return SK_PASS;
	}
	err = bpf_sk_assign(ctx, sk, 0);
	bpf_sk_release(sk);
	if (err) {
		bump(SKL_ASSIGN_FAILED);
		return SK_DROP;
	}
	bump(SKL_ASSIGNED);
	return SK_PASS;
}

SEC("flow_dissector")
int selftest_flow_dissector(struct __sk_buff *skb)
{
	/* Let the kernel's own dissector do the work: attaching must not change anything. */
	return BPF_FLOW_DISSECTOR_CONTINUE;
}

char LICENSE[] SEC("license") = "GPL";
