/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The pinned maps of the policy datapath (BTF-style definitions, pinned by name under the pin
 * root). Included once, by the program file. Hash maps are not preallocated (they are sparse;
 * reconciler/datapath/maps.ts creates them the same way); the LRU conntrack always is. */
#ifndef RECONCILE_MAPS_H
#define RECONCILE_MAPS_H

#include "common.h"
#include "ipcache.h"
#include "endpoints.h"
#include "policy.h"
#include "conntrack.h"
#include "drops.h"
#include "events.h"
#include "policy_rev.h"

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, IPCACHE_MAX_ENTRIES);
	__type(key, struct ipcache_key);
	__type(value, struct ipcache_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ipcache SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, ENDPOINTS_MAX_ENTRIES);
	__type(key, struct endpoint_key);
	__type(value, struct endpoint_info);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} endpoints SEC(".maps");

/* Template of each endpoint's inner policy map. The value is wrapped in an anonymous struct
 * (same size and layout) because clang-14 emits only a forward declaration in BTF for a named
 * struct reached through the inner map definition, which loaders then cannot size. */
struct policy_inner {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, POLICY_MAX_ENTRIES);
	__type(key, struct policy_key);
	__type(value, struct { struct policy_value v; });
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, POLICY_MAX_ENDPOINTS);
	__type(key, __u32); /* endpoint_info.ep_id */
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__array(values, struct policy_inner);
} policy SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	/* Not preallocated: 1M per-CPU slots would pin ~100 MB per 2 CPUs whether used or not. */
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, POLICY_STATS_MAX_ENTRIES);
	__type(key, struct policy_stats_key);
	__type(value, struct policy_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} policy_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, CT_MAX_ENTRIES);
	__type(key, struct ct_key);
	__type(value, struct ct_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} conntrack SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, DROPS_MAX_ENTRIES);
	__type(key, struct drop_key);
	__type(value, struct drop_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} drops SEC(".maps");

/* The ring buffer of struct event records (no key or value: max_entries is its data size). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, EVENTS_RING_BYTES);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, EVENT_BUDGET_MAX_ENTRIES);
	__type(key, __u32); /* endpoint_info.ep_id; 0 = events of unknown endpoints */
	__type(value, struct event_budget);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} event_budget SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, POLICY_REV_MAX_ENTRIES);
	__type(key, __u32); /* 0 */
	__type(value, struct policy_rev);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} policy_rev SEC(".maps");

#endif /* RECONCILE_MAPS_H */
