// What policy/ produces from a Model: identities, per-endpoint policy entries with provenance, and
// the ipcache. The datapath state (datapath/) is built from this; explain answers from the rules.

import type { LabelSet, ManifestProblem } from "../manifest/model.js";
import type { PolicyEntrySet } from "./entry-set.js";

/** A rule as referenced from a policy entry: where it was written and its name. */
export interface RuleRef {
  file: string;
  line: number;
  name: string;
}

export type Direction = "ingress" | "egress";
export type Decision = "allow" | "deny";

/** Reserved identities (Cilium numbering). */
export const ReservedIdentity = {
  unknown: 0,
  host: 1,
  world: 2,
  unmanaged: 3,
  health: 4,
  init: 5,
  remoteNode: 6,
  kubeApiserver: 7,
  ingress: 8,
  worldIPv4: 9,
  worldIPv6: 10,
} as const;

/** Local-scope identities (CIDRs) are (1 << 24) | n. */
export const LOCAL_IDENTITY_SCOPE = 1 << 24;

/** IANA protocol numbers used in policy keys. 0 = any protocol. */
export const Protocol = { ANY: 0, ICMP: 1, TCP: 6, UDP: 17, ICMPV6: 58, SCTP: 132 } as const;

/** One policy map entry of one endpoint: the key {identity, direction, protocol, port prefix} and
 *  its decision. A port range is split into several entries, each an aligned power-of-two block. */
export interface PolicyEntry {
  /** Endpoint name (the policy belongs to this endpoint). */
  endpoint: string;
  direction: Direction;
  /** Peer identity; 0 = any identity (L4-only rules, entity "all"). */
  identity: number;
  /** IANA protocol; 0 = any protocol (then port = 0, endPort = 65535, portPrefixLen = 0). */
  protocol: number;
  /** First port of the block covered by this entry. */
  port: number;
  /** Last port of the block (inclusive). */
  endPort: number;
  /** Number of leading port bits that are significant: 16 = exactly `port`, 0 = all ports. */
  portPrefixLen: number;
  decision: Decision;
  /** An audited deny (POLICY_AUDIT): the packet passes and the datapath reports what would have
   *  dropped it. True iff the endpoint is in audit mode or every rule of the entry is an audit rule;
   *  never for an allow. */
  audit: boolean;
  /** Every rule that produced this key with this decision (sorted by file, line). */
  rules: RuleRef[];
}

export interface EndpointPolicy {
  endpoint: string;
  /** The endpoint's own security identity. */
  identity: number;
  /** Whether each direction is in default-deny (selected by a rule with that section, or forced by
   *  --enforcement always; never with --enforcement never). */
  enforce: { ingress: boolean; egress: boolean };
  /** Rules that select this endpoint and put each direction into enforcement. */
  enforcedBy: { ingress: RuleRef[]; egress: RuleRef[] };
  /** The endpoint itself is in audit mode (its `reconcile.io/enforcement: audit` annotation, or
   *  --enforcement-mode audit): every deny entry is audited, and both directions' default deny. */
  auditMode: boolean;
  /** Whether each direction's default deny is audited (EP_AUDIT_INGRESS/EGRESS): the endpoint is in
   *  audit mode, or every rule that puts the direction into default deny is an audit rule. */
  audit: { ingress: boolean; egress: boolean };
  /** The entries, packed and sorted by key (policyEntryKey: direction, identity, protocol, port
   *  prefix). Allow entries shadowed by a deny of the same identity (so that LPM would pick the
   *  allow) are already removed. Endpoints of one identity share one set. */
  entrySet: PolicyEntrySet;
  /** The same entries as objects, made on each read (for explain, tests and small outputs). */
  readonly entries: PolicyEntry[];
}

export interface IdentityInfo {
  id: number;
  labels: LabelSet;
  /** How the number was chosen. */
  origin: "reserved" | "pinned" | "derived" | "cidr";
  /** For CIDR identities: the prefix. */
  cidr?: string;
}

/** One ipcache entry: prefix → identity (and tunnel endpoint for remote endpoints). */
export interface IpcacheEntry {
  /** Canonical prefix "10.11.90.17/32" or "f00d::1/128". */
  prefix: string;
  identity: number;
  /** Underlay address of the node hosting the prefix; undefined = local. */
  tunnelEndpoint?: string;
  /** Why the entry exists. */
  origin: "endpoint" | "remote-endpoint" | "node" | "host" | "cidr";
  /** The manifest object behind the entry ("Endpoint/app2", "Node/n1", "Rule/x"). */
  ref?: string;
}

export interface CompileOptions {
  /** Name of the node we compile for; endpoints with another spec.node are remote. */
  node: string;
  enforcement: "default" | "always" | "never";
  /** Addresses of the local host (identity 1). */
  hostAddresses?: string[];
  /** --enforcement-mode audit: every endpoint (and the host endpoint) is in audit mode. Absent =
   *  enforce (left out rather than false, so the options of older callers compare equal). */
  audit?: true;
}

export interface CompiledPolicy {
  revision: string;
  node: string;
  /** All identities in use, by number. */
  identities: Map<number, IdentityInfo>;
  /** Local endpoints only. */
  endpoints: EndpointPolicy[];
  ipcache: IpcacheEntry[];
  /** Non-fatal findings, e.g. a selector that matches no endpoint (severity "warning"). */
  warnings: ManifestProblem[];
}

/** What `reconcile explain` answers. */
export interface Explanation {
  verdict: Decision;
  /** A deny that is audited: the packet would be allowed through and reported as AUDIT (absent for
   *  an enforced deny and an allow). The reason then names the audit rule(s) or the audit mode. */
  audit?: true;
  /** One human sentence: "allowed by l3-rule (examples/seed/l3-rule.json:1)", or
   *  "default deny: app1 is selected by rules a.yaml:3, b.yaml:9 and none allows ...". */
  reason: string;
  /** The deciding rules. */
  rules: RuleRef[];
  /** Resolved peer identities, for display. */
  fromIdentity: number;
  toIdentity: number;
}

export interface ExplainQuery {
  /** Endpoint name or IP address. */
  from: string;
  to: string;
  /** Destination port; for ICMP and ICMPv6 the ICMP type (as in the policy key); 0 for other port-less protocols. */
  port: number;
  /** IANA protocol number. */
  protocol: number;
}
