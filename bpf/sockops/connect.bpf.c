// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * cgroup/connect4 + connect6: steer TCP connects the way istio-iptables' nat OUTPUT rules
 * would, from control-plane data keyed by the caller's netns cookie (pod_cfg):
 *  - an enrolled pod's application connect -> its proxy's outbound port on loopback,
 *    original destination stored under the socket cookie;
 *  - any connect (the proxy's own, another pod's, the host's) to an enrolled same-node pod's
 *    captured port -> that pod's inbound port, original destination stored likewise;
 *  - the proxy connecting to its own pod's port: untouched, but marked for splicing;
 *  - with DNS capture on, an app's TCP or (connected) UDP connect to :53 -> the proxy's DNS
 *    port on loopback (UDP replies are rewritten back by dns.bpf.c's recvmsg hooks).
 * Nothing is probed or cached: a pod is enrolled exactly when pod_cfg has its cookie.
 */
#include "lib.h"
#include "shunt_splice_learn.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

static __always_inline int cidr_selected(__u32 gen, const struct shunt_addr *dst, __u32 kind)
{
	if (addr_is_v4mapped(dst)) {
		struct shunt_cidr4_key k = { .prefixlen = 64 + 32, .gen = gen, .kind = kind };
		__builtin_memcpy(k.addr, &dst->a[3], 4);
		return bpf_map_lookup_elem(&cidr4, &k) != NULL;
	}
	struct shunt_cidr6_key k6 = { .prefixlen = 64 + 128, .gen = gen, .kind = kind };
	__builtin_memcpy(k6.addr, dst->a, 16);
	return bpf_map_lookup_elem(&cidr6, &k6) != NULL;
}

/* istio-iptables order: exclude ports, exclude CIDRs, include ports, include CIDRs. */
static __always_inline int outbound_selected(const struct shunt_pod_cfg *cfg,
					     const struct shunt_addr *dst, __u16 dport)
{
	if (port_selected(cfg->gen, dport, SHUNT_SEL_OUT_EXCLUDE))
		return 0;
	if (cidr_selected(cfg->gen, dst, SHUNT_SEL_OUT_EXCLUDE))
		return 0;
	if (port_selected(cfg->gen, dport, SHUNT_SEL_OUT_INCLUDE))
		return 1;
	return cidr_selected(cfg->gen, dst, SHUNT_SEL_OUT_INCLUDE);
}

/* accept_netns: where the accepting socket of this connection will live (the learning key). */
static __always_inline __u8 splice_flag(__u16 orig_port, __u64 accept_netns)
{
	__u32 zero = 0;
	struct shunt_splice_cfg *sc = bpf_map_lookup_elem(&splice_cfg, &zero);
	if (!sc || sc->mode == SHUNT_SPLICE_NONE)
		return 0;
	if (sc->mode == SHUNT_SPLICE_ALL)
		return short_port(accept_netns, orig_port) ? SHUNT_ORIG_LEARN : SHUNT_ORIG_SPLICE;
	return bpf_map_lookup_elem(&splice_ports, &orig_port) ? SHUNT_ORIG_SPLICE : 0;
}

static __always_inline void record(struct bpf_sock_addr *ctx, const struct shunt_addr *dst, __u16 dport,
				   __u8 family, __u8 flags)
{
	struct shunt_orig o = {};
	__u64 cookie = bpf_get_socket_cookie(ctx);

	o.addr = *dst;
	o.port = dport;
	o.family = family;
	o.flags = flags;
	bpf_map_update_elem(&orig_by_cookie, &cookie, &o, BPF_ANY);
}

enum verdict {
	V_NONE = 0,  /* leave the connect alone */
	V_OUTBOUND,  /* to own proxy's outbound port on loopback */
	V_INBOUND,   /* same address, destination pod's inbound port */
};

/* Bound to Istio's inbound passthrough source (127.0.0.6 / ::6): istio-iptables' first OUTPUT rule. */
static __always_inline int bound_to_passthrough(struct bpf_sock_addr *ctx)
{
	struct bpf_sock *sk = ctx->sk;
	if (!sk)
		return 0;
	/* Constant-offset loads: the verifier refuses arithmetic on a sock pointer (CTX_U32). */
	if (CTX_U32(sk, family) == SHUNT_AF_INET)
		return CTX_U32(sk, src_ip4) == bpf_htonl(0x7f000006);
	__u32 a0 = CTX_U32(sk, src_ip6[0]), a1 = CTX_U32(sk, src_ip6[1]);
	__u32 a2 = CTX_U32(sk, src_ip6[2]), a3 = CTX_U32(sk, src_ip6[3]);
	return a0 == 0 && a1 == 0 &&
	       ((a2 == 0 && a3 == bpf_htonl(6)) || (a2 == bpf_htonl(0x0000ffff) && a3 == bpf_htonl(0x7f000006)));
}

/*
 * Decides what happens to a connect to dst:dport from netns `netns`; returns the verdict and
 * the new port in *new_port. `family` is the family the application used (4 or 6).
 */
static __always_inline enum verdict decide(struct bpf_sock_addr *ctx, __u64 netns, const struct shunt_addr *dst,
					   __u16 dport, __u8 family, __u16 *new_port)
{
	struct shunt_pod_cfg *cfg = bpf_map_lookup_elem(&pod_cfg, &netns);
	int is_proxy = 0;
	int app_continues = 0; /* an app connect that istio-iptables would go on matching (loopback include) */

	if (cfg)
		is_proxy = current_is_proxy(cfg);
	if (addr_is_loopback(dst)) {
		if (!cfg)
			return V_NONE;
		if (!addr_in_host_loopback(cfg, dst) && !bound_to_passthrough(ctx)) {
			/* istio-iptables: `! -d <loopback cidr> -o lo -p tcp ! --dport 15008 -m owner
			 * --uid-owner <proxy> -j ISTIO_IN_REDIRECT` (53 spared too with DNS capture): the
			 * proxy's connect to a loopback address outside the host range goes inbound. */
			if (is_proxy && dport != cfg->tunnel_port && !(cfg->dns_port && dport == SHUNT_DNS_PORT)) {
				record(ctx, dst, dport, family, 0);
				*new_port = cfg->in_port;
				count(SHUNT_CNT_CONNECT_INBOUND, 1);
				return V_OUTBOUND; /* to 127.0.0.1 / ::1, as REDIRECT on lo does */
			}
			/* An app's: returned by `-o lo ! --uid-owner` unless an include CIDR is loopback. */
			if (!is_proxy && (cfg->flags & SHUNT_POD_LO_INCLUDED))
				app_continues = 1;
		}
		if (!app_continues) {
			count(is_proxy ? SHUNT_CNT_CONNECT_PROXY : SHUNT_CNT_CONNECT_BYPASSED, 1);
			return V_NONE;
		}
	}

	__u64 *dst_netns = bpf_map_lookup_elem(&pod_by_ip, dst);
	int own = cfg && dst_netns && *dst_netns == netns;
	/* With a loopback include CIDR Istio drops the app's `-o lo RETURN`: its connects to the
	 * pod's own address go on to the CIDR rules (and are never captured inbound: nat PREROUTING
	 * does not see locally generated packets). */
	if (own && !is_proxy && (cfg->flags & SHUNT_POD_LO_INCLUDED))
		app_continues = 1;
	else if (own) {
		/* To its own pod's address: never captured (iptables: -o lo RETURN). The proxy
		 * delivering inbound traffic to its app is worth splicing, though. */
		if (is_proxy) {
			if (inbound_selected(cfg, dport)) {
				/* A splice-only record: not worth writing for a connection the short rule skips
				 * (the connection into this sidecar teaches the same key). */
				__u8 f = splice_flag(dport, netns) & SHUNT_ORIG_SPLICE;
				if (f)
					record(ctx, dst, dport, family, f | SHUNT_ORIG_NO_ANSWER);
			}
			count(SHUNT_CNT_CONNECT_PROXY, 1);
		} else {
			count(SHUNT_CNT_CONNECT_BYPASSED, 1);
		}
		return V_NONE;
	}

	/* Owner groups (Istio: after the proxy's uid/gid rules, before DNS and the CIDR rules). */
	if (cfg && !is_proxy && !owner_group_bypassed(cfg)) {
		/* istio-iptables: DNS capture comes before the outbound include/exclude rules. */
		if (cfg->dns_port && dport == SHUNT_DNS_PORT && !app_continues && dns_server_selected(cfg, dst)) {
			record(ctx, dst, dport, family, splice_flag(dport, netns));
			*new_port = cfg->dns_port;
			count(SHUNT_CNT_DNS_REDIRECTED, 1);
			return V_OUTBOUND;
		}
		/* `-d <loopback cidr> -j RETURN` was checked above; the rest is the CIDR/port rules. */
		if (outbound_selected(cfg, dst, dport)) {
			record(ctx, dst, dport, family, splice_flag(dport, netns));
			*new_port = cfg->out_port;
			count(SHUNT_CNT_CONNECT_REDIRECTED, 1);
			return V_OUTBOUND;
		}
		/* Not captured on the way out; the destination pod may still capture it on the
		 * way in, as its own iptables would. */
	}
	if (app_continues) {
		count(SHUNT_CNT_CONNECT_BYPASSED, 1);
		return V_NONE;
	}

	/* The proxy's own upstream connect, an uncaptured app connect, or a caller outside
	 * the mesh: a same-node enrolled destination captures it at its inbound port. */
	if (dst_netns) {
		struct shunt_pod_cfg *dcfg = bpf_map_lookup_elem(&pod_cfg, dst_netns);
		if (dcfg && inbound_selected(dcfg, dport)) {
			record(ctx, dst, dport, family, splice_flag(dport, *dst_netns) | SHUNT_ORIG_INBOUND);
			*new_port = dcfg->in_port;
			count(SHUNT_CNT_CONNECT_INBOUND, 1);
			return V_INBOUND;
		}
	}
	if (cfg)
		count(is_proxy ? SHUNT_CNT_CONNECT_PROXY : SHUNT_CNT_CONNECT_BYPASSED, 1);
	return V_NONE;
}

SEC("cgroup/connect4")
int shunt_connect4(struct bpf_sock_addr *ctx)
{
	struct shunt_addr dst;
	__u16 new_port = 0;
	enum verdict v = V_NONE;

	addr_from_v4(&dst, ctx->user_ip4);
	__u16 dport = bpf_ntohs((__u16)ctx->user_port);
	if (ctx->type == SHUNT_SOCK_STREAM) {
		v = decide(ctx, bpf_get_netns_cookie(ctx), &dst, dport, 4, &new_port);
	} else if (ctx->type == SHUNT_SOCK_DGRAM && ctx->protocol == SHUNT_IPPROTO_UDP) {
		new_port = dns_capture(ctx, &dst, dport, 4);
		if (new_port)
			v = V_OUTBOUND;
	}
	if (v == V_OUTBOUND)
		ctx->user_ip4 = bpf_htonl(0x7f000001);
	if (v != V_NONE)
		ctx->user_port = bpf_htons(new_port);
	return 1;
}

SEC("cgroup/connect6")
int shunt_connect6(struct bpf_sock_addr *ctx)
{
	struct shunt_addr dst;
	__u16 new_port = 0;
	enum verdict v = V_NONE;

	dst.a[0] = ctx->user_ip6[0];
	dst.a[1] = ctx->user_ip6[1];
	dst.a[2] = ctx->user_ip6[2];
	dst.a[3] = ctx->user_ip6[3];
	__u16 dport = bpf_ntohs((__u16)ctx->user_port);
	/* A dual-stack socket connecting to ::ffff:a.b.c.d is IPv4 on the wire. */
	__u8 family = addr_is_v4mapped(&dst) ? 4 : 6;
	if (ctx->type == SHUNT_SOCK_STREAM) {
		v = decide(ctx, bpf_get_netns_cookie(ctx), &dst, dport, family, &new_port);
	} else if (ctx->type == SHUNT_SOCK_DGRAM && ctx->protocol == SHUNT_IPPROTO_UDP) {
		new_port = dns_capture(ctx, &dst, dport, family);
		if (new_port)
			v = V_OUTBOUND;
	}
	if (v == V_OUTBOUND) {
		ctx->user_ip6[0] = 0;
		ctx->user_ip6[1] = 0;
		if (family == 4) {
			ctx->user_ip6[2] = bpf_htonl(0x0000ffff);
			ctx->user_ip6[3] = bpf_htonl(0x7f000001);
		} else {
			ctx->user_ip6[2] = 0;
			ctx->user_ip6[3] = bpf_htonl(1);
		}
	}
	if (v != V_NONE)
		ctx->user_port = bpf_htons(new_port);
	return 1;
}
