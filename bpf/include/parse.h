/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The packet parser: Ethernet + IPv4/IPv6 (with extension headers) + L4 ports or ICMP type of a
 * tc skb into a struct flow, including the packet quoted inside an ICMP error. Pure: no maps. */
#ifndef RECONCILE_PARSE_H
#define RECONCILE_PARSE_H

#include "common.h"
#include "conntrack.h"
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>

/* Protocol numbers the parser knows beyond <linux/in.h>. */
#ifndef IPPROTO_ICMPV6
#define IPPROTO_ICMPV6 58
#endif
#define NEXTHDR_HOP 0
#define NEXTHDR_ROUTING 43
#define NEXTHDR_FRAGMENT 44
#define NEXTHDR_AUTH 51
#define NEXTHDR_DEST 60

/* ICMP / ICMPv6 message types the datapath distinguishes. */
#define ICMP_ECHOREPLY 0
#define ICMP_DEST_UNREACH 3
#define ICMP_ECHO 8
#define ICMP_TIME_EXCEEDED 11
#define ICMPV6_DEST_UNREACH 1
#define ICMPV6_PKT_TOOBIG 2
#define ICMPV6_TIME_EXCEED 3
#define ICMPV6_ECHO_REQUEST 128
#define ICMPV6_ECHO_REPLY 129
#define ICMPV6_ND_FIRST 133 /* router solicitation */
#define ICMPV6_ND_LAST 137  /* redirect; 133..137 is neighbour discovery */

/* The first bytes of TCP, UDP and SCTP headers: the ports. */
struct l4_ports {
	__be16 sport; /* source port */
	__be16 dport; /* destination port */
};

/* The 8-byte header of every ICMP and ICMPv6 message; id/seq only mean something for echo. */
struct icmp_common {
	__u8 type;   /* message type */
	__u8 code;   /* message code */
	__be16 csum; /* checksum (not verified here) */
	__be16 id;   /* echo identifier (used as the conntrack "port") */
	__be16 seq;  /* echo sequence number */
};

/* Minimum L4 header lengths: shorter (first-fragment) headers are MALFORMED. */
#define TCP_MIN_LEN 20
#define UDP_MIN_LEN 8
#define SCTP_MIN_LEN 12
#define ICMP_MIN_LEN 8

/* How many IPv6 extension headers the parser walks before giving up (see parse_ipv6). */
#define IPV6_MAX_EXT_HEADERS 4

/* The parser works on the linear part of the skb. When that part is shorter than this and the
 * packet is longer, the program pulls up to this many bytes first (rare on veth: headers are
 * normally linear). Enough for Ethernet + IPv6 + 4 ext headers or an ICMP error's inner headers. */
#define PULL_LEN 256

/* What the parser extracts from one packet. */
struct flow {
	struct ct_key tuple;  /* the packet's own tuple (see ct_key for the ICMP echo convention) */
	struct ct_key inner;  /* ICMP errors only: the quoted packet's tuple, as its sender sent it */
	__be16 policy_dport;  /* port for the policy lookup: L4 dport; ICMP/ICMPv6: the type; 0 for
			       * other protocols and non-first fragments */
	__u8 icmp_error;      /* 1: ICMP(v6) error whose quoted headers were parsed into inner */
	__u8 nd;              /* 1: ICMPv6 neighbour discovery (types 133..137) */
	__u8 fragment;        /* 1: non-first fragment, no L4 header (ports are 0) */
	__u8 pad[3];
};

/* parse_flow results. */
#define PARSE_OK 0
#define PARSE_NOT_IP 1 /* not IPv4/IPv6 (ARP, LLDP, runt frame): passes untouched */
#define PARSE_BAD_L3 2 /* IP header truncated or inconsistent: addresses unknown */
#define PARSE_BAD_L4 3 /* addresses valid, L4 header truncated: tuple incomplete */

/* Ports of the packet quoted inside an ICMP error. Only 8 bytes of it are guaranteed, so only
 * the ports (or the echo header) are read, and no minimum header length is required. */
static __always_inline int parse_quoted_l4(void *l4, void *data_end, struct ct_key *k)
{
	if (k->protocol == IPPROTO_TCP || k->protocol == IPPROTO_UDP || k->protocol == IPPROTO_SCTP) {
		struct l4_ports *ports = l4;
		if ((void *)(ports + 1) > data_end)
			return -1;
		k->sport = ports->sport;
		k->dport = ports->dport;
	} else if ((k->protocol == IPPROTO_ICMP && k->family == FAMILY_IPV4) ||
		   (k->protocol == IPPROTO_ICMPV6 && k->family == FAMILY_IPV6)) {
		struct icmp_common *ic = l4;
		if ((void *)(ic + 1) > data_end)
			return -1;
		if (ic->type == ICMP_ECHO || ic->type == ICMPV6_ECHO_REQUEST)
			k->sport = ic->id;
		else if (ic->type == ICMP_ECHOREPLY || ic->type == ICMPV6_ECHO_REPLY)
			k->dport = ic->id;
	}
	return 0;
}

/* The IP header quoted by an ICMP error (same family as the outer packet). IPv6 extension
 * headers in the quoted packet are not walked: its next header is taken as the protocol. */
static __always_inline int parse_quoted(void *p, void *data_end, __u8 family, struct ct_key *k)
{
	k->family = family;
	if (family == FAMILY_IPV4) {
		struct iphdr *ip = p;
		if ((void *)(ip + 1) > data_end || ip->ihl < 5)
			return -1;
		__builtin_memcpy(k->saddr, &ip->saddr, 4);
		__builtin_memcpy(k->daddr, &ip->daddr, 4);
		k->protocol = ip->protocol;
		if (ip->frag_off & bpf_htons(0x1fff))
			return 0; /* quoted non-first fragment: ports 0 */
		return parse_quoted_l4(p + ip->ihl * 4, data_end, k);
	}
	struct ipv6hdr *ip6 = p;
	if ((void *)(ip6 + 1) > data_end)
		return -1;
	__builtin_memcpy(k->saddr, &ip6->saddr, 16);
	__builtin_memcpy(k->daddr, &ip6->daddr, 16);
	k->protocol = ip6->nexthdr;
	return parse_quoted_l4(ip6 + 1, data_end, k);
}

/* L4 of the packet itself. Full minimum headers are required (a first fragment whose TCP header
 * is cut short is MALFORMED, which also defeats tiny-fragment tricks). */
static __always_inline int parse_l4(void *l4, void *data_end, struct flow *f)
{
	struct l4_ports *ports = l4;
	__u8 proto = f->tuple.protocol;

	if (proto == IPPROTO_TCP) {
		if (l4 + TCP_MIN_LEN > data_end)
			return PARSE_BAD_L4;
	} else if (proto == IPPROTO_UDP) {
		if (l4 + UDP_MIN_LEN > data_end)
			return PARSE_BAD_L4;
	} else if (proto == IPPROTO_SCTP) {
		if (l4 + SCTP_MIN_LEN > data_end)
			return PARSE_BAD_L4;
	} else if ((proto == IPPROTO_ICMP && f->tuple.family == FAMILY_IPV4) ||
		   (proto == IPPROTO_ICMPV6 && f->tuple.family == FAMILY_IPV6)) {
		struct icmp_common *ic = l4;
		if ((void *)(ic + 1) > data_end)
			return PARSE_BAD_L4;
		__u8 type = ic->type;
		int v4 = proto == IPPROTO_ICMP;
		if (type == (v4 ? ICMP_ECHO : ICMPV6_ECHO_REQUEST))
			f->tuple.sport = ic->id;
		else if (type == (v4 ? ICMP_ECHOREPLY : ICMPV6_ECHO_REPLY))
			f->tuple.dport = ic->id;
		else if (v4 ? (type == ICMP_DEST_UNREACH || type == ICMP_TIME_EXCEEDED)
			    : (type == ICMPV6_DEST_UNREACH || type == ICMPV6_PKT_TOOBIG ||
			       type == ICMPV6_TIME_EXCEED))
			f->icmp_error = parse_quoted(ic + 1, data_end, f->tuple.family, &f->inner) == 0;
		else if (!v4 && type >= ICMPV6_ND_FIRST && type <= ICMPV6_ND_LAST)
			f->nd = 1;
		/* As in Cilium's policy key, the ICMP type takes the port's place (network order). */
		f->policy_dport = bpf_htons((__u16)type);
		return PARSE_OK;
	} else {
		return PARSE_OK; /* other protocols: ports 0 */
	}
	f->tuple.sport = ports->sport;
	f->tuple.dport = ports->dport;
	f->policy_dport = ports->dport;
	return PARSE_OK;
}

/* Parses Ethernet + IPv4/IPv6 + L4 of skb into f (which must be zeroed). Never reads beyond
 * data_end. IPv6: up to IPV6_MAX_EXT_HEADERS hop-by-hop/routing/destination/fragment/AH headers
 * are skipped; anything else (or a longer chain) is taken as the protocol, with port 0. */
static __always_inline int parse_flow(struct __sk_buff *skb, struct flow *f)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	__u32 linear = data_end - data;

	if (linear < PULL_LEN && linear < skb->len) {
		bpf_skb_pull_data(skb, skb->len < PULL_LEN ? skb->len : PULL_LEN);
		data = (void *)(long)skb->data;
		data_end = (void *)(long)skb->data_end;
	}

	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return PARSE_NOT_IP;

	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > data_end || ip->version != 4 || ip->ihl < 5)
			return PARSE_BAD_L3;
		__u32 hlen = ip->ihl * 4;
		if (bpf_ntohs(ip->tot_len) < hlen)
			return PARSE_BAD_L3;
		f->tuple.family = FAMILY_IPV4;
		f->tuple.protocol = ip->protocol;
		__builtin_memcpy(f->tuple.saddr, &ip->saddr, 4);
		__builtin_memcpy(f->tuple.daddr, &ip->daddr, 4);
		if (ip->frag_off & bpf_htons(0x1fff)) {
			f->fragment = 1;
			return PARSE_OK;
		}
		return parse_l4((void *)ip + hlen, data_end, f);
	}

	if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) > data_end || ip6->version != 6)
			return PARSE_BAD_L3;
		f->tuple.family = FAMILY_IPV6;
		__builtin_memcpy(f->tuple.saddr, &ip6->saddr, 16);
		__builtin_memcpy(f->tuple.daddr, &ip6->daddr, 16);

		__u8 nh = ip6->nexthdr;
		void *p = ip6 + 1;
#pragma unroll
		for (int i = 0; i < IPV6_MAX_EXT_HEADERS; i++) {
			if (nh != NEXTHDR_HOP && nh != NEXTHDR_ROUTING && nh != NEXTHDR_DEST &&
			    nh != NEXTHDR_FRAGMENT && nh != NEXTHDR_AUTH)
				break;
			__u8 *ext = p;
			if ((void *)(ext + 8) > data_end)
				return PARSE_BAD_L4;
			if (nh == NEXTHDR_FRAGMENT) {
				/* bytes 2..3: 13-bit offset << 3 | flags */
				if (*(__be16 *)(ext + 2) & bpf_htons(0xfff8)) {
					f->fragment = 1;
					f->tuple.protocol = ext[0];
					return PARSE_OK;
				}
				nh = ext[0];
				p = ext + 8;
			} else if (nh == NEXTHDR_AUTH) {
				nh = ext[0];
				p = ext + ((__u32)ext[1] + 2) * 4;
			} else {
				nh = ext[0];
				p = ext + ((__u32)ext[1] + 1) * 8;
			}
		}
		f->tuple.protocol = nh;
		return parse_l4(p, data_end, f);
	}

	return PARSE_NOT_IP;
}

#endif /* RECONCILE_PARSE_H */
