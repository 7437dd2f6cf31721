/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Socket-side helpers shared by the sockops backend and the tc backend's splice programs: context
 * loads, the 16-byte address form and the connection tuple (struct shunt_tuple, shunt_splice.h).
 * No maps here. Tuple scoping is the one per-backend choice (tuple_scope below).
 */
#ifndef SHUNT_SOCK_H
#define SHUNT_SOCK_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "shunt_splice.h"

#define SHUNT_AF_INET 2
#define SHUNT_AF_INET6 10
#define SHUNT_SOCK_STREAM 1
#define SHUNT_SOCK_DGRAM 2
#define SHUNT_IPPROTO_TCP 6
#define SHUNT_IPPROTO_UDP 17

/* sk_user_data flag bits (include/net/sock.h SK_USER_DATA_*): the pointer is a psock when PSOCK is set. */
#define SHUNT_SK_USER_DATA_FLAGS 7ull
#define SHUNT_SK_USER_DATA_PSOCK 4ull

/*
 * Loads a __u32 context field at a constant offset from the context pointer itself. The
 * verifier rejects loads through a modified ctx pointer, and clang likes to hoist
 * `ctx + offsetof(array)` when several branches read the same array.
 */
#define CTX_U32(ctx, field)                                                          \
	({                                                                           \
		__u32 __v;                                                           \
		asm volatile("%0 = *(u32 *)(%1 + %2)"                                \
			     : "=r"(__v)                                             \
			     : "r"(ctx), "i"(__builtin_offsetof(typeof(*(ctx)), field))); \
		__v;                                                                 \
	})

static __always_inline void addr_from_v4(struct shunt_addr *a, __u32 ip4)
{
	a->a[0] = 0;
	a->a[1] = 0;
	a->a[2] = bpf_htonl(0x0000ffff);
	a->a[3] = ip4;
}

static __always_inline int addr_is_v4mapped(const struct shunt_addr *a)
{
	return a->a[0] == 0 && a->a[1] == 0 && a->a[2] == bpf_htonl(0x0000ffff);
}

static __always_inline int addr_is_loopback(const struct shunt_addr *a)
{
	if (addr_is_v4mapped(a))
		return (bpf_ntohl(a->a[3]) >> 24) == 127;
	return a->a[0] == 0 && a->a[1] == 0 && a->a[2] == 0 && a->a[3] == bpf_htonl(1);
}

/*
 * A 32-bit context port field that holds a network-order port: current kernels shift the
 * __be16 into the upper half (sock_ops, sk_msg remote_port), older ones left it in the
 * lower half. A shifted value is > 0xffff for any non-zero port, so both decode here.
 */
static __always_inline __u16 port_from_ctx_be(__u32 v)
{
	if (v > 0xffff)
		return (__u16)bpf_ntohl(v);
	return bpf_ntohs((__u16)v);
}

/*
 * Which netns a tuple key names. sockops (default): the netns cookie only when a loopback address
 * makes the 4-tuple per-netns (pod IPs are unique node-wide and a proxy-to-proxy connection
 * crosses two netns). tc (SHUNT_TUPLE_NETNS_ALWAYS): always, since both ends it splices live in
 * one pod netns and ztunnel's sockets there carry other pods' addresses (its accepted socket has
 * the original destination as local address, its inbound leg the client's as source), so the
 * same 4-tuple can exist in two pod netns at once.
 */
static __always_inline void tuple_scope(struct shunt_tuple *t, __u64 netns)
{
#ifdef SHUNT_TUPLE_NETNS_ALWAYS
	t->netns = netns;
#else
	t->netns = (addr_is_loopback(&t->local) || addr_is_loopback(&t->remote)) ? netns : 0;
#endif
	t->_pad = 0;
}

static __always_inline void tuple_reverse(struct shunt_tuple *dst, const struct shunt_tuple *src)
{
	dst->netns = src->netns;
	dst->local = src->remote;
	dst->remote = src->local;
	dst->lport = src->rport;
	dst->rport = src->lport;
	dst->_pad = 0;
}

/* A sock_ops socket's own view of its connection. */
static __always_inline void skops_tuple(struct bpf_sock_ops *skops, struct shunt_tuple *t, __u64 netns)
{
	if (skops->family == SHUNT_AF_INET) {
		addr_from_v4(&t->local, skops->local_ip4);
		addr_from_v4(&t->remote, skops->remote_ip4);
	} else {
		t->local.a[0] = skops->local_ip6[0];
		t->local.a[1] = skops->local_ip6[1];
		t->local.a[2] = skops->local_ip6[2];
		t->local.a[3] = skops->local_ip6[3];
		t->remote.a[0] = skops->remote_ip6[0];
		t->remote.a[1] = skops->remote_ip6[1];
		t->remote.a[2] = skops->remote_ip6[2];
		t->remote.a[3] = skops->remote_ip6[3];
	}
	t->lport = (__u16)skops->local_port; /* host order */
	t->rport = port_from_ctx_be(skops->remote_port);
	tuple_scope(t, netns);
}

/* Turns the state callback (TCP_CLOSE: delete what the socket owns) on or off. */
static __always_inline void watch_state(struct bpf_sock_ops *skops, int on)
{
	__u32 flags = skops->bpf_sock_ops_cb_flags;
	__u32 want = on ? (flags | BPF_SOCK_OPS_STATE_CB_FLAG) : (flags & ~BPF_SOCK_OPS_STATE_CB_FLAG);
	if (want != flags)
		bpf_sock_ops_cb_flags_set(skops, want);
}

#endif /* SHUNT_SOCK_H */
