// The pinned maps themselves. They are created from the definitions in the datapath object, so
// they always match what the programs were compiled against. A pinned map whose layout differs
// (an older release's) is migrated: a new map takes its pin, the executor then re-plans so the new
// map is filled from the desired state, and the attachments, seeing programs bound to the replaced
// map, are updated in place onto programs that use the new one. Until that update the old programs
// keep their old map, which they hold themselves, so no packet meets a half-filled map.

import { randomInt } from "node:crypto";
import { nextPolicyRevision } from "../../datapath/layouts.js";
import type { DesiredState, MapSpec, StateOf } from "../../datapath/state.js";
import { BpfMap, unpin, type MapSpec as LoaderMapSpec } from "../../ebpf-loader/index.js";
import type { Change } from "../../plan/diff.js";
import type { ObjectResult, Target } from "../target.js";
import type { KernelContext } from "./context.js";
import { eachChange } from "./per-object.js";

export class MapTarget implements Target<"map"> {
  readonly kind = "map" as const;

  constructor(private readonly ctx: KernelContext) {}

  async observe(desired: DesiredState): Promise<StateOf<"map">> {
    const out = new Map<string, MapSpec>();
    for (const name of desired.maps.keys()) {
      const m = this.ctx.map(name);
      if (!m) continue;
      const s = m.spec;
      out.set(name, { name, type: s.type, keySize: s.keySize, valueSize: s.valueSize, maxEntries: s.maxEntries, flags: s.flags ?? 0 });
    }
    return out;
  }

  async apply(changes: readonly Change<"map">[]): Promise<ObjectResult[]> {
    return eachChange(changes, (c) => {
      if (c.op === "delete") return; // only desired maps are observed; nothing to delete
      const name = c.id;
      const spec = this.ctx.collectionSpec().maps.get(name);
      if (!spec) throw new Error(`map ${name} is not defined in the datapath object: this is a bug`);
      this.ctx.ensureDir(this.ctx.pinRoot);
      const m = createMap(spec);
      try {
        if (name === POLICY_REV_MAP) seedPolicyRevision(m);
        // A map of another layout gives up its pin; programs still using it keep it alive.
        if (c.op === "update") unpin(this.ctx.mapPath(name));
        m.pin(this.ctx.mapPath(name));
      } catch (err) {
        m.close();
        throw err;
      }
      this.ctx.adoptMap(name, m);
    });
  }
}

function createMap(spec: LoaderMapSpec): BpfMap {
  if (!spec.innerMap) return BpfMap.create(spec);
  const template = BpfMap.create(spec.innerMap);
  try {
    return BpfMap.create(spec, template);
  } finally {
    template.close();
  }
}

/** Creates an empty inner policy map like the template the datapath object declares. */
export function createInnerPolicyMap(ctx: KernelContext): BpfMap {
  const inner = ctx.collectionSpec().maps.get("policy")?.innerMap;
  if (!inner) throw new Error("the datapath object declares no inner map for policy: this is a bug");
  return BpfMap.create(inner);
}

/** The map holding the policy revision of the verdicts cached in conntrack (bpf/include/policy_rev.h). */
export const POLICY_REV_MAP = "policy_rev";

const ZERO_KEY = Buffer.alloc(4);

/**
 * Seeds a new policy_rev map. Its revision must not be one that verdicts cached in a conntrack map
 * that outlives it (the map recreated, its pin removed) were stored under, or those would count
 * as current: a random start in 1..2^31 makes that as unlikely as two random 31-bit numbers
 * meeting within the revisions since. Never 0, which no cached verdict may match.
 */
export function seedPolicyRevision(m: BpfMap, seed: number = randomInt(1, 2 ** 31)): number {
  return writeRevision(m, seed >>> 0 || 1);
}

/**
 * Moves the policy revision on (read, + 1 skipping 0, write; reconcile is its only writer): every
 * verdict cached in conntrack under an older revision is stale, so the next forward packet of each
 * flow is judged against the maps as they are now. Called after every batch that wrote endpoint,
 * ipcache or policy entries. Returns the new revision, or undefined when the map is not pinned.
 */
export function bumpPolicyRevision(ctx: KernelContext): number | undefined {
  const m = ctx.map(POLICY_REV_MAP);
  if (!m) return undefined;
  const cur = m.lookup(ZERO_KEY)?.readUInt32LE(0) ?? 0;
  return writeRevision(m, nextPolicyRevision(cur));
}

function writeRevision(m: BpfMap, revision: number): number {
  const value = Buffer.alloc(4);
  value.writeUInt32LE(revision, 0);
  m.update(ZERO_KEY, value);
  return revision;
}
