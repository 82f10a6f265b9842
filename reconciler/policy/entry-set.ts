// One endpoint's policy entries, packed. At DESIGN scale there are a million of them: as objects
// (nine fields, ~100 bytes each without pointer compression) in per-endpoint Maps they cost about
// 150 MB, and a plan, an observation and a diff each walked them through hash lookups. Packed, an
// entry is one double (its key and decision) plus a pointer to its interned rule list, entries are
// sorted by key, and two sets are compared by one merge walk. Entry objects are made only for the
// few entries a plan renders or `inspect` prints.

import { decodePolicyEntryKey, entryAudit, entryDecision, entryKey, packEntry, policyEntryKey, type PolicyKey } from "./key.js";
import type { Decision, PolicyEntry, RuleRef } from "./types.js";

const NO_RULES: RuleRef[] = Object.freeze([]) as unknown as RuleRef[];

/** An entry with its decision and, when known, the rules that produced it. */
export interface PolicyEntryFields extends PolicyKey {
  decision: Decision;
  /** An audited deny (default false). */
  audit?: boolean;
  rules?: RuleRef[];
}

export class PolicyEntrySet {
  static readonly EMPTY = new PolicyEntrySet(new Float64Array(0), undefined);

  private constructor(
    /** Entry i as packEntry(key, decision, audit) (key.ts), ascending: the key order, one decision per key. */
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
   * From packed values and their rules, in any order. Sorted in place; an input already in order
   * (the compiler's output, whose keys are the same packed keys) costs one pass.
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
    list.forEach((e, i) => (packed[i] = packEntry(policyEntryKey(e), e.decision, e.audit)));
    const withRules = list.some((e) => e.rules !== undefined);
    return withRules ? PolicyEntrySet.fromPackedWithRules(packed, list.map((e) => e.rules ?? NO_RULES)) : PolicyEntrySet.fromPacked(packed);
  }

  get size(): number {
    return this.packed.length;
  }

  key(i: number): number {
    return entryKey(this.packed[i]!);
  }

  decision(i: number): Decision {
    return entryDecision(this.packed[i]!);
  }

  /** Whether entry i is an audited deny. */
  audit(i: number): boolean {
    return entryAudit(this.packed[i]!);
  }

  /** Index of the entry with this key, or -1. */
  indexOf(key: number): number {
    let lo = 0;
    let hi = this.packed.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const k = entryKey(this.packed[mid]!);
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
      audit: this.audit(i),
      rules: this.rules?.[i] ?? NO_RULES,
    };
  }

  /** Every entry as an object, in key order. */
  toEntries(endpoint: string): PolicyEntry[] {
    const out: PolicyEntry[] = new Array(this.size);
    for (let i = 0; i < this.size; i++) out[i] = this.entry(i, endpoint);
    return out;
  }

  /** Same keys with the same decisions and audit bits (provenance is not compared: the kernel has none). */
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

function isSorted(a: Float64Array): boolean {
  for (let i = 1; i < a.length; i++) if (a[i - 1]! > a[i]!) return false;
  return true;
}
