// SPDX-License-Identifier: GPL-2.0
/* Fixture for pin/adopt tests: a map libbpf pins by name under the caller's pin
 * directory, and a program that counts into it, so a second loader must find the first
 * loader's map (same id, same contents) instead of creating a fresh one. */
#include "shunt_bpf.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pinned_state SEC(".maps");

SEC("cgroup/connect4")
int pin_connect4(struct bpf_sock_addr *ctx)
{
	__u32 key = 1;
	__u64 one = 1, *count = bpf_map_lookup_elem(&pinned_state, &key);

	if (count)
		__sync_fetch_and_add(count, 1);
	else
		bpf_map_update_elem(&pinned_state, &key, &one, BPF_NOEXIST);
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
