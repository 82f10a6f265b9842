/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* conntrack: LRU hash of flows that a policy point let through. A packet whose reversed tuple is
 * present (with the right ct_value.flags bit, see below) is a reply and passes without a policy
 * lookup. Mirrored by reconciler/datapath/layouts.ts (CT_*). */
#ifndef RECONCILE_CONNTRACK_H
#define RECONCILE_CONNTRACK_H

#include <linux/types.h>
#include <bpf/bpf_helpers.h> /* its __always_inline forces inlining; linux/types.h brings a plain inline */

#define CT_MAX_ENTRIES 262144

/* ct_value.flags. A flow's entry is shared by both ends when both are local endpoints, so each
 * policy point records that it admitted the forward direction; a reply is only accepted at a
 * point when the OPPOSITE point admitted the forward packet (the reply leaving the destination
 * endpoint needs CT_F_INGRESS, the reply entering the source endpoint needs CT_F_EGRESS). This
 * stops a peer from opening a "reply" path through another endpoint's egress policy by sending
 * a packet that the endpoint's ingress dropped. */
#define CT_F_INGRESS 1 /* a forward packet was admitted into its destination endpoint */
#define CT_F_EGRESS 2  /* a forward packet was let out of its source endpoint */
#define CT_F_REPLY 4   /* a reply has been seen */

/* 40 bytes. The forward tuple of a flow as the first packet carried it. ICMP echo:
 * sport = echo id, dport = 0 (an echo reply is read as sport 0, dport id, so that its reverse
 * is the request's tuple). Other port-less protocols and non-first fragments: both ports 0. */
struct ct_key {
	__u8 saddr[16];  /* source address, network order; IPv4 in [0..3], rest zero */
	__u8 daddr[16];  /* destination address, same encoding */
	__be16 sport;    /* source port (network order) */
	__be16 dport;    /* destination port (network order) */
	__u8 protocol;   /* IANA protocol */
	__u8 family;     /* FAMILY_IPV4 (4) or FAMILY_IPV6 (6) */
	__u8 pad[2];     /* zero */
};

/* 12 bytes. The verdict a policy point's policy gave the flow's forward packets, cached so that
 * the next forward packets of the flow skip the ipcache and policy lookups. Only allows are cached
 * (a denied packet is dropped, an audited one reported every time). Valid while rev equals the
 * current revision in the policy_rev map (policy_rev.h), which reconcile bumps after every batch of
 * endpoint, ipcache or policy writes: any change of policy, identities or enforcement makes every
 * cached verdict stale, and the next packet is judged in full again (so removing a rule still cuts
 * existing flows). rev 0 is never current: no verdict. */
struct ct_verdict {
	__u32 rev;      /* policy_rev when stored; 0 = none */
	__u32 identity; /* identity of the deciding entry: the peer's, or 0 (an L4-only entry) */
	__u8 prefixlen; /* the deciding entry's prefix length: with identity and the packet's
			 * protocol and port it names the policy_stats entry a cached packet counts on */
	__u8 pad[3];    /* zero */
};

/* 56 bytes. */
struct ct_value {
	__u64 last_seen;    /* bpf_jiffies64() of the last packet: kernel ticks (CONFIG_HZ a second),
			     * cheaper per packet than bpf_ktime_get_ns(), as Cilium's bpf_mono_now() */
	__u64 packets;      /* packets in both directions, counted at each policy point */
	__u64 bytes;        /* their bytes (skb->len) */
	__u32 flags;        /* CT_F_* */
	__u32 pad;          /* zero */
	struct ct_verdict verdict[2]; /* by policy point: [DIR_INGRESS] the destination endpoint's
				       * ingress, [DIR_EGRESS] the source endpoint's egress */
};

/* The tuple a reply to k would carry. */
static __always_inline void ct_reverse(const struct ct_key *k, struct ct_key *r)
{
	__builtin_memcpy(r->saddr, k->daddr, 16);
	__builtin_memcpy(r->daddr, k->saddr, 16);
	r->sport = k->dport;
	r->dport = k->sport;
	r->protocol = k->protocol;
	r->family = k->family;
}

#endif /* RECONCILE_CONNTRACK_H */
