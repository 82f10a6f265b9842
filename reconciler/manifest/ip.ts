// IP addresses and prefixes: the one parser and formatter for manifests, policy and the datapath
// codecs (netlink, which stands alone, has its own).
//
// One grammar everywhere: dotted quads without leading zeros ("010" is octal to some parsers and
// decimal to others), IPv6 with "::" (standing for at least one group) and an optional IPv4 tail,
// prefix lengths as plain decimals. The core parses a range of a string into bytes at an offset
// and allocates nothing, so the datapath codecs write addresses straight into map keys; the rest
// builds on it. Prefixes hold their address as a bigint, so IPv4 and IPv6 share one code path
// (prefix counts are small, at most ~10^5).
//
// It sits in manifest/, the first layer that reads addresses, so that policy/ and datapath/ can
// use it without importing sideways.

export type Family = 4 | 6;

/** A prefix. `addr` has the host bits cleared. */
export interface Prefix {
  family: Family;
  addr: bigint;
  /** Prefix length. */
  len: number;
  /** "a.b.c.d/n" or "x::/n": canonical from parseCIDR; parsePrefix keeps its input's text. */
  text: string;
}

function familyBits(family: Family): number {
  return family === 4 ? 32 : 128;
}

// ---- the core: text range → bytes, no allocation ------------------------------------------------

const COLON = 58;
const DOT = 46;

function hexDigit(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

/** Parses dotted-quad text[start, end) into out[offset..offset+4). Returns false when invalid. */
export function parseIPv4Into(text: string, start: number, end: number, out: Uint8Array, offset: number): boolean {
  let octet = 0;
  let digits = 0;
  let index = 0;
  for (let i = start; i < end; i++) {
    const c = text.charCodeAt(i);
    if (c === DOT) {
      if (digits === 0 || index === 3) return false;
      out[offset + index++] = octet;
      octet = 0;
      digits = 0;
    } else if (c >= 48 && c <= 57) {
      if (digits > 0 && octet === 0) return false; // leading zero
      octet = octet * 10 + (c - 48);
      if (++digits > 3 || octet > 255) return false;
    } else {
      return false;
    }
  }
  if (digits === 0 || index !== 3) return false;
  out[offset + 3] = octet;
  return true;
}

/** Parses IPv6 text[start, end) (with "::" and an IPv4 tail) into out[offset..offset+16). */
export function parseIPv6Into(text: string, start: number, end: number, out: Uint8Array, offset: number): boolean {
  let group = 0; // next 16-bit group to write
  let gap = -1; // group index where "::" was
  let i = start;
  if (end - start >= 2 && text.charCodeAt(i) === COLON && text.charCodeAt(i + 1) === COLON) {
    gap = 0;
    i += 2;
  }
  while (i < end) {
    if (group >= 8) return false;
    // One group: hex digits, or a dotted IPv4 tail.
    let value = 0;
    let digits = 0;
    const groupStart = i;
    while (i < end) {
      const d = hexDigit(text.charCodeAt(i));
      if (d < 0) break;
      value = (value << 4) | d;
      if (++digits > 4) return false;
      i++;
    }
    if (i < end && text.charCodeAt(i) === DOT) {
      if (group > 6) return false;
      if (!parseIPv4Into(text, groupStart, end, out, offset + group * 2)) return false;
      group += 2;
      i = end;
      break;
    }
    if (digits === 0) return false;
    out[offset + group * 2] = value >> 8;
    out[offset + group * 2 + 1] = value & 0xff;
    group++;
    if (i === end) break;
    if (text.charCodeAt(i) !== COLON) return false;
    i++;
    if (i < end && text.charCodeAt(i) === COLON) {
      if (gap >= 0) return false;
      gap = group;
      i++;
    } else if (i === end) {
      return false; // trailing single colon
    }
  }
  if (gap < 0) return group === 8;
  if (group === 8) return false; // "::" must stand for at least one group
  // Move the groups after the gap to the end, zero the gap.
  const tail = group - gap;
  for (let k = tail - 1; k >= 0; k--) {
    out[offset + (8 - tail + k) * 2] = out[offset + (gap + k) * 2]!;
    out[offset + (8 - tail + k) * 2 + 1] = out[offset + (gap + k) * 2 + 1]!;
  }
  out.fill(0, offset + gap * 2, offset + (8 - tail) * 2);
  return true;
}

/** Parses an IPv4 or IPv6 address text[start, end) into out[offset] (4 or 16 bytes); its family,
 *  or undefined when invalid. IPv6 is told by a colon. */
export function parseAddressInto(text: string, start: number, end: number, out: Uint8Array, offset: number): Family | undefined {
  for (let i = start; i < end; i++) {
    if (text.charCodeAt(i) === COLON) return parseIPv6Into(text, start, end, out, offset) ? 6 : undefined;
  }
  return parseIPv4Into(text, start, end, out, offset) ? 4 : undefined;
}

/** A prefix length text[start, end): a plain decimal in 0..max, else -1. */
export function parsePrefixLength(text: string, start: number, end: number, max: number): number {
  if (end <= start || end - start > 3 || (end - start > 1 && text.charCodeAt(start) === 48)) return -1;
  let n = 0;
  for (let i = start; i < end; i++) {
    const c = text.charCodeAt(i);
    if (c < 48 || c > 57) return -1;
    n = n * 10 + (c - 48);
  }
  return n <= max ? n : -1;
}

/** Text of the address at bytes[offset]: dotted quad, or RFC 5952 (lower case, no leading zeros,
 *  the first longest run of two or more zero groups as "::"). */
export function formatAddress(bytes: Uint8Array, offset: number, family: Family): string {
  if (family === 4) return `${bytes[offset]}.${bytes[offset + 1]}.${bytes[offset + 2]}.${bytes[offset + 3]}`;
  const group = (g: number): number => (bytes[offset + g * 2]! << 8) | bytes[offset + g * 2 + 1]!;
  let bestStart = -1;
  let bestLen = 0;
  for (let g = 0; g < 8; ) {
    if (group(g) !== 0) {
      g++;
      continue;
    }
    let e = g;
    while (e < 8 && group(e) === 0) e++;
    if (e - g > bestLen) {
      bestStart = g;
      bestLen = e - g;
    }
    g = e;
  }
  if (bestLen < 2) bestStart = -1;
  let s = "";
  for (let g = 0; g < 8; g++) {
    if (g === bestStart) {
      s += "::";
      g += bestLen - 1;
      continue;
    }
    if (s.length > 0 && !s.endsWith(":")) s += ":";
    s += group(g).toString(16);
  }
  return s;
}

// ---- addresses ------------------------------------------------------------------------------------

/** The 4 bytes of a dotted quad, or undefined. */
export function parseIPv4(s: string): Uint8Array | undefined {
  const out = new Uint8Array(4);
  return parseIPv4Into(s, 0, s.length, out, 0) ? out : undefined;
}

/** The 16 bytes of an IPv6 address (no zone index, no prefix), or undefined. */
export function parseIPv6(s: string): Uint8Array | undefined {
  const out = new Uint8Array(16);
  return parseIPv6Into(s, 0, s.length, out, 0) ? out : undefined;
}

/** Canonical text of an IPv4 or IPv6 address, or undefined. */
export function canonicalIP(s: string): string | undefined {
  const bytes = new Uint8Array(16);
  const family = parseAddressInto(s, 0, s.length, bytes, 0);
  return family === undefined ? undefined : formatAddress(bytes, 0, family);
}

/** An address or prefix could not be parsed (policy and datapath code: their inputs are manifest
 *  values, already checked with their file and line). */
export class PrefixParseError extends Error {
  constructor(
    readonly input: string,
    reason: string,
  ) {
    super(`parse IP prefix ${JSON.stringify(input)}: ${reason}`);
    this.name = "PrefixParseError";
  }
}

function toBigint(bytes: Uint8Array, family: Family): bigint {
  let v = 0n;
  for (let i = 0; i < (family === 4 ? 4 : 16); i += 4) {
    v = (v << 32n) | BigInt(((bytes[i]! << 24) | (bytes[i + 1]! << 16) | (bytes[i + 2]! << 8) | bytes[i + 3]!) >>> 0);
  }
  return v;
}

/** An address (no "/n"): family and value. Throws PrefixParseError. */
export function parseAddress(text: string): { family: Family; addr: bigint } {
  const bytes = new Uint8Array(16);
  const family = parseAddressInto(text, 0, text.length, bytes, 0);
  if (family === undefined) throw new PrefixParseError(text, "not an IPv4 or IPv6 address");
  return { family, addr: toBigint(bytes, family) };
}

// ---- prefixes -----------------------------------------------------------------------------------

/** Zeroes the bits after the first `bits` of the 16 bytes at buf[offset]. */
export function maskAddress(buf: Uint8Array, offset: number, bits: number): void {
  for (let i = 0; i < 16; i++) {
    const keep = bits - i * 8;
    if (keep >= 8) continue;
    buf[offset + i] = keep <= 0 ? 0 : buf[offset + i]! & ((0xff << (8 - keep)) & 0xff);
  }
}

/** A prefix as read: its network (host bits cleared), or why it is not a prefix. */
export type PrefixRead =
  | { ok: true; prefix: Prefix; hostBits: boolean }
  | { ok: false; reason: "address" }
  | { ok: false; reason: "length"; family: Family };

/** Reads "a.b.c.d/n" or "x::/n" (a bare address is a host prefix); `prefix.text` is canonical. */
export function readPrefix(s: string): PrefixRead {
  const slash = s.indexOf("/");
  const end = slash < 0 ? s.length : slash;
  const bytes = new Uint8Array(16);
  const family = parseAddressInto(s, 0, end, bytes, 0);
  if (family === undefined) return { ok: false, reason: "address" };
  const max = familyBits(family);
  const len = slash < 0 ? max : parsePrefixLength(s, slash + 1, s.length, max);
  if (len < 0) return { ok: false, reason: "length", family };
  const before = toBigint(bytes, family);
  maskAddress(bytes, 0, len);
  const addr = toBigint(bytes, family);
  return { ok: true, prefix: { family, addr, len, text: `${formatAddress(bytes, 0, family)}/${len}` }, hostBits: addr !== before };
}

/** Parses a prefix whose host bits are zero (a bare address = host prefix); `text` is the input's
 *  (with "/32" or "/128" added to a bare address). Throws PrefixParseError. */
export function parsePrefix(text: string): Prefix {
  const r = readPrefix(text);
  if (!r.ok) throw new PrefixParseError(text, r.reason === "address" ? "not an IPv4 or IPv6 address" : `bad prefix length (expected 0..${familyBits(r.family)})`);
  if (r.hostBits) throw new PrefixParseError(text, "host bits set after the prefix length");
  return { ...r.prefix, text: text.includes("/") ? text : `${text}/${r.prefix.len}` };
}

/** Last address of a prefix. */
function prefixEnd(p: Prefix): bigint {
  return p.addr | ((1n << BigInt(familyBits(p.family) - p.len)) - 1n);
}

/** Whether `outer` contains `inner` (equal prefixes contain each other). */
export function prefixContains(outer: Prefix, inner: Prefix): boolean {
  if (outer.family !== inner.family || inner.len < outer.len) return false;
  const shift = BigInt(familyBits(outer.family) - outer.len);
  return inner.addr >> shift === outer.addr >> shift;
}

/** Whether an address lies inside a prefix. */
export function prefixContainsAddress(p: Prefix, family: Family, addr: bigint): boolean {
  if (p.family !== family) return false;
  const shift = BigInt(familyBits(family) - p.len);
  return addr >> shift === p.addr >> shift;
}

function comparePrefixes(a: Prefix, b: Prefix): number {
  if (a.family !== b.family) return a.family - b.family;
  if (a.addr !== b.addr) return a.addr < b.addr ? -1 : 1;
  return a.len - b.len;
}

/** A sorted set of prefixes answering "which of them lie inside P" in O(log n + hits). */
export class PrefixSet {
  private readonly sorted: Prefix[];

  constructor(prefixes: Iterable<Prefix>) {
    this.sorted = [...prefixes].sort(comparePrefixes);
  }

  /** Prefixes inside `outer` (including `outer` itself when present). */
  within(outer: Prefix): Prefix[] {
    const end = prefixEnd(outer);
    let lo = 0;
    let hi = this.sorted.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const m = this.sorted[mid]!;
      if (m.family < outer.family || (m.family === outer.family && m.addr < outer.addr)) lo = mid + 1;
      else hi = mid;
    }
    const out: Prefix[] = [];
    for (let i = lo; i < this.sorted.length; i++) {
      const p = this.sorted[i]!;
      if (p.family !== outer.family || p.addr > end) break;
      if (p.len >= outer.len) out.push(p);
    }
    return out;
  }
}
