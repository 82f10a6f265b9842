// A datapath event with names: the endpoint, the peer, the protocol and reason in words, and the rule
// provenance — which rules of the compiled revision produced the policy entry that decided, or put
// the endpoint's direction into default deny. This object is what `reconcile monitor --output json`
// prints (one a line; docs/monitor.md is its schema) and what the daemon streams to monitor.

import type { DatapathEvent, EventKind } from "../datapath/layouts.js";
import type { DesiredState } from "../datapath/state.js";
import { portBlockEnd, portText, protocolName } from "../plan/render.js";
import { policyEntryKey } from "../policy/key.js";
import { labelSetString } from "../policy/labels.js";
import { peerNames, peerText, type Peer, type PeerNames } from "../policy/peer-names.js";
import type { CompiledPolicy, EndpointPolicy, RuleRef } from "../policy/types.js";
import type { WallClock } from "./clock.js";
import { isPolicyReason, reasonName } from "./reasons.js";

/** One event as monitor prints it in JSON. Fields are stable: new ones may be added, none renamed. */
export interface MonitorEvent {
  /** ISO 8601, UTC, milliseconds. */
  time: string;
  type: EventKind;
  /** Endpoint name; "" when the revision the names come from has no endpoint with that id. */
  endpoint: string;
  epId: number;
  direction: "ingress" | "egress";
  /** What policy decided (for an audit: deny, and the packet passed). */
  verdict: "allow" | "deny";
  /** DROP_* number (0 for an allow) and its words. */
  reason: number;
  reasonName: string;
  peer: { identity: number; kind: Peer["kind"]; names: string[]; labels: string | null };
  /** The deciding policy entry, or null: no entry decided (default deny, or not a policy event). */
  match: { identity: number; protocol: number; port: number; endPort: number } | null;
  /** The rules behind the decision (the entry's, or those that put the direction into default deny). */
  rules: RuleRef[];
  /** The decision in words: "allowed by …", "denied by …", "no rule allows … (default deny by …)"; "" when not a policy event. */
  provenance: string;
  src: string;
  dst: string;
  sport: number;
  dport: number;
  protocol: number;
  protocolName: string;
  /** Packet length (skb->len). */
  length: number;
  /** The revision the names and rules come from; null without one (numbers only). */
  revision: string | null;
}

/** What naming needs from a compiled revision, indexed once per revision. */
export interface NamingContext {
  revision: string;
  endpoints: ReadonlyMap<number, { name: string; policy?: EndpointPolicy }>;
  peers: PeerNames;
  /** The label set of an identity as "{…}", or undefined for a number the revision does not know. */
  labels(identity: number): string | undefined;
}

export function namingContext(compiled: { desired: Pick<DesiredState, "endpoints" | "revision">; policy: Pick<CompiledPolicy, "identities" | "ipcache" | "endpoints"> }): NamingContext {
  const policies = new Map(compiled.policy.endpoints.map((p) => [p.endpoint, p]));
  const endpoints = new Map<number, { name: string; policy?: EndpointPolicy }>();
  for (const e of compiled.desired.endpoints.values()) {
    const policy = policies.get(e.endpoint);
    endpoints.set(e.endpointId, { name: e.endpoint, ...(policy ? { policy } : {}) });
  }
  return {
    revision: compiled.desired.revision,
    endpoints,
    peers: peerNames(compiled.policy),
    labels: (identity) => {
      const info = compiled.policy.identities.get(identity);
      return info ? `{${labelSetString(info.labels)}}` : undefined;
    },
  };
}

/** The event with names from `ctx` (numbers only when ctx is undefined) and its wall clock time. */
export function nameEvent(ev: DatapathEvent, ctx: NamingContext | undefined, clock: WallClock): MonitorEvent {
  const ep = ctx?.endpoints.get(ev.epId);
  const peer: Peer = ctx ? ctx.peers(ev.peerIdentity) : { kind: "unknown", names: [] };
  const match = ev.match && {
    identity: ev.match.identity,
    protocol: ev.match.protocol,
    port: ev.match.port,
    endPort: ev.match.protocol === 0 ? 65535 : portBlockEnd(ev.match.port, ev.match.portPrefixLen),
  };
  const { rules, provenance } = decidedBy(ev, ep?.policy, ctx);
  return {
    time: new Date(clock.wallMs(ev.timeNs)).toISOString(),
    type: ev.kind,
    endpoint: ep?.name ?? "",
    epId: ev.epId,
    direction: ev.direction,
    verdict: ev.verdict,
    reason: ev.reason,
    reasonName: reasonName(ev.reason),
    peer: { identity: ev.peerIdentity, kind: peer.kind, names: peer.names, labels: ctx?.labels(ev.peerIdentity) ?? null },
    match: match ?? null,
    rules,
    provenance,
    src: ev.saddr,
    dst: ev.daddr,
    sport: ev.sport,
    dport: ev.dport,
    protocol: ev.protocol,
    protocolName: protocolName(ev.protocol),
    length: ev.length,
    revision: ctx?.revision ?? null,
  };
}

function ruleList(refs: readonly RuleRef[]): string {
  return refs.map((r) => `${r.name}, ${r.file}:${r.line}`).join("; ");
}

/** The flow's protocol and destination port as a policy names them: "TCP/80", "ICMP type 8", "any protocol". */
function flowText(protocol: number, port: number): string {
  return portText(protocol, port, protocol === 6 || protocol === 17 || protocol === 132 || protocol === 1 || protocol === 58 ? 16 : 0);
}

/**
 * The rules behind an event's decision. An entry decided: the rules that produced that entry in the
 * revision (the same provenance the plan prints beside an entry). No entry: the rules that put the
 * direction into default deny (the compiler's record of them, EndpointPolicy.enforcedBy, which is
 * what `explain` names for a default deny).
 */
function decidedBy(ev: DatapathEvent, policy: EndpointPolicy | undefined, ctx: NamingContext | undefined): { rules: RuleRef[]; provenance: string } {
  const policyEvent = ev.kind !== "drop" || isPolicyReason(ev.reason);
  if (!policyEvent) return { rules: [], provenance: "" };
  const would = ev.kind === "audit" ? "would be " : "";
  if (ev.match) {
    const what = `${ev.match.protocol === 0 ? "any protocol" : portText(ev.match.protocol, ev.match.port, ev.match.portPrefixLen)} ${ev.direction === "ingress" ? "from" : "to"} identity ${ev.match.identity}`;
    if (!ctx) return { rules: [], provenance: `${would}${ev.verdict === "allow" ? "allowed" : "denied"} by the entry ${what}` };
    const at = policy ? policy.entrySet.indexOf(policyEntryKey({ ...ev.match })) : -1;
    if (!policy || at < 0) return { rules: [], provenance: `${would}${ev.verdict === "allow" ? "allowed" : "denied"} by the entry ${what}, which revision ${ctx.revision} does not have` };
    const rules = policy.entrySet.entry(at, policy.endpoint).rules;
    return { rules, provenance: `${would}${ev.verdict === "allow" ? "allowed" : "denied"} by ${ruleList(rules) || "no rule (an entry without provenance)"}` };
  }
  if (ev.verdict === "allow") return { rules: [], provenance: `${would}allowed: no policy entry (direction not enforced)` };
  const labels = ctx?.labels(ev.peerIdentity) ?? `identity ${ev.peerIdentity}`;
  const flow = flowText(ev.protocol, ev.dport);
  const rules = policy?.enforcedBy[ev.direction] ?? [];
  const cause = !ctx ? "default deny" : rules.length ? `default deny by ${ruleList(rules)}` : policy?.enforce[ev.direction] ? "default deny: enforcement always" : `default deny, which revision ${ctx.revision} does not put this direction in`;
  return { rules, provenance: `${would ? "would be denied: " : ""}no rule allows ${labels} on ${flow} (${cause})` };
}

/** "from app2 (identity 36895)" / "to world (identity 2)": the peer as the line shows it. */
export function peerPhrase(e: Pick<MonitorEvent, "direction" | "peer">): string {
  return `${e.direction === "ingress" ? "from" : "to"} ${peerText(e.peer.identity, { kind: e.peer.kind, names: e.peer.names })}`;
}
