// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * tcx/ingress on the pod's eth0, inside the pod netns (one link per enrolled or prepared pod;
 * prepared = attached before the pod's enroll, idle: no tc_pod entry, every packet TCX_NEXT):
 *  - a packet the egress program hairpinned (mark SHUNT_TC_MARK): the app's outbound connection
 *    or the app's reply to one of ztunnel's spoofed-source connections -> ztunnel's socket of
 *    that connection, else (a SYN) ztunnel's outbound listener (15001);
 *  - a connection from outside to the pod (not to the HBONE port, not from the kubelet probe
 *    source, not ztunnel's own mark) -> the socket already owning it, else (a SYN) ztunnel's
 *    inbound listener (15006), as istio-cni's TPROXY rule.
 * bpf_sk_assign keeps the packet's addresses, so the accepted socket's local address is the
 * original destination (ztunnel reads it as under TPROXY). Everything else: TCX_NEXT, so the
 * programs after ours on the hook (a CNI's) and the legacy tc chain decide.
 */
#include "lib.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Assign and account; a refused assign drops (a captured packet must not reach the app). */
static __always_inline int assign(struct __sk_buff *skb, struct bpf_sock *sk, __u32 counter)
{
	long err = bpf_sk_assign(skb, sk, 0);
	bpf_sk_release(sk);
	if (err) {
		count(SHUNT_TC_CNT_ASSIGN_FAILED);
		return TC_ACT_SHOT;
	}
	count(counter);
	return TC_ACT_OK;
}

/*
 * A captured SYN met ztunnel's TIME_WAIT of its tuple: arm this CPU's handoff slot with the tuple
 * and the listener, and let the stack (TIME_WAIT -> listener lookup -> sk_lookup.bpf.c) go on.
 * Armed only after every lookup of this program (they run sk_lookup too). A slot that cannot be
 * armed: the SYN is dropped (the client retransmits), never left to reach the app.
 */
static __always_inline int tw_handoff(struct pkt *p, struct bpf_sock *sk)
{
	__u32 zero = 0;
	__u32 cpu = bpf_get_smp_processor_id();
	struct shunt_tc_tw *h = bpf_map_lookup_elem(&tc_tw_handoff, &zero);
	long err = h ? bpf_map_update_elem(&tc_tw_sock, &cpu, sk, BPF_ANY) : -1;
	bpf_sk_release(sk);
	count(SHUNT_TC_CNT_TW_COLLISION);
	if (err || !h) {
		count(SHUNT_TC_CNT_ASSIGN_FAILED);
		return TC_ACT_SHOT;
	}
	h->local = p->dst;
	h->remote = p->src;
	h->lport = p->dport;
	h->rport = p->sport;
	h->at_ns = bpf_ktime_get_ns();
	return TCX_NEXT;
}

static __always_inline int probe_source(const struct pkt *p)
{
	if (p->family == 4)
		return p->src.a[3] == bpf_htonl(SHUNT_PROBE_V4);
	/* fd16:9254:7127:1337:ffff:ffff:ffff:ffff */
	return p->src.a[0] == bpf_htonl(0xfd169254) && p->src.a[1] == bpf_htonl(0x71271337) &&
	       p->src.a[2] == 0xffffffff && p->src.a[3] == 0xffffffff;
}

/* A hairpinned DNS query -> ztunnel's DNS socket on the loopback address of the family. */
static __always_inline int dns_to_proxy(struct __sk_buff *skb, struct pkt *p, __u16 dns_port)
{
	struct bpf_sock_tuple t = p->tuple;
	struct bpf_sock *sk;
	if (p->family == 4) {
		t.ipv4.daddr = bpf_htonl(0x7f000001);
		t.ipv4.dport = bpf_htons(dns_port);
		sk = bpf_sk_lookup_udp(skb, &t, sizeof(t.ipv4), BPF_F_CURRENT_NETNS, 0);
	} else {
		t.ipv6.daddr[0] = 0;
		t.ipv6.daddr[1] = 0;
		t.ipv6.daddr[2] = 0;
		t.ipv6.daddr[3] = bpf_htonl(1);
		t.ipv6.dport = bpf_htons(dns_port);
		sk = bpf_sk_lookup_udp(skb, &t, sizeof(t.ipv6), BPF_F_CURRENT_NETNS, 0);
	}
	if (!sk) {
		count(SHUNT_TC_CNT_DNS_NO_SOCKET);
		return TC_ACT_SHOT; /* the query is retried by the resolver; never sent around ztunnel */
	}
	long err = bpf_sk_assign(skb, sk, 0);
	bpf_sk_release(sk);
	if (err) {
		count(SHUNT_TC_CNT_ASSIGN_FAILED);
		return TC_ACT_SHOT;
	}
	count(SHUNT_TC_CNT_DNS_TO_PROXY);
	return TC_ACT_OK;
}

static __always_inline int hairpinned(struct __sk_buff *skb, struct pkt *p)
{
	if (p->proto == IPPROTO_TCP_ && !is_syn(p)) {
		/* A segment of a connection ztunnel already owns: the fwmark route delivers it locally
		 * and the stack's own 4-tuple lookup finds that socket (what bpf_sk_assign would hand
		 * it, at the cost of a second lookup per packet). A stray one is answered by the stack. */
		count(SHUNT_TC_CNT_OUT_ESTABLISHED);
		return TCX_NEXT;
	}
	struct shunt_tc_pod *cfg = bpf_map_lookup_elem(&tc_pod, &p->src);
	if (!cfg)
		return TCX_NEXT; /* marked by someone else, or the pod was unenrolled meanwhile */
	if (p->proto == IPPROTO_UDP_) {
		if (p->dport != SHUNT_TC_DNS_PORT || cfg->dns_port == 0)
			return TCX_NEXT;
		return dns_to_proxy(skb, p, cfg->dns_port);
	}
	__u16 out_port = cfg->out_port;
	int tw;
	struct bpf_sock *sk = owner_socket_tw(skb, p, &tw);
	if (sk)
		return assign(skb, sk, SHUNT_TC_CNT_OUT_ESTABLISHED); /* a retransmitted SYN */
	/* DNS over TCP (the pod asked for DNS capture): a connection to any :53 goes to ztunnel's
	 * TCP DNS listener on loopback (its SYN-ACK comes from the server asked: the accepted socket
	 * keeps that address, which ztunnel's transparent listeners allow). No such listener:
	 * dropped like a UDP query, never sent around ztunnel. */
	int dns = p->dport == SHUNT_TC_DNS_PORT && cfg->dns_port != 0;
	if (dns) {
		sk = dns_listener_socket(skb, p, cfg->dns_port);
		if (!sk) {
			count(SHUNT_TC_CNT_DNS_NO_SOCKET);
			return TC_ACT_SHOT;
		}
		if (tw)
			return tw_handoff(p, sk);
		return assign(skb, sk, SHUNT_TC_CNT_DNS_TCP);
	}
	sk = listener_socket(skb, p, out_port);
	if (sk && tw) {
		/* ztunnel's side of an earlier connection with this very 4-tuple is in TIME_WAIT (it
		 * closed first): its listener could not queue the SYN (duplicate in the established
		 * hash). Left to the stack (the mark routes it locally): the TIME_WAIT socket takes the
		 * SYN (TCP_TW_SYN), ends itself and asks for a listener, and sk_lookup.bpf.c answers
		 * with this one (as iptables TPROXY kills the TIME_WAIT). shunt_tc.h has the handoff. */
		return tw_handoff(p, sk);
	}
	if (!sk) {
		/* No ztunnel yet: dropped, the app's connect retries until ztunnel listens. (Left to
		 * the stack it would be dropped too: a RST from a non-local source cannot be routed.)
		 * Never around ztunnel. */
		count(SHUNT_TC_CNT_OUT_NO_LISTENER);
		return TC_ACT_SHOT;
	}
	return assign(skb, sk, SHUNT_TC_CNT_OUT_LISTENER);
}

SEC("tcx/ingress")
int shunt_tc_ingress(struct __sk_buff *skb)
{
	struct pkt p = {};
	if (parse_l4(skb, &p, 1))
		return TCX_NEXT;
	__u32 mark = skb->mark;
	if (is_hairpin_mark(mark))
		return hairpinned(skb, &p);
	if (p.proto != IPPROTO_TCP_)
		return TCX_NEXT;
	if (is_proxy_mark(mark))
		return TCX_NEXT;
	/* The idle check, before anything else is done or counted: a netns prepared ahead of its
	 * pod's enroll (links attached, no tc_pod entry for its addresses yet) or a packet to an
	 * address that is not enrolled passes untouched and uncounted. */
	struct shunt_tc_pod *cfg = bpf_map_lookup_elem(&tc_pod, &p.dst);
	if (!cfg)
		return TCX_NEXT;
	if (!is_syn(&p)) {
		/* Inbound to a local address: the stack's own lookup finds the socket owning the
		 * connection (ztunnel's accepted one for a captured connection), exactly what an
		 * assign would give; only a connection-opening SYN needs steering. */
		count(SHUNT_TC_CNT_IN_ESTABLISHED);
		return TCX_NEXT;
	}
	if (p.dport == cfg->tunnel_port) {
		count(SHUNT_TC_CNT_IN_TUNNEL);
		return TCX_NEXT;
	}
	if (probe_source(&p)) {
		count(SHUNT_TC_CNT_IN_PROBE);
		return TCX_NEXT;
	}
	__u16 in_port = cfg->in_port;
	if (!inbound_selected(cfg, p.dport)) {
		count(SHUNT_TC_CNT_IN_BYPASSED);
		return TCX_NEXT;
	}
	int tw;
	struct bpf_sock *sk = owner_socket_tw(skb, &p, &tw);
	if (sk)
		return assign(skb, sk, SHUNT_TC_CNT_IN_ESTABLISHED); /* a retransmitted SYN */
	sk = listener_socket(skb, &p, in_port);
	if (sk && tw) {
		/* As for hairpinned SYNs: ztunnel's TIME_WAIT of this 4-tuple blocks its listener; the
		 * TIME_WAIT socket takes the SYN and sk_lookup.bpf.c hands it to this listener (never to
		 * the app's: with no handoff slot to match, sk_lookup drops nothing and the TIME_WAIT
		 * answers with an ACK, the client retries). */
		return tw_handoff(&p, sk);
	}
	if (!sk) {
		count(SHUNT_TC_CNT_IN_NO_LISTENER);
		return TC_ACT_SHOT; /* fail closed: never deliver a captured connection to the app */
	}
	return assign(skb, sk, SHUNT_TC_CNT_IN_LISTENER);
}
