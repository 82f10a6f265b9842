// `reconcile diff` for people: text for a terminal, markdown for a pull-request comment (a summary
// table, then per node the policy impact and the plan folded away).

import type { ImpactLine } from "./impact.js";
import type { NodePreview, PreviewSide } from "./preview.js";
import { renderPlanText } from "./render.js";

function sideText(s: PreviewSide): string {
  return s.model.revision.endsWith(s.name) ? s.model.revision : `${s.name} (${s.model.revision})`;
}

function impactCounts(p: NodePreview): string {
  return `${p.impact.newlyAllowed.length} newly allowed, ${p.impact.newlyDenied.length} newly denied`;
}

function planCounts(p: NodePreview): string {
  const s = p.plan.summary;
  return `${s.create} to create, ${s.update} to update, ${s.delete} to delete`;
}

/** The impact lines of one node: denials first (they break things), then allowances. */
function impactLines(p: NodePreview): ImpactLine[] {
  return [...p.impact.newlyDenied, ...p.impact.newlyAllowed];
}

function endpointLines(p: NodePreview): string[] {
  const out: string[] = [];
  if (p.impact.endpointsAdded.length) out.push(`endpoints added (their whole policy is new): ${p.impact.endpointsAdded.join(", ")}`);
  if (p.impact.endpointsRemoved.length) out.push(`endpoints removed (their policy goes with them): ${p.impact.endpointsRemoved.join(", ")}`);
  return out;
}

export function renderPreviewText(base: PreviewSide, ref: PreviewSide, previews: readonly NodePreview[], opts: { colour: boolean }): string {
  const lines = [`reconcile diff: ${sideText(base)} → ${sideText(ref)}`, ""];
  for (const p of previews) {
    if (p.plan.size === 0) {
      lines.push(`Node ${p.node}: no changes.`, "");
      continue;
    }
    lines.push(`Node ${p.node}: ${planCounts(p)}; ${impactCounts(p)}.`);
    const impact = impactLines(p);
    const endpoints = endpointLines(p);
    if (impact.length || endpoints.length) {
      lines.push("  Policy impact:");
      for (const l of impact) lines.push(`    ${l.text}`);
      for (const e of endpoints) lines.push(`    ${e}`);
    } else {
      lines.push("  Policy impact: no verdict changes.");
    }
    lines.push("  Plan:");
    const plan = renderPlanText(p.plan, { notes: [], peers: p.peers }, opts).split("\n");
    // The change lines only: the header and the summary are already said above.
    for (const l of plan) if (l.startsWith("  ")) lines.push(`  ${l}`);
    lines.push("");
  }
  return lines.join("\n");
}

/** Characters markdown would read as formatting in an impact line. */
function escapeMarkdown(text: string): string {
  return text.replace(/[\\`*_<>|[\]]/g, (c) => `\\${c}`);
}

export function renderPreviewMarkdown(base: PreviewSide, ref: PreviewSide, previews: readonly NodePreview[]): string {
  const out: string[] = [];
  out.push(`### reconcile diff: \`${base.name}\` → \`${ref.name}\``, "");
  out.push(`Base revision \`${base.model.revision}\`, ref revision \`${ref.model.revision}\`.`, "");
  out.push("| Node | Create | Update | Delete | Newly allowed | Newly denied |", "|---|---:|---:|---:|---:|---:|");
  for (const p of previews) {
    const s = p.plan.summary;
    out.push(`| ${escapeMarkdown(p.node)} | ${s.create} | ${s.update} | ${s.delete} | ${p.impact.newlyAllowed.length} | ${p.impact.newlyDenied.length} |`);
  }
  out.push("");
  for (const p of previews) {
    if (p.plan.size === 0) continue;
    out.push(`#### Node ${escapeMarkdown(p.node)}`, "");
    const impact = impactLines(p);
    for (const l of impact) {
      out.push(`- ${escapeMarkdown(l.text).replace(/newly (ALLOWED|DENIED)/, "**newly $1**")}`);
    }
    for (const e of endpointLines(p)) out.push(`- ${escapeMarkdown(e)}`);
    if (impact.length === 0 && endpointLines(p).length === 0) out.push("No verdict changes.");
    out.push("", `<details><summary>Plan: ${planCounts(p)}</summary>`, "", "```diff");
    const plan = renderPlanText(p.plan, { notes: [], peers: p.peers }, { colour: false }).split("\n");
    // `diff` highlighting wants the sign in the first column.
    for (const l of plan) if (l.startsWith("  ")) out.push(l.slice(2).replaceAll("```", "'''"));
    out.push("```", "", "</details>", "");
  }
  if (previews.every((p) => p.plan.size === 0)) out.push("No changes on any node.", "");
  return out.join("\n");
}
