// diff(desired, actual) → Plan: pure, ordered, every change with a reason. Creates and updates go in
// dependency order (devices before the addresses on them, maps before their entries, entries before
// the programs that read them); deletes go in reverse, after all creates and updates, so a program is
// never left pointing at state that is already gone (make before break).

import { decodePolicyEntryKey, entryKey } from "../policy/key.js";
import type { Decision } from "../policy/types.js";
import {
  isUndecodable,
  policyEntryId,
  PolicyEntrySet,
  RESOURCE_KINDS,
  RESOURCES,
  type DesiredPolicyEntry,
  type ActualState,
  type PolicyMapEntry,
  type DesiredSpec,
  type DesiredState,
  type ObservedSpec,
  type ResourceKind,
} from "../datapath/state.js";

export type Op = "create" | "update" | "delete";

/** A planned change of one object of kind K: a create has only `after`, a delete only `before`. */
type SpecChange<K extends ResourceKind> = {
  resource: K;
  /** Resource id, unique within its kind (e.g. "10.11.90.17/32", "app1/ingress/36895/6/80/16"). */
  id: string;
  /** Why: "missing", "identity 5 → 36895", "no longer desired". */
  reason: string;
} & (
  | { op: "create"; before?: undefined; after: DesiredSpec<K> }
  | {
      op: "update";
      before: ObservedSpec<K>;
      after: DesiredSpec<K>;
      /** Devices: the kernel cannot change this in place (REPLACING); the device is deleted and made again. */
      replace?: true;
    }
  | { op: "delete"; before: ObservedSpec<K>; after?: undefined }
);

/**
 * A planned change, typed by its kind: narrowing on `resource` gives its specs. A policy change is
 * a PolicyChange (made lazily from the packed entry sets).
 */
export type Change<K extends ResourceKind = ResourceKind> = K extends "policy" ? PolicyChange : K extends ResourceKind ? SpecChange<K> : never;

/** What a plan holds in order: changes, and runs of one endpoint's policy changes (see PolicyRun). */
type PlanItem = Change | PolicyRun;

/**
 * The changes to make, in order. A cold plan holds a million policy entry changes; it keeps each
 * endpoint's as a PolicyRun and makes their objects while they are iterated (the executor applies
 * them batch by batch), so a plan costs a few objects per endpoint instead of one per entry.
 * `changes` makes them all at once and keeps them, for what shows or saves a whole plan.
 */
export class Plan {
  /** Changes by "resource.op", in the order the plan first has each: every count it gives is read from here. */
  private readonly byKindOp = new Map<string, number>();
  private all: Change[] | undefined;

  constructor(
    readonly revision: string,
    readonly node: string,
    private readonly items: readonly PlanItem[],
  ) {
    for (const item of items) {
      if (item instanceof PolicyRun) {
        for (const [op, n] of item.counts()) this.count("policy", op, n);
      } else this.count(item.resource, item.op, 1);
    }
  }

  private count(resource: ResourceKind, op: Op, n: number): void {
    const k = `${resource}.${op}`;
    this.byKindOp.set(k, (this.byKindOp.get(k) ?? 0) + n);
  }

  /** Changes by op. */
  get summary(): Record<Op, number> {
    const out = { create: 0, update: 0, delete: 0 };
    for (const [k, n] of this.byKindOp) out[k.slice(k.indexOf(".") + 1) as Op] += n;
    return out;
  }

  /** How many changes the plan holds. */
  get size(): number {
    let total = 0;
    for (const n of this.byKindOp.values()) total += n;
    return total;
  }

  /** Every change, made once and kept (a plan that is shown, saved or compared). */
  get changes(): Change[] {
    return (this.all ??= [...this]);
  }

  /** The changes in order; a policy run's are made as they are reached. */
  *[Symbol.iterator](): Generator<Change> {
    if (this.all) return yield* this.all;
    for (const item of this.items) {
      if (item instanceof PolicyRun) yield* item.changes();
      else yield item;
    }
  }

  /** The changes of some kinds only, in order (without making the policy entries when policy is not asked for). */
  *of(kinds: readonly ResourceKind[]): Generator<Change> {
    const wanted = new Set(kinds);
    for (const item of this.all ?? this.items) {
      if (item instanceof PolicyRun) {
        if (wanted.has("policy")) yield* item.changes();
      } else if (wanted.has(item.resource)) yield item;
    }
  }

  /**
   * The changes in order as the executor applies them: a policy run the target writes as a whole
   * map (see PolicyFill) comes as one change standing for its entries, so a cold plan's million
   * entries cost a few thousand objects to apply. Every other change is as the iterator gives it.
   */
  *forApply(): Generator<Change> {
    for (const item of this.items) {
      if (item instanceof PolicyRun) yield* item.forApply();
      else yield item;
    }
  }

  /** Changes by "resource.op" (e.g. "policy.create"), without making them. */
  tally(): Record<string, number> {
    return Object.fromEntries(this.byKindOp);
  }

  /** Changes by kind, without making them. */
  countsByKind(): Partial<Record<ResourceKind, number>> {
    const out: Partial<Record<ResourceKind, number>> = {};
    for (const [k, n] of this.byKindOp) {
      const kind = k.slice(0, k.indexOf(".")) as ResourceKind;
      out[kind] = (out[kind] ?? 0) + n;
    }
    return out;
  }

  /** Whether the plan changes anything of `kind`. */
  touches(kind: ResourceKind): boolean {
    for (const op of ["create", "update", "delete"] as const) if (this.byKindOp.has(`${kind}.${op}`)) return true;
    return false;
  }

  /** This plan with `changes` applied before it (the executor's first round, up to the maps). */
  after(changes: readonly Change[]): Plan {
    return new Plan(this.revision, this.node, [...changes, ...(this.all ?? this.items)]);
  }
}

/** Fields the manifests may leave open: `undefined` on the desired side means "whatever it is". */
const OPTIONAL = new Set(["mac", "mtu", "tag", "up"]);

/** Kinds whose desired entries reconcile never creates or deletes (they are adopted, not owned). */
function isAdopted(kind: ResourceKind, spec: unknown): boolean {
  return kind === "device" && (spec as { owned?: boolean }).owned === false;
}

/** Device fields whose change means delete and create again (taking its addresses, routes,
 *  neighbour entries and attachments with it in the kernel). A veth whose peer is not where it
 *  should be (its namespace was deleted and made again: the old peer lives on in the old one) is
 *  made again as a pair. */
export const REPLACING = ["kind", "vxlan", "peer"] as const;

/** Kinds that live on a device (named by `device` and `netns`) and vanish when it is replaced. */
const ON_DEVICE = new Set<ResourceKind>(["address", "route", "neighbour"]);

/** The state field holding each map's entries, for maps whose entries reconcile plans. */
const ENTRIES_OF_MAP: Readonly<Record<string, "endpoints" | "ipcache" | "policy">> = { endpoints: "endpoints", ipcache: "ipcache", policy: "policy" };

/**
 * Maps the plan replaces because their layout differs (an older release's). A replacement starts
 * empty, so its entries are planned as creates (not compared with the old map's), and every program
 * is updated in place onto programs bound to the new maps.
 */
function replacedMaps(desired: DesiredState, actual: ActualState): string[] {
  const names: string[] = [];
  for (const [name, want] of desired.maps) {
    const have = actual.maps.get(name);
    if (have !== undefined && differing(RESOURCES.map.compared, want, have)) names.push(name);
  }
  return names;
}

/** Plans every kind, or only `kinds` (the others are left out of the plan). */
export function diff(desired: DesiredState, observed: ActualState, kinds: readonly ResourceKind[] = RESOURCE_KINDS): Plan {
  const creates: PlanItem[] = [];
  const deletes: PlanItem[] = [];
  const newMaps = replacedMaps(desired, observed);
  let actual = observed;
  if (newMaps.length) {
    actual = { ...observed };
    for (const name of newMaps) {
      const field = ENTRIES_OF_MAP[name];
      if (field) actual[field] = new Map();
    }
  }
  // Devices the plan replaces: what sits on them must be written again even where it looks unchanged.
  const replaced = new Set<string>();
  for (const resource of kinds) {
    if (resource === "policy") {
      diffPolicy(desired.policy, actual.policy, creates, deletes);
      continue;
    }
    // Planned generically over the kinds: each change is typed by the kind it is made for.
    const want = desired[RESOURCES[resource].field] as Map<string, object>;
    const have = actual[RESOURCES[resource].field] as Map<string, object>;
    if (want === have) continue; // the observation found exactly the desired entries
    const fields: readonly string[] = RESOURCES[resource].compared;
    for (const [id, after] of want) {
      if (isAdopted(resource, after)) continue;
      const before = have.get(id);
      if (before === undefined) {
        creates.push(change({ op: "create", resource, id, after, reason: "missing" }));
        continue;
      }
      const differences = differing(fields, after, before);
      if (differences) {
        const replace = resource === "device" && differing(REPLACING, after, before) !== "";
        creates.push(change({ op: "update", resource, id, before, after, reason: differences, ...(replace ? { replace: true } : {}) }));
        if (replace) replaced.add(deviceKey(after));
      } else if ((ON_DEVICE.has(resource) || resource === "attachment") && replaced.size > 0 && replaced.has(deviceKey(after))) {
        const device = (after as { device: string }).device;
        // A program attached to the old device is attached to nothing once it is gone: attach anew.
        if (resource === "attachment") creates.push(change({ op: "create", resource, id, after, reason: `device ${device} is replaced` }));
        else creates.push(change({ op: "update", resource, id, before, after, reason: `device ${device} is replaced` }));
      } else if (resource === "attachment" && newMaps.length > 0) {
        creates.push(change({ op: "update", resource, id, before, after, reason: `programs move onto the new ${newMaps.join(", ")} map` }));
      }
    }
    for (const [id, before] of have) {
      if (want.has(id)) continue;
      // An entry whose key cannot be decoded is no desired entry's: drift, deleted by its bytes.
      const reason = isUndecodable(before) ? `undecodable key (${before.undecodable}): no desired entry names it` : "no longer desired";
      deletes.push(change({ op: "delete", resource, id, before, reason }));
    }
  }
  deletes.reverse(); // a policy run in the delete phase yields its entries in reverse too
  return new Plan(desired.revision, desired.node, creates.concat(deletes));
}

/** A change the generic walk made: its specs come from the state field of its own kind. */
function change(c: { op: Op; resource: Exclude<ResourceKind, "policy">; id: string; before?: object; after?: object; reason: string; replace?: true }): Change {
  return c as Change;
}

/**
 * One policy entry to create, update or delete. It points into the packed sets it was planned from
 * and makes its id and entry objects only when asked: a cold plan makes a million of them (a batch
 * at a time, see Plan), so each kind keeps only the fields it needs.
 */
export abstract class PolicyChange {
  abstract readonly op: Op;
  abstract readonly endpoint: string;
  /** The entry's key (policy/key.ts policyEntryKey). */
  abstract readonly key: number;
  /** The decision the entry has after the change (create, update) or had (delete). */
  abstract readonly decision: Decision;
  /** Whether that entry is an audited deny (POLICY_AUDIT). */
  abstract readonly audit: boolean;
  abstract readonly before: PolicyMapEntry | undefined;
  abstract readonly after: DesiredPolicyEntry | undefined;
  abstract readonly reason: string;
  /** The endpoint's map is swapped for a new one holding its whole desired set (see walk). */
  swap = false;

  /** How many entry changes this change stands for (a PolicyFill: a run's; any other: one). */
  get weight(): number {
    return 1;
  }

  get resource(): "policy" {
    return "policy";
  }

  get id(): string {
    return policyEntryId({ endpoint: this.endpoint, ...decodePolicyEntryKey(this.key) });
  }

  toJSON(): object {
    return { op: this.op, resource: this.resource, id: this.id, before: this.before, after: this.after, reason: this.reason };
  }
}

/** An entry of the desired set (index `at`) that the kernel lacks. */
class PolicyCreate extends PolicyChange {
  constructor(
    readonly endpoint: string,
    private readonly want: PolicyEntrySet,
    private readonly at: number,
  ) {
    super();
  }
  get op(): Op {
    return "create";
  }
  get key(): number {
    return this.want.key(this.at);
  }
  get decision(): Decision {
    return this.want.decision(this.at);
  }
  get audit(): boolean {
    return this.want.audit(this.at);
  }
  get before(): undefined {
    return undefined;
  }
  get after(): DesiredPolicyEntry {
    return this.want.entry(this.at, this.endpoint);
  }
  get reason(): string {
    return "missing";
  }
}

/** An entry of the observed set (index `at`) that is no longer desired. */
class PolicyDelete extends PolicyChange {
  constructor(
    readonly endpoint: string,
    private readonly have: PolicyEntrySet,
    private readonly at: number,
  ) {
    super();
  }
  get op(): Op {
    return "delete";
  }
  get key(): number {
    return this.have.key(this.at);
  }
  get decision(): Decision {
    return this.have.decision(this.at);
  }
  get audit(): boolean {
    return this.have.audit(this.at);
  }
  get before(): PolicyMapEntry {
    return this.have.entry(this.at, this.endpoint);
  }
  get after(): undefined {
    return undefined;
  }
  get reason(): string {
    return "no longer desired";
  }
}

/** "allow", "deny" or "deny (audit)": an entry's decision as plan rows name it. */
export function decisionWord(decision: Decision, audit: boolean | undefined): string {
  return audit && decision === "deny" ? "deny (audit)" : decision;
}

function decisionText(set: PolicyEntrySet, at: number): string {
  return decisionWord(set.decision(at), set.audit(at));
}

/** An entry in both sets with another decision (or the same one, audited or no longer). */
class PolicyUpdate extends PolicyChange {
  constructor(
    readonly endpoint: string,
    private readonly have: PolicyEntrySet,
    private readonly haveAt: number,
    private readonly want: PolicyEntrySet,
    private readonly wantAt: number,
  ) {
    super();
  }
  get op(): Op {
    return "update";
  }
  get key(): number {
    return this.want.key(this.wantAt);
  }
  get decision(): Decision {
    return this.want.decision(this.wantAt);
  }
  get audit(): boolean {
    return this.want.audit(this.wantAt);
  }
  get before(): PolicyMapEntry {
    return this.have.entry(this.haveAt, this.endpoint);
  }
  get after(): DesiredPolicyEntry {
    return this.want.entry(this.wantAt, this.endpoint);
  }
  get reason(): string {
    return `decision ${decisionText(this.have, this.haveAt)} → ${decisionText(this.want, this.wantAt)}`;
  }
}

/** Per endpoint, one merge walk over the two sorted sets. */
function diffPolicy(want: ActualState["policy"], have: ActualState["policy"], creates: PlanItem[], deletes: PlanItem[]): void {
  for (const [endpoint, wanted] of want) {
    const present = have.get(endpoint);
    if (present === wanted) continue; // planned against the very state it was built from
    walk(endpoint, wanted, present ?? PolicyEntrySet.EMPTY, present !== undefined, creates, deletes);
  }
  for (const [endpoint, present] of have) {
    if (want.has(endpoint)) continue;
    // An empty map in a slot no endpoint has (someone else's, or left by a crash) has no entry to
    // delete: the slot itself goes.
    if (present.size === 0 && !present.unreadable) deletes.push(new PolicyWholeMap(endpoint, "delete", "an empty policy map in a slot no desired endpoint has"));
    else walk(endpoint, PolicyEntrySet.EMPTY, present, true, creates, deletes);
  }
}

/** A change to an endpoint's whole map (id "<endpoint>/*"): no one entry's key or specs. */
abstract class WholeMapChange extends PolicyChange {
  get key(): number {
    return NaN;
  }
  get decision(): Decision {
    return "deny";
  }
  get audit(): boolean {
    return false;
  }
  get before(): undefined {
    return undefined;
  }
  get after(): undefined {
    return undefined;
  }
  override get id(): string {
    return `${this.endpoint}/*`;
  }
}

/**
 * A change to an endpoint's whole policy map rather than to one entry (id "<endpoint>/*"): an
 * empty map left in a slot no desired endpoint has is deleted (op delete), and a map holding
 * entries no key names is rebuilt from the desired set (op update).
 */
class PolicyWholeMap extends WholeMapChange {
  constructor(
    readonly endpoint: string,
    readonly op: "update" | "delete",
    readonly reason: string,
  ) {
    super();
  }
}

/**
 * One endpoint's entry changes. Its creates and updates are applied in the make phase, its deletes
 * in the delete phase. An existing map is written in place when each phase's changes only widen or
 * only narrow the policy, so no write makes a state that is a mix within one phase (with allows
 * alone, creates before deletes keep every packet judged as the old or the new policy would). Any
 * other change to an existing map is a swap: the target fills a new inner map with the whole
 * desired set and puts it in the slot in one update, so all of the endpoint's changes, its deletes
 * too, are planned together in the make phase. The walk only counts; the changes themselves are
 * made when the plan is iterated (PolicyRun).
 */
function walk(endpoint: string, want: PolicyEntrySet, have: PolicyEntrySet, existing: boolean, creates: PlanItem[], deletes: PlanItem[]): void {
  const made = new Monotony();
  const gone = new Monotony();
  if (have.unreadable) made.update();
  mergeSets(want, have, {
    create: (i) => made.add(want.decision(i) === "allow"),
    remove: (j) => gone.add(have.decision(j) !== "allow"),
    update: () => made.update(),
  });
  const swap = existing && want.size > 0 && !(made.monotonic() && gone.monotonic());
  const run = { endpoint, want, have, swap, fresh: !existing };
  if (made.count) creates.push(new PolicyRun(run, "made", made.count, made.updates));
  if (gone.count) {
    if (swap) creates.push(new PolicyRun(run, "gone", gone.count, 0));
    else deletes.push(new PolicyRun(run, "gone", gone.count, 0, true));
  }
}

/**
 * One merge walk over two sorted entry sets, in key order: an entry only `want` has, one only
 * `have` has, and one both have with another value (decision or audit).
 */
function mergeSets(want: PolicyEntrySet, have: PolicyEntrySet, visit: { create(i: number): void; remove(j: number): void; update(j: number, i: number): void }): void {
  const a = want.packed;
  const b = have.packed;
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    const ka = i < a.length ? entryKey(a[i]!) : Infinity;
    const kb = j < b.length ? entryKey(b[j]!) : Infinity;
    if (ka < kb) visit.create(i++);
    else if (kb < ka) visit.remove(j++);
    else {
      if (a[i] !== b[j]) visit.update(j, i);
      i++;
      j++;
    }
  }
}

/** Counts one phase's changes of an endpoint and whether they all widen or all narrow its policy. */
class Monotony {
  count = 0;
  updates = 0;
  private widens = false;
  private narrows = false;

  add(widening: boolean): void {
    this.count++;
    if (widening) this.widens = true;
    else this.narrows = true;
  }

  update(): void {
    this.count++;
    this.updates++;
  }

  monotonic(): boolean {
    return this.updates === 0 && !(this.widens && this.narrows);
  }
}

/**
 * One endpoint's changes of one part of its walk: "made" (creates and updates, in key order, a
 * rebuild of an unreadable map first) or "gone" (deletes, in key order or, in the delete phase,
 * reversed). Its PolicyChange objects are made when the plan reaches it, by walking the two sets again.
 */
class PolicyRun {
  constructor(
    private readonly run: { endpoint: string; want: PolicyEntrySet; have: PolicyEntrySet; swap: boolean; fresh: boolean },
    private readonly part: "made" | "gone",
    private readonly size: number,
    private readonly updates: number,
    private readonly reversed = false,
  ) {}

  /** Changes by op. */
  counts(): Array<[Op, number]> {
    if (this.part === "gone") return [["delete", this.size]];
    return [["create", this.size - this.updates], ["update", this.updates]].filter(([, n]) => n !== 0) as Array<[Op, number]>;
  }

  /** Its changes, made now (one endpoint's at a time: the executor applies them batch by batch). */
  changes(): PolicyChange[] {
    const { endpoint, want, have, swap } = this.run;
    const out: PolicyChange[] = [];
    if (this.part === "made") {
      if (have.unreadable) out.push(new PolicyWholeMap(endpoint, "update", `the map holds ${have.unreadable} entries no policy key names (written by someone else); rebuilt`));
      mergeSets(want, have, {
        create: (i) => out.push(new PolicyCreate(endpoint, want, i)),
        remove: () => {},
        update: (j, i) => out.push(new PolicyUpdate(endpoint, have, j, want, i)),
      });
    } else {
      mergeSets(want, have, { create: () => {}, remove: (j) => out.push(new PolicyDelete(endpoint, have, j)), update: () => {} });
      if (this.reversed) out.reverse();
    }
    if (swap) for (const c of out) c.swap = true;
    return out;
  }

  /**
   * Its changes for the executor: one PolicyFill when the policy target writes the endpoint's map
   * whole and never reads the entries (a map made new or swapped is filled from the desired set,
   * and a slot whose endpoint has no entries left is dropped), else each change.
   */
  forApply(): PolicyChange[] {
    const { swap, fresh, want } = this.run;
    const whole = this.part === "made" ? fresh || swap : swap || want.size === 0;
    return whole ? [new PolicyFill(this.run.endpoint, this.part === "made" ? "create" : "delete", this.size, swap, () => this.changes())] : this.changes();
  }
}

/**
 * A policy run the target writes as a whole map, standing for its `weight` entry changes. Only the
 * executor and the targets see one (Plan.forApply); a target that needs the entries, or a failure
 * that must name them, makes them with `entries()`.
 */
export class PolicyFill extends WholeMapChange {
  constructor(
    readonly endpoint: string,
    readonly op: Op,
    private readonly entryCount: number,
    swap: boolean,
    /** The entry changes it stands for, made now. */
    readonly entries: () => PolicyChange[],
  ) {
    super();
    this.swap = swap;
  }
  override get weight(): number {
    return this.entryCount;
  }
  get reason(): string {
    return `the endpoint's map is written whole (${this.weight} entries)`;
  }
}

/** Changes with every PolicyFill replaced by the entry changes it stands for. */
export function entryChanges<C extends Change>(changes: readonly C[]): C[] {
  if (!changes.some((c) => c instanceof PolicyFill)) return changes as C[];
  return changes.flatMap((c) => (c instanceof PolicyFill ? (c.entries() as C[]) : [c]));
}

/** How many entry changes one change stands for (a PolicyFill: its run's; any other: one). */
export function weightOfChange(c: Change): number {
  return c.resource === "policy" ? c.weight : 1;
}

/** How many entry changes `changes` stand for. */
export function weightOf(changes: readonly Change[]): number {
  let n = 0;
  for (const c of changes) n += weightOfChange(c);
  return n;
}

/** "netns/name" of a device spec, or of the device an address, route or neighbour sits on. */
function deviceKey(spec: unknown): string {
  const s = spec as { name?: string; device?: string; netns?: string };
  return `${s.netns ?? ""}/${s.device ?? s.name ?? ""}`;
}

/** "identity 5 → 36895, enforceIngress false → true", or "" when equal. */
function differing(fields: readonly string[], after: unknown, before: unknown): string {
  const a = after as Record<string, unknown>;
  const b = before as Record<string, unknown>;
  let out = "";
  for (const f of fields) {
    if (a[f] === b[f] || (a[f] === undefined && OPTIONAL.has(f)) || sameObject(a[f], b[f])) continue;
    out += `${out ? ", " : ""}${f} ${show(b[f])} → ${show(a[f])}`;
  }
  return out;
}

/** Flat objects (e.g. vxlan settings) are equal when every field is. */
function sameObject(x: unknown, y: unknown): boolean {
  if (typeof x !== "object" || typeof y !== "object" || x === null || y === null) return false;
  const a = x as Record<string, unknown>;
  const b = y as Record<string, unknown>;
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  for (const k of keys) if (a[k] !== b[k]) return false;
  return true;
}

function show(v: unknown): string {
  return typeof v === "object" && v !== null ? JSON.stringify(v) : String(v);
}
