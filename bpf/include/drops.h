/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* drops: per-CPU counters of dropped packets by endpoint, reason and direction.
 * Mirrored by reconciler/datapath/layouts.ts (DROP_*). */
#ifndef RECONCILE_DROPS_H
#define RECONCILE_DROPS_H

#include <linux/types.h>

#define DROPS_MAX_ENTRIES 65536

/* drop_key.reason */
#define DROP_POLICY_DENIED 1 /* a deny entry matched */
#define DROP_NO_POLICY 2     /* enforced direction and no entry allowed it (default deny) */
#define DROP_CT_INVALID 3    /* reserved: conntrack state invalid (not produced yet) */
#define DROP_MALFORMED 4     /* truncated or inconsistent L3/L4 headers */
#define DROP_UNSUPPORTED_L3 5 /* reserved: L3 the datapath refuses (not produced yet: non-IP passes) */

/* 8 bytes. */
struct drop_key {
	__u32 ep_id;    /* endpoint the packet was going to or coming from; 0 = unknown */
	__u8 reason;    /* DROP_* */
	__u8 direction; /* DIR_INGRESS (0) or DIR_EGRESS (1) */
	__u16 pad;      /* zero */
};

/* 16 bytes per CPU (PERCPU_HASH). */
struct drop_stats {
	__u64 packets; /* dropped packets */
	__u64 bytes;   /* their bytes (skb->len) */
};

#endif /* RECONCILE_DROPS_H */
