// IP prefixes as numbers: parse, contain, longest-prefix match. Addresses are bigints so IPv4 and
// IPv6 share one code path; the prefix counts are small enough (≤ ~10^5) for that to be cheap.

/** A parsed prefix. `addr` has host bits cleared. */
export interface Prefix {
  family: 4 | 6;
  addr: bigint;
  len: number;
  /** The canonical text it was parsed from (or formatted to). */
  text: string;
}

/** An address or prefix could not be parsed. */
export class PrefixParseError extends Error {
  constructor(readonly input: string, reason: string) {
    super(`parse IP prefix ${JSON.stringify(input)}: ${reason}`);
    this.name = "PrefixParseError";
  }
}

export function familyBits(family: 4 | 6): number {
  return family === 4 ? 32 : 128;
}

function parseIPv4(s: string, input: string): bigint {
  const parts = s.split(".");
  if (parts.length !== 4) throw new PrefixParseError(input, "expected 4 dotted decimal octets");
  let v = 0n;
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p) || Number(p) > 255) throw new PrefixParseError(input, `bad octet ${JSON.stringify(p)}`);
    v = (v << 8n) | BigInt(Number(p));
  }
  return v;
}

function parseIPv6(s: string, input: string): bigint {
  let text = s;
  if (text.includes(".")) {
    // An embedded IPv4 address in the last 32 bits: rewrite it as two hex groups.
    const lastColon = text.lastIndexOf(":");
    const v4 = parseIPv4(text.slice(lastColon + 1), input);
    text = `${text.slice(0, lastColon + 1)}${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`;
  }
  const halves = text.split("::");
  if (halves.length > 2) throw new PrefixParseError(input, "more than one '::'");
  const group = (h: string): bigint[] =>
    h === ""
      ? []
      : h.split(":").map((g) => {
          if (!/^[0-9a-fA-F]{1,4}$/.test(g)) throw new PrefixParseError(input, `bad group ${JSON.stringify(g)}`);
          return BigInt(parseInt(g, 16));
        });
  let groups: bigint[];
  if (halves.length === 2) {
    const a = group(halves[0]!);
    const b = group(halves[1]!);
    if (a.length + b.length > 7) throw new PrefixParseError(input, "too many groups around '::'");
    groups = [...a, ...Array<bigint>(8 - a.length - b.length).fill(0n), ...b];
  } else {
    groups = group(halves[0]!);
  }
  if (groups.length !== 8) throw new PrefixParseError(input, "expected 8 groups");
  return groups.reduce((acc, g) => (acc << 16n) | g, 0n);
}

/** Parse an address (no "/n"): family and value. */
export function parseAddress(text: string): { family: 4 | 6; addr: bigint } {
  if (text.includes(":")) return { family: 6, addr: parseIPv6(text, text) };
  return { family: 4, addr: parseIPv4(text, text) };
}

/** Parse "a.b.c.d/n" or "x::/n" (or a bare address = host prefix). Host bits must be zero. */
export function parsePrefix(text: string): Prefix {
  const slash = text.indexOf("/");
  const { family, addr } = parseAddress(slash < 0 ? text : text.slice(0, slash));
  const bits = familyBits(family);
  const lenText = slash < 0 ? String(bits) : text.slice(slash + 1);
  if (!/^\d{1,3}$/.test(lenText) || Number(lenText) > bits) {
    throw new PrefixParseError(text, `bad prefix length (expected 0..${bits}, got ${lenText})`);
  }
  const len = Number(lenText);
  const hostMask = (1n << BigInt(bits - len)) - 1n;
  if ((addr & hostMask) !== 0n) throw new PrefixParseError(text, "host bits set after the prefix length");
  return { family, addr, len, text: slash < 0 ? `${text}/${bits}` : text };
}

/** Last address of a prefix. */
export function prefixEnd(p: Prefix): bigint {
  return p.addr | ((1n << BigInt(familyBits(p.family) - p.len)) - 1n);
}

/** Whether `outer` contains `inner` (equal prefixes contain each other). */
export function prefixContains(outer: Prefix, inner: Prefix): boolean {
  if (outer.family !== inner.family || inner.len < outer.len) return false;
  const shift = BigInt(familyBits(outer.family) - outer.len);
  return inner.addr >> shift === outer.addr >> shift;
}

/** Whether an address lies inside a prefix. */
export function prefixContainsAddress(p: Prefix, family: 4 | 6, addr: bigint): boolean {
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
