/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* ipcache: LPM trie from address prefix to security identity. Filled by reconcile with endpoint
 * /32 and /128 entries, host and node addresses and CIDR prefixes; peers without a match are
 * "world" (identity 2). Mirrored by reconciler/datapath/layouts.ts (IPCACHE_*). */
#ifndef RECONCILE_IPCACHE_H
#define RECONCILE_IPCACHE_H

#include <linux/types.h>

#define IPCACHE_MAX_ENTRIES 512000

/* 24 bytes. LPM key: prefixlen counts the bits after the prefixlen field, so it is
 * 32 (family + pad, always significant) + the address prefix length (0..32 or 0..128). */
struct ipcache_key {
	__u32 prefixlen; /* 32 + address prefix length */
	__u8 family;     /* FAMILY_IPV4 (4) or FAMILY_IPV6 (6) */
	__u8 pad[3];     /* zero */
	__u8 addr[16];   /* network-order address; IPv4 in addr[0..3], rest zero */
};

/* 12 bytes. */
struct ipcache_value {
	__u32 identity;        /* security identity of every address in the prefix */
	__be32 tunnel_endpoint; /* underlay IPv4 of the node hosting the prefix; 0 = local */
	__u8 flags;            /* reserved, zero */
	__u8 pad[3];           /* zero */
};

#endif /* RECONCILE_IPCACHE_H */
