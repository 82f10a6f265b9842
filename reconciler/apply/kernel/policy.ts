// Per-endpoint policy: an LPM trie per endpoint, held in the `policy` map-of-maps under the
// endpoint's number. The plan (plan/diff.ts walk) decides how an endpoint's map is written: in place
// when the changes of each phase (creates and updates, then deletes) only widen or only narrow the
// policy; otherwise marked `swap`: a new inner map is filled with the complete new policy and
// swapped in with one map update, so a packet sees the old policy or the new one, never a mix. Counters live in policy_stats, keyed by entry, so they survive the swap.

import { createHash } from "node:crypto";
import { POLICY_VALUE, decodePolicyValue, encodePolicyValue } from "../../datapath/layouts.js";
import { PolicyEntrySet, type DesiredState, type StateOf } from "../../datapath/state.js";
import { entryAudit, entryDecision, entryKey, packEntry, POLICY_KEY, readPackedPolicyKey, writePackedPolicyKey } from "../../policy/key.js";
import type { Decision } from "../../policy/types.js";
import { BpfError, BpfMap, type BatchScratch } from "../../ebpf-loader/index.js";
import { PolicyFill, weightOf, type PolicyChange } from "../../plan/diff.js";
import { errorText, failuresOf, type ObjectResult, type StepProgress, type Target } from "../target.js";
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

export class PolicyTarget implements Target<"policy"> {
  readonly kind = "policy" as const;

  /**
   * Per endpoint, what the last observation read from its trie when that held exactly the desired
   * set: the trie's id, a digest of the bytes read, and that desired set. Decoding a million
   * entries costs a resync about as much again as reading them; the same bytes from the same trie
   * against the same desired set are the same entries, so they are handed back without decoding.
   */
  private verified = new Map<string, { innerId: number; digest: string; set: PolicyEntrySet }>();

  constructor(private readonly ctx: KernelContext) {}

  async observe(desired: DesiredState): Promise<StateOf<"policy">> {
    const out = new Map<string, PolicyEntrySet>();
    const verified = new Map<string, { innerId: number; digest: string; set: PolicyEntrySet }>();
    const outer = this.ctx.map("policy");
    if (!outer) {
      this.verified = verified;
      return out;
    }
    const names = new Map([...endpointNumbers(desired)].map(([name, id]) => [id, name]));
    // Every trie is read into the same buffers: its bytes are digested or decoded, never kept.
    const scratch: BatchScratch = { keys: Buffer.alloc(0), values: Buffer.alloc(0) };
    for (const key of outer.keys()) {
      const epId = key.readUInt32LE(0);
      const innerId = outer.innerId(key);
      if (innerId === undefined) continue;
      const inner = BpfMap.fromId(innerId);
      try {
        const endpoint = names.get(epId) ?? orphanName(epId);
        const { keys, values, count } = inner.lookupBatch(scratch);
        const digest = digestOf(keys, values, count);
        const wanted = desired.policy.get(endpoint);
        const last = this.verified.get(endpoint);
        if (wanted !== undefined && last !== undefined && last.set === wanted && last.innerId === innerId && last.digest === digest) {
          out.set(endpoint, wanted);
          verified.set(endpoint, last);
          continue;
        }
        const observed = readEntries(keys, values, count);
        // A resync usually finds every endpoint as it was left: hand back the desired set itself,
        // so the plan skips it without comparing again.
        if (wanted?.sameEntries(observed)) {
          out.set(endpoint, wanted);
          verified.set(endpoint, { innerId, digest, set: wanted });
        } else out.set(endpoint, observed);
      } finally {
        inner.close();
      }
    }
    this.verified = verified;
    return out;
  }

  async apply(changes: readonly PolicyChange[], desired: DesiredState, progress?: StepProgress): Promise<ObjectResult[]> {
    const outer = this.ctx.map("policy");
    if (!outer) return failuresOf(changes, new Error(`map policy is not pinned at ${this.ctx.mapPath("policy")}`));
    const numbers = endpointNumbers(desired);
    const failures: ObjectResult[] = [];
    // Every update or delete of a map-of-maps slot waits for an RCU grace period in the kernel
    // (≈8 ms here), once per syscall: the swaps and removals are collected and done in batches.
    const swaps: Slot[] = [];
    const removals: Slot[] = [];
    let done = 0;
    for (const [endpoint, group] of groupByEndpoint(changes)) {
      // Counted when the endpoint's entries are written (its swap, batched, follows).
      if (progress && done) await progress(done);
      done += weightOf(group);
      try {
        const epId = numbers.get(endpoint) ?? Number(endpoint.slice(1));
        // The endpoint is gone, or has no entries left: drop its whole map. The datapath reads a
        // missing map as an empty one, and an empty map left in a slot would outlive its endpoint
        // (nothing in a plan names it any more).
        if (!numbers.has(endpoint) || !desired.policy.get(endpoint)?.size) {
          removals.push({ endpoint, epId, group });
          continue;
        }
        const fresh = this.applyEndpoint(outer, epId, group, desired.policy.get(endpoint)!);
        if (!fresh) continue;
        swaps.push({ endpoint, epId, group, fresh });
        if (swaps.length === SLOT_BATCH) swapIn(outer, swaps.splice(0), failures);
      } catch (err) {
        for (const f of failuresOf(group, new Error(`policy of endpoint ${endpoint}: ${errorText(err)}`))) failures.push(f);
      }
    }
    swapIn(outer, swaps, failures);
    remove(outer, removals, failures);
    return failures;
  }

  /** Writes a monotonic change in place (returns undefined), or returns a new inner map filled
   *  with the endpoint's complete policy, for the caller to swap in: when the map is missing or
   *  the plan swaps it, and for a PolicyFill (planned for a new map: one made since is replaced). */
  private applyEndpoint(outer: BpfMap, epId: number, group: PolicyChange[], wanted: PolicyEntrySet): BpfMap | undefined {
    const innerId = outer.innerId(epKey(epId));
    if (innerId !== undefined && !group[0]!.swap && !group.some((c) => c instanceof PolicyFill)) {
      const inner = BpfMap.fromId(innerId);
      try {
        const creates = group.filter((c) => c.op === "create");
        const deletes = group.filter((c) => c.op === "delete");
        if (creates.length) writeEntries(inner, packedOf(creates));
        if (deletes.length) deleteEntries(inner, packedOf(deletes));
      } finally {
        inner.close();
      }
      return undefined;
    }
    const fresh = createInnerPolicyMap(this.ctx);
    try {
      if (wanted.size) writeEntries(fresh, wanted.packed);
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
  group: PolicyChange[];
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
function swapIn(outer: BpfMap, slots: readonly Slot[], failures: ObjectResult[]): void {
  if (!slots.length) return;
  try {
    const fds = Buffer.alloc(slots.length * 4);
    slots.forEach((s, i) => fds.writeUInt32LE(s.fresh!.fd, i * 4));
    try {
      outer.updateBatch(slotKeys(slots), fds, slots.length);
      return;
    } catch {
      /* find out which slot failed, one update each (the same writes again are harmless) */
    }
    for (const s of slots) {
      try {
        outer.updateInner(epKey(s.epId), s.fresh!);
      } catch (err) {
        for (const f of failuresOf(s.group, new Error(`policy of endpoint ${s.endpoint}: ${errorText(err)}`))) failures.push(f);
      }
    }
  } finally {
    for (const s of slots) s.fresh!.close(); // the outer map holds its own reference
  }
}

/** Drops the slots of endpoints that are gone: one batch delete, or one delete each (missing is fine). */
function remove(outer: BpfMap, slots: readonly Slot[], failures: ObjectResult[]): void {
  if (!slots.length) return;
  try {
    outer.deleteBatch(slotKeys(slots), slots.length);
    return;
  } catch {
    /* a slot was already gone (ENOENT) or the batch failed: one by one */
  }
  for (const s of slots) {
    try {
      outer.delete(epKey(s.epId));
    } catch (err) {
      for (const f of failuresOf(s.group, new Error(`policy of endpoint ${s.endpoint}: ${errorText(err)}`))) failures.push(f);
    }
  }
}

function groupByEndpoint(changes: readonly PolicyChange[]): Map<string, PolicyChange[]> {
  const groups = new Map<string, PolicyChange[]>();
  for (const c of changes) {
    const endpoint = c.endpoint;
    let g = groups.get(endpoint);
    if (!g) groups.set(endpoint, (g = []));
    g.push(c);
  }
  return groups;
}

function packedOf(entries: ReadonlyArray<{ key: number; decision: Decision; audit: boolean }>): Float64Array {
  const packed = new Float64Array(entries.length);
  entries.forEach((e, i) => (packed[i] = packEntry(e.key, e.decision, e.audit)));
  return packed;
}

/** A digest of the `count` entries a batch read returned (keys and values as the kernel gave them). */
function digestOf(keys: Buffer, values: Buffer, count: number): string {
  return createHash("sha1")
    .update(keys.subarray(0, count * POLICY_KEY.size))
    .update(values.subarray(0, count * POLICY_VALUE.size))
    .digest("base64");
}

/** The kernel's entries of one inner map as a packed set; entries no key can name are counted. */
function readEntries(keys: Buffer, values: Buffer, count: number): PolicyEntrySet {
  const packed = new Float64Array(count);
  let n = 0;
  for (let i = 0; i < count; i++) {
    const key = readPackedPolicyKey(keys, i * POLICY_KEY.size);
    if (key < 0) continue;
    const value = decodePolicyValue(values, i * POLICY_VALUE.size);
    packed[n++] = packEntry(key, value.decision, value.audit);
  }
  return PolicyEntrySet.fromPacked(n === count ? packed : packed.slice(0, n), count - n);
}

/** Kernel keys (and values) of packed entries. */
function encode(packed: Float64Array, withValues: boolean): { keys: Buffer; values: Buffer } {
  const keys = Buffer.alloc(packed.length * POLICY_KEY.size);
  const values = Buffer.alloc(withValues ? packed.length * POLICY_VALUE.size : 0);
  for (let i = 0; i < packed.length; i++) {
    const prefixlen = writePackedPolicyKey(entryKey(packed[i]!), keys, i * POLICY_KEY.size);
    if (withValues) encodePolicyValue(entryDecision(packed[i]!), prefixlen, values, i * POLICY_VALUE.size, entryAudit(packed[i]!));
  }
  return { keys, values };
}

/**
 * Deletes entries; one already missing counts as deleted. That happens when the creates of the same
 * plan (a separate batch) swapped in a complete new map that no longer holds them.
 */
function deleteEntries(m: BpfMap, packed: Float64Array): void {
  const { keys } = encode(packed, false);
  try {
    m.deleteBatch(keys, packed.length);
  } catch (err) {
    if (!(err instanceof BpfError && err.code === "ENOENT")) throw err;
    // The batch stopped at the first missing key: delete one by one, ignoring the missing ones.
    for (let i = 0; i < packed.length; i++) m.delete(keys.subarray(i * POLICY_KEY.size, (i + 1) * POLICY_KEY.size));
  }
}

function writeEntries(m: BpfMap, packed: Float64Array): void {
  const { keys, values } = encode(packed, true);
  m.updateBatch(keys, values, packed.length);
}
