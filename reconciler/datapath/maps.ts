// The BPF maps reconcile owns, as pinned under the pin root. Sizes mirror bpf/include/*.h; the
// layouts test proves them against the compiled object's BTF.

import type { MapSpec } from "./state.js";

/** BPF_F_NO_PREALLOC: required for LPM tries, and keeps sparse hash maps small. */
export const BPF_F_NO_PREALLOC = 1;

/** Per-endpoint policy map capacity (inner LPM trie of the policy map-of-maps). */
export const POLICY_MAP_CAPACITY = 16384;

export const MAP_SPECS: readonly MapSpec[] = [
  { name: "ipcache", type: "lpm_trie", keySize: 24, valueSize: 12, maxEntries: 512000, flags: BPF_F_NO_PREALLOC },
  { name: "endpoints", type: "hash", keySize: 20, valueSize: 24, maxEntries: 65536, flags: BPF_F_NO_PREALLOC },
  { name: "policy", type: "hash_of_maps", keySize: 4, valueSize: 4, maxEntries: 65536, flags: BPF_F_NO_PREALLOC },
  { name: "policy_stats", type: "percpu_hash", keySize: 16, valueSize: 16, maxEntries: 1048576, flags: BPF_F_NO_PREALLOC },
  { name: "conntrack", type: "lru_hash", keySize: 40, valueSize: 56, maxEntries: 262144, flags: 0 },
  { name: "drops", type: "percpu_hash", keySize: 8, valueSize: 16, maxEntries: 65536, flags: BPF_F_NO_PREALLOC },
  // Written by the programs, read by `reconcile monitor` and the daemon; reconcile owns the maps,
  // not their contents (as for conntrack and the counters).
  { name: "events", type: "ringbuf", keySize: 0, valueSize: 0, maxEntries: 2 * 1024 * 1024, flags: 0 },
  { name: "event_budget", type: "percpu_hash", keySize: 4, valueSize: 32, maxEntries: 65536, flags: BPF_F_NO_PREALLOC },
  // The policy revision the verdicts cached in conntrack are valid for (bpf/include/policy_rev.h):
  // seeded when the map is created, bumped after every batch of endpoint, ipcache or policy writes
  // (apply/kernel). Its one value is reconcile's counter, not desired state: never diffed.
  { name: "policy_rev", type: "array", keySize: 4, valueSize: 4, maxEntries: 1, flags: 0 },
];

export function mapSpec(name: string): MapSpec {
  const spec = MAP_SPECS.find((m) => m.name === name);
  if (!spec) throw new Error(`unknown map ${name}: this is a bug`);
  return spec;
}
