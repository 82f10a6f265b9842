// Canonical security label sets (Cilium's pkg/labels, reduced to what reconcile needs).
// A label set is canonical when it is sorted by source, then key, and holds at most one label per
// source+key. Comparison is by UTF-16 code units (never locale-aware) so every node sorts alike.

import type { Label, LabelSet } from "../manifest/model.js";

/** A label string could not be parsed. */
export class LabelParseError extends Error {
  constructor(readonly input: string, reason: string) {
    super(`parse label ${JSON.stringify(input)}: ${reason} (expected "source:key=value" or "key=value")`);
    this.name = "LabelParseError";
  }
}

/** Two labels with the same source and key but different values in one set. */
export class DuplicateLabelError extends Error {
  constructor(readonly first: Label, readonly second: Label) {
    super(`label set holds ${labelString(first)} and ${labelString(second)} (expected one value per source:key)`);
    this.name = "DuplicateLabelError";
  }
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Order of labels in a canonical set: source, key, value. */
export function compareLabels(a: Label, b: Label): number {
  return cmp(a.source, b.source) || cmp(a.key, b.key) || cmp(a.value, b.value);
}

/** Cilium's string form: `source:key=value`, or `source:key` when the value is empty. */
export function labelString(l: Label): string {
  return l.value === "" ? `${l.source}:${l.key}` : `${l.source}:${l.key}=${l.value}`;
}

/** Sort and de-duplicate labels into a canonical set. Exact duplicates collapse; the same
 *  source:key with two values throws DuplicateLabelError. */
export function canonicalLabels(labels: Iterable<Label>): LabelSet {
  const sorted = [...labels].map((l) => ({ source: l.source, key: l.key, value: l.value })).sort(compareLabels);
  const out: Label[] = [];
  for (const l of sorted) {
    const prev = out[out.length - 1];
    if (prev && prev.source === l.source && prev.key === l.key) {
      if (prev.value === l.value) continue;
      throw new DuplicateLabelError(prev, l);
    }
    out.push(l);
  }
  return out;
}

/** True when the set is already in canonical order without duplicate source:key. */
export function isCanonical(labels: LabelSet): boolean {
  for (let i = 1; i < labels.length; i++) {
    const a = labels[i - 1]!;
    const b = labels[i]!;
    if (cmp(a.source, b.source) > 0) return false;
    if (a.source === b.source && cmp(a.key, b.key) >= 0) return false;
  }
  return true;
}

/** A stable, unambiguous string for a label set (canonicalized first); used as a map key and as
 *  the input of identity hashing. Labels are joined by ";" after escaping "\\" and ";". */
export function labelSetKey(labels: LabelSet): string {
  let key = keyMemo.get(labels);
  if (key === undefined) {
    const set = isCanonical(labels) ? labels : canonicalLabels(labels);
    key = set.map((l) => escapeKeyPart(labelString(l))).join(";");
    keyMemo.set(labels, key);
  }
  return key;
}

/** Label sets are immutable (readonly), so their keys are memoized per array. */
const keyMemo = new WeakMap<LabelSet, string>();

function escapeKeyPart(s: string): string {
  return s.includes("\\") || s.includes(";") ? s.replace(/\\/g, "\\\\").replace(/;/g, "\\;") : s;
}

/** Human form of a label set: `k8s:app=web, k8s:tier=db`. */
export function labelSetString(labels: LabelSet): string {
  return labels.map(labelString).join(", ");
}

/** Parse `source:key=value`, `key=value`, `source:key` or `key`. The source is the text before the
 *  first ":" that comes before any "="; without one, `defaultSource` applies. */
export function parseLabel(text: string, defaultSource = "any"): Label {
  const eq = text.indexOf("=");
  const head = eq < 0 ? text : text.slice(0, eq);
  const value = eq < 0 ? "" : text.slice(eq + 1);
  const colon = head.indexOf(":");
  const source = colon < 0 ? defaultSource : head.slice(0, colon);
  const key = colon < 0 ? head : head.slice(colon + 1);
  if (key === "") throw new LabelParseError(text, "empty key");
  if (source === "") throw new LabelParseError(text, "empty source before ':'");
  return { source, key, value };
}

/** The label set of a CIDR identity: `cidr:<prefix>`. */
export function cidrLabels(prefix: string): LabelSet {
  return [{ source: "cidr", key: prefix, value: "" }];
}
