// Binary layouts of the BPF map keys and values, one codec per map, mirroring bpf/include/*.h.
// test/unit/layouts.test.ts proves every size and offset against the BTF of bpf/build/endpoint.o.
//
// All codecs write into a caller's Buffer at an offset and allocate nothing per entry, so a batch
// of N entries is encoded into one N * SIZE buffer. Multi-byte fields are host order (little
// endian, as on every machine reconcile targets) except ports and the tunnel endpoint (network
// order). Addresses take 16 bytes: IPv4 in the first 4, the rest zero.

import { DIR_EGRESS, DIR_INGRESS, directionNumber, POLICY_KEY, POLICY_PREFIX_FULL, POLICY_PREFIX_PROTO, writePolicyKey, type PolicyKey } from "../policy/key.js";
import { formatAddress, maskAddress, parseAddressInto, parseIPv4Into, parsePrefixLength } from "../manifest/ip.js";
import type { Decision, Direction } from "../policy/types.js";

// The policy key's layout and its packed form are policy/key.ts's; re-exported here with the
// other maps' layouts, which this file mirrors from bpf/include/.
export { DIR_EGRESS, DIR_INGRESS, POLICY_KEY, POLICY_PREFIX_FULL, POLICY_PREFIX_L3, POLICY_PREFIX_PROTO, type PolicyKey } from "../policy/key.js";

// ---- Constants shared with the C headers ------------------------------------------------------

/** Address family as stored in keys (not AF_INET/AF_INET6). */
export const FAMILY_IPV4 = 4;
export const FAMILY_IPV6 = 6;
export type Family = typeof FAMILY_IPV4 | typeof FAMILY_IPV6;

/** endpoint_info.flags */
export const EP_ENFORCE_INGRESS = 1;
export const EP_ENFORCE_EGRESS = 2;
export const EP_AUDIT_INGRESS = 4;
export const EP_AUDIT_EGRESS = 8;
export const EP_VERDICT_ALLOW = 16;
export const EP_VERDICT_DENY = 32;
/** A host endpoint enforces: the endpoint programs apply host policy between this endpoint and host addresses. */
export const EP_HOST_POLICY = 64;
/** endpoint_info.event_rate when nothing else is configured: events/s per endpoint and CPU. */
export const DEFAULT_EVENT_RATE = 1000;

/** policy_value.flags */
export const POLICY_DENY = 1;
export const POLICY_AUDIT = 2;

/** event.type */
export const EventType = { DROP: 1, VERDICT: 2, AUDIT: 3 } as const;
/** event.verdict */
export const Verdict = { ALLOW: 1, DENY: 2 } as const;

/** ct_value.flags */
export const CT_F_INGRESS = 1;
export const CT_F_EGRESS = 2;
export const CT_F_REPLY = 4;

/** Peers without an ipcache entry. */
export const IDENTITY_WORLD = 2;
/** The local host: "endpoints" entries with this identity are the host endpoint's (host policies). */
export const IDENTITY_HOST = 1;

/** drop_key.reason */
export const DropReason = {
  POLICY_DENIED: 1,
  NO_POLICY: 2,
  CT_INVALID: 3,
  MALFORMED: 4,
  UNSUPPORTED_L3: 5,
} as const;

// ---- Struct layouts (C member name → byte offset) ----------------------------------------------

/** One C struct: its size and the byte offset of each member, named as in the header. */
export interface StructLayout {
  readonly name: string;
  readonly size: number;
  readonly offsets: Readonly<Record<string, number>>;
}

export const IPCACHE_KEY = { name: "ipcache_key", size: 24, offsets: { prefixlen: 0, family: 4, pad: 5, addr: 8 } } as const;
export const IPCACHE_VALUE = { name: "ipcache_value", size: 12, offsets: { identity: 0, tunnel_endpoint: 4, flags: 8, pad: 9 } } as const;
export const ENDPOINT_KEY = { name: "endpoint_key", size: 20, offsets: { addr: 0, family: 16, pad: 17 } } as const;
export const ENDPOINT_INFO = { name: "endpoint_info", size: 24, offsets: { ifindex: 0, ep_id: 4, identity: 8, flags: 12, event_rate: 16, pad: 20 } } as const;
export const POLICY_VALUE = { name: "policy_value", size: 8, offsets: { flags: 0, prefixlen_hint: 1, pad: 2, pad2: 4 } } as const;
export const POLICY_STATS_KEY = { name: "policy_stats_key", size: 16, offsets: { ep_id: 0, key: 4 } } as const;
export const POLICY_STATS = { name: "policy_stats", size: 16, offsets: { packets: 0, bytes: 8 } } as const;
export const CT_KEY = { name: "ct_key", size: 40, offsets: { saddr: 0, daddr: 16, sport: 32, dport: 34, protocol: 36, family: 37, pad: 38 } } as const;
export const CT_VERDICT = { name: "ct_verdict", size: 12, offsets: { rev: 0, identity: 4, prefixlen: 8, pad: 9 } } as const;
export const CT_VALUE = { name: "ct_value", size: 56, offsets: { last_seen: 0, packets: 8, bytes: 16, flags: 24, pad: 28, verdict: 32 } } as const;
export const POLICY_REV = { name: "policy_rev", size: 4, offsets: { rev: 0 } } as const;
export const DROP_KEY = { name: "drop_key", size: 8, offsets: { ep_id: 0, reason: 4, direction: 5, pad: 6 } } as const;
export const DROP_STATS = { name: "drop_stats", size: 16, offsets: { packets: 0, bytes: 8 } } as const;
export const EVENT = {
  name: "event",
  size: 80,
  offsets: { time_ns: 0, ep_id: 8, peer_identity: 12, len: 16, type: 20, direction: 21, reason: 22, verdict: 23, match: 24, family: 36, protocol: 37, sport: 38, dport: 40, pad: 42, saddr: 44, daddr: 60, pad2: 76 },
} as const;
export const EVENT_BUDGET = { name: "event_budget", size: 32, offsets: { last_ns: 0, tokens: 8, suppressed: 16, lost: 24 } } as const;

/** Every layout, for the BTF test. */
export const STRUCT_LAYOUTS: readonly StructLayout[] = [
  IPCACHE_KEY, IPCACHE_VALUE, ENDPOINT_KEY, ENDPOINT_INFO, POLICY_KEY, POLICY_VALUE,
  POLICY_STATS_KEY, POLICY_STATS, CT_KEY, CT_VERDICT, CT_VALUE, DROP_KEY, DROP_STATS, EVENT, EVENT_BUDGET,
  POLICY_REV,
];

// ---- Errors ------------------------------------------------------------------------------------

/** A value that cannot be encoded (bad address text, out-of-range number, unaligned port block). */
export class LayoutError extends Error {
  constructor(
    readonly field: string,
    readonly expected: string,
    readonly got: unknown,
    options?: { cause?: unknown },
  ) {
    super(`encode ${field}: expected ${expected}, got ${JSON.stringify(got)}`, options);
    this.name = "LayoutError";
  }
}

function checkUint(field: string, v: number, max: number): void {
  if (!Number.isInteger(v) || v < 0 || v > max) throw new LayoutError(field, `an integer in 0..${max}`, v);
}

// ---- Addresses ---------------------------------------------------------------------------------

/** Writes the 16-byte form of an IPv4 or IPv6 address (text[start, end)) at out[offset];
 *  returns its family. Throws LayoutError on invalid text. */
function parseAddressRange(text: string, start: number, end: number, out: Buffer, offset: number, field: string): Family {
  const family = parseAddressInto(text, start, end, out, offset);
  if (family === undefined) {
    const v6 = end > start && text.lastIndexOf(":", end - 1) >= start;
    throw new LayoutError(field, v6 ? "an IPv6 address" : "an IPv4 address", text);
  }
  if (family === FAMILY_IPV4) out.fill(0, offset + 4, offset + 16);
  return family;
}

/** Writes the 16-byte form of `address` ("10.11.90.17", "f00d::1") at out[offset]; returns 4 or 6. */
export function encodeAddress(address: string, out: Buffer, offset: number): Family {
  return parseAddressRange(address, 0, address.length, out, offset, "address");
}

/** Text of the address stored at buf[offset..offset+16). */
export function decodeAddress(buf: Buffer, offset: number, family: number): string {
  if (family !== FAMILY_IPV4 && family !== FAMILY_IPV6) throw new LayoutError("family", "4 or 6", family);
  return formatAddress(buf, offset, family);
}

// ---- ipcache -----------------------------------------------------------------------------------

/** Writes the LPM key of `prefix` ("10.11.90.17/32", "f00d::/64"; no length = host) at out[offset].
 *  Host bits beyond the prefix are zeroed. Returns the address prefix length. */
export function encodeIpcacheKey(prefix: string, out: Buffer, offset: number): number {
  const slash = prefix.indexOf("/");
  const end = slash < 0 ? prefix.length : slash;
  const family = parseAddressRange(prefix, 0, end, out, offset + IPCACHE_KEY.offsets.addr, "ipcache prefix");
  const max = family === FAMILY_IPV4 ? 32 : 128;
  const bits = slash < 0 ? max : parsePrefixLength(prefix, slash + 1, prefix.length, max);
  if (bits < 0) throw new LayoutError("ipcache prefix", `a prefix length in 0..${max}`, prefix);
  maskAddress(out, offset + IPCACHE_KEY.offsets.addr, bits);
  out.writeUInt32LE(32 + bits, offset);
  out[offset + IPCACHE_KEY.offsets.family] = family;
  out.fill(0, offset + IPCACHE_KEY.offsets.pad, offset + IPCACHE_KEY.offsets.addr);
  return bits;
}

/** The prefix text ("10.11.90.17/32") of the ipcache key at buf[offset]. */
export function decodeIpcacheKey(buf: Buffer, offset: number): { prefix: string; family: Family } {
  const family = buf[offset + IPCACHE_KEY.offsets.family];
  if (family !== FAMILY_IPV4 && family !== FAMILY_IPV6) throw new LayoutError("ipcache_key.family", "4 or 6", family);
  const bits = buf.readUInt32LE(offset) - 32;
  return { prefix: `${decodeAddress(buf, offset + IPCACHE_KEY.offsets.addr, family)}/${bits}`, family };
}

export interface IpcacheValue {
  identity: number;
  /** Underlay IPv4 of the node hosting the prefix; undefined = local. */
  tunnelEndpoint?: string;
}

export function encodeIpcacheValue(v: IpcacheValue, out: Buffer, offset: number): void {
  checkUint("ipcache identity", v.identity, 0xffffffff);
  out.writeUInt32LE(v.identity, offset);
  if (v.tunnelEndpoint === undefined) {
    out.writeUInt32LE(0, offset + 4);
  } else if (!parseIPv4Into(v.tunnelEndpoint, 0, v.tunnelEndpoint.length, out, offset + 4)) {
    throw new LayoutError("ipcache tunnel endpoint", "an IPv4 address", v.tunnelEndpoint);
  }
  out.writeUInt32LE(0, offset + 8); // flags + pad
}

export function decodeIpcacheValue(buf: Buffer, offset: number): IpcacheValue {
  const identity = buf.readUInt32LE(offset);
  if (buf.readUInt32LE(offset + 4) === 0) return { identity };
  return { identity, tunnelEndpoint: decodeAddress(buf, offset + 4, FAMILY_IPV4) };
}

// ---- endpoints ---------------------------------------------------------------------------------

export function encodeEndpointKey(address: string, out: Buffer, offset: number): Family {
  const family = encodeAddress(address, out, offset);
  out[offset + ENDPOINT_KEY.offsets.family] = family;
  out.fill(0, offset + ENDPOINT_KEY.offsets.pad, offset + ENDPOINT_KEY.size);
  return family;
}

export function decodeEndpointKey(buf: Buffer, offset: number): string {
  return decodeAddress(buf, offset, buf[offset + ENDPOINT_KEY.offsets.family]);
}

export interface EndpointInfo {
  ifindex: number;
  /** Key of the endpoint's inner policy map and of its counters. */
  epId: number;
  /** The endpoint's own identity. */
  identity: number;
  enforceIngress: boolean;
  enforceEgress: boolean;
  /** Default deny in that direction is audited (a NO_POLICY drop passes as an AUDIT event). */
  auditIngress?: boolean;
  auditEgress?: boolean;
  /** Report a VERDICT event for every new flow policy allows / every packet policy denies. */
  verdictAllow?: boolean;
  verdictDeny?: boolean;
  /** A host endpoint enforces (EP_HOST_POLICY): look peers up as host addresses for host policy. */
  hostPolicy?: boolean;
  /** Events per second per CPU the endpoint may report; DEFAULT_EVENT_RATE when absent. */
  eventRate?: number;
}

/** The endpoint_info.flags bits of v. */
function endpointFlags(v: EndpointInfo): number {
  return (
    (v.enforceIngress ? EP_ENFORCE_INGRESS : 0) |
    (v.enforceEgress ? EP_ENFORCE_EGRESS : 0) |
    (v.auditIngress ? EP_AUDIT_INGRESS : 0) |
    (v.auditEgress ? EP_AUDIT_EGRESS : 0) |
    (v.verdictAllow ? EP_VERDICT_ALLOW : 0) |
    (v.verdictDeny ? EP_VERDICT_DENY : 0) |
    (v.hostPolicy ? EP_HOST_POLICY : 0)
  );
}

export function encodeEndpointInfo(v: EndpointInfo, out: Buffer, offset: number): void {
  checkUint("endpoint ifindex", v.ifindex, 0xffffffff);
  checkUint("endpoint id", v.epId, 0xffffffff);
  checkUint("endpoint identity", v.identity, 0xffffffff);
  const rate = v.eventRate ?? DEFAULT_EVENT_RATE;
  checkUint("endpoint event rate", rate, 0xffffffff);
  out.writeUInt32LE(v.ifindex, offset);
  out.writeUInt32LE(v.epId, offset + 4);
  out.writeUInt32LE(v.identity, offset + 8);
  out.writeUInt32LE(endpointFlags(v), offset + 12);
  out.writeUInt32LE(rate, offset + 16);
  out.writeUInt32LE(0, offset + 20);
}

export function decodeEndpointInfo(buf: Buffer, offset: number): Required<EndpointInfo> {
  const flags = buf.readUInt32LE(offset + 12);
  return {
    ifindex: buf.readUInt32LE(offset),
    epId: buf.readUInt32LE(offset + 4),
    identity: buf.readUInt32LE(offset + 8),
    enforceIngress: (flags & EP_ENFORCE_INGRESS) !== 0,
    enforceEgress: (flags & EP_ENFORCE_EGRESS) !== 0,
    auditIngress: (flags & EP_AUDIT_INGRESS) !== 0,
    auditEgress: (flags & EP_AUDIT_EGRESS) !== 0,
    verdictAllow: (flags & EP_VERDICT_ALLOW) !== 0,
    verdictDeny: (flags & EP_VERDICT_DENY) !== 0,
    hostPolicy: (flags & EP_HOST_POLICY) !== 0,
    eventRate: buf.readUInt32LE(offset + 16),
  };
}

// ---- policy ------------------------------------------------------------------------------------

function directionName(n: number): Direction {
  if (n === DIR_INGRESS) return "ingress";
  if (n === DIR_EGRESS) return "egress";
  throw new LayoutError("direction", "0 or 1", n);
}

/** Writes the 12-byte policy key (prefixlen + fields) at out[offset], checking every field (any
 *  32-bit identity); returns the prefixlen. Packed keys are written by policy/key.ts. */
export function encodePolicyKey(k: PolicyKey, out: Buffer, offset: number): number {
  checkUint("policy identity", k.identity, 0xffffffff);
  checkUint("policy protocol", k.protocol, 255);
  checkUint("policy port", k.port, 65535);
  checkUint("policy port prefix length", k.portPrefixLen, 16);
  if (k.direction !== "ingress" && k.direction !== "egress") throw new LayoutError("policy direction", '"ingress" or "egress"', k.direction);
  if (k.protocol === 0 && (k.port !== 0 || k.portPrefixLen !== 0)) {
    throw new LayoutError("policy key", "port 0 and portPrefixLen 0 with protocol 0", k);
  }
  const hostBits = 16 - k.portPrefixLen;
  if (hostBits > 0 && (k.port & ((1 << hostBits) - 1)) !== 0) {
    throw new LayoutError("policy port", `a port aligned to /${k.portPrefixLen}`, k.port);
  }
  return writePolicyKey(k, out, offset);
}

export function decodePolicyKey(buf: Buffer, offset: number): PolicyKey & { prefixlen: number } {
  const prefixlen = buf.readUInt32LE(offset);
  const protocol = buf[offset + POLICY_KEY.offsets.protocol];
  return {
    prefixlen,
    identity: buf.readUInt32LE(offset + POLICY_KEY.offsets.identity),
    direction: directionName(buf[offset + POLICY_KEY.offsets.direction]),
    protocol,
    port: buf.readUInt16BE(offset + POLICY_KEY.offsets.dport),
    portPrefixLen: protocol === 0 ? 0 : Math.max(0, Math.min(16, prefixlen - POLICY_PREFIX_PROTO)),
  };
}

/** Writes the 8-byte policy value; `prefixlen` is the entry key's own prefixlen (the stats hint);
 *  `audit` marks a deny that lets the packet through and reports it (ignored for an allow). */
export function encodePolicyValue(decision: Decision, prefixlen: number, out: Buffer, offset: number, audit = false): void {
  checkUint("policy value prefixlen", prefixlen, POLICY_PREFIX_FULL);
  out[offset] = decision === "deny" ? POLICY_DENY | (audit ? POLICY_AUDIT : 0) : 0;
  out[offset + 1] = prefixlen;
  out.fill(0, offset + 2, offset + POLICY_VALUE.size);
}

export function decodePolicyValue(buf: Buffer, offset: number): { decision: Decision; prefixlen: number; audit: boolean } {
  const flags = buf[offset];
  return { decision: (flags & POLICY_DENY) !== 0 ? "deny" : "allow", prefixlen: buf[offset + 1], audit: (flags & (POLICY_DENY | POLICY_AUDIT)) === (POLICY_DENY | POLICY_AUDIT) };
}

/** policy_stats key: ep_id + the entry's key (as the datapath writes it: masked to its prefix). */
export function encodePolicyStatsKey(epId: number, k: PolicyKey, out: Buffer, offset: number): void {
  checkUint("policy stats endpoint id", epId, 0xffffffff);
  out.writeUInt32LE(epId, offset);
  encodePolicyKey(k, out, offset + POLICY_STATS_KEY.offsets.key);
}

export function decodePolicyStatsKey(buf: Buffer, offset: number): { epId: number; key: PolicyKey & { prefixlen: number } } {
  return { epId: buf.readUInt32LE(offset), key: decodePolicyKey(buf, offset + POLICY_STATS_KEY.offsets.key) };
}

// ---- per-CPU counters (policy_stats, drops) ------------------------------------------------------

export interface Counters {
  packets: bigint;
  bytes: bigint;
}

/** Sums a per-CPU {packets, bytes} value (each CPU's slot is 16 bytes, already 8-aligned). */
export function decodePerCpuCounters(buf: Buffer, offset: number, nCpus: number): Counters {
  let packets = 0n;
  let bytes = 0n;
  for (let c = 0; c < nCpus; c++) {
    packets += buf.readBigUInt64LE(offset + c * 16);
    bytes += buf.readBigUInt64LE(offset + c * 16 + 8);
  }
  return { packets, bytes };
}

// ---- conntrack ---------------------------------------------------------------------------------

export interface CtKey {
  saddr: string;
  daddr: string;
  /** Host-order port numbers (stored big endian). ICMP echo: sport = echo id, dport = 0. */
  sport: number;
  dport: number;
  protocol: number;
}

export function encodeCtKey(k: CtKey, out: Buffer, offset: number): void {
  checkUint("ct sport", k.sport, 65535);
  checkUint("ct dport", k.dport, 65535);
  checkUint("ct protocol", k.protocol, 255);
  const family = encodeAddress(k.saddr, out, offset);
  if (encodeAddress(k.daddr, out, offset + 16) !== family) throw new LayoutError("ct daddr", `family ${family} like saddr`, k.daddr);
  out.writeUInt16BE(k.sport, offset + 32);
  out.writeUInt16BE(k.dport, offset + 34);
  out[offset + 36] = k.protocol;
  out[offset + 37] = family;
  out.writeUInt16LE(0, offset + 38);
}

export function decodeCtKey(buf: Buffer, offset: number): CtKey & { family: Family } {
  const family = buf[offset + 37];
  if (family !== FAMILY_IPV4 && family !== FAMILY_IPV6) throw new LayoutError("ct_key.family", "4 or 6", family);
  return {
    saddr: decodeAddress(buf, offset, family),
    daddr: decodeAddress(buf, offset + 16, family),
    sport: buf.readUInt16BE(offset + 32),
    dport: buf.readUInt16BE(offset + 34),
    protocol: buf[offset + 36],
    family,
  };
}

/** An allow a policy point cached in a flow's entry (struct ct_verdict): valid while `rev` is the
 *  policy_rev map's revision; rev 0 = none. */
export interface CtVerdict {
  rev: number;
  /** Identity of the deciding entry: the peer's, or 0 (an L4-only entry). */
  identity: number;
  /** The deciding entry's prefix length. */
  prefixlen: number;
}

export interface CtValue {
  /** CLOCK_MONOTONIC nanoseconds of the last packet. */
  lastSeenNs: bigint;
  packets: bigint;
  bytes: bigint;
  /** CT_F_* bits. */
  flags: number;
  /** The verdicts cached at the destination's ingress and the source's egress; none when absent. */
  verdict?: { ingress: CtVerdict; egress: CtVerdict };
}

const NO_VERDICT: CtVerdict = { rev: 0, identity: 0, prefixlen: 0 };

function encodeCtVerdict(v: CtVerdict, out: Buffer, offset: number): void {
  checkUint("ct verdict rev", v.rev, 0xffffffff);
  checkUint("ct verdict identity", v.identity, 0xffffffff);
  checkUint("ct verdict prefixlen", v.prefixlen, 255);
  out.writeUInt32LE(v.rev, offset);
  out.writeUInt32LE(v.identity, offset + 4);
  out.writeUInt32LE(v.prefixlen, offset + 8); // prefixlen + pad
}

function decodeCtVerdict(buf: Buffer, offset: number): CtVerdict {
  return { rev: buf.readUInt32LE(offset), identity: buf.readUInt32LE(offset + 4), prefixlen: buf[offset + 8]! };
}

export function encodeCtValue(v: CtValue, out: Buffer, offset: number): void {
  out.writeBigUInt64LE(v.lastSeenNs, offset);
  out.writeBigUInt64LE(v.packets, offset + 8);
  out.writeBigUInt64LE(v.bytes, offset + 16);
  out.writeUInt32LE(v.flags, offset + 24);
  out.writeUInt32LE(0, offset + 28);
  const at = offset + CT_VALUE.offsets.verdict;
  encodeCtVerdict(v.verdict?.ingress ?? NO_VERDICT, out, at + DIR_INGRESS * CT_VERDICT.size);
  encodeCtVerdict(v.verdict?.egress ?? NO_VERDICT, out, at + DIR_EGRESS * CT_VERDICT.size);
}

export function decodeCtValue(buf: Buffer, offset: number): Required<CtValue> {
  const at = offset + CT_VALUE.offsets.verdict;
  return {
    lastSeenNs: buf.readBigUInt64LE(offset),
    packets: buf.readBigUInt64LE(offset + 8),
    bytes: buf.readBigUInt64LE(offset + 16),
    flags: buf.readUInt32LE(offset + 24),
    verdict: { ingress: decodeCtVerdict(buf, at + DIR_INGRESS * CT_VERDICT.size), egress: decodeCtVerdict(buf, at + DIR_EGRESS * CT_VERDICT.size) },
  };
}

// ---- policy_rev ----------------------------------------------------------------------------------

/** The next policy revision after `rev`: rev + 1, skipping 0 (which no cached verdict may match). */
export function nextPolicyRevision(rev: number): number {
  const next = (rev + 1) >>> 0;
  return next === 0 ? 1 : next;
}

// ---- drops -------------------------------------------------------------------------------------

export interface DropKey {
  /** 0 = endpoint unknown. */
  epId: number;
  reason: number;
  direction: Direction;
}

export function encodeDropKey(k: DropKey, out: Buffer, offset: number): void {
  checkUint("drop endpoint id", k.epId, 0xffffffff);
  checkUint("drop reason", k.reason, 255);
  out.writeUInt32LE(k.epId, offset);
  out[offset + 4] = k.reason;
  out[offset + 5] = directionNumber(k.direction);
  out.writeUInt16LE(0, offset + 6);
}

export function decodeDropKey(buf: Buffer, offset: number): DropKey {
  return { epId: buf.readUInt32LE(offset), reason: buf[offset + 4], direction: directionName(buf[offset + 5]) };
}

// ---- events (ring buffer records) ----------------------------------------------------------------

export type EventKind = "drop" | "verdict" | "audit";

/** One ring buffer record, decoded. Numbers as the datapath wrote them; names come later. */
export interface DatapathEvent {
  /** bpf_ktime_get_ns(): CLOCK_MONOTONIC nanoseconds. */
  timeNs: bigint;
  kind: EventKind;
  epId: number;
  direction: Direction;
  /** DROP_* reason: why it was (drop, deny verdict) or would have been (audit) dropped; 0 for an allow. */
  reason: number;
  verdict: Decision;
  peerIdentity: number;
  /** The deciding policy entry (masked to its prefix), or undefined: no entry decided (default deny). */
  match: (PolicyKey & { prefixlen: number }) | undefined;
  family: Family;
  protocol: number;
  saddr: string;
  daddr: string;
  /** Host order. ICMP/ICMPv6: sport 0, dport the message type. */
  sport: number;
  dport: number;
  length: number;
}

const EVENT_KINDS: Record<number, EventKind> = { [EventType.DROP]: "drop", [EventType.VERDICT]: "verdict", [EventType.AUDIT]: "audit" };

/** Decodes the record at buf[offset..offset+EVENT.size). Throws LayoutError on a malformed record. */
export function decodeEvent(buf: Buffer, offset: number): DatapathEvent {
  if (buf.length - offset < EVENT.size) throw new LayoutError("event", `${EVENT.size} bytes`, buf.length - offset);
  const o = EVENT.offsets;
  const type = buf[offset + o.type];
  const kind = EVENT_KINDS[type];
  if (!kind) throw new LayoutError("event.type", "1, 2 or 3", type);
  const verdict = buf[offset + o.verdict];
  if (verdict !== Verdict.ALLOW && verdict !== Verdict.DENY) throw new LayoutError("event.verdict", "1 or 2", verdict);
  const family = buf[offset + o.family];
  const matchLen = buf.readUInt32LE(offset + o.match);
  return {
    timeNs: buf.readBigUInt64LE(offset + o.time_ns),
    kind,
    epId: buf.readUInt32LE(offset + o.ep_id),
    direction: directionName(buf[offset + o.direction]),
    reason: buf[offset + o.reason],
    verdict: verdict === Verdict.ALLOW ? "allow" : "deny",
    peerIdentity: buf.readUInt32LE(offset + o.peer_identity),
    match: matchLen === 0 ? undefined : decodePolicyKey(buf, offset + o.match),
    family: family as Family,
    protocol: buf[offset + o.protocol],
    saddr: decodeAddress(buf, offset + o.saddr, family),
    daddr: decodeAddress(buf, offset + o.daddr, family),
    sport: buf.readUInt16BE(offset + o.sport),
    dport: buf.readUInt16BE(offset + o.dport),
    length: buf.readUInt32LE(offset + o.len),
  };
}
