// What compile and explain share: the model read as Cilium would read it (namespace scoping of
// selectors, rule references, default-deny flags), the identity table, and the entity table.
// Both evaluate rules on their own from here; neither reads the other's output.

import type {
  EndpointManifest,
  NamedPort,
  Entity,
  LabelSet,
  Model,
  PeerRule,
  RuleManifest,
  Selector,
  SelectorRequirement,
} from "../manifest/model.js";
import { allocateIdentities, type IdentityAllocation, type IdentityAllocatorOptions, modelCidrs } from "./identity.js";
import { labelSetKey } from "./labels.js";
import { type CompileOptions, type Direction, ReservedIdentity, type RuleRef } from "./types.js";

/** Kubernetes namespace label as Cilium puts it on pods. */
export const NAMESPACE_KEY = "io.kubernetes.pod.namespace";

/** A rule as the engine evaluates it. */
export interface EffectiveRule {
  manifest: RuleManifest;
  /** Interned reference used in every entry the rule produces. */
  ref: RuleRef;
  /** endpointSelector after namespace scoping; for a host policy (hostRules), its nodeSelector. */
  subject: Selector;
  ingress: PeerRule[];
  egress: PeerRule[];
  ingressDeny: PeerRule[];
  egressDeny: PeerRule[];
  /** Effective enableDefaultDeny per direction (Cilium: unset = true). */
  defaultDeny: { ingress: boolean; egress: boolean };
}

/** Allow and deny sections of a rule for one direction. */
export function sections(r: EffectiveRule, dir: Direction): { allow: PeerRule[]; deny: PeerRule[] } {
  return dir === "ingress" ? { allow: r.ingress, deny: r.ingressDeny } : { allow: r.egress, deny: r.egressDeny };
}

/** Whether the rule has a section in `dir` (this is what puts a selected endpoint in enforcement). */
export function hasDirection(r: EffectiveRule, dir: Direction): boolean {
  const s = sections(r, dir);
  return s.allow.length > 0 || s.deny.length > 0;
}

function hasKey(sel: Selector, key: string): boolean {
  return sel.requirements.some((r) => r.key === key && (r.source === "k8s" || r.source === "any"));
}

function withRequirement(sel: Selector, req: SelectorRequirement): Selector {
  return { requirements: [...sel.requirements, req], at: sel.at };
}

/**
 * Namespace scoping as Cilium's k8s policy parser does it:
 * - CiliumNetworkPolicy in namespace N: the endpointSelector and every peer endpoint selector that
 *   does not name the namespace label (and does not select reserved labels) get
 *   `k8s:io.kubernetes.pod.namespace=N`.
 * - CiliumClusterwideNetworkPolicy: peer selectors without the namespace label get
 *   `k8s:io.kubernetes.pod.namespace Exists` (so `{}` means "every pod", never every identity).
 * - Rule manifests and JSON rules (`cilium policy import`) are taken as written.
 * Applying it twice changes nothing (selectors that name the key are left alone).
 */
function scopePeer(sel: Selector, m: RuleManifest): Selector {
  if (hasKey(sel, NAMESPACE_KEY) || sel.requirements.some((r) => r.source === "reserved")) return sel;
  if (m.origin === "CiliumNetworkPolicy" && m.namespace !== undefined) {
    return withRequirement(sel, { source: "k8s", key: NAMESPACE_KEY, operator: "In", values: [m.namespace] });
  }
  if (m.origin === "CiliumClusterwideNetworkPolicy") {
    return withRequirement(sel, { source: "k8s", key: NAMESPACE_KEY, operator: "Exists", values: [] });
  }
  return sel;
}

function scopePeers(peers: PeerRule[], m: RuleManifest): PeerRule[] {
  if (m.origin !== "CiliumNetworkPolicy" && m.origin !== "CiliumClusterwideNetworkPolicy") return peers;
  return peers.map((p) => (p.endpoints ? { ...p, endpoints: p.endpoints.map((s) => scopePeer(s, m)) } : p));
}

export function effectiveRule(m: RuleManifest): EffectiveRule {
  // Host policies are cluster-wide (the loader refuses a namespaced one), so only endpoint
  // selectors are namespace-scoped.
  let subject = m.rule.endpointSelector ?? m.rule.nodeSelector!;
  if (m.rule.endpointSelector !== undefined && m.origin === "CiliumNetworkPolicy" && m.namespace !== undefined && !hasKey(subject, NAMESPACE_KEY)) {
    subject = withRequirement(subject, { source: "k8s", key: NAMESPACE_KEY, operator: "In", values: [m.namespace] });
  }
  return {
    manifest: m,
    ref: { file: m.at.file, line: m.at.line, name: m.name },
    subject,
    ingress: scopePeers(m.rule.ingress, m),
    egress: scopePeers(m.rule.egress, m),
    ingressDeny: scopePeers(m.rule.ingressDeny, m),
    egressDeny: scopePeers(m.rule.egressDeny, m),
    defaultDeny: {
      ingress: m.rule.enableDefaultDeny.ingress ?? true,
      egress: m.rule.enableDefaultDeny.egress ?? true,
    },
  };
}

/**
 * Whether a world entity selects a CIDR identity. In Cilium a CIDR identity carries the world label
 * too (reserved:world-ipv4 / world-ipv6 in dual stack), so `toEntities: [world]` keeps allowing an
 * address after some other rule gives its prefix a CIDR identity of its own.
 */
export function worldEntityCovers(entity: Entity, cidr: string): boolean {
  const v6 = cidr.includes(":");
  return entity === "world" || (entity === "world-ipv4" && !v6) || (entity === "world-ipv6" && v6);
}

/** Whether an endpoint is hosted on the node we compile for. */
export function isLocal(ep: EndpointManifest, opts: CompileOptions): boolean {
  return ep.node === undefined || ep.node === opts.node;
}

/** Reserved identities an entity stands for (Cilium's pkg/policy/api/entity.go); "all" is the
 *  wildcard (identity 0), "cluster" additionally takes every endpoint identity, and the world
 *  entities also take the CIDR identities of their family (see worldEntityCovers). */
export const ENTITY_RESERVED: Readonly<Record<Entity, readonly number[]>> = {
  all: [ReservedIdentity.unknown],
  world: [ReservedIdentity.world, ReservedIdentity.worldIPv4, ReservedIdentity.worldIPv6],
  "world-ipv4": [ReservedIdentity.worldIPv4],
  "world-ipv6": [ReservedIdentity.worldIPv6],
  cluster: [
    ReservedIdentity.host,
    ReservedIdentity.remoteNode,
    ReservedIdentity.init,
    ReservedIdentity.ingress,
    ReservedIdentity.health,
    ReservedIdentity.unmanaged,
    ReservedIdentity.kubeApiserver,
  ],
  host: [ReservedIdentity.host],
  "remote-node": [ReservedIdentity.remoteNode],
  "kube-apiserver": [ReservedIdentity.kubeApiserver],
  health: [ReservedIdentity.health],
  init: [ReservedIdentity.init],
  unmanaged: [ReservedIdentity.unmanaged],
  ingress: [ReservedIdentity.ingress],
};

/** The model prepared for evaluation. */
export interface PolicyContext {
  model: Model;
  opts: CompileOptions;
  alloc: IdentityAllocation;
  /** Rules that select endpoints (endpointSelector). */
  rules: EffectiveRule[];
  /** Host policies (nodeSelector): their subject is the host endpoint of the nodes they select
   *  (policy/host.ts). Kept apart so that nothing that evaluates `rules` can take a node selector
   *  for an endpoint selector. */
  hostRules: EffectiveRule[];
  /** Endpoint name → its identity. */
  endpointIdentity: Map<string, number>;
  /** Endpoint name → manifest. */
  endpointByName: Map<string, EndpointManifest>;
  /** Identity → the named ports its endpoints (on any node) declare, merged; what an egress
   *  named port to a peer of that identity resolves against. */
  portsByIdentity: Map<number, NamedPort[]>;
  /** Every endpoint's named ports, merged: what a named port towards every identity (identity 0:
   *  L4-only, `{}`, entity all) resolves against. */
  allPorts: NamedPort[];
}

function mergePorts(into: NamedPort[], ports: readonly NamedPort[]): void {
  for (const p of ports) {
    if (!into.some((q) => q.name === p.name && q.port === p.port && q.protocol === p.protocol)) into.push(p);
  }
}

/** Identity of a label set in an allocation (must have been allocated). */
export function identityOf(alloc: IdentityAllocation, labels: LabelSet): number {
  const id = alloc.byLabels.get(labelSetKey(labels));
  if (id === undefined) throw new Error(`internal: label set ${labelSetKey(labels)} has no identity (this is a bug)`);
  return id;
}

export function buildContext(model: Model, opts: CompileOptions, idOpts: IdentityAllocatorOptions = {}): PolicyContext {
  const alloc = allocateIdentities(
    { labelSets: model.endpoints.map((e) => e.labels), pinned: model.identities, cidrs: modelCidrs(model) },
    idOpts,
  );
  const endpointIdentity = new Map<string, number>();
  const endpointByName = new Map<string, EndpointManifest>();
  const portsByIdentity = new Map<number, NamedPort[]>();
  const allPorts: NamedPort[] = [];
  for (const ep of model.endpoints) {
    const id = identityOf(alloc, ep.labels);
    endpointIdentity.set(ep.name, id);
    endpointByName.set(ep.name, ep);
    if (ep.ports !== undefined && ep.ports.length > 0) {
      let list = portsByIdentity.get(id);
      if (list === undefined) portsByIdentity.set(id, (list = []));
      mergePorts(list, ep.ports);
      mergePorts(allPorts, ep.ports);
    }
  }
  const rules = model.rules.filter((r) => r.rule.nodeSelector === undefined).map(effectiveRule);
  const hostRules = model.rules.filter((r) => r.rule.nodeSelector !== undefined).map(effectiveRule);
  return { model, opts, alloc, rules, hostRules, endpointIdentity, endpointByName, portsByIdentity, allPorts };
}
