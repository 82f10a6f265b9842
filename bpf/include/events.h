/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* events: the ring buffer the programs report drops, policy verdicts and audit verdicts to, and
 * the per-CPU token bucket that bounds how many each endpoint may report. Mirrored by
 * reconciler/datapath/layouts.ts (EVENT_*). Read by `reconcile monitor` and the daemon. */
#ifndef RECONCILE_EVENTS_H
#define RECONCILE_EVENTS_H

#include <linux/types.h>
#include "policy.h"

#define EVENTS_RING_BYTES (2 * 1024 * 1024) /* ring buffer data size: ≈ 26,000 records */
#define EVENT_BUDGET_MAX_ENTRIES 65536
#define DEFAULT_EVENT_RATE 1000 /* events/s per CPU for ep_id 0 (unknown endpoints) */

/* event.type */
#define EVENT_DROP 1    /* a packet was dropped (any reason); always reported */
#define EVENT_VERDICT 2 /* a policy verdict: a new flow allowed (EP_VERDICT_ALLOW) or a packet
			 * denied by policy (EP_VERDICT_DENY, in addition to its DROP) */
#define EVENT_AUDIT 3   /* policy would have dropped the packet; audit mode let it through */

/* event.verdict */
#define VERDICT_ALLOW 1
#define VERDICT_DENY 2

/* 80 bytes. One ring buffer record. */
struct event {
	__u64 time_ns;           /* bpf_ktime_get_ns() (CLOCK_MONOTONIC) */
	__u32 ep_id;             /* endpoint whose policy point saw it; 0 = unknown (malformed) */
	__u32 peer_identity;     /* the peer's security identity; 0 when not looked up */
	__u32 len;               /* skb->len */
	__u8 type;               /* EVENT_* */
	__u8 direction;          /* DIR_INGRESS or DIR_EGRESS, of the endpoint's policy */
	__u8 reason;             /* DROP_*: why it was (DROP, VERDICT deny) or would have been (AUDIT)
				  * dropped; 0 for an allow */
	__u8 verdict;            /* VERDICT_ALLOW or VERDICT_DENY (what policy decided) */
	struct policy_key match; /* the deciding entry's key, masked to its prefix (prefixlen = the
				  * entry's); prefixlen 0 = no entry decided (default deny) */
	__u8 family;             /* FAMILY_IPV4 or FAMILY_IPV6 */
	__u8 protocol;           /* IANA protocol */
	__be16 sport;            /* source port (network order); ICMP: 0 */
	__be16 dport;            /* destination port (network order); ICMP: the message type */
	__u16 pad;               /* zero */
	__u8 saddr[16];          /* network order; IPv4 in the first 4 bytes */
	__u8 daddr[16];
	__u32 pad2;              /* zero */
};

/* 32 bytes per CPU (PERCPU_HASH keyed by ep_id, __u32). Refilled at endpoint_info.event_rate
 * tokens per second up to one second's worth, per CPU. */
struct event_budget {
	__u64 last_ns;    /* when tokens were last refilled */
	__u64 tokens;     /* events this CPU may still report for the endpoint */
	__u64 suppressed; /* events not reported: no token */
	__u64 lost;       /* events not reported: the ring buffer was full */
};

#endif /* RECONCILE_EVENTS_H */
