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
 * Per packet: parse → endpoint lookup (not ours: pass) → the flow's own conntrack entry: a
 * forward packet of a flow this point admitted before passes at once when the direction is not
 * enforced or an allow is cached for the current policy_rev (the fast path; not taken while a
 * host policy applies) → conntrack reply check (pass) → related ICMP error check (pass) →
 * direction not enforced: record the flow, pass → cached allow: count it, pass → peer identity
 * from the ipcache → policy (real identity, then identity 0; a deny wins, else an allow, else
 * drop) → count, record the flow (and cache the allow), pass. A packet policy would drop passes
 * instead when the drop is audited (a POLICY_AUDIT deny entry, or EP_AUDIT_<dir> for default
 * deny) and goes on as allowed.
 *
 * Events (events.h) go to the "events" ring buffer, each paid for with a token from the
 * endpoint's per-CPU bucket in "event_budget" (refilled at endpoint_info.event_rate per second;
 * DEFAULT_EVENT_RATE for ep_id 0); no token counts as suppressed, a full ring as lost:
 * - DROP for every dropped packet, any reason;
 * - VERDICT deny, besides the DROP, for a packet policy drops when the endpoint has EP_VERDICT_DENY;
 * - VERDICT allow for the first packet of a flow policy allowed at an enforced point (when that
 *   point's conntrack flag is first set) when the endpoint has EP_VERDICT_ALLOW;
 * - AUDIT for every packet an audited drop let through.
 * Allowed packets of established flows and replies do no event work at all.
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
 * - The forward lookup comes before the reply lookup: forward packets of established flows are
 *   most of the traffic, and this way they pay one conntrack lookup, not two (a reply pays the
 *   forward lookup's miss). A packet whose tuple is both a flow this point admitted and the reply
 *   of another (the same two sockets opened from both ends) passes either way; it is counted on
 *   its own entry.
 * - Audit never lets a malformed packet through; an audited deny yields to a deny that is not
 *   audited (exact identity or identity 0), as a deny wins over an allow. An audited packet is
 *   recorded in conntrack, so its replies pass; it is not counted in policy_stats (not allowed).
 * - Host-policy checks (between an endpoint and the host) report as the host endpoint. They are
 *   only made when the endpoint's entry has EP_HOST_POLICY, which reconcile sets on every endpoint
 *   while the host endpoint enforces a direction: without it no host lookup is made at all.
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

/* BTF holds only the types that maps, globals and function signatures use, and the event record
 * is none of these (the ring buffer has no value type): this otherwise unused constant puts
 * struct event into BTF for the loaders and test/unit/layouts.test.ts. Its section is not a data
 * section (neither libbpf nor reconcile's loader makes a map of it). */
static const struct event event_btf_anchor __attribute__((used, section(".btf_anchor")));
_Static_assert(sizeof(struct event) == 80, "event is 80 bytes");

#define NSEC_PER_SEC 1000000000ULL

/* The calling CPU's event budget of ep_id, refilled for the time since its last refill (at most
 * one second's worth, rate tokens); NULL when the map is full. */
static __always_inline struct event_budget *event_budget_of(__u32 ep_id, __u32 rate, __u64 now)
{
	struct event_budget *b = bpf_map_lookup_elem(&event_budget, &ep_id);

	if (!b) {
		/* A new entry is zero on the other CPUs: last_ns 0 refills them on their first event. */
		struct event_budget init = { .last_ns = now, .tokens = rate };
		bpf_map_update_elem(&event_budget, &ep_id, &init, BPF_NOEXIST);
		return bpf_map_lookup_elem(&event_budget, &ep_id);
	}
	__u64 elapsed = now - b->last_ns;
	if (elapsed >= NSEC_PER_SEC) {
		b->tokens = rate;
		b->last_ns = now;
	} else {
		/* elapsed < 2^30 and rate < 2^32: no overflow. The fraction of a token left over is
		 * kept by not moving last_ns until a whole token is due. */
		__u64 add = elapsed * rate / NSEC_PER_SEC;
		if (add) {
			b->tokens = b->tokens + add > rate ? rate : b->tokens + add;
			b->last_ns = now;
		}
	}
	return b;
}

/* Writes one event to the ring buffer if ep_id's budget has a token (else counts it suppressed)
 * and the ring has room (else counts it lost). match NULL: no entry decided (prefixlen 0). */
static __always_inline void report(struct __sk_buff *skb, const struct flow *f, __u32 ep_id, __u32 rate,
				   __u8 type, __u8 dir, __u8 reason, __u8 verdict, __u32 peer,
				   const struct policy_key *match)
{
	__u64 now = bpf_ktime_get_ns();
	struct event_budget *b = event_budget_of(ep_id, rate, now);

	if (!b)
		return;
	if (!b->tokens) {
		b->suppressed += 1; /* per-CPU value: no atomics needed */
		return;
	}
	b->tokens -= 1;
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		b->lost += 1;
		return;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->time_ns = now;
	e->ep_id = ep_id;
	e->peer_identity = peer;
	e->len = skb->len;
	e->type = type;
	e->direction = dir;
	e->reason = reason;
	e->verdict = verdict;
	if (match)
		e->match = *match;
	/* A drop for bad L3 headers may come before the parser set the family: the EtherType says. */
	e->family = f->tuple.family ? f->tuple.family
				    : (skb->protocol == bpf_htons(ETH_P_IPV6) ? FAMILY_IPV6 : FAMILY_IPV4);
	e->protocol = f->tuple.protocol;
	if (f->tuple.protocol != IPPROTO_ICMP && f->tuple.protocol != IPPROTO_ICMPV6)
		e->sport = f->tuple.sport;
	e->dport = f->policy_dport; /* the L4 port, or the ICMP type */
	__builtin_memcpy(e->saddr, f->tuple.saddr, 16);
	__builtin_memcpy(e->daddr, f->tuple.daddr, 16);
	bpf_ringbuf_submit(e, 0);
}

/* Counts and reports a dropped packet; ep NULL: the endpoint is not known (ep_id 0). peer and
 * match as in the event (0 and NULL when policy did not decide). */
static __always_inline int drop(struct __sk_buff *skb, const struct flow *f, const struct endpoint_info *ep,
				__u8 reason, __u8 dir, __u32 peer, const struct policy_key *match)
{
	__u32 ep_id = ep ? ep->ep_id : 0;
	struct drop_key key = { .ep_id = ep_id, .reason = reason, .direction = dir };

	count_packet(&drops, &key, skb);
	report(skb, f, ep_id, ep ? ep->event_rate : DEFAULT_EVENT_RATE, EVENT_DROP, dir, reason, VERDICT_DENY, peer, match);
	return TC_ACT_SHOT;
}

/* Counts a packet on an existing flow entry and marks flag on it. */
static __always_inline void ct_account(struct ct_value *v, struct __sk_buff *skb, __u32 flag)
{
	v->last_seen = bpf_jiffies64();
	__sync_fetch_and_add(&v->packets, 1);
	__sync_fetch_and_add(&v->bytes, skb->len);
	/* Plain store: a lost race only delays the bit to the flow's next forward packet. */
	if (!(v->flags & flag))
		v->flags |= flag;
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

/* What a policy point decided for a packet. */
struct policy_result {
	struct policy_stats_key entry; /* the deciding entry: ep_id and its key masked to its prefix;
					* entry.key.prefixlen 0 = none decided (default deny) */
	__u8 reason;  /* 0: an entry allowed it; else the DROP_* reason policy drops it for */
	__u8 audited; /* the drop is audited: the packet passes */
	__u8 allowed; /* an enforced point's policy allowed it (a new flow may get a VERDICT allow) */
	__u8 pad;
};

/* Names the entry that decided: pkt is the packet's policy key with the matched identity; the
 * entry's key is it masked to the entry's prefix length (the value's hint), as policy_stats and
 * the events name entries. */
static __always_inline void deciding_entry(struct policy_stats_key *out, __u32 ep_id,
					   const struct policy_key *pkt, __u8 hint)
{
	if (hint < POLICY_PREFIX_L3 || hint > POLICY_PREFIX_FULL)
		hint = POLICY_PREFIX_FULL; /* entry written without a hint: name the exact key */
	out->ep_id = ep_id;
	out->key.prefixlen = hint;
	out->key.identity = pkt->identity;
	out->key.direction = pkt->direction;
	out->key.protocol = 0;
	out->key.dport = 0;
	if (hint >= POLICY_PREFIX_PROTO) {
		__u32 bits = hint - POLICY_PREFIX_PROTO; /* 0..16 significant port bits */
		__u32 mask = bits ? (0xffff0000u >> bits) & 0xffff : 0;
		out->key.protocol = pkt->protocol;
		out->key.dport = bpf_htons(bpf_ntohs(pkt->dport) & mask);
	}
}

/* Fills res for entry v matched with identity (key is the packet's key); returns reason. */
static __always_inline int decided(struct policy_result *res, __u32 ep_id, struct policy_key *key,
				   __u32 identity, const struct policy_value *v, __u8 reason)
{
	key->identity = identity;
	deciding_entry(&res->entry, ep_id, key, v->prefixlen_hint);
	res->reason = reason;
	res->audited = reason && (v->flags & POLICY_AUDIT);
	return reason;
}

#define IS_DENY(v) ((v) && ((v)->flags & POLICY_DENY))
#define IS_AUDITED(v) ((v)->flags & POLICY_AUDIT)

/* Policy verdict for a forward packet into res: 0 = allow (counted on its entry), else a DROP_*
 * reason (res->audited: an audited deny). A deny that is not audited wins over an audited one. */
static __always_inline int policy_verdict(struct __sk_buff *skb, __u32 ep_id, __u32 identity,
					  __u8 dir, const struct flow *f, struct policy_result *res)
{
	void *inner = bpf_map_lookup_elem(&policy, &ep_id);
	if (!inner)
		return res->reason = DROP_NO_POLICY; /* enforced, but no policy map: default deny */

	struct policy_key key = {
		.prefixlen = POLICY_PREFIX_FULL,
		.identity = identity,
		.direction = dir,
		.protocol = f->tuple.protocol,
		.dport = f->policy_dport,
	};
	struct policy_value *exact = bpf_map_lookup_elem(inner, &key);
	if (IS_DENY(exact) && !IS_AUDITED(exact))
		return decided(res, ep_id, &key, identity, exact, DROP_POLICY_DENIED);

	struct policy_value *any = NULL;
	if (identity != IDENTITY_ANY) {
		key.identity = IDENTITY_ANY;
		any = bpf_map_lookup_elem(inner, &key);
		if (IS_DENY(any) && !IS_AUDITED(any))
			return decided(res, ep_id, &key, IDENTITY_ANY, any, DROP_POLICY_DENIED);
	}
	if (IS_DENY(exact))
		return decided(res, ep_id, &key, identity, exact, DROP_POLICY_DENIED);
	if (IS_DENY(any))
		return decided(res, ep_id, &key, IDENTITY_ANY, any, DROP_POLICY_DENIED);

	if (exact || any) {
		if (exact)
			decided(res, ep_id, &key, identity, exact, 0);
		else
			decided(res, ep_id, &key, IDENTITY_ANY, any, 0);
		count_packet(&policy_stats, &res->entry, skb);
		return 0;
	}
	return res->reason = DROP_NO_POLICY;
}

/* The policy of endpoint ep (or the host endpoint) in direction dir for a packet from/to peer:
 * 0 = pass (allowed, or an audited drop: AUDIT reported), else TC_ACT_SHOT (dropped, reported). */
static __always_inline int policy_point(struct __sk_buff *skb, const struct flow *f,
					const struct endpoint_info *ep, __u32 peer, __u8 dir,
					struct policy_result *res)
{
	int reason = policy_verdict(skb, ep->ep_id, peer, dir, f, res);

	if (!reason) {
		res->allowed = 1;
		return 0;
	}
	__u32 audit_default = ep->flags & (dir == DIR_INGRESS ? EP_AUDIT_INGRESS : EP_AUDIT_EGRESS);
	if (reason == DROP_POLICY_DENIED ? res->audited : audit_default) {
		report(skb, f, ep->ep_id, ep->event_rate, EVENT_AUDIT, dir, reason, VERDICT_DENY, peer, &res->entry.key);
		return 0;
	}
	if (ep->flags & EP_VERDICT_DENY)
		report(skb, f, ep->ep_id, ep->event_rate, EVENT_VERDICT, dir, reason, VERDICT_DENY, peer, &res->entry.key);
	return drop(skb, f, ep, reason, dir, peer, &res->entry.key);
}

/* The current policy revision (policy_rev.h); 0 when unseeded: no cached verdict is valid. */
static __always_inline __u32 policy_revision(void)
{
	__u32 zero = 0;
	struct policy_rev *r = bpf_map_lookup_elem(&policy_rev, &zero);
	return r ? r->rev : 0;
}

/* Stores an allow at point dir in c (a verdict policy gave under revision rev). Plain stores: two
 * CPUs storing at once can only mix the deciding entries of two allows, never cache a deny. */
static __always_inline void ct_store_verdict(struct ct_verdict *c, __u32 rev, const struct policy_result *res)
{
	c->identity = res->entry.key.identity;
	c->prefixlen = res->entry.key.prefixlen;
	c->rev = rev;
}

/* Records a forward packet admitted at the policy point `flag` (CT_F_INGRESS/CT_F_EGRESS, of
 * direction dir) in v, the flow's entry (NULL: none yet, it is created). When rev is not 0 and the
 * point's policy allowed the packet (res->allowed), the verdict is cached for the flow's next
 * forward packets. Returns 1 when the flow is new at this point (entry created, or its flag not
 * yet set). */
static __always_inline int ct_forward(struct ct_value *v, const struct ct_key *k, struct __sk_buff *skb,
				      __u32 flag, const __u8 dir, __u32 rev, const struct policy_result *res)
{
	int cache = rev && res->allowed;

	if (!v) {
		struct ct_value init = {
			.last_seen = bpf_jiffies64(),
			.packets = 1,
			.bytes = skb->len,
			.flags = flag,
		};
		if (cache)
			ct_store_verdict(&init.verdict[dir], rev, res);
		if (bpf_map_update_elem(&conntrack, k, &init, BPF_NOEXIST) == 0)
			return 1;
		/* Another CPU created it meanwhile: account on that one. */
		v = bpf_map_lookup_elem(&conntrack, k);
		if (!v)
			return 1;
	}
	int fresh = !(v->flags & flag);
	ct_account(v, skb, flag);
	if (cache)
		ct_store_verdict(&v->verdict[dir], rev, res);
	return fresh;
}

/* A verdict cached at point dir of flow v for revision rev: counted on the policy_stats entry
 * that decided it, as the full lookup would. Returns 1 when it applies (the packet is allowed
 * without the ipcache and policy lookups), 0 when the packet must be judged in full. */
static __always_inline int ct_cached_allow(struct __sk_buff *skb, const struct flow *f, const struct ct_value *v,
					   __u32 rev, __u32 ep_id, const __u8 dir, __u32 flag)
{
	if (!v || !rev || !(v->flags & flag))
		return 0;
	const struct ct_verdict *c = &v->verdict[dir];
	if (c->rev != rev)
		return 0;
	struct policy_key pkt = {
		.identity = c->identity,
		.direction = dir,
		.protocol = f->tuple.protocol,
		.dport = f->policy_dport,
	};
	struct policy_stats_key entry = {};
	deciding_entry(&entry, ep_id, &pkt, c->prefixlen);
	count_packet(&policy_stats, &entry, skb);
	return 1;
}

/* A VERDICT allow event for the first packet of a flow res's policy point allowed, if asked. */
static __always_inline void report_new_flow(struct __sk_buff *skb, const struct flow *f,
					    const struct endpoint_info *ep, __u32 peer, __u8 dir,
					    const struct policy_result *res)
{
	if (res->allowed && (ep->flags & EP_VERDICT_ALLOW))
		report(skb, f, ep->ep_id, ep->event_rate, EVENT_VERDICT, dir, 0, VERDICT_ALLOW, peer, &res->entry.key);
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
 * peer: 0 = pass (not enforced, allowed and counted, or audited), else the packet was dropped
 * (TC_ACT_SHOT). Events report the host endpoint. */
static __always_inline int host_check(struct __sk_buff *skb, const struct endpoint_info *h,
				      __u32 peer, __u8 hdir, const struct flow *f, struct policy_result *res)
{
	if (!h || !(h->flags & (hdir == DIR_INGRESS ? EP_ENFORCE_INGRESS : EP_ENFORCE_EGRESS)))
		return 0;
	return policy_point(skb, f, h, peer, hdir, res);
}

static __always_inline int handle(struct __sk_buff *skb, const __u8 dir, const int at)
{
	struct flow f = {};
	int rc = parse_flow(skb, &f);

	if (rc == PARSE_NOT_IP)
		return TC_ACT_OK;
	if (rc == PARSE_BAD_L3) /* a host device also carries traffic that is not ours to judge */
		return at == AT_NETDEV ? TC_ACT_OK : drop(skb, &f, NULL, DROP_MALFORMED, dir, 0, NULL);

	/* The endpoint whose policy applies: the destination on ingress, the source on egress. */
	struct endpoint_key ek = { .family = f.tuple.family };
	__builtin_memcpy(ek.addr, dir == DIR_INGRESS ? f.tuple.daddr : f.tuple.saddr, 16);
	struct endpoint_info *ep = bpf_map_lookup_elem(&endpoints, &ek);
	/* On a host device only the host's own traffic is judged; on an endpoint's device a host
	 * address in the endpoint's place is not an endpoint (as before host policies: pass). */
	if (ep && (ep->identity == IDENTITY_HOST) != (at == AT_NETDEV))
		return TC_ACT_OK;
	if (!ep)
		return rc == PARSE_BAD_L4 && at == AT_ENDPOINT ? drop(skb, &f, NULL, DROP_MALFORMED, dir, 0, NULL) : TC_ACT_OK;
	__u32 ep_identity = ep->identity;
	__u32 enforced = ep->flags & (dir == DIR_INGRESS ? EP_ENFORCE_INGRESS : EP_ENFORCE_EGRESS);
	if (rc == PARSE_BAD_L4)
		return drop(skb, &f, ep, DROP_MALFORMED, dir, 0, NULL);
	if (f.nd)
		return TC_ACT_OK;

	/* The flow's own entry. When this point admitted the flow before and the host's policy has no
	 * say, an unenforced direction needs nothing more, and an allow cached for the current
	 * revision spares the reply, ipcache and policy lookups. Otherwise the entry is kept for
	 * recording the packet below, without another lookup. */
	__u32 flag = dir == DIR_INGRESS ? CT_F_INGRESS : CT_F_EGRESS;
	struct ct_value *fwd = bpf_map_lookup_elem(&conntrack, &f.tuple);
	__u32 cur_rev = 0;
	if (enforced)
		cur_rev = policy_revision(); /* read before the lookups it will vouch for */
	if (fwd && (fwd->flags & flag) && !(ep->flags & EP_HOST_POLICY) &&
	    (!enforced || ct_cached_allow(skb, &f, fwd, cur_rev, ep->ep_id, dir, flag))) {
		ct_account(fwd, skb, flag);
		return TC_ACT_OK;
	}

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
	struct policy_result host_res = {};
	__u8 host_dir = dir == DIR_INGRESS ? DIR_EGRESS : DIR_INGRESS;
	if (at == AT_ENDPOINT && (ep->flags & EP_HOST_POLICY))
		host = host_entry(dir == DIR_INGRESS ? f.tuple.saddr : f.tuple.daddr, f.tuple.family);
	if (dir == DIR_INGRESS && host_check(skb, host, ep_identity, host_dir, &f, &host_res))
		return TC_ACT_SHOT;

	/* With a host policy the fast path above was not taken: here too a verdict this point cached
	 * for the current revision spares the ipcache and policy lookups. */
	struct policy_result res = {};
	__u32 identity = 0;
	if (enforced) {
		if (!(ep->flags & EP_HOST_POLICY) || !ct_cached_allow(skb, &f, fwd, cur_rev, ep->ep_id, dir, flag)) {
			identity = peer_identity(dir == DIR_INGRESS ? f.tuple.saddr : f.tuple.daddr, f.tuple.family);
			if (policy_point(skb, &f, ep, identity, dir, &res))
				return TC_ACT_SHOT;
		}
	}

	/* ... and a packet from the endpoint to the host enters the host (its ingress). */
	if (dir == DIR_EGRESS && host_check(skb, host, ep_identity, host_dir, &f, &host_res))
		return TC_ACT_SHOT;
	if (ct_forward(fwd, &f.tuple, skb, flag, dir, cur_rev, &res)) {
		report_new_flow(skb, &f, ep, identity, dir, &res);
		if (host)
			report_new_flow(skb, &f, host, ep_identity, host_dir, &host_res);
	}
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
