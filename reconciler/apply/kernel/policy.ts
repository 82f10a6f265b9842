// Per-endpoint policy: an LPM trie per endpoint, held in the `policy` map-of-maps under the
// endpoint's number. A change that only widens an endpoint's policy (new allows, removed denies) or
// only narrows it (removed allows, new denies) is written in place, because every intermediate state
// then lies between the old and the new policy. Any other change fills a new inner map with the
// complete new policy and swaps it in with one map update, so a packet sees the old policy or the new
// one, never a mix. Counters live in policy_stats, keyed by entry, so they survive the swap.

import { POLICY_KEY, POLICY_VALUE, decodePolicyKey, decodePolicyValue, encodePolicyKey, encodePolicyValue } from "../../datapath/layouts.js";
import { policyEntryKey, type DesiredState, type PolicyMapEntry } from "../../datapath/state.js";
import { BpfMap } from "../../ebpf-loader/index.js";
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
        const entries = new Map<number, PolicyMapEntry>();
        const { keys, values, count } = inner.lookupBatch();
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
    for (const [endpoint, group] of groupByEndpoint(changes)) {
      try {
        const epId = numbers.get(endpoint) ?? Number(endpoint.slice(1));
        if (!numbers.has(endpoint)) outer.delete(epKey(epId)); // the endpoint is gone: drop its whole map
        else this.applyEndpoint(outer, epId, group, entriesOf);
        results.push(...resultsFor(group));
      } catch (err) {
        results.push(...resultsFor(group, new Error(`policy of endpoint ${endpoint}: ${errorText(err)}`)));
      }
    }
    return results;
  }

  private applyEndpoint(outer: BpfMap, epId: number, group: Change[], entriesOf: (endpoint: string) => PolicyMapEntry[]): void {
    const innerId = outer.innerId(epKey(epId));
    if (innerId !== undefined && isMonotonic(group)) {
      const inner = BpfMap.fromId(innerId);
      try {
        const creates = group.filter((c) => c.op === "create").map((c) => c.after as PolicyMapEntry);
        const deletes = group.filter((c) => c.op === "delete").map((c) => c.before as PolicyMapEntry);
        if (creates.length) writeEntries(inner, creates);
        if (deletes.length) inner.deleteBatch(encodeKeys(deletes), deletes.length);
      } finally {
        inner.close();
      }
      return;
    }
    const fresh = createInnerPolicyMap(this.ctx);
    try {
      const entries = entriesOf(((group[0]!.after ?? group[0]!.before) as PolicyMapEntry).endpoint);
      if (entries.length) writeEntries(fresh, entries);
      outer.updateInner(epKey(epId), fresh);
    } finally {
      fresh.close(); // the outer map holds its own reference
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

function writeEntries(m: BpfMap, entries: readonly PolicyMapEntry[]): void {
  const keys = Buffer.alloc(entries.length * POLICY_KEY.size);
  const values = Buffer.alloc(entries.length * POLICY_VALUE.size);
  entries.forEach((e, i) => {
    const prefixlen = encodePolicyKey(e, keys, i * POLICY_KEY.size);
    encodePolicyValue(e.decision, prefixlen, values, i * POLICY_VALUE.size);
  });
  m.updateBatch(keys, values, entries.length);
}
