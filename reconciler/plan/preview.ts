// `reconcile diff`: what going from one revision to another does to each node, from the manifests
// alone (no kernel): the plan between the two desired states (the change list --dry-run shows on a
// node that has the base in force) and the policy impact (plan/impact.ts). Pure.

import { peerNames, type PeerNames } from "../policy/peer-names.js";
import type { DesiredState } from "../datapath/state.js";
import type { ManifestProblem, Model } from "../manifest/model.js";
import { diff, type Plan } from "./diff.js";
import { policyImpact, ruleRefs, type PolicyImpact } from "./impact.js";
import { IncrementalPipeline, type PipelineOptions } from "./snapshot-to-desired.js";
import { planDocument, type PlanDocument } from "./render.js";

/** One side of a diff: what the user named, and its loaded model. */
export interface PreviewSide {
  /** The --base or --ref value as given (a git ref or a directory). */
  name: string;
  model: Model;
  warnings: ManifestProblem[];
}

export interface NodePreview {
  node: string;
  plan: Plan;
  impact: PolicyImpact;
  /** What the plan's peer identities stand for: the ref's names, else the base's (a peer that went away). */
  peers: PeerNames;
}

/** Compile options shared by both sides (the node comes per preview). */
export type PreviewOptions = Pick<PipelineOptions, "enforcement" | "attachMode" | "enforcementMode" | "monitorVerdicts" | "eventRate">;

/**
 * The plan from `base` to `ref`: what --dry-run plans on a node whose kernel holds exactly the
 * base's datapath. Devices reconcile adopts (owned false) are never observed unless desired, so
 * the base's do not count as deletes.
 */
export function planBetween(base: DesiredState, ref: DesiredState): Plan {
  const inForce: DesiredState = { ...base, devices: new Map([...base.devices].filter(([, d]) => d.owned)) };
  return diff(ref, inForce);
}

/** The nodes named by Node manifests (or an Endpoint's spec.node) of either side, sorted. */
export function manifestNodes(...models: Model[]): string[] {
  const named = models.flatMap((m) => [...m.nodes.map((n) => n.name), ...m.endpoints.flatMap((e) => (e.node === undefined ? [] : [e.node]))]);
  return [...new Set(named)].sort();
}

/**
 * Each node's plan and policy impact from `base` to `ref`. Throws CapacityError as compiling does.
 * The ref is compiled incrementally from the base in `pipeline` (pass the one that loaded both
 * sides: the daemon's path from the commit in force to a new one), so a one-rule change costs about
 * one compile, not two, and the endpoints it does not touch share the base's entry sets, which the
 * plan and the impact skip by identity. Each node's base is a full compile (the node is a compile
 * option); the results are those of separate full compiles.
 */
export function previewNodes(base: PreviewSide, ref: PreviewSide, nodes: readonly string[], opts: PreviewOptions, pipeline = new IncrementalPipeline()): NodePreview[] {
  const baseRules = ruleRefs(base.model.rules);
  const refRules = ruleRefs(ref.model.rules);
  return nodes.map((node) => {
    const b = pipeline.compileModel(base.model, [], { ...opts, node });
    const r = pipeline.compileModel(ref.model, [], { ...opts, node });
    const refPeers = peerNames(r.policy);
    const basePeers = peerNames(b.policy);
    const peers: PeerNames = (identity) => {
      const p = refPeers(identity);
      return p.kind === "unknown" ? basePeers(identity) : p;
    };
    return { node, plan: planBetween(b.desired, r.desired), impact: policyImpact({ policy: b.policy, rules: baseRules }, { policy: r.policy, rules: refRules }), peers };
  });
}

/** Whether a preview shows anything at all (exit code 2). */
export function hasChanges(previews: readonly NodePreview[]): boolean {
  return previews.some((p) => p.plan.size > 0 || p.impact.newlyAllowed.length > 0 || p.impact.newlyDenied.length > 0);
}

/** The JSON document of `reconcile diff --output json` (docs/operations.md describes it). */
export interface PreviewDocument {
  base: { name: string; revision: string };
  ref: { name: string; revision: string };
  summary: { nodes: number; changes: number; newlyAllowed: number; newlyDenied: number };
  nodes: Array<{ node: string; summary: Plan["summary"]; changes: PlanDocument["changes"]; policyImpact: PolicyImpact }>;
}

export function previewDocument(base: PreviewSide, ref: PreviewSide, previews: readonly NodePreview[]): PreviewDocument {
  const nodes = previews.map((p) => ({ node: p.node, summary: p.plan.summary, changes: planDocument(p.plan, { notes: [], peers: p.peers }).changes, policyImpact: p.impact }));
  return {
    base: { name: base.name, revision: base.model.revision },
    ref: { name: ref.name, revision: ref.model.revision },
    summary: {
      nodes: previews.length,
      changes: previews.reduce((n, p) => n + p.plan.size, 0),
      newlyAllowed: previews.reduce((n, p) => n + p.impact.newlyAllowed.length, 0),
      newlyDenied: previews.reduce((n, p) => n + p.impact.newlyDenied.length, 0),
    },
    nodes,
  };
}
