/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* policy: hash-of-maps from ep_id to the endpoint's own LPM trie of policy entries, and the
 * per-entry statistics. Mirrored by reconciler/datapath/layouts.ts (POLICY_*). */
#ifndef RECONCILE_POLICY_H
#define RECONCILE_POLICY_H

#include <linux/types.h>

#define POLICY_MAX_ENDPOINTS 65536 /* outer map */
#define POLICY_MAX_ENTRIES 16384   /* each inner map */
#define POLICY_STATS_MAX_ENTRIES 1048576

/* policy_value.flags */
#define POLICY_DENY 1  /* set: deny entry; clear: allow entry */
#define POLICY_AUDIT 2 /* with POLICY_DENY: the deny is audited (the packet passes, reported as AUDIT) */

/* Prefix lengths of policy_key (bits after the prefixlen field). */
#define POLICY_PREFIX_L3 40    /* identity + direction: any protocol, any port */
#define POLICY_PREFIX_PROTO 48 /* + protocol: any port */
#define POLICY_PREFIX_FULL 64  /* + all 16 port bits: one exact port */

/* 12 bytes. LPM key: prefixlen = 40 (identity, direction) + 8 when protocol != 0
 * + port prefix bits (0..16) when protocol != 0. Bits beyond the prefix are zero. */
struct policy_key {
	__u32 prefixlen; /* 40..64, see above; the datapath looks up with 64 */
	__u32 identity;  /* peer identity; 0 = any identity */
	__u8 direction;  /* DIR_INGRESS (0) or DIR_EGRESS (1) */
	__u8 protocol;   /* IANA protocol; 0 = any */
	__be16 dport;    /* destination port (network order); ICMP/ICMPv6: the message type, as in
			  * Cilium's policy key; 0 for port-less protocols */
};

/* 8 bytes. */
struct policy_value {
	__u8 flags;          /* POLICY_DENY [| POLICY_AUDIT], or 0 (allow) */
	__u8 prefixlen_hint; /* the entry's own policy_key.prefixlen, so the datapath can name the
			      * matched entry in policy_stats (LPM lookup returns only the value) */
	__u8 pad[2];         /* zero */
	__u32 pad2;          /* zero */
};

/* 16 bytes. Keyed by entry rather than by inner map, so counters survive an inner-map swap. */
struct policy_stats_key {
	__u32 ep_id;           /* endpoint that owns the entry */
	struct policy_key key; /* the matched entry's key, masked to its prefix; key.prefixlen is
				* the entry's prefix length */
};

/* 16 bytes per CPU (PERCPU_HASH). */
struct policy_stats {
	__u64 packets; /* packets allowed by the entry */
	__u64 bytes;   /* their bytes (skb->len, L2 included) */
};

#endif /* RECONCILE_POLICY_H */
