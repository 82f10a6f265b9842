// Label selectors with Cilium semantics (pkg/policy/api EndpointSelector over pkg/labels).
// - A requirement's source "any" matches a label of any source with that key; any other source
//   must match exactly.
// - In: some label with the key has one of the values. NotIn: no such label (true when the key is
//   absent). Exists: some label has the key. DoesNotExist: none has (true when absent).
// - A selector with no requirements matches every label set (Cilium's `{}`).

import type { LabelSet, Selector, SelectorRequirement } from "../manifest/model.js";

function labelMatchesReq(source: string, key: string, req: SelectorRequirement): boolean {
  return key === req.key && (req.source === "any" || req.source === source);
}

/** Whether one requirement holds for a label set. */
export function requirementMatches(req: SelectorRequirement, labels: LabelSet): boolean {
  switch (req.operator) {
    case "Exists":
    case "DoesNotExist": {
      let found = false;
      for (const l of labels) {
        if (labelMatchesReq(l.source, l.key, req)) {
          found = true;
          break;
        }
      }
      return req.operator === "Exists" ? found : !found;
    }
    case "In":
    case "NotIn": {
      let found = false;
      for (const l of labels) {
        if (labelMatchesReq(l.source, l.key, req) && req.values.includes(l.value)) {
          found = true;
          break;
        }
      }
      return req.operator === "In" ? found : !found;
    }
  }
}

/** Whether a selector selects a label set: every requirement holds (empty selector: always). */
export function matches(selector: Selector, labels: LabelSet): boolean {
  for (const req of selector.requirements) if (!requirementMatches(req, labels)) return false;
  return true;
}

/** Cilium's wildcard selector `{}`: no requirements. */
export function isWildcard(selector: Selector): boolean {
  return selector.requirements.length === 0;
}

/** A canonical string of a selector's meaning (order of requirements and values ignored), used to
 *  cache selector → identities. */
export function selectorKey(selector: Selector): string {
  return selector.requirements
    .map((r) => `${r.source}:${r.key} ${r.operator} ${[...r.values].sort().join(",")}`)
    .sort()
    .join(" & ");
}

/** Human form for messages: `{any:id=app1}` or `{k8s:tier In (a,b), any:x Exists}`. */
export function selectorString(selector: Selector): string {
  const parts = selector.requirements.map((r) => {
    const k = `${r.source}:${r.key}`;
    if (r.operator === "In" && r.values.length === 1) return `${k}=${r.values[0]}`;
    if (r.operator === "In" || r.operator === "NotIn") return `${k} ${r.operator} (${r.values.join(",")})`;
    return `${k} ${r.operator}`;
  });
  return `{${parts.join(", ")}}`;
}

/**
 * An index of label sets by key → value → members, so a selector is evaluated against the few
 * candidates that carry the value (or key) of its most selective positive requirement instead of
 * every set. Members are integers the caller chooses (e.g. positions in an identity list).
 */
export class LabelIndex {
  private readonly byKey = new Map<string, Map<string, number[]>>();
  private readonly all: number[] = [];
  private readonly labelsOf = new Map<number, LabelSet>();

  add(member: number, labels: LabelSet): void {
    this.all.push(member);
    this.labelsOf.set(member, labels);
    for (const l of labels) {
      let values = this.byKey.get(l.key);
      if (!values) this.byKey.set(l.key, (values = new Map()));
      let members = values.get(l.value);
      if (!members) values.set(l.value, (members = []));
      members.push(member);
    }
  }

  /** Members whose label set the selector matches, in insertion order, without duplicates. */
  select(selector: Selector): number[] {
    let candidates: number[] | undefined;
    for (const req of selector.requirements) {
      let c: number[] | undefined;
      if (req.operator === "In") {
        const values = this.byKey.get(req.key);
        c = [];
        if (values) for (const v of req.values) c.push(...(values.get(v) ?? []));
      } else if (req.operator === "Exists") {
        const values = this.byKey.get(req.key);
        c = [];
        if (values) for (const members of values.values()) c.push(...members);
      }
      if (c && (!candidates || c.length < candidates.length)) candidates = c;
    }
    const base = candidates ? [...new Set(candidates)].sort((a, b) => this.order(a) - this.order(b)) : this.all;
    return base.filter((m) => matches(selector, this.labelsOf.get(m)!));
  }

  private orderOf?: Map<number, number>;
  private order(m: number): number {
    if (!this.orderOf || this.orderOf.size !== this.all.length) {
      this.orderOf = new Map(this.all.map((x, i) => [x, i]));
    }
    return this.orderOf.get(m)!;
  }
}
