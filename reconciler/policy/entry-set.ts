// One endpoint's policy entries, packed. At DESIGN scale there are a million of them: as objects
// (nine fields, ~100 bytes each without pointer compression) in per-endpoint Maps they cost about
// 150 MB, and a plan, an observation and a diff each walked them through hash lookups. Packed, an
// entry is one double (its key and decision) plus a pointer to its interned rule list, entries are
// sorted by key, and two sets are compared by one merge walk. Entry objects are made only for the
// few entries a plan renders or `inspect` prints.

import type { Decision, Direction, PolicyEntry, RuleRef } from "./types.js";

/** The fields that identify an entry within its endpoint's policy (the kernel's LPM key). */
export interface PolicyKeyFields {
  direction: Direction;
  identity: number;
  protocol: number;
  port: number;
  portPrefixLen: number;
}

const IDENTITY_BITS = 2 ** 25;
const PROTOCOL_MUL = 2 ** 17;
const HIGH_MUL = 2 ** 25; // (direction, identity) above (protocol, port node)

/**
 * An entry's key within its endpoint as one exact integer (< 2^51), ordered by direction, identity,
 * protocol, then port prefix: direction (1 bit), identity (25 bits: local-scope identities are below
 * 2^25), protocol (8 bits) and the port prefix as a binary-trie node number (17 bits:
 * (1 << prefixLen) | port >> (16 - prefixLen)). The order follows the compiler's, so its output is
 * nearly sorted already.
 */
export function policyEntryKey(e: PolicyKeyFields): number {
  const portNode = (1 << e.portPrefixLen) | (e.port >>> (16 - e.portPrefixLen));
  return ((e.direction === "egress" ? IDENTITY_BITS : 0) + e.identity) * HIGH_MUL + e.protocol * PROTOCOL_MUL + portNode;
}

/** The fields of a key made by policyEntryKey(). */
export function decodePolicyEntryKey(key: number): PolicyKeyFields {
  const portNode = key % PROTOCOL_MUL;
  const protocol = Math.floor(key / PROTOCOL_MUL) % 256;
  const high = Math.floor(key / HIGH_MUL);
  const portPrefixLen = 31 - Math.clz32(portNode);
  return {
    direction: high >= IDENTITY_BITS ? "egress" : "ingress",
    identity: high % IDENTITY_BITS,
    protocol,
    port: (portNode - (1 << portPrefixLen)) * 2 ** (16 - portPrefixLen),
    portPrefixLen,
  };
}

/** Whether an identity fits the key (local-scope identities do; a foreign kernel entry may not). */
export function keyableIdentity(identity: number): boolean {
  return Number.isInteger(identity) && identity >= 0 && identity < IDENTITY_BITS;
}

const NO_RULES: RuleRef[] = Object.freeze([]) as unknown as RuleRef[];

/** An entry with its decision and, when known, the rules that produced it. */
export interface PolicyEntryFields extends PolicyKeyFields {
  decision: Decision;
  rules?: RuleRef[];
}

export class PolicyEntrySet {
  static readonly EMPTY = new PolicyEntrySet(new Float64Array(0), undefined);

  private constructor(
    /** Entry i as key·2 + (deny ? 1 : 0), ascending: the key order, one decision per key. */
    readonly packed: Float64Array,
    /** The rules of entry i (desired sets; entries read from the kernel have none). */
    readonly rules: readonly RuleRef[][] | undefined,
    /** Kernel entries no key can name (an identity beyond 2^25, a direction other than 0/1): only
     *  someone else writes those, and only rebuilding the whole map removes them. */
    readonly unreadable = 0,
  ) {}

  /** From packed values in any order (what the kernel returns), without provenance. */
  static fromPacked(packed: Float64Array, unreadable = 0): PolicyEntrySet {
    return new PolicyEntrySet(packed.sort(), undefined, unreadable);
  }

  /**
   * From packed values and their rules, in nearly sorted order (the compiler's). Sorted in place;
   * an input already in order (the usual case) costs one pass.
   */
  static fromPackedWithRules(packed: Float64Array, rules: RuleRef[][]): PolicyEntrySet {
    if (!isSorted(packed)) {
      const order = Array.from(packed.keys()).sort((a, b) => packed[a]! - packed[b]!);
      const values = order.map((i) => packed[i]!);
      const refs = order.map((i) => rules[i]!);
      packed.set(values);
      rules = refs;
    }
    return new PolicyEntrySet(packed, rules);
  }

  /** From entry objects (tests build desired and observed sets this way). */
  static fromEntries(entries: Iterable<PolicyEntryFields>): PolicyEntrySet {
    const list = [...entries];
    const packed = new Float64Array(list.length);
    list.forEach((e, i) => (packed[i] = packEntry(policyEntryKey(e), e.decision)));
    const withRules = list.some((e) => e.rules !== undefined);
    return withRules ? PolicyEntrySet.fromPackedWithRules(packed, list.map((e) => e.rules ?? NO_RULES)) : PolicyEntrySet.fromPacked(packed);
  }

  get size(): number {
    return this.packed.length;
  }

  key(i: number): number {
    return Math.floor(this.packed[i]! / 2);
  }

  decision(i: number): Decision {
    return this.packed[i]! % 2 === 1 ? "deny" : "allow";
  }

  /** Index of the entry with this key, or -1. */
  indexOf(key: number): number {
    let lo = 0;
    let hi = this.packed.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const k = Math.floor(this.packed[mid]! / 2);
      if (k === key) return mid;
      if (k < key) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  }

  /** Entry i as an object, named after `endpoint`. */
  entry(i: number, endpoint: string): PolicyEntry {
    const k = decodePolicyEntryKey(this.key(i));
    return {
      endpoint,
      direction: k.direction,
      identity: k.identity,
      protocol: k.protocol,
      port: k.port,
      endPort: k.port + 2 ** (16 - k.portPrefixLen) - 1,
      portPrefixLen: k.portPrefixLen,
      decision: this.decision(i),
      rules: this.rules?.[i] ?? NO_RULES,
    };
  }

  /** Every entry as an object, in key order. */
  toEntries(endpoint: string): PolicyEntry[] {
    const out: PolicyEntry[] = new Array(this.size);
    for (let i = 0; i < this.size; i++) out[i] = this.entry(i, endpoint);
    return out;
  }

  /** Same keys with the same decisions (provenance is not compared: the kernel has none). */
  sameEntries(other: PolicyEntrySet): boolean {
    if (other === this) return true;
    if (this.unreadable || other.unreadable) return false;
    const a = this.packed;
    const b = other.packed;
    if (a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
    return true;
  }
}

/** key·2 + (deny ? 1 : 0): exact, since keys are below 2^51. */
export function packEntry(key: number, decision: Decision): number {
  return key * 2 + (decision === "deny" ? 1 : 0);
}

function isSorted(a: Float64Array): boolean {
  for (let i = 1; i < a.length; i++) if (a[i - 1]! > a[i]!) return false;
  return true;
}
