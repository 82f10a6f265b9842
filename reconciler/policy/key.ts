// The policy key: what identifies an entry within one endpoint's policy, in its two encodings.
//
// - As one exact number (the packed form): what the compiler merges, the entry sets hold and sort,
//   and the plan walks. At DESIGN scale there are a million entries, so this form is arithmetic on
//   numbers only: nothing here allocates per entry except unpacking into an object on request.
// - As the kernel's `struct policy_key` (bpf/include/policy.h): an LPM trie key. The packed form is
//   written to and read from those bytes directly; the checked codec of key objects (for tests,
//   counters and foreign entries) is datapath/layouts.ts encodePolicyKey/decodePolicyKey, built on
//   the layout defined here.
//
// This module lives in policy/ because the compiler uses it and policy/ imports nothing from
// datapath/; datapath/layouts.ts takes the layout from here.

import type { Decision, Direction } from "./types.js";

/** The fields of a policy key. */
export interface PolicyKey {
  /** Peer identity; 0 = any. */
  identity: number;
  direction: Direction;
  /** IANA protocol; 0 = any (then port and portPrefixLen are 0). */
  protocol: number;
  /** First port of the block (for ICMP and ICMPv6: the ICMP type, as in Cilium's policy key). */
  port: number;
  /** Significant leading port bits: 16 = exactly `port`, 0 = every port. */
  portPrefixLen: number;
}

// ---- the packed form --------------------------------------------------------------------------
//
// key = (direction·2^25 + identity)·2^25 + protocol·2^17 + portNode   (< 2^51, exact in a double)
//
// direction is 0 (ingress) or 1 (egress); identity has 25 bits (local-scope identities are below
// 2^25); the port prefix is a binary-trie node number, portNode = (1 << prefixLen) | port >>
// (16 - prefixLen), 17 bits. Numeric order is (direction, identity, protocol, port prefix length,
// port). An entry adds its decision below the key: key·4 + (deny ? 1 : 0) + (audited deny ? 2 : 0),
// still exact (< 2^53). An audited deny (POLICY_AUDIT) is a third value rather than a flag kept
// beside the set so that every comparison of two sets (sameEntries, the plan's merge walk, the
// saved plan's digest) sees an enforce ↔ audit change of an entry without knowing about it.

const IDENTITY_LIMIT = 2 ** 25;
const PROTOCOL_MUL = 2 ** 17;
/** Multiplier of the (direction, identity) part, above the (protocol, port node) part. */
const HIGH_MUL = 2 ** 25;

/** The port part of a key: protocol and port block (the low 25 bits). */
export function policyKeyPortPart(protocol: number, port: number, portPrefixLen: number): number {
  return protocol * PROTOCOL_MUL + ((1 << portPrefixLen) | (port >>> (16 - portPrefixLen)));
}

/** The (direction, identity) part of a key; a key is policyKeyBase(...) + policyKeyPortPart(...). */
export function policyKeyBase(direction: Direction, identity: number): number {
  return ((direction === "egress" ? IDENTITY_LIMIT : 0) + identity) * HIGH_MUL;
}

/** The key of an entry's fields, as one number (see above). */
export function policyEntryKey(k: PolicyKey): number {
  return policyKeyBase(k.direction, k.identity) + policyKeyPortPart(k.protocol, k.port, k.portPrefixLen);
}

/** The fields of a key made by policyEntryKey(). */
export function decodePolicyEntryKey(key: number): PolicyKey {
  const portNode = key % PROTOCOL_MUL;
  const protocol = Math.floor(key / PROTOCOL_MUL) % 256;
  const high = Math.floor(key / HIGH_MUL);
  const portPrefixLen = 31 - Math.clz32(portNode);
  return {
    direction: high >= IDENTITY_LIMIT ? "egress" : "ingress",
    identity: high % IDENTITY_LIMIT,
    protocol,
    port: (portNode - (1 << portPrefixLen)) * 2 ** (16 - portPrefixLen),
    portPrefixLen,
  };
}

/** The same key with identity 0 (every peer): the second lookup the datapath makes. */
export function anyIdentityKey(key: number): number {
  const high = Math.floor(key / HIGH_MUL);
  return (high >= IDENTITY_LIMIT ? IDENTITY_LIMIT : 0) * HIGH_MUL + (key % HIGH_MUL);
}

/** Whether an identity fits the key (local-scope identities do; a foreign kernel entry may not). */
export function keyableIdentity(identity: number): boolean {
  return Number.isInteger(identity) && identity >= 0 && identity < IDENTITY_LIMIT;
}

/** The (direction, identity) part of a key as a number of its own (equal iff sameKeyBase). */
export function keyBaseOf(key: number): number {
  return Math.floor(key / HIGH_MUL);
}

/** Whether two keys have the same direction and identity. */
export function sameKeyBase(a: number, b: number): boolean {
  return Math.floor(a / HIGH_MUL) === Math.floor(b / HIGH_MUL);
}

/** Whether key `outer`'s protocol and port block contain key `inner`'s (same base assumed): an L3
 *  key (every protocol) contains all, otherwise the protocol must match and inner's port block lie
 *  within outer's. */
export function portPartContains(outer: number, inner: number): boolean {
  const o = outer % HIGH_MUL;
  const i = inner % HIGH_MUL;
  const oProtocol = Math.floor(o / PROTOCOL_MUL);
  if (oProtocol === 0) return true;
  if (oProtocol !== Math.floor(i / PROTOCOL_MUL)) return false;
  const oNode = o % PROTOCOL_MUL;
  const iNode = i % PROTOCOL_MUL;
  // A trie node contains the nodes below it: shift inner up to outer's depth.
  const shift = Math.clz32(oNode) - Math.clz32(iNode);
  return shift >= 0 && iNode >>> shift === oNode;
}

/** An entry: key·4 + (deny ? 1 : 0) + (audit ? 2 : 0). Only a deny is ever audited (an allow
 *  lets the packet through either way), so `audit` is ignored for an allow. */
export function packEntry(key: number, decision: Decision, audit = false): number {
  return key * 4 + (decision === "deny" ? (audit ? 3 : 1) : 0);
}

/** The key of a packed entry. */
export function entryKey(packed: number): number {
  return Math.floor(packed / 4);
}

/** The decision of a packed entry. */
export function entryDecision(packed: number): Decision {
  return packed % 2 === 1 ? "deny" : "allow";
}

/** Whether a packed entry is an audited deny (the packet passes and is reported). */
export function entryAudit(packed: number): boolean {
  return packed % 4 === 3;
}

// ---- the kernel's bytes (bpf/include/policy.h) ---------------------------------------------------

/** Direction numbers in policy and drop keys. */
export const DIR_INGRESS = 0;
export const DIR_EGRESS = 1;

/** Policy key prefix lengths (bits after the prefixlen field). */
export const POLICY_PREFIX_L3 = 40;
export const POLICY_PREFIX_PROTO = 48;
export const POLICY_PREFIX_FULL = 64;

/** struct policy_key: u32 prefixlen, then the LPM data (identity host order, port network order). */
export const POLICY_KEY = { name: "policy_key", size: 12, offsets: { prefixlen: 0, identity: 4, direction: 8, protocol: 9, dport: 10 } } as const;

/** LPM prefix length of a policy key: 40, or 48 + portPrefixLen when protocol != 0. */
export function policyPrefixLen(protocol: number, portPrefixLen: number): number {
  return protocol === 0 ? POLICY_PREFIX_L3 : POLICY_PREFIX_PROTO + portPrefixLen;
}

export function directionNumber(d: Direction): number {
  return d === "ingress" ? DIR_INGRESS : DIR_EGRESS;
}

/** Writes the key bytes of fields that are already valid (unchecked); returns the prefixlen. */
export function writePolicyKey(k: PolicyKey, out: Buffer, offset: number): number {
  return writeKeyBytes(policyPrefixLen(k.protocol, k.portPrefixLen), k.identity, directionNumber(k.direction), k.protocol, k.port, out, offset);
}

function writeKeyBytes(prefixlen: number, identity: number, direction: number, protocol: number, port: number, out: Buffer, offset: number): number {
  out.writeUInt32LE(prefixlen, offset);
  out.writeUInt32LE(identity, offset + POLICY_KEY.offsets.identity);
  out[offset + POLICY_KEY.offsets.direction] = direction;
  out[offset + POLICY_KEY.offsets.protocol] = protocol;
  out.writeUInt16BE(port, offset + POLICY_KEY.offsets.dport);
  return prefixlen;
}

/** Writes the kernel key of a packed key at out[offset] (no object made); returns its prefixlen. */
export function writePackedPolicyKey(key: number, out: Buffer, offset: number): number {
  const portNode = key % PROTOCOL_MUL;
  const protocol = Math.floor(key / PROTOCOL_MUL) % 256;
  const high = Math.floor(key / HIGH_MUL);
  const portPrefixLen = 31 - Math.clz32(portNode);
  const port = (portNode - (1 << portPrefixLen)) * 2 ** (16 - portPrefixLen);
  const direction = high >= IDENTITY_LIMIT ? DIR_EGRESS : DIR_INGRESS;
  return writeKeyBytes(policyPrefixLen(protocol, portPrefixLen), high % IDENTITY_LIMIT, direction, protocol, port, out, offset);
}

/**
 * The packed key of the kernel key at buf[offset], or -1 when no packed key names it: a direction
 * other than 0/1, an identity beyond 2^25, or bytes that are not the canonical key of their own
 * fields (a prefix length no entry has, a port not aligned to its prefix, protocol or port bits
 * beyond an L3 prefix), since such a key is not the entry it would read as.
 */
export function readPackedPolicyKey(buf: Buffer, offset: number): number {
  const prefixlen = buf.readUInt32LE(offset);
  const identity = buf.readUInt32LE(offset + POLICY_KEY.offsets.identity);
  const direction = buf[offset + POLICY_KEY.offsets.direction]!;
  const protocol = buf[offset + POLICY_KEY.offsets.protocol]!;
  const port = buf.readUInt16BE(offset + POLICY_KEY.offsets.dport);
  if (direction > DIR_EGRESS || !keyableIdentity(identity)) return -1;
  let portPrefixLen = 0;
  if (protocol === 0) {
    if (prefixlen !== POLICY_PREFIX_L3 || port !== 0) return -1;
  } else {
    if (prefixlen < POLICY_PREFIX_PROTO || prefixlen > POLICY_PREFIX_FULL) return -1;
    portPrefixLen = prefixlen - POLICY_PREFIX_PROTO;
    if (portPrefixLen < 16 && (port & ((1 << (16 - portPrefixLen)) - 1)) !== 0) return -1;
  }
  return ((direction === DIR_EGRESS ? IDENTITY_LIMIT : 0) + identity) * HIGH_MUL + policyKeyPortPart(protocol, port, portPrefixLen);
}
