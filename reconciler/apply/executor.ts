// observe → diff → apply, through the targets. Every planned change gets a status; failures are
// reported per object, never hidden, and a later run (the daemon's retry with backoff) re-plans
// from what the kernel really holds, so a failed object is simply planned again.

import { emptyState, isUndecodable, RESOURCE_KINDS, RESOURCES, type ActualState, type DesiredState, type ResourceKind } from "../datapath/state.js";
import { diff, Plan, weightOf, weightOfChange, type Change } from "../plan/diff.js";
import type { ProgressSink } from "./progress.js";
import { failuresOf, type ObjectResult, type Target } from "./target.js";

export type ObjectState = "pending" | "done" | "error";

export interface ObjectStatus {
  resource: ResourceKind;
  id: string;
  state: ObjectState;
  error?: string;
  /** Milliseconds since the epoch of the last state change. */
  at: number;
}

export interface ApplyReport {
  plan: Plan;
  /** How many planned changes were applied. */
  applied: number;
  /** Objects that failed. */
  failed: ObjectResult[];
}

export class Targets {
  private readonly byKind = new Map<ResourceKind, Target>();

  constructor(targets: readonly Target[]) {
    for (const t of targets) this.byKind.set(t.kind, t);
  }

  get(kind: ResourceKind): Target | undefined {
    return this.byKind.get(kind);
  }

  /** Reads the actual state of every kind that has a target (or of `kinds` only; the rest stay empty). */
  async observe(desired: DesiredState, kinds: readonly ResourceKind[] = RESOURCE_KINDS): Promise<ActualState> {
    const actual = emptyState();
    for (const kind of kinds) {
      const t = this.byKind.get(kind);
      if (!t) continue;
      // Each target fills its own kind's field (RESOURCES); assigned generically over the kinds.
      (actual as unknown as Record<string, unknown>)[RESOURCES[kind].field] = await t.observe(desired);
    }
    return actual;
  }
}

/** The kinds a new map must exist for, and the map itself. */
const KINDS_UP_TO_MAPS = RESOURCE_KINDS.slice(0, RESOURCE_KINDS.indexOf("map") + 1);

/**
 * Plans against the kernel and applies the plan. Changes go to their targets in plan order, a run of
 * consecutive changes of one kind in one call (so a target can batch map writes). When a kind fails,
 * the changes that depend on it still run: each target decides what it can do (a missing device
 * fails its own attachments with a clear error), so one bad endpoint does not hold up the others.
 */
export async function reconcileOnce(targets: Targets, desired: DesiredState, known?: ActualState, progress?: ProgressSink): Promise<ApplyReport> {
  // `known`: what the kernel is known to hold (the desired state of the last run that fully
  // succeeded), so a new commit is planned without reading a million entries back first.
  const observe = () => {
    progress?.({ type: "phase", phase: "observe" });
    return targets.observe(desired);
  };
  const actual = known && canPlanAgainst(known, desired) ? known : await observe();
  // A map created or replaced holds nothing yet: apply up to the maps, then plan the rest against
  // the kernel as it is then (entries go into the new map before programs move onto it). The maps
  // alone are compared first, so a run without a new map plans once, and a cold apply makes its
  // million entry changes once, after the maps exist.
  if (diff(desired, actual, ["map"]).changes.some((c) => c.op !== "delete")) {
    const upToMaps = new Plan(desired.revision, desired.node, diff(desired, actual, KINDS_UP_TO_MAPS).changes.filter((c) => c.op !== "delete"));
    const early = await applyChanges(targets, desired, upToMaps, progress);
    const rest = diff(desired, await observe());
    const late = await applyChanges(targets, desired, rest, progress);
    // An object planned again in the second round (it failed in the first) counts by its last result.
    const replanned = new Set(Array.from(rest.of(KINDS_UP_TO_MAPS), (c) => `${c.resource}/${c.id}`));
    const stillFailed = early.failed.filter((r) => !replanned.has(`${r.resource}/${r.id}`));
    const failed = stillFailed.concat(late.failed);
    return { plan: rest.after(upToMaps.changes), applied: early.applied + late.applied, failed };
  }
  const first = diff(desired, actual);
  const { applied, failed } = await applyChanges(targets, desired, first, progress);
  return { plan: first, applied, failed };
}

/**
 * Whether a run may plan against `known` (the last fully applied desired state) rather than the
 * kernel. Not when an endpoint that had a policy in `known` is gone from `desired` or has another
 * endpoint number there: the policy target finds an endpoint's slot in the policy map-of-maps by
 * the endpoint's number in the desired state, so the deletes planned (by name) for such an endpoint
 * would miss its slot and leave its old inner map in the kernel until a resync read it back.
 * Read from the kernel, the slot is named by its number and the target removes it.
 */
export function canPlanAgainst(known: ActualState, desired: DesiredState): boolean {
  const numberIn = (state: ActualState): Map<string, number> => new Map([...state.endpoints.values()].flatMap((e) => (isUndecodable(e) ? [] : [[e.endpoint, e.endpointId] as const])));
  const before = numberIn(known);
  const after = numberIn(desired);
  for (const endpoint of known.policy.keys()) {
    if (before.get(endpoint) !== after.get(endpoint)) return false;
  }
  return true;
}

/**
 * The changes of an applied plan that a fresh observation does not confirm: the kinds the plan
 * changed are read from the kernel again and planned again. Empty when every change stuck. A
 * repair the kernel does not show afterwards (written through a handle on something that is no
 * longer what the name means, or undone at once) is drift still there, not a success.
 */
export async function unconfirmed(targets: Targets, desired: DesiredState, plan: Plan): Promise<Change[]> {
  const kinds = RESOURCE_KINDS.filter((k) => plan.touches(k));
  if (kinds.length === 0) return [];
  return diff(desired, await targets.observe(desired, kinds), kinds).changes;
}

/** With progress, a long batch lets the event loop run at least this often (milliseconds). */
export const YIELD_MS = 50;

/**
 * Applies changes batch by batch; keeps only the failures (a cold plan has a million successes).
 * With `progress`: says what it is about to apply, reports every batch (and the targets' steps
 * inside one), and lets the event loop run between batches and, inside a long batch, every
 * YIELD_MS at a target's step, so a terminal line redraws and the daemon's status socket answers
 * during a long apply. What is applied, and in which order, is the same with and without it.
 */
async function applyChanges(targets: Targets, desired: DesiredState, plan: Plan, progress?: ProgressSink): Promise<{ applied: number; failed: ObjectResult[] }> {
  let applied = 0;
  const failures: ObjectResult[] = [];
  if (progress) progress({ type: "phase", phase: "apply", planned: plan.countsByKind() });
  let lastYield = performance.now();
  const yieldDue = (): Promise<void> | undefined => {
    if (performance.now() - lastYield < YIELD_MS) return undefined;
    return new Promise<void>((resolve) => setImmediate(resolve)).then(() => void (lastYield = performance.now()));
  };
  // Counts are of entry changes: a PolicyFill stands for its run's (weightOf), and a target
  // reports each of its failures by entry.
  for (const batch of batches(plan.forApply())) {
    const resource = batch[0]!.resource;
    const weight = weightOf(batch);
    const before = failures.length;
    const target = targets.get(resource);
    if (!target) {
      for (const f of failuresOf(batch, `no target for ${resource}: this is a bug`)) failures.push(f);
    } else {
      try {
        const step = progress && ((done: number) => (progress({ type: "step", resource, done, of: weight }), yieldDue()));
        const batchFailures = await target.apply(batch, desired, step);
        applied += weight - batchFailures.length;
        for (const f of batchFailures) failures.push(f);
      } catch (err) {
        for (const f of failuresOf(batch, err)) failures.push(f);
      }
    }
    if (progress) {
      progress({ type: "batch", resource, changes: weight, failed: failures.length - before });
      await new Promise<void>((resolve) => setImmediate(resolve));
      lastYield = performance.now();
    }
  }
  return { applied, failed: failures };
}

/** Whether a change belongs to the delete phase; a swapped policy map's deletes go with its swap. */
const removes = (c: Change): boolean => c.op === "delete" && !(c.resource === "policy" && c.swap);

/**
 * Policy entry changes per batch, about: a batch ends at the first endpoint boundary after this
 * many, so a plan's entries are made and applied a part at a time, not held at once. Small enough
 * that a batch of entry changes written in place (≈ 2 MiB of objects) dies in V8's young
 * generation instead of being promoted and collected later: 128k a batch raised the cold start's
 * peak RSS by 20–30 MiB (test/bench/README.md). A new or swapped map's entries come as one
 * PolicyFill, so a cold start's batches hold a few dozen objects. Large enough that the policy
 * target still swaps in the maps of thirty or so endpoints per slot update (each such syscall
 * waits for an RCU grace period).
 */
export const POLICY_BATCH_CHANGES = 32 * 1024;

/** Consecutive changes of the same resource kind and phase (making or removing); policy changes in
 *  batches of whole endpoints of about POLICY_BATCH_CHANGES entries (a PolicyFill counts its). */
export function* batches(changes: Iterable<Change>, policyBatch = POLICY_BATCH_CHANGES): Generator<Change[]> {
  let current: Change[] = [];
  let entries = 0;
  for (const c of changes) {
    const head = current[0];
    const last = current[current.length - 1];
    const full = c.resource === "policy" && last?.resource === "policy" && entries >= policyBatch && last.endpoint !== c.endpoint;
    if (head && (head.resource !== c.resource || removes(head) !== removes(c) || full)) {
      yield current;
      current = [];
      entries = 0;
    }
    current.push(c);
    entries += weightOfChange(c);
  }
  if (current.length) yield current;
}

/** Keeps the latest status of every object, for `reconcile status` and metrics. */
export class StatusTable {
  private current: ObjectStatus[] = [];

  constructor(private readonly clock: () => number = Date.now) {}

  /**
   * A run plans every object against the kernel (or against exactly what the last fully successful
   * run left there), so the objects in error after it are its failures: no need to walk the
   * million results of a cold apply.
   */
  record(report: ApplyReport): void {
    const at = this.clock();
    this.current = report.failed.map((r) => ({ resource: r.resource, id: r.id, state: "error", error: r.error!, at }));
  }

  /** Objects currently in error. */
  errors(): ObjectStatus[] {
    return this.current;
  }
}
