// SPDX-License-Identifier: GPL-2.0
/* Fixture for @shunt/libbpf's tests: one map of each kind the backends use and one
 * program per hook. Each program bumps its own slot of `hook_counters` so a test can
 * prove the kernel really ran it; nothing here changes where traffic goes, except the
 * sk_msg program, which splices sockets the sockops program put into `sock_hash`. */
#include "shunt_bpf.h"

/* Slots of hook_counters; the TS test mirrors this order. */
enum selftest_hook {
	HOOK_SOCK_OPS = 0,
	HOOK_CONNECT4,
	HOOK_CONNECT6,
	HOOK_GETSOCKOPT,
	HOOK_SENDMSG4,
	HOOK_SENDMSG6,
	HOOK_RECVMSG4,
	HOOK_RECVMSG6,
	HOOK_BIND4,
	HOOK_BIND6,
	HOOK_SK_MSG,
	HOOK_SK_MSG_REDIRECTED,
	HOOK_TCX_INGRESS,
	HOOK_TCX_EGRESS,
	HOOK_TC_LEGACY,
	HOOK_SOCKHASH_INSERT,
	HOOK_MAX,
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, HOOK_MAX);
	__type(key, __u32);
	__type(value, __u64);
} hook_counters SEC(".maps");

/* Round-trip fixtures for userspace map operations. */
struct flow_key {
	__u32 addr;
	__u16 port;
	__u8 proto;
	__u8 pad;
};

struct flow_value {
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, struct flow_key);
	__type(value, struct flow_value);
} test_hash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 32);
	__type(key, __u32);
	__type(value, __u64);
} test_lru SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} test_percpu SEC(".maps");

struct lpm_v4_key {
	__u32 prefixlen;
	__u32 addr; /* network byte order */
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_v4_key);
	__type(value, __u32);
} test_lpm SEC(".maps");

/* Both ends of a local TCP connection, ports in host byte order, addresses as the
 * kernel hands them (network order). The sk_msg side builds the peer's key from its own
 * context, so a disagreement between the two context layouts shows up as "no splice". */
struct sock_key {
	__u32 local_ip4;
	__u32 remote_ip4;
	__u32 local_port;
	__u32 remote_port;
};

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 64);
	__type(key, struct sock_key);
	__type(value, __u64);
} sock_hash SEC(".maps");

/* Raw port fields as each context presents them, for the layout test. Slot 0: sockops
 * (active side), slot 1: sk_msg (first message seen). */
struct port_sample {
	__u32 local_port;
	__u32 remote_port;
	__u32 local_ip4;
	__u32 remote_ip4;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct port_sample);
} port_samples SEC(".maps");

/* Only connections to this server port (host order) are spliced; 0 disables splicing. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} splice_port SEC(".maps");

static __always_inline void bump(__u32 slot)
{
	__u64 *count = bpf_map_lookup_elem(&hook_counters, &slot);

	if (count)
		__sync_fetch_and_add(count, 1);
}

static __always_inline void sample_ports(__u32 slot, __u32 local_port, __u32 remote_port,
					 __u32 local_ip4, __u32 remote_ip4)
{
	struct port_sample *s = bpf_map_lookup_elem(&port_samples, &slot);

	if (s && s->local_port == 0) {
		s->local_port = local_port;
		s->remote_port = remote_port;
		s->local_ip4 = local_ip4;
		s->remote_ip4 = remote_ip4;
	}
}

static __always_inline int splice_wanted(__u32 port_a, __u32 port_b)
{
	__u32 zero = 0;
	__u32 *port = bpf_map_lookup_elem(&splice_port, &zero);

	return port && *port && (*port == port_a || *port == port_b);
}

SEC("sockops")
int selftest_sockops(struct bpf_sock_ops *skops)
{
	__u32 op = skops->op;

	bump(HOOK_SOCK_OPS);
	if (skops->family != AF_INET)
		return 1;
	if (op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB && op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB)
		return 1;

	/* bpf_sock_ops: local_port is host order; remote_port is the network-order port. */
	__u32 local_port = skops->local_port;
	__u32 remote_port = bpf_ntohl(skops->remote_port);

	if (!splice_wanted(local_port, remote_port))
		return 1;
	if (op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB)
		sample_ports(0, skops->local_port, skops->remote_port, skops->local_ip4,
			     skops->remote_ip4);

	struct sock_key key = {
		.local_ip4 = skops->local_ip4,
		.remote_ip4 = skops->remote_ip4,
		.local_port = local_port,
		.remote_port = remote_port,
	};

	if (bpf_sock_hash_update(skops, &sock_hash, &key, BPF_NOEXIST) == 0)
		bump(HOOK_SOCKHASH_INSERT);
	return 1;
}

SEC("sk_msg")
int selftest_sk_msg(struct sk_msg_md *msg)
{
	bump(HOOK_SK_MSG);
	if (msg->family != AF_INET)
		return SK_PASS;
	sample_ports(1, msg->local_port, msg->remote_port, msg->local_ip4, msg->remote_ip4);

	/* sk_msg_md: local_port host order, remote_port network order (same as sockops). */
	struct sock_key peer = {
		.local_ip4 = msg->remote_ip4,
		.remote_ip4 = msg->local_ip4,
		.local_port = bpf_ntohl(msg->remote_port),
		.remote_port = msg->local_port,
	};

	if (bpf_msg_redirect_hash(msg, &sock_hash, &peer, BPF_F_INGRESS) == SK_PASS) {
		bump(HOOK_SK_MSG_REDIRECTED);
		return SK_PASS;
	}
	/* No peer in the map: let the message take the normal TCP path. */
	return SK_PASS;
}

SEC("cgroup/connect4")
int selftest_connect4(struct bpf_sock_addr *ctx)
{
	bump(HOOK_CONNECT4);
	return SHUNT_CGROUP_ALLOW;
}

SEC("cgroup/connect6")
int selftest_connect6(struct bpf_sock_addr *ctx)
{
	bump(HOOK_CONNECT6);
	return SHUNT_CGROUP_ALLOW;
}

SEC("cgroup/getsockopt")
int selftest_getsockopt(struct bpf_sockopt *ctx)
{
	bump(HOOK_GETSOCKOPT);
	/* Hand the kernel's answer back untouched (retval as the kernel set it). */
	return SHUNT_CGROUP_ALLOW;
}

SEC("cgroup/sendmsg4")
int selftest_sendmsg4(struct bpf_sock_addr *ctx)
{
	bump(HOOK_SENDMSG4);
	return SHUNT_CGROUP_ALLOW;
}

SEC("cgroup/sendmsg6")
int selftest_sendmsg6(struct bpf_sock_addr *ctx)
{
	bump(HOOK_SENDMSG6);
	return SHUNT_CGROUP_ALLOW;
}

SEC("cgroup/recvmsg4")
int selftest_recvmsg4(struct bpf_sock_addr *ctx)
{
	bump(HOOK_RECVMSG4);
	return SHUNT_CGROUP_ALLOW;
}

SEC("cgroup/recvmsg6")
int selftest_recvmsg6(struct bpf_sock_addr *ctx)
{
	bump(HOOK_RECVMSG6);
	return SHUNT_CGROUP_ALLOW;
}

SEC("cgroup/bind4")
int selftest_bind4(struct bpf_sock_addr *ctx)
{
	bump(HOOK_BIND4);
	return SHUNT_CGROUP_ALLOW;
}

SEC("cgroup/bind6")
int selftest_bind6(struct bpf_sock_addr *ctx)
{
	bump(HOOK_BIND6);
	return SHUNT_CGROUP_ALLOW;
}

SEC("tcx/ingress")
int selftest_tcx_ingress(struct __sk_buff *skb)
{
	bump(HOOK_TCX_INGRESS);
	return TCX_NEXT;
}

SEC("tcx/egress")
int selftest_tcx_egress(struct __sk_buff *skb)
{
	bump(HOOK_TCX_EGRESS);
	return TCX_NEXT;
}

/* Legacy cls_bpf (direct-action) for kernels without tcx. */
SEC("tc")
int selftest_tc_legacy(struct __sk_buff *skb)
{
	bump(HOOK_TC_LEGACY);
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
