// `reconcile explain`: the verdict for one flow, evaluated directly from the rules. This is a
// second, independent model of the semantics in compile.ts (it never looks at compiled entries):
// a differential test compares the two, and the kernel.

import type { EndpointManifest, LabelSet, Model, NamedPort, PeerRule } from "../manifest/model.js";
import { parseAddress, parsePrefix, type Prefix, prefixContains, prefixContainsAddress } from "../manifest/ip.js";
import {
  buildContext,
  ENTITY_RESERVED,
  worldEntityCovers,
  type EffectiveRule,
  hasDirection,
  type PolicyContext,
  sections,
} from "./context.js";
import { HOST_ENDPOINT, HOST_GATEWAYS, localHost } from "./host.js";
import type { IdentityAllocatorOptions } from "./identity.js";
import { labelSetString } from "./labels.js";
import { isICMP, portsAdmit, protocolName } from "./ports.js";
import { expandCidr, nodeSelectorIdentities } from "./peers.js";
import { isWildcard, matches } from "./selector.js";
import {
  type CompileOptions,
  type Decision,
  type Direction,
  type EndpointPolicy,
  type Explanation,
  type ExplainQuery,
  type PolicyEntry,
  Protocol,
  ReservedIdentity,
  type RuleRef,
} from "./types.js";

/** A query names something that is neither an endpoint nor an IP address. */
export class ExplainQueryError extends Error {
  constructor(readonly field: "from" | "to", readonly value: string, options?: { cause?: unknown }) {
    super(`explain --${field} ${JSON.stringify(value)}: not an endpoint name, IP address or "host" (expected an Endpoint's metadata.name, an IPv4 or an IPv6 address, or host for the local node's host)`, options);
    this.name = "ExplainQueryError";
  }
}

/** One side of a flow, resolved. */
interface Party {
  identity: number;
  labels: LabelSet;
  /** When the side is an endpoint (local or remote). */
  endpoint?: EndpointManifest;
  /** When the side is the local host (identity host: "host", the local Node address or one of
   *  the host addresses); its host policies then apply. */
  host?: boolean;
  /** When the side resolved to a CIDR identity: its prefix. */
  cidr?: Prefix;
  /** "app3", "reserved:world-ipv4", "cidr:10.0.0.0/8", ... */
  display: string;
}

function resolveParty(ctx: PolicyContext, field: "from" | "to", text: string): Party {
  const labelsOf = (id: number): LabelSet => ctx.alloc.identities.get(id)?.labels ?? [];
  const byName = ctx.endpointByName.get(text);
  if (byName) {
    const id = ctx.endpointIdentity.get(text)!;
    return { identity: id, labels: labelsOf(id), endpoint: byName, display: byName.name };
  }
  if (text === "host") return { identity: ReservedIdentity.host, labels: labelsOf(ReservedIdentity.host), host: true, display: "host" };
  let family: 4 | 6;
  let addr: bigint;
  try {
    ({ family, addr } = parseAddress(text));
  } catch (cause) {
    throw new ExplainQueryError(field, text, { cause });
  }
  // Longest prefix wins; on equal length endpoint > host > node > CIDR (ipcache precedence).
  let best: { len: number; rank: number; party: Party } | undefined;
  const offer = (p: Prefix, rank: number, make: () => Party): void => {
    if (!prefixContainsAddress(p, family, addr)) return;
    if (!best || p.len > best.len || (p.len === best.len && rank < best.rank)) best = { len: p.len, rank, party: make() };
  };
  for (const ep of ctx.model.endpoints) {
    for (const a of [ep.ipv4, ep.ipv6]) {
      if (a === undefined) continue;
      const id = ctx.endpointIdentity.get(ep.name)!;
      offer(parsePrefix(a), 0, () => ({ identity: id, labels: labelsOf(id), endpoint: ep, display: ep.name }));
    }
  }
  const reserved = (id: number): Party => ({ identity: id, labels: labelsOf(id), display: labelSetString(labelsOf(id)) });
  const host = (): Party => ({ ...reserved(ReservedIdentity.host), host: true });
  for (const h of ctx.opts.hostAddresses ?? []) offer(parsePrefix(h), 1, host);
  for (const n of ctx.model.nodes) {
    const local = n.name === ctx.opts.node;
    offer(parsePrefix(n.address), local ? 1 : 2, local ? host : () => reserved(ReservedIdentity.remoteNode));
  }
  for (const [text2, id] of ctx.alloc.byCidr) {
    const p = parsePrefix(text2);
    offer(p, 3, () => ({ identity: id, labels: labelsOf(id), cidr: p, display: `cidr:${text2}` }));
  }
  const party = best ? best.party : reserved(family === 4 ? ReservedIdentity.worldIPv4 : ReservedIdentity.worldIPv6);
  // An endpoint gateway address is the host's (its host policy applies) with its ipcache identity.
  const isGateway = HOST_GATEWAYS.some((g) => {
    const p = parseAddress(g);
    return p.family === family && p.addr === addr;
  });
  return isGateway && !party.host ? { ...party, host: true } : party;
}

/** Whether a PeerRule's from/to part selects every peer (L4-only, `{}`, entity all). Named
 *  ports towards such a peer resolve against every endpoint's declarations, as the datapath's
 *  identity-0 entries do. */
function selectsEveryone(peer: PeerRule): boolean {
  if (peer.endpoints === undefined && peer.cidrs === undefined && peer.entities === undefined && peer.nodes === undefined) {
    return peer.ports !== undefined;
  }
  return (peer.endpoints ?? []).some(isWildcard) || (peer.entities ?? []).includes("all");
}

/** Whether a PeerRule's from/to part selects the party. */
function peerSelects(ctx: PolicyContext, peer: PeerRule, party: Party): boolean {
  if (peer.endpoints === undefined && peer.cidrs === undefined && peer.entities === undefined && peer.nodes === undefined) {
    return peer.ports !== undefined; // L4-only selects everyone; an empty peer rule, no one
  }
  for (const sel of peer.endpoints ?? []) if (isWildcard(sel) || matches(sel, party.labels)) return true;
  if (peer.nodes !== undefined && nodeSelectorIdentities(ctx.model, ctx.opts, peer.nodes).includes(party.identity)) return true;
  for (const c of (peer.cidrs ?? []).flatMap((x) => expandCidr(ctx.model, x))) {
    const outer = parsePrefix(c.cidr);
    if (party.cidr && prefixContains(outer, party.cidr) && !c.except.some((e) => prefixContains(parsePrefix(e), party.cidr!))) {
      return true;
    }
    if (outer.len === 0) {
      const familyWorld = outer.family === 4 ? ReservedIdentity.worldIPv4 : ReservedIdentity.worldIPv6;
      if (party.identity === ReservedIdentity.world || party.identity === familyWorld) return true;
    }
  }
  for (const e of peer.entities ?? []) {
    if (e === "all") return true;
    if (ENTITY_RESERVED[e].includes(party.identity)) return true;
    const info = ctx.alloc.identities.get(party.identity);
    if (e === "cluster" && (info?.origin === "pinned" || info?.origin === "derived")) return true;
    if (info?.origin === "cidr" && info.cidr !== undefined && worldEntityCovers(e, info.cidr)) return true;
  }
  return false;
}

/** The owner of a policy: an endpoint, or the local host endpoint (host policies). */
interface Subject {
  /** Endpoint name, or HOST_ENDPOINT. */
  name: string;
  /** Rules whose subject selects it (any direction). */
  rules: EffectiveRule[];
  /** The named ports it declares (its ingress named ports resolve against them). */
  ports?: readonly NamedPort[];
  /** In audit mode (its annotation, or --enforcement-mode audit for everything). */
  audit: boolean;
}

/** What one endpoint's policy in one direction says about the flow. */
interface SideVerdict {
  endpoint: Subject;
  direction: Direction;
  enforced: boolean;
  /** Rules putting the direction into default deny (or, with only enableDefaultDeny=false rules,
   *  those rules). */
  selectedBy: RuleRef[];
  /** Only enableDefaultDeny=false rules select it: allow-all unless denied. */
  allowAll: boolean;
  allowRules: RuleRef[];
  denyRules: RuleRef[];
  verdict: Decision;
  /** A deny that lets the packet through and reports it: the endpoint is in audit mode, or every
   *  rule that denies it (for default deny: that puts the direction into default deny) is an
   *  audit rule. */
  audited: boolean;
  /** The audit rules behind an audited deny (none when the endpoint's mode audits it). */
  auditRules: RuleRef[];
}

function refsSorted(refs: Iterable<RuleRef>): RuleRef[] {
  const uniq = new Map<string, RuleRef>();
  for (const r of refs) uniq.set(`${r.file}\0${r.line}\0${r.name}`, r);
  return [...uniq.values()].sort((a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : a.line - b.line || (a.name < b.name ? -1 : 1)));
}

function endpointSubject(ctx: PolicyContext, ep: EndpointManifest): Subject {
  const s: Subject = { name: ep.name, rules: ctx.rules.filter((r) => matches(r.subject, ep.labels)), audit: ctx.opts.audit === true || ep.audit === true };
  if (ep.ports !== undefined) s.ports = ep.ports;
  return s;
}

function evaluateSide(
  ctx: PolicyContext,
  ep: Subject,
  direction: Direction,
  peer: Party,
  protocol: number,
  port: number,
): SideVerdict {
  const selecting: EffectiveRule[] = ep.rules.filter((r) => hasDirection(r, direction));
  const dd = selecting.filter((r) => r.defaultDeny[direction]);
  const allowOnly = selecting.filter((r) => !r.defaultDeny[direction]);
  const mode = ctx.opts.enforcement;
  const enforced = mode === "always" || (mode === "default" && selecting.length > 0);
  const allowAll = mode === "default" && selecting.length > 0 && dd.length === 0;
  const allowRules: RuleRef[] = [];
  const denyRules: RuleRef[] = [];
  // Named ports resolve at the destination: this endpoint on ingress; on egress the peer's
  // identity (every endpoint's declarations when the element selects every peer).
  const declared = (p: PeerRule): readonly NamedPort[] | undefined =>
    direction === "ingress" ? ep.ports : selectsEveryone(p) ? ctx.allPorts : ctx.portsByIdentity.get(peer.identity);
  const admits = (p: PeerRule): boolean => peerSelects(ctx, p, peer) && portsAdmit(p.ports, protocol, port, declared(p));
  for (const r of selecting) {
    const s = sections(r, direction);
    for (const p of s.deny) if (admits(p)) denyRules.push(r.ref);
    for (const p of s.allow) if (admits(p)) allowRules.push(r.ref);
  }
  if (allowAll) allowRules.push(...allowOnly.map((r) => r.ref));
  const verdict: Decision = !enforced ? "allow" : denyRules.length > 0 ? "deny" : allowRules.length > 0 ? "allow" : "deny";
  const selectedBy = refsSorted((dd.length > 0 ? dd : allowOnly).map((r) => r.ref));
  // What decides a deny: its deny rules, or for default deny the rules that cause it.
  const deciding = denyRules.length > 0 ? refsSorted(denyRules) : selectedBy;
  const audits = new Set(selecting.filter((r) => r.manifest.audit).map((r) => r.ref));
  const byRules = deciding.length > 0 && deciding.every((r) => audits.has(r));
  return {
    endpoint: ep,
    direction,
    enforced,
    selectedBy,
    allowAll,
    allowRules: refsSorted(allowRules),
    denyRules: refsSorted(denyRules),
    verdict,
    audited: verdict === "deny" && (ep.audit || byRules),
    auditRules: verdict === "deny" && byRules ? deciding : [],
  };
}

/** Why one side denies: its deny rules, or default deny and what causes it. */
function denyAnswer(side: SideVerdict, peer: Party, flow: string): { verdict: "deny"; reason: string; rules: RuleRef[] } {
  const where = `${side.endpoint.name} ${side.direction}`;
  if (side.denyRules.length > 0) {
    const noun = side.denyRules.length === 1 ? "rule" : "rules";
    return { verdict: "deny", reason: `denied by ${noun} ${ruleList(side.denyRules)} at ${where}`, rules: side.denyRules };
  }
  const prep = side.direction === "ingress" ? "from" : "to";
  const who = `identity ${peer.identity} (${peer.display})`;
  const selected =
    side.selectedBy.length > 0
      ? `${side.endpoint.name} is selected by ${side.selectedBy.length === 1 ? "rule" : "rules"} ${side.selectedBy.map((r) => `${r.file}:${r.line}`).join(", ")}`
      : `enforcement is "always" for ${side.endpoint.name}`;
  return { verdict: "deny", reason: `default deny: ${selected} and none allows ${side.direction} ${prep} ${who} on ${flow}`, rules: side.selectedBy };
}

/** "audit: would be allowed through (…)": why an audited deny lets the packet pass. */
function auditText(side: SideVerdict): string {
  const why = side.endpoint.audit
    ? `${side.endpoint.name} is in audit mode`
    : `${side.auditRules.length === 1 ? "audit rule" : "audit rules"} ${ruleList(side.auditRules)}`;
  return `audit: would be allowed through (${why}; reported as AUDIT)`;
}

function ruleList(refs: RuleRef[]): string {
  return refs.map((r) => `${r.name} (${r.file}:${r.line})`).join(", ");
}

function portText(protocol: number, port: number): string {
  if (protocol === Protocol.TCP || protocol === Protocol.UDP || protocol === Protocol.SCTP) return `${port}/${protocolName(protocol)}`;
  if (isICMP(protocol)) return `${protocolName(protocol)} type ${port}`;
  return protocolName(protocol);
}

/** Explain the verdict for one flow. Throws ExplainQueryError for an unknown from/to. */
export function explain(model: Model, opts: CompileOptions, q: ExplainQuery, idOpts: IdentityAllocatorOptions = {}): Explanation {
  const ctx = buildContext(model, opts, idOpts);
  const from = resolveParty(ctx, "from", q.from);
  const to = resolveParty(ctx, "to", q.to);
  // Packet order: the source's egress first, then the destination's ingress.
  // The local host's own policy applies when host policy is active on this node (policy/host.ts);
  // traffic from the host to itself never leaves it, so no policy applies to it.
  const lh = localHost(ctx);
  const hostSubject: Subject | undefined = lh && !(from.host && to.host) ? { name: HOST_ENDPOINT, rules: lh.rules, audit: ctx.opts.audit === true } : undefined;
  const subjectOf = (p: Party): Subject | undefined => (p.endpoint ? endpointSubject(ctx, p.endpoint) : p.host ? hostSubject : undefined);
  const sides: Array<{ side: SideVerdict; peer: Party }> = [];
  const src = subjectOf(from);
  const dst = subjectOf(to);
  if (src) sides.push({ side: evaluateSide(ctx, src, "egress", to, q.protocol, q.port), peer: to });
  if (dst) sides.push({ side: evaluateSide(ctx, dst, "ingress", from, q.protocol, q.port), peer: from });
  const base = { fromIdentity: from.identity, toIdentity: to.identity };
  const flow = portText(q.protocol, q.port);

  // An enforced deny on either side drops the packet; only when every deny is audited does it pass.
  const denying = sides.filter((s) => s.side.verdict === "deny");
  const decidingSide = denying.find((s) => !s.side.audited) ?? denying[0];
  if (decidingSide !== undefined) {
    const answer = denyAnswer(decidingSide.side, decidingSide.peer, flow);
    if (!decidingSide.side.audited) return { ...base, ...answer };
    return { ...base, ...answer, audit: true, reason: `${answer.reason}; ${auditText(decidingSide.side)}` };
  }

  const enforcedSides = sides.filter((s) => s.side.enforced);
  if (enforcedSides.length === 0) {
    const parts = sides.map((s) => `${s.side.endpoint.name} ${s.side.direction}`);
    const reason =
      parts.length === 0
        ? "allowed: neither side is an endpoint, so no policy applies"
        : `allowed: no policy is enforced on ${parts.join(" or ")}`;
    return { ...base, verdict: "allow", reason, rules: [] };
  }
  const rules = refsSorted(enforcedSides.flatMap((s) => s.side.allowRules));
  const allowAll = enforcedSides.some((s) => s.side.allowAll);
  return {
    ...base,
    verdict: "allow",
    reason: `allowed by ${ruleList(rules)}${allowAll ? " (enableDefaultDeny false: allow unless denied)" : ""}`,
    rules,
  };
}

/**
 * The most specific of `entries` (one identity and direction) for the protocol and port, as the
 * kernel's LPM lookup picks it: an exact protocol whose port range holds the port beats "any
 * protocol" (protocol 0), and a longer port prefix beats a shorter one.
 */
export function longestMatch(entries: Iterable<PolicyEntry>, protocol: number, port: number): PolicyEntry | undefined {
  let best: PolicyEntry | undefined;
  let bestLen = -1;
  for (const e of entries) {
    let len: number;
    if (e.protocol === 0) len = 40;
    else if (e.protocol === protocol && port >= e.port && port <= e.endPort) len = 48 + e.portPrefixLen;
    else continue;
    if (len > bestLen) {
      best = e;
      bestLen = len;
    }
  }
  return best;
}

/**
 * The datapath's lookup rule over compiled entries (layouts.md): an LPM lookup with the peer's
 * identity and one with identity 0; a deny from either wins (an enforced deny over an audited
 * one, so that an audit rule never lets through what an enforce rule denies), else an allow from
 * either allows, else "none" (the caller applies default deny when the direction is enforced).
 * Prefix length of an entry: 40 for protocol 0, else 48 + portPrefixLen.
 */
export function policyVerdict(
  policy: EndpointPolicy,
  direction: Direction,
  identity: number,
  protocol: number,
  port: number,
): { decision: Decision | "none"; entry?: PolicyEntry } {
  const lpm = (id: number): PolicyEntry | undefined =>
    longestMatch(
      policy.entries.filter((e) => e.identity === id && e.direction === direction),
      protocol,
      port,
    );
  const a = lpm(identity);
  const b = identity === 0 ? undefined : lpm(0);
  if (a?.decision === "deny" && b?.decision === "deny" && a.audit && !b.audit) return { decision: "deny", entry: b };
  if (a?.decision === "deny") return { decision: "deny", entry: a };
  if (b?.decision === "deny") return { decision: "deny", entry: b };
  if (a) return { decision: "allow", entry: a };
  if (b) return { decision: "allow", entry: b };
  return { decision: "none" };
}
