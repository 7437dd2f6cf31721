/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Helpers shared by the sockops backend's programs (one object per hook, maps shared by pin). */
#ifndef SHUNT_SOCKOPS_LIB_H
#define SHUNT_SOCKOPS_LIB_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "shunt_sockops.h"

#define SHUNT_AF_INET 2
#define SHUNT_AF_INET6 10
#define SHUNT_SOCK_STREAM 1
#define SHUNT_IPPROTO_TCP 6

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

static __always_inline void count(__u32 idx, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);
	if (v)
		*v += n; /* per-CPU slot: no atomics needed */
}

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

/* Tuple keys carry the netns cookie only when a loopback address makes the 4-tuple per-netns. */
static __always_inline void tuple_scope(struct shunt_tuple *t, __u64 netns)
{
	t->netns = (addr_is_loopback(&t->local) || addr_is_loopback(&t->remote)) ? netns : 0;
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

#endif /* SHUNT_SOCKOPS_LIB_H */
