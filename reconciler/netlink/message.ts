// Pure netlink message encoding and decoding: nlmsghdr, rtattr (4-byte aligned, nestable), the
// fixed rtnetlink headers (ifinfomsg, ifaddrmsg, rtmsg, ndmsg, tcmsg) and address helpers. No I/O,
// so everything here is unit-tested without a kernel.
//
// Netlink uses host byte order; this package supports little-endian hosts only (x86_64, arm64),
// checked once at load. Fields documented as __be16/__be32 by the kernel are written big-endian.
import { endianness } from "node:os";
import { isIPv4, isIPv6 } from "node:net";
import {
  NLA_HDRLEN, NLA_TYPE_MASK, NLMSG_HDRLEN, NLMSGERR_ATTR_MSG, NLMSGERR_ATTR_OFFS, NLM_F_ACK_TLVS,
  NLM_F_CAPPED, AF_INET, AF_INET6,
} from "./constants.js";

/** This host is big-endian; netlink messages are built and parsed in little-endian order here. */
export class UnsupportedHostError extends Error {
  override readonly name = "UnsupportedHostError";
}

if (endianness() !== "LE") throw new UnsupportedHostError("reconciler/netlink supports little-endian hosts only");

export function align4(n: number): number {
  return (n + 3) & ~3;
}

// ---------------------------------------------------------------- attributes (encode)

/** One encoded attribute: rtattr header, payload, zero padding to 4 bytes. */
export function attr(type: number, payload: Buffer): Buffer {
  const len = NLA_HDRLEN + payload.length;
  const out = Buffer.alloc(align4(len));
  out.writeUInt16LE(len, 0);
  out.writeUInt16LE(type, 2);
  payload.copy(out, NLA_HDRLEN);
  return out;
}

export function attrU8(type: number, v: number): Buffer {
  return attr(type, Buffer.from([v & 0xff]));
}

/** A __be16 attribute (e.g. IFLA_VXLAN_PORT). */
export function attrU16BE(type: number, v: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(v, 0);
  return attr(type, b);
}

export function attrU32(type: number, v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0, 0);
  return attr(type, b);
}

export function attrS32(type: number, v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32LE(v, 0);
  return attr(type, b);
}

/** A NUL-terminated string attribute (IFLA_IFNAME, TCA_KIND, ...). */
export function attrString(type: number, s: string): Buffer {
  return attr(type, Buffer.concat([Buffer.from(s, "utf8"), Buffer.alloc(1)]));
}

/** A nested attribute holding already-encoded attributes (and optionally a fixed header first). */
export function attrNested(type: number, children: Buffer[]): Buffer {
  return attr(type, Buffer.concat(children));
}

// ---------------------------------------------------------------- attributes (decode)

/** Decoded attributes: type (flags masked off) → payload. The first occurrence of a type wins. */
export type Attrs = Map<number, Buffer>;

/** Every attribute in buf[start, end), in order, including repeated types. */
export function parseAttrList(buf: Buffer, start = 0, end = buf.length): Array<{ type: number; data: Buffer }> {
  const out: Array<{ type: number; data: Buffer }> = [];
  let off = start;
  while (off + NLA_HDRLEN <= end) {
    const len = buf.readUInt16LE(off);
    if (len < NLA_HDRLEN || off + len > end) {
      throw new MessageFormatError(`attribute at offset ${off}: length ${len} outside [${NLA_HDRLEN}, ${end - off}]`);
    }
    out.push({ type: buf.readUInt16LE(off + 2) & NLA_TYPE_MASK, data: buf.subarray(off + NLA_HDRLEN, off + len) });
    off += align4(len);
  }
  return out;
}

export function parseAttrs(buf: Buffer, start = 0, end = buf.length): Attrs {
  const m: Attrs = new Map();
  for (const a of parseAttrList(buf, start, end)) if (!m.has(a.type)) m.set(a.type, a.data);
  return m;
}

export const read = {
  u8: (b: Buffer | undefined): number | undefined => (b && b.length >= 1 ? b.readUInt8(0) : undefined),
  u16: (b: Buffer | undefined): number | undefined => (b && b.length >= 2 ? b.readUInt16LE(0) : undefined),
  u16be: (b: Buffer | undefined): number | undefined => (b && b.length >= 2 ? b.readUInt16BE(0) : undefined),
  u32: (b: Buffer | undefined): number | undefined => (b && b.length >= 4 ? b.readUInt32LE(0) : undefined),
  s32: (b: Buffer | undefined): number | undefined => (b && b.length >= 4 ? b.readInt32LE(0) : undefined),
  /** A string attribute up to its first NUL. */
  str: (b: Buffer | undefined): string | undefined => {
    if (!b) return undefined;
    const nul = b.indexOf(0);
    return b.subarray(0, nul < 0 ? b.length : nul).toString("utf8");
  },
};

/** A message or attribute that does not parse (truncated, bad length). */
export class MessageFormatError extends Error {
  override readonly name = "MessageFormatError";
}

// ---------------------------------------------------------------- messages

/** One decoded netlink message. `payload` is everything after the 16-byte nlmsghdr. */
export interface NlMsg {
  /** nlmsg_type: RTM_* or NLMSG_ERROR/DONE. */
  type: number;
  /** nlmsg_flags. */
  flags: number;
  /** nlmsg_seq: the request's sequence number (0 for notifications). */
  seq: number;
  /** nlmsg_pid: the port id of the sender's target socket (0 from the kernel for events). */
  pid: number;
  payload: Buffer;
}

/** Encode one message: nlmsghdr, fixed header, attributes. */
export function encodeMessage(type: number, flags: number, seq: number, pid: number, header: Buffer, attrs: Buffer[] = []): Buffer {
  const body = Buffer.concat([header, ...attrs]);
  const out = Buffer.alloc(NLMSG_HDRLEN + align4(body.length));
  out.writeUInt32LE(NLMSG_HDRLEN + body.length, 0);
  out.writeUInt16LE(type, 4);
  out.writeUInt16LE(flags, 6);
  out.writeUInt32LE(seq >>> 0, 8);
  out.writeUInt32LE(pid >>> 0, 12);
  body.copy(out, NLMSG_HDRLEN);
  return out;
}

/** Split a datagram into messages. */
export function parseMessages(buf: Buffer, length = buf.length): NlMsg[] {
  const out: NlMsg[] = [];
  let off = 0;
  while (off + NLMSG_HDRLEN <= length) {
    const len = buf.readUInt32LE(off);
    if (len < NLMSG_HDRLEN || off + len > length) {
      throw new MessageFormatError(`message at offset ${off}: length ${len} outside [${NLMSG_HDRLEN}, ${length - off}]`);
    }
    out.push({
      type: buf.readUInt16LE(off + 4),
      flags: buf.readUInt16LE(off + 6),
      seq: buf.readUInt32LE(off + 8),
      pid: buf.readUInt32LE(off + 12),
      // Copy: the receive buffer is reused by the next recv.
      payload: Buffer.from(buf.subarray(off + NLMSG_HDRLEN, off + len)),
    });
    off += align4(len);
  }
  return out;
}

/** The content of an NLMSG_ERROR (or of an NLMSG_DONE carrying an error). */
export interface NlError {
  /** 0 for an ACK, else the positive errno. */
  errno: number;
  /** The kernel's extended-ack text (NLMSGERR_ATTR_MSG) if any. */
  message?: string;
  /** Byte offset of the offending attribute in our request (NLMSGERR_ATTR_OFFS) if any. */
  offset?: number;
  /** Sequence number of the request this answers (from the echoed header). */
  seq: number;
}

/**
 * Decode struct nlmsgerr: int error; struct nlmsghdr msg; [original payload unless capped];
 * [extended-ack TLVs if NLM_F_ACK_TLVS].
 */
export function parseError(msg: NlMsg): NlError {
  const p = msg.payload;
  if (p.length < 4 + NLMSG_HDRLEN) throw new MessageFormatError(`NLMSG_ERROR payload too short: ${p.length} bytes`);
  const errno = -p.readInt32LE(0) || 0; // "|| 0": no -0 for an ACK
  const origLen = p.readUInt32LE(4);
  const seq = p.readUInt32LE(4 + 8);
  const out: NlError = { errno, seq };
  if (msg.flags & NLM_F_ACK_TLVS) {
    const tlvStart = 4 + (msg.flags & NLM_F_CAPPED ? NLMSG_HDRLEN : align4(origLen));
    if (tlvStart <= p.length) addExtAck(out, parseAttrs(p, tlvStart));
  }
  return out;
}

/** Decode an NLMSG_DONE payload: int error, then extended-ack TLVs if flagged. */
export function parseDone(msg: NlMsg): { errno: number; message?: string } {
  const errno = msg.payload.length >= 4 ? -msg.payload.readInt32LE(0) || 0 : 0;
  const out: NlError = { errno, seq: msg.seq };
  if (msg.flags & NLM_F_ACK_TLVS && msg.payload.length > 4) addExtAck(out, parseAttrs(msg.payload, 4));
  return out.message === undefined ? { errno } : { errno, message: out.message };
}

function addExtAck(out: NlError, tlv: Attrs): void {
  const m = read.str(tlv.get(NLMSGERR_ATTR_MSG));
  if (m) out.message = m;
  const o = read.u32(tlv.get(NLMSGERR_ATTR_OFFS));
  if (o !== undefined) out.offset = o;
}

// ---------------------------------------------------------------- fixed headers

type Scalar = "u8" | "u16" | "i32" | "u32";
const WRITE: Record<Scalar, (b: Buffer, v: number, at: number) => void> = {
  u8: (b, v, at) => b.writeUInt8(v, at),
  u16: (b, v, at) => b.writeUInt16LE(v, at),
  i32: (b, v, at) => b.writeInt32LE(v, at),
  u32: (b, v, at) => b.writeUInt32LE(v >>> 0, at),
};
const READ: Record<Scalar, (b: Buffer, at: number) => number> = {
  u8: (b, at) => b.readUInt8(at),
  u16: (b, at) => b.readUInt16LE(at),
  i32: (b, at) => b.readInt32LE(at),
  u32: (b, at) => b.readUInt32LE(at),
};

/** The codec of a fixed-layout kernel header: each field's byte offset and C type; the bytes not
 *  named (the kernel's padding) and the fields a request leaves out are zero. */
function fixedHeader<T extends object>(what: string, size: number, layout: { [K in keyof T]: [offset: number, type: Scalar] }) {
  const fields = Object.entries(layout) as [keyof T & string, [number, Scalar]][];
  return {
    encode(m: T): Buffer {
      const b = Buffer.alloc(size);
      for (const [name, [at, type]] of fields) WRITE[type](b, (m[name] as number | undefined) ?? 0, at);
      return b;
    },
    decode(p: Buffer): T {
      if (p.length < size) throw new MessageFormatError(`${what}: expected at least ${size} bytes, got ${p.length}`);
      const m: Record<string, number> = {};
      for (const [name, [at, type]] of fields) m[name] = READ[type](p, at);
      return m as T;
    },
  };
}

/** struct ifinfomsg (16 bytes). */
export interface IfInfoMsg {
  family: number;
  /** ARPHRD_* device type. */
  type: number;
  index: number;
  /** IFF_* flags. */
  flags: number;
  /** Mask of flags to change (requests only). */
  change: number;
}

const IFINFOMSG = fixedHeader<IfInfoMsg>("ifinfomsg", 16, { family: [0, "u8"], type: [2, "u16"], index: [4, "i32"], flags: [8, "u32"], change: [12, "u32"] });
export const encodeIfInfoMsg = (m: Partial<IfInfoMsg>): Buffer => IFINFOMSG.encode(m as IfInfoMsg);
export const decodeIfInfoMsg = IFINFOMSG.decode;

/** struct ifaddrmsg (8 bytes). */
export interface IfAddrMsg {
  family: number;
  prefixLen: number;
  /** IFA_F_* (low 8 bits; IFA_FLAGS has all 32). */
  flags: number;
  scope: number;
  index: number;
}

const IFADDRMSG = fixedHeader<IfAddrMsg>("ifaddrmsg", 8, { family: [0, "u8"], prefixLen: [1, "u8"], flags: [2, "u8"], scope: [3, "u8"], index: [4, "u32"] });
/** ifa_flags holds the low 8 bits of the flags (IFA_FLAGS carries all 32). */
export const encodeIfAddrMsg = (m: IfAddrMsg): Buffer => IFADDRMSG.encode({ ...m, flags: m.flags & 0xff });
export const decodeIfAddrMsg = IFADDRMSG.decode;

/** struct rtmsg (12 bytes). */
export interface RtMsg {
  family: number;
  dstLen: number;
  srcLen: number;
  tos: number;
  /** Table id if < 256 (else see RTA_TABLE). */
  table: number;
  /** RTPROT_*. */
  protocol: number;
  /** RT_SCOPE_*. */
  scope: number;
  /** RTN_*. */
  type: number;
  /** RTM_F_* / RTNH_F_* (e.g. RTNH_F_ONLINK). */
  flags: number;
}

const RTMSG = fixedHeader<RtMsg>("rtmsg", 12, {
  family: [0, "u8"], dstLen: [1, "u8"], srcLen: [2, "u8"], tos: [3, "u8"], table: [4, "u8"],
  protocol: [5, "u8"], scope: [6, "u8"], type: [7, "u8"], flags: [8, "u32"],
});
export const encodeRtMsg = RTMSG.encode;
export const decodeRtMsg = RTMSG.decode;

/** struct ndmsg (12 bytes). */
export interface NdMsg {
  family: number;
  index: number;
  /** NUD_* state. */
  state: number;
  /** NTF_* flags. */
  flags: number;
  /** RTN_* type. */
  type: number;
}

const NDMSG = fixedHeader<NdMsg>("ndmsg", 12, { family: [0, "u8"], index: [4, "i32"], state: [8, "u16"], flags: [10, "u8"], type: [11, "u8"] });
export const encodeNdMsg = NDMSG.encode;
export const decodeNdMsg = NDMSG.decode;

/** struct tcmsg (20 bytes). */
export interface TcMsg {
  family: number;
  index: number;
  handle: number;
  parent: number;
  /** For filters: (prio << 16) | htons(protocol). */
  info: number;
}

const TCMSG = fixedHeader<TcMsg>("tcmsg", 20, { family: [0, "u8"], index: [4, "i32"], handle: [8, "u32"], parent: [12, "u32"], info: [16, "u32"] });
export const encodeTcMsg = TCMSG.encode;
export const decodeTcMsg = TCMSG.decode;

// ---------------------------------------------------------------- addresses

/** An IP prefix: address text in canonical form, its family and prefix length. */
export interface Prefix {
  /** Canonical text ("10.0.0.0", "fd00::1"). */
  address: string;
  family: typeof AF_INET | typeof AF_INET6;
  prefixLen: number;
}

export class AddressParseError extends Error {
  override readonly name = "AddressParseError";
}

export function ipFamily(ip: string): typeof AF_INET | typeof AF_INET6 {
  if (isIPv4(ip)) return AF_INET;
  if (isIPv6(ip)) return AF_INET6;
  throw new AddressParseError(`not an IP address: ${JSON.stringify(ip)}`);
}

/** Address text → 4 or 16 bytes in network order. */
export function ipToBytes(ip: string): Buffer {
  if (isIPv4(ip)) return Buffer.from(ip.split(".").map((x) => Number(x)));
  if (!isIPv6(ip)) throw new AddressParseError(`not an IP address: ${JSON.stringify(ip)}`);
  let text = ip;
  const out = Buffer.alloc(16);
  // Embedded IPv4 tail ("::ffff:1.2.3.4") becomes two hex groups.
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const b = ipToBytes(v4[1]!);
    text = text.slice(0, v4.index) + `${b.readUInt16BE(0).toString(16)}:${b.readUInt16BE(2).toString(16)}`;
  }
  const [head, tail] = text.includes("::") ? text.split("::") : [text, undefined];
  const h = head ? head.split(":") : [];
  const t = tail ? tail.split(":") : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill("0"), ...t];
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

/** 4 or 16 network-order bytes → canonical text (RFC 5952 for IPv6, as iproute2 prints). */
export function bytesToIp(b: Buffer): string {
  if (b.length === 4) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
  if (b.length !== 16) throw new AddressParseError(`address must be 4 or 16 bytes, got ${b.length}`);
  const g: number[] = [];
  for (let i = 0; i < 8; i++) g.push(b.readUInt16BE(i * 2));
  // IPv4-mapped addresses print with a dotted tail.
  if (g.slice(0, 5).every((x) => x === 0) && g[5] === 0xffff) return `::ffff:${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
  // Longest run of >= 2 zero groups (first one on ties) collapses to "::".
  let best = -1, bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) { best = i; bestLen = j - i; }
    i = j;
  }
  const hex = g.map((x) => x.toString(16));
  if (best < 0) return hex.join(":");
  return `${hex.slice(0, best).join(":")}::${hex.slice(best + bestLen).join(":")}`;
}

/** "10.1.0.0/16" or a bare address (full-length prefix) → Prefix. */
export function parsePrefix(cidr: string): Prefix {
  const slash = cidr.indexOf("/");
  const addr = slash < 0 ? cidr : cidr.slice(0, slash);
  const family = ipFamily(addr);
  const max = family === AF_INET ? 32 : 128;
  const lenText = slash < 0 ? String(max) : cidr.slice(slash + 1);
  const prefixLen = Number(lenText);
  if (!/^\d+$/.test(lenText) || prefixLen > max) {
    throw new AddressParseError(`prefix length of ${JSON.stringify(cidr)}: expected 0..${max}, got ${JSON.stringify(lenText)}`);
  }
  return { address: bytesToIp(ipToBytes(addr)), family, prefixLen };
}

export function formatPrefix(p: { address: string; prefixLen: number }): string {
  return `${p.address}/${p.prefixLen}`;
}

/** "aa:bb:cc:dd:ee:ff" → 6 bytes. */
export function macToBytes(mac: string): Buffer {
  const parts = mac.split(":");
  if (parts.length !== 6 || !parts.every((p) => /^[0-9a-fA-F]{1,2}$/.test(p))) {
    throw new AddressParseError(`MAC address: expected aa:bb:cc:dd:ee:ff, got ${JSON.stringify(mac)}`);
  }
  return Buffer.from(parts.map((p) => parseInt(p, 16)));
}

/** Hardware address bytes → lower-case colon text. */
export function bytesToMac(b: Buffer): string {
  return [...b].map((x) => x.toString(16).padStart(2, "0")).join(":");
}
