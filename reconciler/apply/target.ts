// A Target is the port between the reconciler and one kind of kernel object. observe() reads what
// is there (only what reconcile owns, or what the desired state names); apply() performs a batch of
// planned changes of that kind and says, per object, whether it worked. The real targets use
// ebpf-loader and netlink; the unit tests use the in-memory one below.

import { PolicyEntrySet, type DesiredState, type PolicyMapEntry, type ResourceKind, type StateOf } from "../datapath/state.js";
import { packEntry, policyEntryKey } from "../policy/key.js";
import { entryChanges, type Change } from "../plan/diff.js";

/** A planned change that failed. */
export interface ObjectResult {
  resource: ResourceKind;
  id: string;
  /** What failed and why (e.g. "attach tcx egress lxc1: bpf(BPF_LINK_CREATE): ENODEV"). */
  error: string;
}

export interface Target<K extends ResourceKind = ResourceKind> {
  kind: K;
  /** Reads the current objects of this kind, keyed like the desired state (its RESOURCES field). */
  observe(desired: DesiredState): Promise<StateOf<K>>;
  /** Applies changes of this kind, in the given order, and returns the ones that failed (every
   *  other change succeeded: at a million entries, successes are counted, not listed). Must not
   *  throw for a single object's failure: it reports it and goes on with the others (a failure
   *  that makes the rest pointless may fail them all). A target that works object by object calls
   *  `progress` with how many of the changes it has made so far (a progress line's count), and
   *  awaits what it returns: now and then a promise that lets the event loop run. */
  apply(changes: readonly Change<K>[], desired: DesiredState, progress?: StepProgress): Promise<ObjectResult[]>;
}

/** A target's count of the changes made in the batch so far; await what it returns (see Target.apply). */
export type StepProgress = (done: number) => Promise<void> | undefined;

/** A change that failed, and why. */
export function failure(c: Change, error: string): ObjectResult {
  return { resource: c.resource, id: c.id, error };
}

/** Every change of a batch failed with the same error (a PolicyFill's entries, each). */
export function failuresOf(changes: readonly Change[], error: unknown): ObjectResult[] {
  const text = errorText(error);
  return entryChanges(changes).map((c) => failure(c, text));
}

export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * An in-memory target: the kernel of the unit tests. Holds objects in a Map, counts writes, and can
 * be told to fail given ids.
 */
export class MemoryTarget<K extends ResourceKind = ResourceKind> implements Target<K> {
  readonly objects = new Map<string, unknown>();
  /** Number of objects written or deleted so far. */
  writes = 0;
  /** Ids whose next apply fails with this message. */
  readonly failNext = new Map<string, string>();

  constructor(readonly kind: K) {}

  async observe(): Promise<StateOf<K>> {
    // One generic store for every kind: what it hands back is what apply() was given for this kind.
    if (this.kind !== "policy") return new Map(this.objects) as StateOf<K>;
    // Policy entries are held per endpoint as packed sets, like the real target reports them.
    const byEndpoint = new Map<string, PolicyMapEntry[]>();
    for (const v of this.objects.values()) {
      const e = v as PolicyMapEntry;
      const list = byEndpoint.get(e.endpoint);
      if (list) list.push(e);
      else byEndpoint.set(e.endpoint, [e]);
    }
    // The kernel keeps no provenance: only keys, decisions and audit bits.
    return new Map([...byEndpoint].map(([endpoint, list]) => [endpoint, PolicyEntrySet.fromPacked(Float64Array.from(list, (e) => packEntry(policyEntryKey(e), e.decision, e.audit)))])) as StateOf<K>;
  }

  async apply(batch: readonly Change<K>[], _desired?: DesiredState, progress?: StepProgress): Promise<ObjectResult[]> {
    // Entry by entry, as it keeps them (a PolicyFill stands for its run's entries).
    const changes = entryChanges(batch);
    const failures: ObjectResult[] = [];
    for (let i = 0; i < changes.length; i++) {
      const c = changes[i]!;
      const error = this.failNext.get(c.id);
      if (error !== undefined) {
        this.failNext.delete(c.id);
        failures.push(failure(c, error));
      } else {
        this.writes++;
        if (c.op === "delete") this.objects.delete(c.id);
        else this.objects.set(c.id, c.after);
      }
      const pause = progress?.(i + 1);
      if (pause) await pause;
    }
    return failures;
  }
}
