/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Helpers shared by the sockops backend's programs (one object per hook, maps shared by pin). */
#ifndef SHUNT_SOCKOPS_LIB_H
#define SHUNT_SOCKOPS_LIB_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "shunt_sockops.h"
#include "shunt_sock.h" /* context loads, addresses, tuples (shared with the tc splice programs) */

static __always_inline void count(__u32 idx, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);
	if (v)
		*v += n; /* per-CPU slot: no atomics needed */
}

/* The shared splice code (shunt_splice_guard.h, shunt_splice_learn.h) counts into these counters. */
#define SHUNT_SPLICE_COUNT(which, n) count(SHUNT_CNT_##which, n)

/* The IPv6 address a sock_addr hook sees (IPv4 peers of a dual-stack socket come IPv4-mapped). */
static __always_inline void addr_from_ctx6(struct shunt_addr *a, const struct bpf_sock_addr *ctx)
{
	a->a[0] = ctx->user_ip6[0];
	a->a[1] = ctx->user_ip6[1];
	a->a[2] = ctx->user_ip6[2];
	a->a[3] = ctx->user_ip6[3];
}

/* Makes an IPv6 sock_addr hook report a:port (host order) instead of what the kernel had. */
static __always_inline void ctx6_set_addr(struct bpf_sock_addr *ctx, const struct shunt_addr *a, __u16 port)
{
	ctx->user_ip6[0] = a->a[0];
	ctx->user_ip6[1] = a->a[1];
	ctx->user_ip6[2] = a->a[2];
	ctx->user_ip6[3] = a->a[3];
	ctx->user_port = bpf_htons(port);
}

/*
 * A source that never arrives from outside the pod: loopback, or the deprecated IPv4-compatible
 * range ::/96, never routed, where Istio's inbound passthrough source ::6 lives (bound on lo).
 * Needed because IPv6 reports the address's device (eth0), not lo, as the ingress interface of
 * a packet a pod sends to its own address, so the interface cannot tell inside from outside.
 */
static __always_inline int addr_is_pod_internal(const struct shunt_addr *a)
{
	return addr_is_loopback(a) || (a->a[0] == 0 && a->a[1] == 0 && a->a[2] == 0);
}

static __always_inline int port_selected(__u32 gen, __u16 port, __u8 kind)
{
	struct shunt_port_key k = { .gen = gen, .port = port, .kind = kind, ._pad = 0 };
	return bpf_map_lookup_elem(&port_sel, &k) != NULL;
}

/* Would the pod's own iptables send a connection to this local port to its inbound listener? */
static __always_inline int inbound_selected(const struct shunt_pod_cfg *cfg, __u16 dport)
{
	if (dport == cfg->in_port || dport == cfg->out_port)
		return 0;
	if (port_selected(cfg->gen, dport, SHUNT_SEL_IN_EXCLUDE))
		return 0;
	if (cfg->flags & SHUNT_POD_INBOUND_ALL)
		return 1;
	return port_selected(cfg->gen, dport, SHUNT_SEL_IN_INCLUDE);
}

static __always_inline int owner_listed(__u32 gen, __u32 id, __u32 kind)
{
	struct shunt_owner_key k = { .gen = gen, .id = id, .kind = kind };
	return bpf_map_lookup_elem(&owner_sel, &k) != NULL;
}

/*
 * True when the current task is the pod's proxy (Istio matches uid or gid owner, once per id of
 * its -u/-g lists). bpf_get_current_uid_gid() gives the task's real uid/gid in the initial user
 * namespace; iptables' `-m owner` matches the socket file's fsuid/fsgid (without --suppl-groups,
 * never a supplementary group). They agree for a proxy that neither runs setuid nor changes ids
 * between socket() and connect(), and for pods without user namespaces.
 */
static __always_inline int current_is_proxy(const struct shunt_pod_cfg *cfg)
{
	__u64 ug = bpf_get_current_uid_gid();
	__u32 uid = (__u32)ug, gid = (__u32)(ug >> 32);
	if (uid == cfg->proxy_uid || gid == cfg->proxy_gid)
		return 1;
	if (!(cfg->flags & SHUNT_POD_EXTRA_IDS))
		return 0;
	return owner_listed(cfg->gen, uid, SHUNT_OWNER_PROXY_UID) || owner_listed(cfg->gen, gid, SHUNT_OWNER_PROXY_GID);
}

/*
 * ISTIO_OUTBOUND_OWNER_GROUPS / _EXCLUDE: is the calling app's group one whose outbound traffic
 * is left alone? Istio's rule matches `-m owner [!] --gid-owner G`: the socket's fsgid only, no
 * supplementary groups; here the task's real gid (see current_is_proxy).
 */
static __always_inline int owner_group_bypassed(const struct shunt_pod_cfg *cfg)
{
	if (!(cfg->flags & (SHUNT_POD_GROUPS_ONLY | SHUNT_POD_GROUPS_EXCEPT)))
		return 0;
	__u32 gid = (__u32)(bpf_get_current_uid_gid() >> 32);
	int listed = owner_listed(cfg->gen, gid, SHUNT_OWNER_GROUP);
	return (cfg->flags & SHUNT_POD_GROUPS_ONLY) ? !listed : listed;
}

/*
 * Inside the pod's "localhost" range (Istio: ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR, default
 * 127.0.0.1/32; always ::1/128 for IPv6)? Other loopback addresses are treated like the pod's own
 * address: the proxy's connects to them go to its inbound port.
 */
static __always_inline int addr_in_host_loopback(const struct shunt_pod_cfg *cfg, const struct shunt_addr *a)
{
	if (!addr_is_v4mapped(a))
		return addr_is_loopback(a);
	__u32 p = cfg->lo_prefix4;
	if (p < 8 || p > 32) /* not written by this agent (older entry): the whole 127/8 */
		return addr_is_loopback(a);
	__u32 mask = p == 32 ? 0xffffffff : ~((1u << (32 - p)) - 1);
	return (bpf_ntohl(a->a[3]) & mask) == (cfg->lo_net4 & mask);
}

/* DNS capture to dst: every server, or (SHUNT_POD_DNS_LISTED) only the pod's resolv.conf servers. */
static __always_inline int dns_server_selected(const struct shunt_pod_cfg *cfg, const struct shunt_addr *dst)
{
	if (!(cfg->flags & SHUNT_POD_DNS_LISTED))
		return 1;
	if (addr_is_v4mapped(dst)) {
		struct shunt_cidr4_key k = { .prefixlen = 64 + 32, .gen = cfg->gen, .kind = SHUNT_SEL_DNS_SERVER };
		__builtin_memcpy(k.addr, &dst->a[3], 4);
		return bpf_map_lookup_elem(&cidr4, &k) != NULL;
	}
	struct shunt_cidr6_key k6 = { .prefixlen = 64 + 128, .gen = cfg->gen, .kind = SHUNT_SEL_DNS_SERVER };
	__builtin_memcpy(k6.addr, dst->a, 16);
	return bpf_map_lookup_elem(&cidr6, &k6) != NULL;
}

/*
 * DNS capture for a UDP query (sendmsg on an unconnected socket, or connect on one the resolver
 * connects, as glibc does) to dst:dport from the socket behind ctx. Returns the proxy's DNS port
 * to send to instead, after remembering dst under the socket cookie for the reply rewrite, or 0
 * to leave the query alone. Loopback resolvers and the pod's own addresses are not captured,
 * nor the proxy's own queries (it forwards upstream).
 */
static __always_inline __u16 dns_capture(void *ctx, const struct shunt_addr *dst, __u16 dport, __u8 family)
{
	if (dport != SHUNT_DNS_PORT || addr_is_loopback(dst))
		return 0;
	__u64 netns = bpf_get_netns_cookie(ctx);
	struct shunt_pod_cfg *cfg = bpf_map_lookup_elem(&pod_cfg, &netns);
	if (!cfg || cfg->dns_port == 0 || current_is_proxy(cfg) || owner_group_bypassed(cfg) || !dns_server_selected(cfg, dst))
		return 0;
	__u64 *owner = bpf_map_lookup_elem(&pod_by_ip, dst);
	if (owner && *owner == netns)
		return 0;
	struct shunt_orig o = {};
	__u64 cookie = bpf_get_socket_cookie(ctx);
	o.addr = *dst;
	o.port = dport;
	o.family = family;
	o.flags = SHUNT_ORIG_DNS;
	o.via_port = cfg->dns_port;
	bpf_map_update_elem(&dns_orig, &cookie, &o, BPF_ANY);
	count(SHUNT_CNT_DNS_REDIRECTED, 1);
	return cfg->dns_port;
}

#endif /* SHUNT_SOCKOPS_LIB_H */
