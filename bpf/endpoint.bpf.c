// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Network policy enforcement for local endpoints and the local host (see shared DESIGN §4).
 *
 *   to_endpoint   host-side veth, tc egress:  INGRESS policy of the destination endpoint
 *   from_endpoint host-side veth, tc ingress: EGRESS policy of the source endpoint
 *   from_netdev   host device, tc ingress:    INGRESS policy of the host (host firewall)
 *   to_netdev     host device, tc egress:     EGRESS policy of the host (host firewall)
 *
 * The host endpoint (host policies) has an "endpoints" entry per local host address, with
 * identity IDENTITY_HOST and its own ep_id. Between a local endpoint and a host address both
 * policies apply, the source's first: from_endpoint checks the host's ingress after the
 * endpoint's egress, to_endpoint the host's egress before the endpoint's ingress, each with the
 * endpoint's identity as the peer. The netdev programs only judge packets to (from_netdev) or from
 * (to_netdev) a host address; everything else (forwarded to or from endpoints) passes untouched
 * and is judged by the endpoint programs.
 *
 * Per packet: parse → endpoint lookup (not ours: pass) → conntrack reply check (pass) → related
 * ICMP error check (pass) → direction not enforced: record the flow, pass → peer identity from
 * the ipcache → policy (real identity, then identity 0; a deny wins, else an allow, else drop)
 * → count, record the flow, pass.
 *
 * Verdicts that are choices, not accidents:
 * - Non-IP frames (ARP, ...) pass; so do packets whose endpoint address is not in "endpoints".
 * - Truncated or inconsistent headers are dropped as MALFORMED (ep_id 0 when the endpoint is not
 *   known), whether or not the direction is enforced.
 * - Non-first fragments carry no L4 header: they are judged with ports 0 (reply check and policy),
 *   so they pass only when the peer is allowed the protocol on every port (or port 0), e.g. by
 *   an L3-only rule; otherwise they are dropped as NO_POLICY. No fragment tracking.
 * - ICMPv6 neighbour discovery (types 133..137) always passes: without it IPv6 stops working.
 * - ICMP/ICMPv6 errors (v4: dest unreachable, time exceeded; v6: dest unreachable, packet too
 *   big, time exceeded) pass when the quoted packet's tuple, in either orientation, is in
 *   conntrack. Quoted IPv6 packets are not walked past extension headers.
 * - Flows are recorded in conntrack in unenforced directions too, so that replies to traffic an
 *   endpoint may send freely pass its enforced other direction.
 */
#include "maps.h"
#include "parse.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* The value of the per-CPU counter maps: drop_stats and policy_stats share this layout. */
struct packet_count {
	__u64 packets; /* packets counted */
	__u64 bytes;   /* their bytes (skb->len) */
};
_Static_assert(sizeof(struct drop_stats) == sizeof(struct packet_count) &&
	       __builtin_offsetof(struct drop_stats, bytes) == __builtin_offsetof(struct packet_count, bytes),
	       "drop_stats is a packet_count");
_Static_assert(sizeof(struct policy_stats) == sizeof(struct packet_count) &&
	       __builtin_offsetof(struct policy_stats, bytes) == __builtin_offsetof(struct packet_count, bytes),
	       "policy_stats is a packet_count");

/* Counts skb on the per-CPU counter at key in map (drops or policy_stats), creating it if absent. */
static __always_inline void count_packet(void *map, const void *key, struct __sk_buff *skb)
{
	struct packet_count *c = bpf_map_lookup_elem(map, key);

	if (c) {
		c->packets += 1; /* per-CPU value: no atomics needed */
		c->bytes += skb->len;
	} else {
		struct packet_count init = { .packets = 1, .bytes = skb->len };
		bpf_map_update_elem(map, key, &init, BPF_NOEXIST);
	}
}

static __always_inline int drop(struct __sk_buff *skb, __u32 ep_id, __u8 reason, __u8 dir)
{
	struct drop_key key = { .ep_id = ep_id, .reason = reason, .direction = dir };

	count_packet(&drops, &key, skb);
	return TC_ACT_SHOT;
}

/* Counts a packet on an existing flow entry and marks flag on it. */
static __always_inline void ct_account(struct ct_value *v, struct __sk_buff *skb, __u32 flag)
{
	v->last_seen_ns = bpf_ktime_get_ns();
	__sync_fetch_and_add(&v->packets, 1);
	__sync_fetch_and_add(&v->bytes, skb->len);
	/* Plain store: a lost race only delays the bit to the flow's next forward packet. */
	if (!(v->flags & flag))
		v->flags |= flag;
}

/* Records a forward packet admitted at the policy point `flag` (CT_F_INGRESS/CT_F_EGRESS). */
static __always_inline void ct_forward(const struct ct_key *k, struct __sk_buff *skb, __u32 flag)
{
	struct ct_value *v = bpf_map_lookup_elem(&conntrack, k);

	if (v) {
		ct_account(v, skb, flag);
		return;
	}
	struct ct_value init = {
		.last_seen_ns = bpf_ktime_get_ns(),
		.packets = 1,
		.bytes = skb->len,
		.flags = flag,
	};
	bpf_map_update_elem(&conntrack, k, &init, BPF_NOEXIST);
}

/* ICMP error about a tracked flow: its quoted packet belongs to a conntrack entry, either as the
 * flow's forward direction or as one of its replies. */
static __always_inline int ct_related(const struct ct_key *quoted)
{
	struct ct_key rev = {};

	if (bpf_map_lookup_elem(&conntrack, quoted))
		return 1;
	ct_reverse(quoted, &rev);
	return bpf_map_lookup_elem(&conntrack, &rev) != NULL;
}

/* Security identity of a peer address: longest ipcache prefix, world when none. */
static __always_inline __u32 peer_identity(const __u8 *addr, __u8 family)
{
	struct ipcache_key key = {
		.prefixlen = 32 + (family == FAMILY_IPV4 ? 32 : 128),
		.family = family,
	};
	__builtin_memcpy(key.addr, addr, 16);
	struct ipcache_value *v = bpf_map_lookup_elem(&ipcache, &key);
	return v ? v->identity : IDENTITY_WORLD;
}

/* Counts an allowed packet on the entry that allowed it (key = the packet's policy key with the
 * matched identity, masked to the entry's prefix length). */
static __always_inline void count_allow(struct __sk_buff *skb, __u32 ep_id,
					const struct policy_key *pkt, __u8 hint)
{
	struct policy_stats_key key = {};

	if (hint < POLICY_PREFIX_L3 || hint > POLICY_PREFIX_FULL)
		hint = POLICY_PREFIX_FULL; /* entry written without a hint: name the exact key */
	key.ep_id = ep_id;
	key.key.prefixlen = hint;
	key.key.identity = pkt->identity;
	key.key.direction = pkt->direction;
	if (hint >= POLICY_PREFIX_PROTO) {
		__u32 bits = hint - POLICY_PREFIX_PROTO; /* 0..16 significant port bits */
		__u32 mask = bits ? (0xffff0000u >> bits) & 0xffff : 0;
		key.key.protocol = pkt->protocol;
		key.key.dport = bpf_htons(bpf_ntohs(pkt->dport) & mask);
	}
	count_packet(&policy_stats, &key, skb);
}

/* Policy verdict for a forward packet: 0 = allow (counted), else a DROP_* reason. */
static __always_inline int policy_verdict(struct __sk_buff *skb, __u32 ep_id, __u32 identity,
					  __u8 dir, const struct flow *f)
{
	void *inner = bpf_map_lookup_elem(&policy, &ep_id);
	if (!inner)
		return DROP_NO_POLICY; /* enforced, but no policy map: default deny */

	struct policy_key key = {
		.prefixlen = POLICY_PREFIX_FULL,
		.identity = identity,
		.direction = dir,
		.protocol = f->tuple.protocol,
		.dport = f->policy_dport,
	};
	struct policy_value *exact = bpf_map_lookup_elem(inner, &key);
	if (exact && (exact->flags & POLICY_DENY))
		return DROP_POLICY_DENIED;

	struct policy_value *any = NULL;
	if (identity != IDENTITY_ANY) {
		key.identity = IDENTITY_ANY;
		any = bpf_map_lookup_elem(inner, &key);
		if (any && (any->flags & POLICY_DENY))
			return DROP_POLICY_DENIED;
	}

	if (exact) {
		key.identity = identity;
		count_allow(skb, ep_id, &key, exact->prefixlen_hint);
		return 0;
	}
	if (any) {
		count_allow(skb, ep_id, &key, any->prefixlen_hint);
		return 0;
	}
	return DROP_NO_POLICY;
}

/* Where handle() runs: on an endpoint's device, or on a host device (host firewall). */
#define AT_ENDPOINT 0
#define AT_NETDEV 1

/* The host endpoint's entry when addr is a local host address, else NULL. */
static __always_inline struct endpoint_info *host_entry(const __u8 *addr, __u8 family)
{
	struct endpoint_key k = { .family = family };
	__builtin_memcpy(k.addr, addr, 16);
	struct endpoint_info *h = bpf_map_lookup_elem(&endpoints, &k);
	return h && h->identity == IDENTITY_HOST ? h : NULL;
}

/* The host's policy in direction hdir for a packet between it and a local endpoint of identity
 * peer: 0 = pass (not enforced, or allowed and counted), else the packet was dropped (TC_ACT_SHOT
 * is returned by the caller). */
static __always_inline int host_check(struct __sk_buff *skb, const struct endpoint_info *h,
				      __u32 peer, __u8 hdir, const struct flow *f)
{
	if (!h || !(h->flags & (hdir == DIR_INGRESS ? EP_ENFORCE_INGRESS : EP_ENFORCE_EGRESS)))
		return 0;
	int reason = policy_verdict(skb, h->ep_id, peer, hdir, f);
	if (reason)
		drop(skb, h->ep_id, reason, hdir);
	return reason;
}

static __always_inline int handle(struct __sk_buff *skb, const __u8 dir, const int at)
{
	struct flow f = {};
	int rc = parse_flow(skb, &f);

	if (rc == PARSE_NOT_IP)
		return TC_ACT_OK;
	if (rc == PARSE_BAD_L3) /* a host device also carries traffic that is not ours to judge */
		return at == AT_NETDEV ? TC_ACT_OK : drop(skb, 0, DROP_MALFORMED, dir);

	/* The endpoint whose policy applies: the destination on ingress, the source on egress. */
	struct endpoint_key ek = { .family = f.tuple.family };
	__builtin_memcpy(ek.addr, dir == DIR_INGRESS ? f.tuple.daddr : f.tuple.saddr, 16);
	struct endpoint_info *ep = bpf_map_lookup_elem(&endpoints, &ek);
	/* On a host device only the host's own traffic is judged; on an endpoint's device a host
	 * address in the endpoint's place is not an endpoint (as before host policies: pass). */
	if (ep && (ep->identity == IDENTITY_HOST) != (at == AT_NETDEV))
		return TC_ACT_OK;
	if (!ep)
		return rc == PARSE_BAD_L4 && at == AT_ENDPOINT ? drop(skb, 0, DROP_MALFORMED, dir) : TC_ACT_OK;
	__u32 ep_id = ep->ep_id;
	__u32 ep_identity = ep->identity;
	__u32 enforced = ep->flags & (dir == DIR_INGRESS ? EP_ENFORCE_INGRESS : EP_ENFORCE_EGRESS);
	if (rc == PARSE_BAD_L4)
		return drop(skb, ep_id, DROP_MALFORMED, dir);
	if (f.nd)
		return TC_ACT_OK;

	/* Reply: the reversed tuple was admitted by the policy point opposite to this one. */
	struct ct_key rev = {};
	ct_reverse(&f.tuple, &rev);
	struct ct_value *ct = bpf_map_lookup_elem(&conntrack, &rev);
	__u32 needed = dir == DIR_INGRESS ? CT_F_EGRESS : CT_F_INGRESS;
	if (ct && (ct->flags & needed)) {
		ct_account(ct, skb, CT_F_REPLY);
		return TC_ACT_OK;
	}
	if (f.icmp_error && ct_related(&f.inner))
		return TC_ACT_OK;

	/* Between a local endpoint and the host, the host's policy applies too (the source's first):
	 * a packet from the host into the endpoint leaves the host (its egress) ... */
	struct endpoint_info *host = NULL;
	if (at == AT_ENDPOINT)
		host = host_entry(dir == DIR_INGRESS ? f.tuple.saddr : f.tuple.daddr, f.tuple.family);
	if (dir == DIR_INGRESS && host_check(skb, host, ep_identity, DIR_EGRESS, &f))
		return TC_ACT_SHOT;

	if (enforced) {
		__u32 identity = peer_identity(dir == DIR_INGRESS ? f.tuple.saddr : f.tuple.daddr,
					       f.tuple.family);
		int reason = policy_verdict(skb, ep_id, identity, dir, &f);
		if (reason)
			return drop(skb, ep_id, reason, dir);
	}

	/* ... and a packet from the endpoint to the host enters the host (its ingress). */
	if (dir == DIR_EGRESS && host_check(skb, host, ep_identity, DIR_INGRESS, &f))
		return TC_ACT_SHOT;
	ct_forward(&f.tuple, skb, dir == DIR_INGRESS ? CT_F_INGRESS : CT_F_EGRESS);
	return TC_ACT_OK;
}

SEC("tc")
int to_endpoint(struct __sk_buff *skb)
{
	return handle(skb, DIR_INGRESS, AT_ENDPOINT);
}

SEC("tc")
int from_endpoint(struct __sk_buff *skb)
{
	return handle(skb, DIR_EGRESS, AT_ENDPOINT);
}

SEC("tc")
int from_netdev(struct __sk_buff *skb)
{
	return handle(skb, DIR_INGRESS, AT_NETDEV);
}

SEC("tc")
int to_netdev(struct __sk_buff *skb)
{
	return handle(skb, DIR_EGRESS, AT_NETDEV);
}
