/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Packet parsing for the tc programs: no maps, so test programs can include it too. */
#ifndef SHUNT_TC_PKT_H
#define SHUNT_TC_PKT_H

#include "shunt_bpf.h"
#include "shunt_tc.h"

#define ETH_HLEN_ 14
#define ETH_P_IP_ 0x0800
#define ETH_P_IPV6_ 0x86DD
#define IPPROTO_TCP_ 6

/* TCP flags byte (offset 13 of the header). */
#define TCPF_SYN_ 0x02
#define TCPF_ACK_ 0x10

/* The kubelet probe source istio-cni SNATs health probes to (exempt from capture). */
#define SHUNT_PROBE_V4 0xa9fe077f /* 169.254.7.127 */

/* What the programs need of one TCP packet. */
struct pkt {
	struct bpf_sock_tuple tuple; /* as the kernel's socket lookup wants it (network order) */
	struct shunt_tc_addr src;    /* v4-mapped for IPv4 */
	struct shunt_tc_addr dst;
	__u16 sport;                 /* host order */
	__u16 dport;
	__u8 tcp_flags;
	__u8 family;                 /* 4 or 6 */
};

static __always_inline void addr_v4(struct shunt_tc_addr *a, __u32 ip4)
{
	a->a[0] = 0;
	a->a[1] = 0;
	a->a[2] = bpf_htonl(0x0000ffff);
	a->a[3] = ip4;
}

/*
 * Parses an Ethernet + IPv4/IPv6 + TCP packet. Returns 0 when it is one the programs care about
 * (TCP, first fragment or unfragmented, no IPv6 extension headers before TCP), -1 otherwise.
 */
static __always_inline int parse_tcp(struct __sk_buff *skb, struct pkt *p)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return -1;
	__u16 proto = bpf_ntohs(eth->h_proto);
	struct tcphdr *th;
	if (proto == ETH_P_IP_) {
		struct iphdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > end || ip->protocol != IPPROTO_TCP_ || ip->ihl < 5)
			return -1;
		if (ip->frag_off & bpf_htons(0x1fff)) /* not the first fragment: no TCP header */
			return -1;
		th = (void *)ip + ip->ihl * 4;
		if ((void *)(th + 1) > end)
			return -1;
		p->tuple.ipv4.saddr = ip->saddr;
		p->tuple.ipv4.daddr = ip->daddr;
		p->tuple.ipv4.sport = th->source;
		p->tuple.ipv4.dport = th->dest;
		addr_v4(&p->src, ip->saddr);
		addr_v4(&p->dst, ip->daddr);
		p->family = 4;
	} else if (proto == ETH_P_IPV6_) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) > end || ip6->nexthdr != IPPROTO_TCP_)
			return -1;
		th = (void *)(ip6 + 1);
		if ((void *)(th + 1) > end)
			return -1;
		__builtin_memcpy(p->tuple.ipv6.saddr, &ip6->saddr, 16);
		__builtin_memcpy(p->tuple.ipv6.daddr, &ip6->daddr, 16);
		p->tuple.ipv6.sport = th->source;
		p->tuple.ipv6.dport = th->dest;
		__builtin_memcpy(p->src.a, &ip6->saddr, 16);
		__builtin_memcpy(p->dst.a, &ip6->daddr, 16);
		p->family = 6;
	} else {
		return -1;
	}
	p->sport = bpf_ntohs(th->source);
	p->dport = bpf_ntohs(th->dest);
	p->tcp_flags = ((__u8 *)th)[13];
	return 0;
}

/* A connection-opening segment: SYN without ACK. */
static __always_inline int is_syn(const struct pkt *p)
{
	return (p->tcp_flags & (TCPF_SYN_ | TCPF_ACK_)) == TCPF_SYN_;
}

#endif /* SHUNT_TC_PKT_H */
