// Plan → text (Terraform-like) and → the JSON document of DESIGN §6.

import type { DesiredPolicyEntry, EndpointEntry, PolicyMapEntry } from "../datapath/state.js";
import { peerText, type Peer, type PeerNames } from "../policy/peer-names.js";
import { Protocol, type RuleRef } from "../policy/types.js";
import { decisionWord, type Change, type Plan } from "./diff.js";

export interface RenderContext {
  /** Notes printed above the plan, e.g. that the kernel was not read. */
  notes: string[];
  /** What each peer identity stands for (from the compiled revision); without it rows give the number alone. */
  peers?: PeerNames;
}

export interface PlanDocument {
  revision: string;
  node: string;
  notes: string[];
  summary: Plan["summary"];
  /** `replace: true` on an update that deletes and makes the object again (a device the kernel cannot change in place). */
  /** `swap: true` on a policy change whose endpoint map is written as a new map swapped in whole (the change both widens and narrows it). */
  changes: Array<{ op: Change["op"]; resource: Change["resource"]; id: string; before: unknown; after: unknown; reason: string; replace?: true; swap?: true }>;
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
      before: c.resource === "policy" ? policyView(c.before, ctx.peers) : (c.before ?? null),
      after: c.resource === "policy" ? policyView(c.after, ctx.peers) : (c.after ?? null),
      reason: c.reason,
      ...("replace" in c && c.replace ? { replace: true } : {}),
      ...(c.resource === "policy" && c.swap ? { swap: true } : {}),
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
  /** An audited deny: the packet passes and is reported (always false for an allow). */
  audit: boolean;
  rule: RuleRef | null;
  rules: RuleRef[];
  /** TCP, UDP, SCTP, ICMP, ICMPv6 or ANY. */
  protocolName: string;
  /** What the identity stands for (present when the revision is known). */
  peer?: Peer;
}

/** A policy entry as DESIGN §6 shows it; desired entries carry their rules, kernel ones do not. */
function policyView(spec: unknown, peers: PeerNames | undefined): PolicyView | null {
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
    audit: e.audit === true,
    rule: rules[0] ?? null,
    rules,
    protocolName: protocolName(e.protocol),
    ...(peers ? { peer: peers(e.identity) } : {}),
  };
}

const PROTOCOL_NAMES: ReadonlyMap<number, string> = new Map([
  [Protocol.ANY, "ANY"],
  [Protocol.ICMP, "ICMP"],
  [Protocol.TCP, "TCP"],
  [Protocol.UDP, "UDP"],
  [Protocol.ICMPV6, "ICMPv6"],
  [Protocol.SCTP, "SCTP"],
]);

export function protocolName(protocol: number): string {
  return PROTOCOL_NAMES.get(protocol) ?? `protocol ${protocol}`;
}

/**
 * A policy key's protocol and ports as an operator writes them: "TCP/80", "TCP/8080-8087" (a
 * range is stored as aligned blocks, one entry each), "UDP (all ports)", "ICMP type 8", "ICMP (all
 * types)", "any protocol".
 */
export function portText(protocol: number, port: number, prefixLen: number): string {
  const name = protocolName(protocol);
  if (protocol === Protocol.ANY) return "any protocol";
  const icmp = protocol === Protocol.ICMP || protocol === Protocol.ICMPV6;
  if (prefixLen === 0) return `${name} (all ${icmp ? "types" : "ports"})`;
  if (icmp) return `${name} type ${port}`;
  const end = portBlockEnd(port, prefixLen);
  return `${name}/${end === port ? port : `${port}-${end}`}`;
}

type PolicyKeyFields = Pick<PolicyMapEntry, "endpoint" | "direction" | "identity" | "protocol" | "port" | "portPrefixLen" | "decision" | "audit">;

/** "app1 ingress allow TCP/80 from app2 (identity 36895)", "… deny (audit) …": one policy entry in words. */
export function policyEntryText(e: PolicyKeyFields, peers: PeerNames | undefined): string {
  const peer = peers ? peerText(e.identity, peers(e.identity)) : `identity ${e.identity}`;
  return `${e.endpoint} ${e.direction} ${decisionWord(e.decision, e.audit)} ${portText(e.protocol, e.port, e.portPrefixLen)} ${e.direction === "ingress" ? "from" : "to"} ${peer}`;
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
  if (plan.size === 0) {
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
    const row = `${mark} ${describe(c, ctx.peers)}`;
    lines.push(`  ${opts.colour ? `${COLOUR[c.op]}${row}${RESET}` : row}`);
  }
  for (const [resource, n] of hidden) lines.push(`  … ${n} more ${resource} changes (use --output json to see all)`);
  const swapped = swappedEndpoints(plan);
  if (swapped.length) {
    const names = swapped.length > SWAPPED_NAMES_MAX ? `${swapped.slice(0, SWAPPED_NAMES_MAX).join(", ")} and ${swapped.length - SWAPPED_NAMES_MAX} more` : swapped.join(", ");
    lines.push("", `Policy written as a new map and swapped in whole (the change both widens and narrows it): ${names}.`);
  }
  const s = plan.summary;
  lines.push("", `Plan: ${s.create} to create, ${s.update} to update, ${s.delete} to delete.`);
  return lines.join("\n") + "\n";
}

const SWAPPED_NAMES_MAX = 20;

/** The endpoints whose policy map the plan swaps, in plan order. */
function swappedEndpoints(plan: Plan): string[] {
  const out = new Set<string>();
  for (const c of plan.changes) if (c.resource === "policy" && c.swap) out.add(c.endpoint);
  return [...out];
}

/** A change as its plan row shows it (after the sign): "policy app1 ingress allow TCP/80 from app2 (identity 36895) ← l3-rule (l3-rule.json:2)". */
export function describe(c: Change, peers?: PeerNames): string {
  const reason = c.op === "create" ? "" : ` [${c.reason}]`;
  if (c.resource === "policy") {
    const e = (c.after ?? c.before) as (PolicyMapEntry & Partial<DesiredPolicyEntry>) | undefined;
    if (!e) return `policy ${c.id} [${c.reason}]`; // a whole map rebuilt, no one entry
    const rules = e.rules ?? [];
    const from = rules.length ? ` ← ${rules.map((r) => `${r.name} (${r.file}:${r.line})`).join(", ")}` : "";
    return `policy ${policyEntryText(e, peers)}${from}${c.op === "update" ? reason : ""}`;
  }
  if (c.resource === "endpoint" && c.op !== "delete") return `endpoint ${c.id}${endpointMode(c.after as EndpointEntry)}${reason}`;
  return `${c.resource} ${c.id}${reason}`;
}

/**
 * What an endpoint row says besides its address, when it differs from plain enforcement:
 * " app1 [enforcement audit]" (both directions' default deny audited), "[enforcement audit
 * ingress]" (one), and the verdict events it reports ("[verdicts allow+deny]"). Nothing for an
 * enforcing endpoint without verdict events, so rows read as before.
 */
export function endpointMode(e: Partial<EndpointEntry> | undefined): string {
  if (e === undefined) return "";
  const audited = [e.auditIngress ? "ingress" : "", e.auditEgress ? "egress" : ""].filter(Boolean);
  const verdicts = [e.verdictAllow ? "allow" : "", e.verdictDeny ? "deny" : ""].filter(Boolean);
  let out = "";
  if (audited.length === 2) out += " [enforcement audit]";
  else if (audited.length === 1) out += ` [enforcement audit ${audited[0]}]`;
  if (verdicts.length) out += ` [verdicts ${verdicts.join("+")}]`;
  return out && e.endpoint ? ` ${e.endpoint}${out}` : out;
}
