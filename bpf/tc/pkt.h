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
#define IPPROTO_UDP_ 17
#define SHUNT_TC_DNS_PORT 53

/* TCP flags byte (offset 13 of the header). */
#define TCPF_SYN_ 0x02
#define TCPF_ACK_ 0x10

/* The kubelet probe source istio-cni SNATs health probes to (exempt from capture). */
#define SHUNT_PROBE_V4 0xa9fe077f /* 169.254.7.127 */

/* What the programs need of one TCP (or UDP) packet. */
struct pkt {
	struct bpf_sock_tuple tuple; /* as the kernel's socket lookup wants it (network order) */
	struct shunt_tc_addr src;    /* v4-mapped for IPv4 */
	struct shunt_tc_addr dst;
	__u16 sport;                 /* host order */
	__u16 dport;
	__u8 tcp_flags;              /* 0 for UDP */
	__u8 family;                 /* 4 or 6 */
	__u8 proto;                  /* IPPROTO_TCP_ or IPPROTO_UDP_ */
	__u16 l3_off;                /* offsets from skb->data (for rewrites) */
	__u16 l4_off;
};

static __always_inline void addr_v4(struct shunt_tc_addr *a, __u32 ip4)
{
	a->a[0] = 0;
	a->a[1] = 0;
	a->a[2] = bpf_htonl(0x0000ffff);
	a->a[3] = ip4;
}

/*
 * Parses an Ethernet + IPv4/IPv6 + TCP (or, with allow_udp, UDP) packet. Returns 0 when it is one
 * the programs care about (first fragment or unfragmented, no IPv6 extension headers before the
 * L4 header), -1 otherwise.
 */
static __always_inline int parse_l4(struct __sk_buff *skb, struct pkt *p, int allow_udp)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return -1;
	__u16 proto = bpf_ntohs(eth->h_proto);
	__u8 *l4;
	__u8 l4proto;
	if (proto == ETH_P_IP_) {
		struct iphdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > end || ip->ihl < 5)
			return -1;
		l4proto = ip->protocol;
		if (ip->frag_off & bpf_htons(0x1fff)) /* not the first fragment: no L4 header */
			return -1;
		l4 = (void *)ip + ip->ihl * 4;
		p->tuple.ipv4.saddr = ip->saddr;
		p->tuple.ipv4.daddr = ip->daddr;
		addr_v4(&p->src, ip->saddr);
		addr_v4(&p->dst, ip->daddr);
		p->family = 4;
	} else if (proto == ETH_P_IPV6_) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) > end)
			return -1;
		l4proto = ip6->nexthdr;
		l4 = (void *)(ip6 + 1);
		__builtin_memcpy(p->tuple.ipv6.saddr, &ip6->saddr, 16);
		__builtin_memcpy(p->tuple.ipv6.daddr, &ip6->daddr, 16);
		__builtin_memcpy(p->src.a, &ip6->saddr, 16);
		__builtin_memcpy(p->dst.a, &ip6->daddr, 16);
		p->family = 6;
	} else {
		return -1;
	}
	if (l4proto == IPPROTO_TCP_) {
		if ((void *)(l4 + 20) > end)
			return -1;
		p->tcp_flags = l4[13];
	} else if (l4proto == IPPROTO_UDP_ && allow_udp) {
		if ((void *)(l4 + 8) > end)
			return -1;
		p->tcp_flags = 0;
	} else {
		return -1;
	}
	__u16 sport_be = *(__u16 *)l4;
	__u16 dport_be = *(__u16 *)(l4 + 2);
	if (p->family == 4) {
		p->tuple.ipv4.sport = sport_be;
		p->tuple.ipv4.dport = dport_be;
	} else {
		p->tuple.ipv6.sport = sport_be;
		p->tuple.ipv6.dport = dport_be;
	}
	p->proto = l4proto;
	p->sport = bpf_ntohs(sport_be);
	p->dport = bpf_ntohs(dport_be);
	p->l3_off = sizeof(struct ethhdr);
	p->l4_off = (__u16)((long)l4 - (long)data);
	return 0;
}

static __always_inline int parse_tcp(struct __sk_buff *skb, struct pkt *p)
{
	return parse_l4(skb, p, 0);
}

/* A connection-opening segment: SYN without ACK. */
static __always_inline int is_syn(const struct pkt *p)
{
	return (p->tcp_flags & (TCPF_SYN_ | TCPF_ACK_)) == TCPF_SYN_;
}

#endif /* SHUNT_TC_PKT_H */
