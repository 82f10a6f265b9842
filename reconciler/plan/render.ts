// Plan → text (Terraform-like) and → the JSON document of DESIGN §6.

import type { DesiredPolicyEntry, PolicyMapEntry } from "../datapath/state.js";
import type { RuleRef } from "../policy/types.js";
import type { Change, Plan } from "./diff.js";

export interface RenderContext {
  /** Notes printed above the plan, e.g. that the kernel was not read. */
  notes: string[];
}

export interface PlanDocument {
  revision: string;
  node: string;
  notes: string[];
  summary: Plan["summary"];
  /** `replace: true` on an update that deletes and makes the object again (a device the kernel cannot change in place). */
  changes: Array<{ op: Change["op"]; resource: Change["resource"]; id: string; before: unknown; after: unknown; reason: string; replace?: true }>;
}

/** The JSON document for `--dry-run --output json`. */
export function planDocument(plan: Plan, ctx: RenderContext): PlanDocument {
  return {
    revision: plan.revision,
    node: plan.node,
    notes: ctx.notes,
    summary: plan.summary,
    changes: plan.changes.map((c) => ({
      op: c.op,
      resource: c.resource,
      id: c.id,
      before: c.resource === "policy" ? policyView(c.before) : (c.before ?? null),
      after: c.resource === "policy" ? policyView(c.after) : (c.after ?? null),
      reason: c.reason,
      ...("replace" in c && c.replace ? { replace: true } : {}),
    })),
  };
}

interface PolicyView {
  endpoint: string;
  direction: string;
  identity: number;
  protocol: number;
  port: number;
  endPort: number;
  decision: string;
  rule: RuleRef | null;
  rules: RuleRef[];
}

/** A policy entry as DESIGN §6 shows it; desired entries carry their rules, kernel ones do not. */
function policyView(spec: unknown): PolicyView | null {
  if (spec === undefined) return null;
  const e = spec as PolicyMapEntry & Partial<DesiredPolicyEntry>;
  const endPort = e.endPort ?? portBlockEnd(e.port, e.portPrefixLen);
  const rules = e.rules ?? [];
  return {
    endpoint: e.endpoint,
    direction: e.direction,
    identity: e.identity,
    protocol: e.protocol,
    port: e.port,
    endPort,
    decision: e.decision,
    rule: rules[0] ?? null,
    rules,
  };
}

/** Last port of the aligned block that a port prefix covers. */
export function portBlockEnd(port: number, prefixLen: number): number {
  return port + (1 << (16 - prefixLen)) - 1;
}

const SIGN = { create: "+", update: "~", delete: "-" } as const;
const COLOUR = { create: "\x1b[32m", update: "\x1b[33m", delete: "\x1b[31m" } as const;
const RESET = "\x1b[0m";

/** How many lines of one resource kind the text view shows before summarising the rest. */
const TEXT_LINES_PER_KIND = 200;

export function renderPlanText(plan: Plan, ctx: RenderContext, opts: { colour: boolean }): string {
  const lines: string[] = [];
  for (const note of ctx.notes) lines.push(`Note: ${note}`);
  if (ctx.notes.length) lines.push("");
  if (plan.changes.length === 0) {
    lines.push(`No changes. The datapath of node ${plan.node} matches revision ${plan.revision}.`);
    return lines.join("\n") + "\n";
  }
  lines.push(`reconcile will perform the following actions (revision ${plan.revision}, node ${plan.node}):`, "");
  const shown = new Map<string, number>();
  const hidden = new Map<string, number>();
  for (const c of plan.changes) {
    const n = shown.get(c.resource) ?? 0;
    if (n >= TEXT_LINES_PER_KIND) {
      hidden.set(c.resource, (hidden.get(c.resource) ?? 0) + 1);
      continue;
    }
    shown.set(c.resource, n + 1);
    // A device the kernel cannot change in place is deleted and made again: Terraform's "-/+".
    const mark = "replace" in c && c.replace ? "-/+" : SIGN[c.op];
    const sign = opts.colour ? `${COLOUR[c.op]}${mark}${RESET}` : mark;
    lines.push(`  ${sign} ${c.resource} ${c.id}${describe(c)}`);
  }
  for (const [resource, n] of hidden) lines.push(`  … ${n} more ${resource} changes (use --output json to see all)`);
  const s = plan.summary;
  lines.push("", `Plan: ${s.create} to create, ${s.update} to update, ${s.delete} to delete.`);
  return lines.join("\n") + "\n";
}

function describe(c: Change): string {
  if (c.resource === "policy") {
    const e = (c.after ?? c.before) as (PolicyMapEntry & Partial<DesiredPolicyEntry>) | undefined;
    if (!e) return ` [${c.reason}]`; // a whole map rebuilt, no one entry
    const rules = e.rules ?? [];
    const from = rules.length ? ` ← ${rules.map((r) => `${r.name} (${r.file}:${r.line})`).join(", ")}` : "";
    return ` ${e.decision}${from}${c.op === "update" ? ` [${c.reason}]` : ""}`;
  }
  if (c.op === "update") return ` [${c.reason}]`;
  if (c.op === "delete") return ` [${c.reason}]`;
  return "";
}
