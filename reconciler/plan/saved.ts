// Saved plans, as `terraform plan -out` makes them: `--dry-run --out FILE` writes the plan with the
// revision it was made from and a digest of the datapath it was made against; `--once --plan FILE`
// applies it only when both are unchanged, so what is applied is exactly what was reviewed. A plan
// is a pure function of the desired state (the revision, with the same options and release) and
// the observed state: when both digests match, the plan made at apply time is the saved one, and
// that is checked too (a third digest, of the change list). Pure: no file, kernel or clock.

import { createHash, type Hash } from "node:crypto";
import type { ActualState } from "../datapath/state.js";
import { PolicyChange, type Plan } from "./diff.js";
import { planDocument, type PlanDocument } from "./render.js";

export const PLAN_FORMAT = "reconcile-plan/v1";

/** The saved plan file. */
export interface SavedPlan {
  format: typeof PLAN_FORMAT;
  revision: string;
  node: string;
  /** ISO time the plan was made (for people; not checked). */
  createdAt: string;
  /** sha256 of the observed datapath the plan was computed against (stateDigest). */
  observedDigest: string;
  /** sha256 of the change list (planDigest). */
  planDigest: string;
  /** The plan as `--dry-run --output json` shows it. */
  plan: PlanDocument;
}

/** A saved plan no longer applies: the revision, the datapath or the plan itself changed. */
export class StalePlanError extends Error {
  override name = "StalePlanError";
  constructor(
    readonly file: string,
    /** What changed. */
    readonly what: "revision" | "node" | "observed" | "plan",
    detail: string,
  ) {
    super(`saved plan ${file} is stale: ${detail}; nothing was applied. Make a new plan with --dry-run --out ${file}`);
  }
}

/** A file that is not a saved plan of this format. */
export class PlanFileError extends Error {
  override name = "PlanFileError";
}

/** Fields of ActualState in a fixed order (the digest must not depend on insertion order). */
const FIELDS: ReadonlyArray<keyof ActualState> = ["namespaces", "devices", "addresses", "routes", "neighbours", "sysctls", "maps", "endpoints", "ipcache", "policy", "attachments"];

/** JSON with object keys sorted, so equal values always give equal text. */
function stableJson(v: unknown): string {
  if (v === null || typeof v !== "object") return JSON.stringify(v) ?? "null";
  if (Array.isArray(v)) return `[${v.map(stableJson).join(",")}]`;
  const o = v as Record<string, unknown>;
  return `{${Object.keys(o)
    .filter((k) => o[k] !== undefined)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${stableJson(o[k])}`)
    .join(",")}}`;
}

/** sha256 of a datapath state: every object of every kind, by id; policy entries by key and decision. */
export function stateDigest(state: ActualState): string {
  const h = createHash("sha256");
  for (const field of FIELDS) {
    h.update(`\n#${field}\n`);
    const map = state[field] as Map<string, unknown>;
    for (const id of [...map.keys()].sort()) {
      if (field === "policy") digestPolicySet(h, id, state.policy.get(id)!);
      else h.update(`${JSON.stringify(id)}=${stableJson(map.get(id))}\n`);
    }
  }
  return `sha256:${h.digest("hex")}`;
}

function digestPolicySet(h: Hash, endpoint: string, set: ActualState["policy"] extends Map<string, infer S> ? S : never): void {
  h.update(`${JSON.stringify(endpoint)} ${set.size} ${set.unreadable}\n`);
  // The packed values (key·2 + deny) are exact integers below 2^52: their bytes are the entries.
  h.update(new Uint8Array(set.packed.buffer, set.packed.byteOffset, set.packed.byteLength));
}

/** sha256 of a plan's change list: what is written where, in order. */
export function planDigest(plan: Plan): string {
  const h = createHash("sha256");
  h.update(`${plan.revision}\n${plan.node}\n`);
  for (const c of plan.changes) {
    // A policy change writes its key's decision (its rules are provenance only, not written).
    const what = c instanceof PolicyChange ? c.decision : stableJson(c.after ?? null);
    h.update(`${c.op} ${c.resource} ${c.id} ${what}\n`);
  }
  return `sha256:${h.digest("hex")}`;
}

/** The file `--dry-run --out` writes for `plan`, made against `observed`. */
export function savePlan(plan: Plan, observed: ActualState, createdAt: Date): SavedPlan {
  return {
    format: PLAN_FORMAT,
    revision: plan.revision,
    node: plan.node,
    createdAt: createdAt.toISOString(),
    observedDigest: stateDigest(observed),
    planDigest: planDigest(plan),
    plan: planDocument(plan, { notes: [] }),
  };
}

/** Reads a saved plan file's text. Throws PlanFileError when it is not one. */
export function parseSavedPlan(text: string, file: string): SavedPlan {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new PlanFileError(`${file}: not a saved plan (not JSON: ${(err as Error).message})`);
  }
  const d = doc as Partial<SavedPlan> | null;
  if (typeof d !== "object" || d === null || d.format !== PLAN_FORMAT) {
    throw new PlanFileError(`${file}: not a saved plan (expected "format": "${PLAN_FORMAT}", as --dry-run --out writes)`);
  }
  for (const k of ["revision", "node", "observedDigest", "planDigest"] as const) {
    if (typeof d[k] !== "string") throw new PlanFileError(`${file}: saved plan without "${k}"`);
  }
  return d as SavedPlan;
}

/**
 * Refuses (StalePlanError) to apply `saved` when `plan`, made now against `observed`, is not the
 * same plan: another revision, another node, a datapath changed since, or a plan that differs all
 * the same (other options, another release of reconcile).
 */
export function checkSavedPlan(saved: SavedPlan, file: string, plan: Plan, observed: ActualState): void {
  if (plan.revision !== saved.revision) {
    throw new StalePlanError(file, "revision", `the source is at revision ${plan.revision}, the plan was made for ${saved.revision}`);
  }
  if (plan.node !== saved.node) throw new StalePlanError(file, "node", `it was made for node ${saved.node}, this run is for node ${plan.node}`);
  const now = stateDigest(observed);
  if (now !== saved.observedDigest) {
    throw new StalePlanError(file, "observed", `the datapath changed since the plan was made (observed state ${now}, the plan was made against ${saved.observedDigest})`);
  }
  const digest = planDigest(plan);
  if (digest !== saved.planDigest) {
    throw new StalePlanError(file, "plan", `the same revision and datapath give another plan now (${digest}, saved ${saved.planDigest}): other options (--enforcement, --attach-mode) or another reconcile release?`);
  }
}
