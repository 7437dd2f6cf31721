// SPDX-License-Identifier: GPL-2.0
/* Deliberately rejected by the verifier: it dereferences a hash map value without
 * checking the lookup for NULL (a hash, because recent kernels prove constant-key array
 * lookups non-NULL and would accept this). The error test expects the program name and the verifier's
 * complaint ("invalid mem access 'map_value_or_null'") in the thrown BpfError. */
#include "shunt_bpf.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} broken_counter SEC(".maps");

SEC("cgroup/connect4")
int broken_connect4(struct bpf_sock_addr *ctx)
{
	__u32 key = 0;
	__u64 *count = bpf_map_lookup_elem(&broken_counter, &key);

	*count += 1; /* no NULL check: the verifier must refuse this */
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
