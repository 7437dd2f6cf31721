// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Test-only: stands in for a CNI's tcx programs on a pod's eth0. Counts the TCP segments of one
 * port (either direction, set in cni_cfg[0]) per hook and returns TCX_NEXT, so the tests can
 * prove that a program attached before shunt's still sees every packet, and keeps its place.
 */
#define SHUNT_TC_NO_MAPS
#include "../pkt.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} cni_cfg SEC(".maps");

/* [0] ingress, [1] egress */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} cni_seen SEC(".maps");

static __always_inline int seen(struct __sk_buff *skb, __u32 slot)
{
	struct pkt p = {};
	__u32 zero = 0;
	__u32 *port = bpf_map_lookup_elem(&cni_cfg, &zero);
	if (!port || parse_tcp(skb, &p))
		return TCX_NEXT;
	if (p.sport != *port && p.dport != *port)
		return TCX_NEXT;
	__u64 *n = bpf_map_lookup_elem(&cni_seen, &slot);
	if (n)
		__sync_fetch_and_add(n, 1);
	return TCX_NEXT;
}

SEC("tcx/ingress")
int cni_ingress(struct __sk_buff *skb)
{
	return seen(skb, 0);
}

SEC("tcx/egress")
int cni_egress(struct __sk_buff *skb)
{
	return seen(skb, 1);
}
