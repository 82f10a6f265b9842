// Security identity allocation (DESIGN §3). Pure: the same manifests give the same numbers on
// every node, with no coordination and no state.
//
// - Reserved identities 1..10 carry the label `reserved:<name>` (Cilium numbering).
// - An Identity manifest pins a number to an exact canonical label set.
// - Every other label set gets a number derived from its canonical string (labelSetKey):
//   home = min + hash(key) mod (max - min), in [65536, 2^24) by default. A set's number therefore
//   depends only on its own labels, so adding an unrelated label set renumbers nothing.
//   Collisions (two sets with the same home) are resolved in two passes: (1) every home slot goes to
//   the canonically smallest set that hashes there; (2) the other sets of a collision, in canonical
//   order, probe upward (wrapping within the range) to the next number that is neither a home slot
//   nor already taken. That is the one documented case where adding a label set can renumber
//   another: when the new set lands on the same home as an existing set and sorts before it (or
//   takes the slot a probing loser used).
// - CIDR identities (every prefix of a CIDR selector or except list, except /0 which is "world")
//   live in the local scope: (1 << 24) | n, with n derived the same way from the prefix text in
//   [1, 2^24), labels `cidr:<prefix>`.

import type { IdentityManifest, LabelSet, ManifestProblem, Model } from "../manifest/model.js";
import { cidrLabels, labelSetKey } from "./labels.js";
import { parsePrefix } from "../manifest/ip.js";
import { expandCidr } from "./peers.js";
import { type IdentityInfo, LOCAL_IDENTITY_SCOPE, ReservedIdentity } from "./types.js";

/** A number range [min, max). */
export interface IdRange {
  min: number;
  max: number;
}

export interface IdentityAllocatorOptions {
  /** 32-bit hash of a canonical key. Default: FNV-1a with a murmur3 finalizer. Tests inject a
   *  degenerate one to force collisions. */
  hash?: (key: string) => number;
  /** Range of derived identities; default [65536, 2^24). */
  derivedRange?: IdRange;
  /** Range of n for CIDR identities (1 << 24) | n; default [1, 2^24). */
  cidrRange?: IdRange;
}

/** The identity table of one snapshot. */
export interface IdentityAllocation {
  /** Every identity by number: reserved, pinned, derived and CIDR. */
  identities: Map<number, IdentityInfo>;
  /** labelSetKey(labels) → number for pinned and derived identities. */
  byLabels: Map<string, number>;
  /** Canonical prefix text → CIDR identity. */
  byCidr: Map<string, number>;
  /** Conflicting Identity manifests (the first by file:line wins). */
  problems: ManifestProblem[];
}

export const DEFAULT_DERIVED_RANGE: IdRange = Object.freeze({ min: 65536, max: 1 << 24 });
export const DEFAULT_CIDR_RANGE: IdRange = Object.freeze({ min: 1, max: 1 << 24 });

/** Reserved identity names as Cilium spells them in `reserved:` labels. */
export const RESERVED_NAMES: ReadonlyArray<readonly [number, string]> = [
  [ReservedIdentity.host, "host"],
  [ReservedIdentity.world, "world"],
  [ReservedIdentity.unmanaged, "unmanaged"],
  [ReservedIdentity.health, "health"],
  [ReservedIdentity.init, "init"],
  [ReservedIdentity.remoteNode, "remote-node"],
  [ReservedIdentity.kubeApiserver, "kube-apiserver"],
  [ReservedIdentity.ingress, "ingress"],
  [ReservedIdentity.worldIPv4, "world-ipv4"],
  [ReservedIdentity.worldIPv6, "world-ipv6"],
];

/** The reserved identities with their `reserved:<name>` labels. */
export function reservedIdentities(): IdentityInfo[] {
  return RESERVED_NAMES.map(([id, name]) => ({
    id,
    labels: [{ source: "reserved", key: name, value: "" }],
    origin: "reserved" as const,
  }));
}

/** FNV-1a over UTF-16 code units, then murmur3's fmix32 to spread the bits. Unsigned 32-bit. */
export function defaultHash(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The identity range is full: more label sets than numbers. */
export class IdentityRangeExhaustedError extends Error {
  constructor(readonly range: IdRange, readonly wanted: number) {
    super(`identity range [${range.min}, ${range.max}) exhausted (expected at most ${range.max - range.min} label sets, got ${wanted})`);
    this.name = "IdentityRangeExhaustedError";
  }
}

/**
 * Assign each key a number in `range` from its hash, resolving collisions as documented at the top
 * of this file. `taken` numbers are never assigned. Keys must be distinct.
 */
export function assignHashed(
  keys: Iterable<string>,
  range: IdRange,
  hash: (key: string) => number,
  taken: ReadonlySet<number> = new Set(),
): Map<string, number> {
  const sorted = [...new Set(keys)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const size = range.max - range.min;
  if (sorted.length + taken.size > size) throw new IdentityRangeExhaustedError(range, sorted.length);
  const out = new Map<string, number>();
  const used = new Set<number>(taken);
  const losers: string[] = [];
  // Pass 1: home slots, canonically smallest key first.
  for (const key of sorted) {
    const home = range.min + (hash(key) >>> 0) % size;
    if (used.has(home)) losers.push(key);
    else {
      used.add(home);
      out.set(key, home);
    }
  }
  // Pass 2: the others probe upward from their home to the next free number.
  for (const key of losers) {
    let n = range.min + (hash(key) >>> 0) % size;
    while (used.has(n)) n = n + 1 >= range.max ? range.min : n + 1;
    used.add(n);
    out.set(key, n);
  }
  return out;
}

/** Every prefix named in a CIDR selector or except list, in any rule; /0 prefixes are the world
 *  and get no CIDR identity. Canonical text, de-duplicated, sorted. */
export function modelCidrs(model: Model): string[] {
  const out = new Set<string>();
  for (const r of model.rules) {
    for (const section of [r.rule.ingress, r.rule.egress, r.rule.ingressDeny, r.rule.egressDeny]) {
      for (const peer of section) {
        for (const c of peer.cidrs ?? []) {
          for (const x of expandCidr(model, c)) for (const p of [x.cidr, ...x.except]) if (parsePrefix(p).len > 0) out.add(p);
        }
      }
    }
  }
  return [...out].sort();
}

/** Input of identity allocation. */
export interface IdentityInput {
  /** Label sets in use (endpoint labels), canonical; duplicates are fine. */
  labelSets: Iterable<LabelSet>;
  /** Identity manifests pinning numbers. */
  pinned: readonly IdentityManifest[];
  /** CIDR prefixes (canonical text) needing CIDR identities. */
  cidrs: Iterable<string>;
}

/** Allocate all identities of a snapshot. Pure and order-independent. */
export function allocateIdentities(input: IdentityInput, opts: IdentityAllocatorOptions = {}): IdentityAllocation {
  const hash = opts.hash ?? defaultHash;
  const identities = new Map<number, IdentityInfo>();
  const byLabels = new Map<string, number>();
  const byCidr = new Map<string, number>();
  const problems: ManifestProblem[] = [];
  for (const r of reservedIdentities()) identities.set(r.id, r);

  // Pinned, in file:line order so that conflicts resolve the same way everywhere.
  const pinned = [...input.pinned].sort(
    (a, b) => (a.at.file < b.at.file ? -1 : a.at.file > b.at.file ? 1 : a.at.line - b.at.line),
  );
  for (const p of pinned) {
    const key = labelSetKey(p.labels);
    const prevForLabels = byLabels.get(key);
    const prevForId = identities.get(p.id);
    if (prevForLabels !== undefined || prevForId !== undefined) {
      problems.push({
        file: p.at.file,
        line: p.at.line,
        object: `Identity/${p.name}`,
        path: prevForId ? "spec.id" : "spec.labels",
        message: prevForId
          ? `identity ${p.id} is already used (expected a free number, got one taken by ${prevForId.origin} identity ${p.id}); ignored`
          : `label set already pinned to identity ${prevForLabels} (expected one Identity per label set); ignored`,
        severity: "warning",
      });
      continue;
    }
    byLabels.set(key, p.id);
    identities.set(p.id, { id: p.id, labels: p.labels, origin: "pinned" });
  }

  const derivedKeys = new Map<string, LabelSet>();
  for (const ls of input.labelSets) {
    const key = labelSetKey(ls);
    if (!byLabels.has(key) && !derivedKeys.has(key)) derivedKeys.set(key, ls);
  }
  const derived = assignHashed(derivedKeys.keys(), opts.derivedRange ?? DEFAULT_DERIVED_RANGE, hash);
  for (const [key, id] of derived) {
    byLabels.set(key, id);
    identities.set(id, { id, labels: derivedKeys.get(key)!, origin: "derived" });
  }

  const cidrN = assignHashed(input.cidrs, opts.cidrRange ?? DEFAULT_CIDR_RANGE, hash);
  for (const [prefix, n] of cidrN) {
    const id = (LOCAL_IDENTITY_SCOPE | n) >>> 0;
    byCidr.set(prefix, id);
    identities.set(id, { id, labels: cidrLabels(prefix), origin: "cidr", cidr: prefix });
  }
  return { identities, byLabels, byCidr, problems };
}
