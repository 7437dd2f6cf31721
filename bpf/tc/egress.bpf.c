// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * tcx/egress on the pod's eth0, inside the pod netns (one link per enrolled or prepared pod;
 * a prepared one is idle until enroll writes the pod's tc_pod entry). Hairpins to
 * eth0's own ingress, marked SHUNT_TC_MARK (ingress.bpf.c then hands them to ztunnel):
 *  - an app's connection-opening SYN (not ztunnel's: its sockets carry mark 0x539) to a
 *    captured destination: ztunnel's outbound listener takes it there;
 *  - any other packet whose connection has a ztunnel socket at the far end in this netns:
 *    the app's half of a connection accepted on 15001, or the app's replies to ztunnel's
 *    spoofed-source connections (ztunnel's inbound leg connects from the original client's
 *    address, so the replies are routed out of eth0). This replaces istio-cni's connmark.
 * Everything else (ztunnel's own traffic, the app's connections that predate enrolment,
 * non-TCP): TCX_NEXT.
 */
#include "lib.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/*
 * To eth0's own ingress. The destination MAC becomes eth0's own (the source MAC of an egress
 * frame), else the stack would see PACKET_OTHERHOST and drop it. The mark survives the
 * same-netns redirect (skb_scrub_packet clears it only across netns).
 */
static __always_inline int hairpin(struct __sk_buff *skb, __u32 counter)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end) {
		count(SHUNT_TC_CNT_REDIRECT_FAILED);
		return TCX_NEXT;
	}
	__u8 own[6];
	__builtin_memcpy(own, eth->h_source, 6);
	if (bpf_skb_store_bytes(skb, 0, own, 6, 0)) {
		count(SHUNT_TC_CNT_REDIRECT_FAILED);
		return TCX_NEXT;
	}
	skb->mark = (skb->mark & ~SHUNT_TC_MARK_MASK) | SHUNT_TC_MARK;
	count(counter);
	return bpf_redirect(skb->ifindex, BPF_F_INGRESS);
}

/*
 * DNS capture (the pod asked for it: dns_port set): an app's UDP query to any server's :53 is
 * hairpinned like a TCP SYN, and the server it asked is remembered per app socket for the reply
 * rewrite (dns.bpf.c on lo), since ztunnel answers from its loopback DNS socket.
 */
static __always_inline int dns_query(struct __sk_buff *skb, struct pkt *p, const struct shunt_tc_pod *cfg)
{
	if (cfg->dns_port == 0 || p->dport != SHUNT_TC_DNS_PORT)
		return TCX_NEXT;
	struct shunt_tc_dns_key k = { .client = p->src, .port = p->sport, ._pad = 0 };
	struct shunt_tc_dns_orig o = { .server = p->dst, .port = p->dport, ._pad = 0 };
	bpf_map_update_elem(&tc_dns, &k, &o, BPF_ANY);
	return hairpin(skb, SHUNT_TC_CNT_DNS_CAPTURED);
}

SEC("tcx/egress")
int shunt_tc_egress(struct __sk_buff *skb)
{
	struct pkt p = {};
	if (parse_l4(skb, &p, 1))
		return TCX_NEXT;
	/* The idle check first: from an address that is not enrolled (a netns prepared ahead of its
	 * pod's enroll has none) nothing is taken or counted. ztunnel's spoofed-source packets
	 * (another pod's address) pass here too, as they do below: they carry its mark. */
	struct shunt_tc_pod *cfg = bpf_map_lookup_elem(&tc_pod, &p.src);
	if (!cfg)
		return TCX_NEXT;
	if (is_proxy_mark(skb->mark)) {
		count(SHUNT_TC_CNT_OUT_PROXY);
		return TCX_NEXT;
	}
	if (p.proto == IPPROTO_UDP_)
		return dns_query(skb, &p, cfg);
	if (is_syn(&p)) {
		/* DNS over TCP is captured with DNS capture on, whatever the port selection says (as
		 * the UDP queries; istio-cni redirects both to 15053). */
		if (p.dport == SHUNT_TC_DNS_PORT && cfg->dns_port != 0)
			return hairpin(skb, SHUNT_TC_CNT_DNS_CAPTURED);
		if (!outbound_selected(cfg, p.dport)) {
			count(SHUNT_TC_CNT_OUT_BYPASSED);
			return TCX_NEXT;
		}
		return hairpin(skb, SHUNT_TC_CNT_OUT_HAIRPIN_NEW);
	}
	/* Seen from the far end: a socket here whose local address is this packet's destination. */
	struct bpf_sock *sk = owner_socket(skb, &p);
	if (!sk)
		return TCX_NEXT;
	bpf_sk_release(sk);
	return hairpin(skb, SHUNT_TC_CNT_OUT_HAIRPIN_FLOW);
}
