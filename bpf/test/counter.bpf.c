// SPDX-License-Identifier: GPL-2.0
/* Test program for the ebpf-loader kernel tests: counts packets in an array map. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define TC_ACT_OK 0

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1);
} counter SEC(".maps");

SEC("tc")
int count_packets(struct __sk_buff *skb)
{
	__u32 key = 0;
	__u64 *value = bpf_map_lookup_elem(&counter, &key);

	if (!value)
		return TC_ACT_OK;
	__sync_fetch_and_add(value, 1);
	return TC_ACT_OK;
}

char _license[] SEC("license") = "GPL";
