// Audit mode in the manifests: `reconcile.io/enforcement: audit | enforce`, as an annotation on an
// Endpoint or a rule manifest (Rule, CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy), or as a
// Cilium rule label `{key: reconcile.io/enforcement, value: audit}` (the only place a rule of a
// bare JSON rule array, which has no metadata, can say it). docs/audit.md describes the semantics.

import type { Field, Reader } from "./fields.js";

export const ENFORCEMENT_KEY = "reconcile.io/enforcement";
export const ENFORCEMENT_MODES = ["enforce", "audit"] as const;
export type EnforcementMode = (typeof ENFORCEMENT_MODES)[number];

/** Kinds whose manifests the annotation applies to. */
export const ENFORCEMENT_KINDS = ["Endpoint", "Rule", "CiliumNetworkPolicy", "CiliumClusterwideNetworkPolicy"] as const;

function checkMode(r: Reader, f: Field, value: unknown): EnforcementMode | undefined {
  if (typeof value === "string" && (ENFORCEMENT_MODES as readonly string[]).includes(value)) return value as EnforcementMode;
  // A non-string annotation value is reported by load.ts's annotation check already.
  if (typeof value === "string") r.error(f, `invalid ${ENFORCEMENT_KEY} (expected ${ENFORCEMENT_MODES.join(" or ")}, got ${JSON.stringify(value)})`);
  return undefined;
}

/** The mode `metadata.annotations` names, or undefined (absent or invalid: an error is reported). */
export function readEnforcementAnnotation(r: Reader, meta: Field): EnforcementMode | undefined {
  const f = r.child(r.child(meta, "annotations"), ENFORCEMENT_KEY);
  if (f.value === undefined) return undefined;
  return checkMode(r, f, f.value);
}

/** Reports the annotation on a kind it means nothing for (an Identity, a Node, a CIDR group). */
export function refuseEnforcementAnnotation(r: Reader, meta: Field, kind: string): void {
  const f = r.child(r.child(meta, "annotations"), ENFORCEMENT_KEY);
  if (f.value === undefined) return;
  r.error(f, `${ENFORCEMENT_KEY} applies to ${ENFORCEMENT_KINDS.join(", ")} (expected no such annotation on a ${kind}, got ${JSON.stringify(f.value)})`);
}

/** The mode a rule's Cilium `labels` name (the last such label), or undefined. */
export function readEnforcementLabel(r: Reader, rule: Field): EnforcementMode | undefined {
  const labels = r.child(rule, "labels");
  if (!Array.isArray(labels.value)) return undefined;
  let mode: EnforcementMode | undefined;
  labels.value.forEach((label: unknown, i) => {
    if (typeof label !== "object" || label === null || (label as Record<string, unknown>)["key"] !== ENFORCEMENT_KEY) return;
    const valueField = r.child(r.item(labels, i), "value");
    mode = checkMode(r, valueField, valueField.value ?? "") ?? mode;
  });
  return mode;
}

/**
 * Whether a rule is an audit rule: its own label decides when it has one (it is the more specific
 * place: one spec of a CiliumNetworkPolicy's `specs`), else the manifest's annotation.
 */
export function ruleIsAudit(r: Reader, rule: Field, annotation: EnforcementMode | undefined): boolean {
  return (readEnforcementLabel(r, rule) ?? annotation) === "audit";
}
