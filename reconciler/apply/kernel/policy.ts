// Per-endpoint policy: an LPM trie per endpoint, held in the `policy` map-of-maps under the
// endpoint's number. A change that only widens an endpoint's policy (new allows, removed denies) or
// only narrows it (removed allows, new denies) is written in place, because every intermediate state
// then lies between the old and the new policy. Any other change fills a new inner map with the
// complete new policy and swaps it in with one map update, so a packet sees the old policy or the new
// one, never a mix. Counters live in policy_stats, keyed by entry, so they survive the swap.

import { POLICY_KEY, POLICY_VALUE, decodePolicyKey, decodePolicyValue, encodePolicyKey, encodePolicyValue } from "../../datapath/layouts.js";
import { policyEntryKey, type DesiredState, type PolicyMapEntry } from "../../datapath/state.js";
import { BpfError, BpfMap } from "../../ebpf-loader/index.js";
import type { Change } from "../../plan/diff.js";
import { errorText, resultsFor, type ObjectResult, type Target } from "../target.js";
import type { KernelContext } from "./context.js";
import { createInnerPolicyMap } from "./maps.js";

/** Name used for entries of an endpoint number the desired state no longer has. */
const orphanName = (epId: number) => `#${epId}`;

function epKey(epId: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(epId);
  return b;
}

/** Endpoint name → endpoint number, from the desired endpoints map. */
function endpointNumbers(desired: DesiredState): Map<string, number> {
  const ids = new Map<string, number>();
  for (const e of desired.endpoints.values()) ids.set(e.endpoint, e.endpointId);
  return ids;
}

export class PolicyTarget implements Target {
  readonly kind = "policy" as const;
  readonly field = "policy" as const;

  constructor(private readonly ctx: KernelContext) {}

  async observe(desired: DesiredState): Promise<Map<string, unknown>> {
    const out = new Map<string, Map<number, PolicyMapEntry>>();
    const outer = this.ctx.map("policy");
    if (!outer) return out;
    const names = new Map([...endpointNumbers(desired)].map(([name, id]) => [id, name]));
    for (const key of outer.keys()) {
      const epId = key.readUInt32LE(0);
      const innerId = outer.innerId(key);
      if (innerId === undefined) continue;
      const inner = BpfMap.fromId(innerId);
      try {
        const endpoint = names.get(epId) ?? orphanName(epId);
        const { keys, values, count } = inner.lookupBatch();
        // A resync usually finds every endpoint as it was left. When the kernel's bytes are exactly
        // the desired entries' bytes, say so without decoding a thousand entries into objects.
        const wanted = desired.policy.get(endpoint);
        if (wanted && wanted.size === count && sameFingerprint(fingerprintOf(wanted), fingerprint(keys, values, count))) {
          out.set(endpoint, wanted);
          continue;
        }
        const entries = new Map<number, PolicyMapEntry>();
        for (let i = 0; i < count; i++) {
          const k = decodePolicyKey(keys, i * POLICY_KEY.size);
          const v = decodePolicyValue(values, i * POLICY_VALUE.size);
          const e: PolicyMapEntry = { endpoint, direction: k.direction, identity: k.identity, protocol: k.protocol, port: k.port, portPrefixLen: k.portPrefixLen, decision: v.decision };
          entries.set(policyEntryKey(e), e);
        }
        out.set(endpoint, entries);
      } finally {
        inner.close();
      }
    }
    return out;
  }

  async apply(changes: readonly Change[], desired: DesiredState): Promise<ObjectResult[]> {
    const outer = this.ctx.map("policy");
    if (!outer) return resultsFor(changes, new Error(`map policy is not pinned at ${this.ctx.mapPath("policy")}`));
    const numbers = endpointNumbers(desired);
    const entriesOf = (endpoint: string) => [...(desired.policy.get(endpoint)?.values() ?? [])];
    const results: ObjectResult[] = [];
    // Every update or delete of a map-of-maps slot waits for an RCU grace period in the kernel
    // (≈8 ms here), once per syscall: the swaps and removals are collected and done in batches.
    const swaps: Slot[] = [];
    const removals: Slot[] = [];
    for (const [endpoint, group] of groupByEndpoint(changes)) {
      try {
        const epId = numbers.get(endpoint) ?? Number(endpoint.slice(1));
        // The endpoint is gone, or has no entries left: drop its whole map. The datapath reads a
        // missing map as an empty one, and an empty map left in a slot would outlive its endpoint
        // (nothing in a plan names it any more).
        if (!numbers.has(endpoint) || !desired.policy.get(endpoint)?.size) {
          removals.push({ endpoint, epId, group });
          continue;
        }
        const fresh = this.applyEndpoint(outer, epId, group, entriesOf);
        if (!fresh) {
          for (const r of resultsFor(group)) results.push(r);
          continue;
        }
        swaps.push({ endpoint, epId, group, fresh });
        if (swaps.length === SLOT_BATCH) swapIn(outer, swaps.splice(0), results);
      } catch (err) {
        for (const r of resultsFor(group, new Error(`policy of endpoint ${endpoint}: ${errorText(err)}`))) results.push(r);
      }
    }
    swapIn(outer, swaps, results);
    remove(outer, removals, results);
    return results;
  }

  /** Writes a monotonic change in place (returns undefined), or returns a new inner map filled
   *  with the endpoint's complete policy, for the caller to swap in. */
  private applyEndpoint(outer: BpfMap, epId: number, group: Change[], entriesOf: (endpoint: string) => PolicyMapEntry[]): BpfMap | undefined {
    const innerId = outer.innerId(epKey(epId));
    if (innerId !== undefined && isMonotonic(group)) {
      const inner = BpfMap.fromId(innerId);
      try {
        const creates = group.filter((c) => c.op === "create").map((c) => c.after as PolicyMapEntry);
        const deletes = group.filter((c) => c.op === "delete").map((c) => c.before as PolicyMapEntry);
        if (creates.length) writeEntries(inner, creates);
        if (deletes.length) deleteEntries(inner, deletes);
      } finally {
        inner.close();
      }
      return undefined;
    }
    const fresh = createInnerPolicyMap(this.ctx);
    try {
      const entries = entriesOf(((group[0]!.after ?? group[0]!.before) as PolicyMapEntry).endpoint);
      if (entries.length) writeEntries(fresh, entries);
    } catch (err) {
      fresh.close();
      throw err;
    }
    return fresh;
  }
}

/** Endpoints whose slot in the outer map is written (with `fresh`) or deleted in one batch. */
interface Slot {
  endpoint: string;
  epId: number;
  group: Change[];
  /** The filled inner map to swap in (closed once the outer map holds it). */
  fresh?: BpfMap;
}

/** Slots per batch: bounds the inner-map fds held open at once. */
const SLOT_BATCH = 256;

function slotKeys(slots: readonly Slot[]): Buffer {
  const keys = Buffer.alloc(slots.length * 4);
  slots.forEach((s, i) => keys.writeUInt32LE(s.epId, i * 4));
  return keys;
}

/** Points every slot at its fresh map: one batch update, or one update per slot to name a failure. */
function swapIn(outer: BpfMap, slots: readonly Slot[], results: ObjectResult[]): void {
  if (!slots.length) return;
  try {
    const fds = Buffer.alloc(slots.length * 4);
    slots.forEach((s, i) => fds.writeUInt32LE(s.fresh!.fd, i * 4));
    try {
      outer.updateBatch(slotKeys(slots), fds, slots.length);
      for (const s of slots) for (const r of resultsFor(s.group)) results.push(r);
      return;
    } catch {
      /* find out which slot failed, one update each (the same writes again are harmless) */
    }
    for (const s of slots) {
      try {
        outer.updateInner(epKey(s.epId), s.fresh!);
        for (const r of resultsFor(s.group)) results.push(r);
      } catch (err) {
        for (const r of resultsFor(s.group, new Error(`policy of endpoint ${s.endpoint}: ${errorText(err)}`))) results.push(r);
      }
    }
  } finally {
    for (const s of slots) s.fresh!.close(); // the outer map holds its own reference
  }
}

/** Drops the slots of endpoints that are gone: one batch delete, or one delete each (missing is fine). */
function remove(outer: BpfMap, slots: readonly Slot[], results: ObjectResult[]): void {
  if (!slots.length) return;
  try {
    outer.deleteBatch(slotKeys(slots), slots.length);
    for (const s of slots) for (const r of resultsFor(s.group)) results.push(r);
    return;
  } catch {
    /* a slot was already gone (ENOENT) or the batch failed: one by one */
  }
  for (const s of slots) {
    try {
      outer.delete(epKey(s.epId));
      for (const r of resultsFor(s.group)) results.push(r);
    } catch (err) {
      for (const r of resultsFor(s.group, new Error(`policy of endpoint ${s.endpoint}: ${errorText(err)}`))) results.push(r);
    }
  }
}

function groupByEndpoint(changes: readonly Change[]): Map<string, Change[]> {
  const groups = new Map<string, Change[]>();
  for (const c of changes) {
    const e = (c.after ?? c.before) as PolicyMapEntry;
    let g = groups.get(e.endpoint);
    if (!g) groups.set(e.endpoint, (g = []));
    g.push(c);
  }
  return groups;
}

/**
 * An order-independent fingerprint of a set of (key, value) records: the count, and the sum and xor
 * of a 32-bit mix of each record's five words. Two sets of equal count and fingerprint are taken to
 * be equal; telling apart a drifted map costs a 64-bit coincidence, and the entries are decoded and
 * compared one by one whenever the fingerprints differ.
 */
interface Fingerprint {
  sum: number;
  xor: number;
}

function fingerprint(keys: Buffer, values: Buffer, count: number): Fingerprint {
  let sum = 0;
  let xor = 0;
  for (let i = 0; i < count; i++) {
    const k = i * POLICY_KEY.size;
    const v = i * POLICY_VALUE.size;
    let h = 0x9e3779b9;
    h = Math.imul(h ^ keys.readUInt32LE(k), 0x85ebca6b);
    h = Math.imul(h ^ keys.readUInt32LE(k + 4), 0xc2b2ae35);
    h = Math.imul(h ^ keys.readUInt32LE(k + 8), 0x85ebca6b);
    h = Math.imul(h ^ values.readUInt32LE(v), 0xc2b2ae35);
    h = Math.imul(h ^ values.readUInt32LE(v + 4), 0x85ebca6b);
    h ^= h >>> 16;
    sum = (sum + h) | 0;
    xor ^= h;
  }
  return { sum, xor };
}

/** Fingerprints of desired entry sets, computed once per compiled state. */
const desiredFingerprints = new WeakMap<Map<number, PolicyMapEntry>, Fingerprint>();

function fingerprintOf(entries: Map<number, PolicyMapEntry>): Fingerprint {
  let f = desiredFingerprints.get(entries);
  if (!f) {
    const list = [...entries.values()];
    const keys = Buffer.alloc(list.length * POLICY_KEY.size);
    const values = Buffer.alloc(list.length * POLICY_VALUE.size);
    list.forEach((e, i) => {
      const prefixlen = encodePolicyKey(e, keys, i * POLICY_KEY.size);
      encodePolicyValue(e.decision, prefixlen, values, i * POLICY_VALUE.size);
    });
    f = fingerprint(keys, values, list.length);
    desiredFingerprints.set(entries, f);
  }
  return f;
}

function sameFingerprint(a: Fingerprint, b: Fingerprint): boolean {
  return a.sum === b.sum && a.xor === b.xor;
}

/** True when every change widens the policy, or every change narrows it. */
export function isMonotonic(group: readonly Change[]): boolean {
  let widens = false;
  let narrows = false;
  for (const c of group) {
    if (c.op === "update") return false;
    const e = (c.after ?? c.before) as PolicyMapEntry;
    const widening = (c.op === "create") === (e.decision === "allow");
    if (widening) widens = true;
    else narrows = true;
  }
  return !(widens && narrows);
}

function encodeKeys(entries: readonly PolicyMapEntry[]): Buffer {
  const keys = Buffer.alloc(entries.length * POLICY_KEY.size);
  entries.forEach((e, i) => encodePolicyKey(e, keys, i * POLICY_KEY.size));
  return keys;
}

/**
 * Deletes entries; one already missing counts as deleted. That happens when the creates of the same
 * plan (a separate batch) swapped in a complete new map that no longer holds them.
 */
function deleteEntries(m: BpfMap, entries: readonly PolicyMapEntry[]): void {
  const keys = encodeKeys(entries);
  try {
    m.deleteBatch(keys, entries.length);
  } catch (err) {
    if (!(err instanceof BpfError && err.code === "ENOENT")) throw err;
    // The batch stopped at the first missing key: delete one by one, ignoring the missing ones.
    for (let i = 0; i < entries.length; i++) m.delete(keys.subarray(i * POLICY_KEY.size, (i + 1) * POLICY_KEY.size));
  }
}

function writeEntries(m: BpfMap, entries: readonly PolicyMapEntry[]): void {
  const keys = Buffer.alloc(entries.length * POLICY_KEY.size);
  const values = Buffer.alloc(entries.length * POLICY_VALUE.size);
  entries.forEach((e, i) => {
    const prefixlen = encodePolicyKey(e, keys, i * POLICY_KEY.size);
    encodePolicyValue(e.decision, prefixlen, values, i * POLICY_VALUE.size);
  });
  m.updateBatch(keys, values, entries.length);
}
