/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Constants shared by the policy programs, the parser (parse.h) and the map fields that hold
 * them. Nothing in here is a map layout; the per-map headers (ipcache.h, endpoints.h, policy.h,
 * conntrack.h, drops.h) are the contract with reconciler/datapath/layouts.ts. */
#ifndef RECONCILE_COMMON_H
#define RECONCILE_COMMON_H

#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

/* Address family as stored in keys: 4 or 6 (not AF_INET/AF_INET6). */
#define FAMILY_IPV4 4
#define FAMILY_IPV6 6

/* Policy direction, as seen from the endpoint that owns the policy. */
#define DIR_INGRESS 0 /* traffic entering the endpoint (program to_endpoint) */
#define DIR_EGRESS 1  /* traffic leaving the endpoint (program from_endpoint) */

/* Reserved identities the datapath itself needs (Cilium numbering). */
#define IDENTITY_ANY 0   /* wildcard identity of L4-only policy entries */
#define IDENTITY_HOST 1  /* the local host: its endpoints entries are the host endpoint's */
#define IDENTITY_WORLD 2 /* peers with no ipcache entry */

#endif /* RECONCILE_COMMON_H */
