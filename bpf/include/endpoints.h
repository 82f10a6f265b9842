/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* endpoints: hash from a local endpoint's address to where it lives and what it enforces.
 * Mirrored by reconciler/datapath/layouts.ts (ENDPOINT_*). */
#ifndef RECONCILE_ENDPOINTS_H
#define RECONCILE_ENDPOINTS_H

#include <linux/types.h>

#define ENDPOINTS_MAX_ENTRIES 65536

/* endpoint_info.flags */
#define EP_ENFORCE_INGRESS 1 /* ingress is default-deny: to_endpoint checks policy */
#define EP_ENFORCE_EGRESS 2  /* egress is default-deny: from_endpoint checks policy */
#define EP_AUDIT_INGRESS 4   /* ingress default deny is audited: a NO_POLICY drop passes, reported as AUDIT */
#define EP_AUDIT_EGRESS 8    /* egress likewise */
#define EP_VERDICT_ALLOW 16  /* report a VERDICT event for each new flow policy allows */
#define EP_VERDICT_DENY 32   /* report a VERDICT event for each packet policy denies (besides its DROP) */
#define EP_HOST_POLICY 64    /* a host endpoint enforces (host policies): the endpoint programs look the
			      * peer address up as a host address and apply the host's policy. Clear:
			      * no host-policy lookup at all (the fast path of every other packet). */

/* 20 bytes. */
struct endpoint_key {
	__u8 addr[16]; /* network-order address; IPv4 in addr[0..3], rest zero */
	__u8 family;   /* FAMILY_IPV4 (4) or FAMILY_IPV6 (6) */
	__u8 pad[3];   /* zero */
};

/* 24 bytes. */
struct endpoint_info {
	__u32 ifindex;  /* host-side device the programs run on (informational for the datapath) */
	__u32 ep_id;    /* endpoint number: key of its inner map in "policy", and of its counters */
	__u32 identity; /* the endpoint's own security identity */
	__u32 flags;    /* EP_ENFORCE_* | EP_AUDIT_* | EP_VERDICT_* | EP_HOST_POLICY */
	__u32 event_rate; /* events per second per CPU the endpoint may report (events.h); 0 = none */
	__u32 pad;      /* zero */
};

#endif /* RECONCILE_ENDPOINTS_H */
