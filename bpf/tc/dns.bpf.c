// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * tcx/egress on the pod netns' lo, attached only for pods with DNS capture: ztunnel answers a
 * captured query from its loopback DNS socket (127.0.0.1 / ::1 : dns_port) to the app's address;
 * this restores the source the app asked (server:53, remembered by egress.bpf.c), so a connected
 * resolver socket accepts the reply. Checksums are fixed incrementally (IPv4 header; UDP with
 * the pseudo header). Everything else: TCX_NEXT.
 */
#include "lib.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define UDP_CSUM_OFF 6
#define IP4_CSUM_OFF 10
#define IP4_SADDR_OFF 12
#define IP6_SADDR_OFF 8

static __always_inline int is_loopback(const struct pkt *p)
{
	if (p->family == 4)
		return (bpf_ntohl(p->src.a[3]) >> 24) == 127;
	return p->src.a[0] == 0 && p->src.a[1] == 0 && p->src.a[2] == 0 && p->src.a[3] == bpf_htonl(1);
}

SEC("tcx/egress")
int shunt_tc_dns_reply(struct __sk_buff *skb)
{
	struct pkt p = {};
	if (parse_l4(skb, &p, 1) || p.proto != IPPROTO_UDP_ || !is_loopback(&p))
		return TCX_NEXT;
	struct shunt_tc_pod *cfg = bpf_map_lookup_elem(&tc_pod, &p.dst);
	if (!cfg || cfg->dns_port == 0 || p.sport != cfg->dns_port)
		return TCX_NEXT;
	struct shunt_tc_dns_key k = { .client = p.dst, .port = p.dport, ._pad = 0 };
	struct shunt_tc_dns_orig *o = bpf_map_lookup_elem(&tc_dns, &k);
	if (!o)
		return TCX_NEXT;
	struct shunt_tc_dns_orig orig = *o;
	__u32 l4 = p.l4_off;
	if (l4 > 128)
		return TCX_NEXT;
	__u16 old_port = bpf_htons(p.sport);
	__u16 new_port = bpf_htons(orig.port);
	if (p.family == 4) {
		__u32 old_ip = p.src.a[3];
		__u32 new_ip = orig.server.a[3];
		if (bpf_l4_csum_replace(skb, l4 + UDP_CSUM_OFF, old_ip, new_ip, BPF_F_PSEUDO_HDR | BPF_F_MARK_MANGLED_0 | 4) ||
		    bpf_l4_csum_replace(skb, l4 + UDP_CSUM_OFF, old_port, new_port, BPF_F_MARK_MANGLED_0 | 2) ||
		    bpf_l3_csum_replace(skb, p.l3_off + IP4_CSUM_OFF, old_ip, new_ip, 4) ||
		    bpf_skb_store_bytes(skb, p.l3_off + IP4_SADDR_OFF, &new_ip, 4, 0) ||
		    bpf_skb_store_bytes(skb, l4, &new_port, 2, 0)) {
			count(SHUNT_TC_CNT_REDIRECT_FAILED);
			return TCX_NEXT;
		}
	} else {
		for (int i = 0; i < 4; i++)
			if (bpf_l4_csum_replace(skb, l4 + UDP_CSUM_OFF, p.src.a[i], orig.server.a[i], BPF_F_PSEUDO_HDR | 4)) {
				count(SHUNT_TC_CNT_REDIRECT_FAILED);
				return TCX_NEXT;
			}
		if (bpf_l4_csum_replace(skb, l4 + UDP_CSUM_OFF, old_port, new_port, 2) ||
		    bpf_skb_store_bytes(skb, p.l3_off + IP6_SADDR_OFF, orig.server.a, 16, 0) ||
		    bpf_skb_store_bytes(skb, l4, &new_port, 2, 0)) {
			count(SHUNT_TC_CNT_REDIRECT_FAILED);
			return TCX_NEXT;
		}
	}
	count(SHUNT_TC_CNT_DNS_REPLIES);
	return TCX_NEXT;
}
