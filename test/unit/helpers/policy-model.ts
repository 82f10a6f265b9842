// In-memory Model builder for policy tests (no YAML): terse constructors for endpoints,
// identities, nodes and rules. Label strings "key=value" get source k8s (endpoint labels) or any
// (selectors) unless they name one ("reserved:host", "k8s:app=x").

import type {
  CIDRSelector,
  EndpointManifest,
  Entity,
  IdentityManifest,
  Label,
  Model,
  NamedPort,
  NodeManifest,
  CIDRGroupManifest,
  PeerRule,
  PortRule,
  PolicyRule,
  RuleManifest,
  Selector,
  SelectorRequirement,
} from "../../../reconciler/manifest/model.js";
import { canonicalLabels, parseLabel } from "../../../reconciler/policy/labels.js";

let lineCounter = 1;
const at = (file = "test.yaml", line?: number) => ({ file, line: line ?? lineCounter++ });

export function labels(m: Record<string, string>, defaultSource = "k8s"): readonly Label[] {
  return canonicalLabels(Object.entries(m).map(([k, v]) => parseLabel(v === "" ? k : `${k}=${v}`, defaultSource)));
}

export function endpoint(
  name: string,
  lbls: Record<string, string>,
  o: { ipv4?: string; ipv6?: string; node?: string; file?: string; line?: number; ports?: NamedPort[] } = {},
): EndpointManifest {
  const ep: EndpointManifest = { kind: "Endpoint", name, interfaceName: `lxc${name}`.slice(0, 15), labels: labels(lbls), at: at(o.file, o.line) };
  if (o.ports !== undefined) ep.ports = o.ports;
  if (o.ipv4 !== undefined) ep.ipv4 = o.ipv4;
  if (o.ipv6 !== undefined) ep.ipv6 = o.ipv6;
  if (o.node !== undefined) ep.node = o.node;
  return ep;
}

export function identity(name: string, id: number, lbls: Record<string, string>, file = "identities.yaml", line?: number): IdentityManifest {
  return { kind: "Identity", name, id, labels: labels(lbls), at: at(file, line) };
}

export function node(name: string, address: string, lbls?: Record<string, string>): NodeManifest {
  const n: NodeManifest = { kind: "Node", name, address, podCIDRs: [], at: at("nodes.yaml") };
  if (lbls !== undefined) n.labels = labels(lbls);
  return n;
}

/** A CiliumCIDRGroup. */
export function cidrGroup(name: string, cidrs: string[], lbls: Record<string, string> = {}): CIDRGroupManifest {
  return { kind: "CiliumCIDRGroup", name, labels: labels(lbls), cidrs, at: at("groups.yaml") };
}

/** An icmps field: an exact ICMP (IPv4) or ICMPv6 type. */
export function icmp(type: number, family: "IPv4" | "IPv6" = "IPv4"): PortRule {
  return { port: type, endPort: type, protocol: family === "IPv6" ? "ICMPv6" : "ICMP" };
}

/** A named port in toPorts. */
export function named(name: string, protocol: PortRule["protocol"] = "ANY"): PortRule {
  return { port: 0, endPort: 0, name, protocol };
}

/** matchLabels (source "any" by default) plus optional matchExpressions. */
export function sel(
  matchLabels: Record<string, string> = {},
  exprs: Array<[string, SelectorRequirement["operator"], string[]?]> = [],
  file = "rules.yaml",
  line?: number,
): Selector {
  const reqs: SelectorRequirement[] = Object.entries(matchLabels).map(([k, v]) => {
    const l = parseLabel(k, "any");
    return { source: l.source, key: l.key, operator: "In", values: [v] };
  });
  for (const [k, op, values] of exprs) {
    const l = parseLabel(k, "any");
    reqs.push({ source: l.source, key: l.key, operator: op, values: values ?? [] });
  }
  return { requirements: reqs, at: at(file, line) };
}

export function port(p: number | string, protocol: PortRule["protocol"] = "TCP", endPort?: number): PortRule {
  const n = Number(p);
  return { port: n, endPort: n === 0 ? 65535 : (endPort ?? n), protocol };
}

export interface PeerSpec {
  endpoints?: Selector[];
  cidrs?: Array<string | CIDRSelector>;
  entities?: Entity[];
  nodes?: Selector[];
  ports?: PortRule[];
}

export function peer(spec: PeerSpec, file = "rules.yaml", line?: number): PeerRule {
  const p: PeerRule = { at: at(file, line) };
  if (spec.endpoints) p.endpoints = spec.endpoints;
  if (spec.cidrs) p.cidrs = spec.cidrs.map((c) => (typeof c === "string" ? { cidr: c, except: [] } : c));
  if (spec.entities) p.entities = spec.entities;
  if (spec.nodes) p.nodes = spec.nodes;
  if (spec.ports) p.ports = spec.ports;
  return p;
}

export interface RuleSpec {
  name: string;
  file?: string;
  line?: number;
  selector: Selector;
  ingress?: PeerSpec[];
  egress?: PeerSpec[];
  ingressDeny?: PeerSpec[];
  egressDeny?: PeerSpec[];
  enableDefaultDeny?: { ingress?: boolean; egress?: boolean };
  origin?: RuleManifest["origin"];
  namespace?: string;
}

export function rule(spec: RuleSpec): RuleManifest {
  const file = spec.file ?? `${spec.name}.yaml`;
  const line = spec.line ?? 1;
  const mk = (xs?: PeerSpec[]) => (xs ?? []).map((x) => peer(x, file));
  const r: PolicyRule = {
    endpointSelector: spec.selector,
    ingress: mk(spec.ingress),
    egress: mk(spec.egress),
    ingressDeny: mk(spec.ingressDeny),
    egressDeny: mk(spec.egressDeny),
    enableDefaultDeny: spec.enableDefaultDeny ?? {},
    labels: [{ source: "", key: "name", value: spec.name }],
  };
  const m: RuleManifest = { kind: "Rule", name: spec.name, origin: spec.origin ?? "Rule", rule: r, at: { file, line } };
  if (spec.namespace !== undefined) m.namespace = spec.namespace;
  return m;
}

export function model(parts: Partial<Omit<Model, "revision">> & { revision?: string }): Model {
  return {
    revision: parts.revision ?? "test-rev",
    endpoints: parts.endpoints ?? [],
    identities: parts.identities ?? [],
    rules: parts.rules ?? [],
    nodes: parts.nodes ?? [],
    ...(parts.cidrGroups !== undefined ? { cidrGroups: parts.cidrGroups } : {}),
  };
}

/** The seed scenario of DESIGN §9, with the seed's JSON rule `l3-rule` (selectors `any:id`). */
export function seedModel(): Model {
  return model({
    revision: "seed",
    endpoints: [
      endpoint("app1", { id: "app1" }, { ipv4: "10.11.255.104", file: "examples/seed/endpoints.yaml", line: 1 }),
      endpoint("app2", { id: "app2" }, { ipv4: "10.11.90.17", file: "examples/seed/endpoints.yaml", line: 12 }),
      endpoint("app3", { id: "app3", role: "other" }, { ipv4: "10.11.33.3", file: "examples/seed/endpoints.yaml", line: 23 }),
    ],
    identities: [identity("app2", 36895, { id: "app2" }, "examples/seed/identities.yaml", 1)],
    rules: [
      {
        ...rule({
          name: "l3-rule",
          file: "examples/seed/l3-rule.json",
          line: 1,
          selector: sel({ "any:id": "app1" }, [], "examples/seed/l3-rule.json", 3),
          ingress: [{ endpoints: [sel({ "any:id": "app2" }, [], "examples/seed/l3-rule.json", 10)], ports: [port(80, "TCP")] }],
        }),
        origin: "json",
      },
    ],
  });
}
