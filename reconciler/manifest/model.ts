// The validated, normalized content of one source snapshot: what manifest/ hands to policy/ and
// datapath/. Everything here is plain data; nothing refers back to YAML nodes.

/** Where an object (or a part of it) was written: file path relative to the source root, 1-based line. */
export interface Provenance {
  file: string;
  line: number;
}

/** One security label. `source` is Cilium's label source ("k8s", "any", "reserved", "cidr", ...). */
export interface Label {
  source: string;
  key: string;
  value: string;
}

/** A label set in canonical order (sorted by source, then key); at most one label per source+key. */
export type LabelSet = readonly Label[];

/** How reconcile should create an endpoint's interface. Absent: the interface exists and is adopted. */
export interface InterfaceCreate {
  /** veth: a veth pair, host side `interfaceName`, peer moved into `netns` as `ifname`.
   *  macvlan: a bridge-mode macvlan on `parent`, moved into `netns` as `ifname`. */
  kind: "veth" | "macvlan";
  /** Network namespace name (a file under /run/netns). */
  netns: string;
  /** Interface name inside the namespace. */
  ifname: string;
  /** Parent device for macvlan. */
  parent?: string;
}

export interface EndpointManifest {
  kind: "Endpoint";
  name: string;
  /** Node that hosts the endpoint; undefined = the local node. */
  node?: string;
  /** Dotted quad, no prefix length. */
  ipv4?: string;
  /** Canonical (compressed, lower-case) IPv6 text, no prefix length. */
  ipv6?: string;
  /** Lower-case colon-separated MAC. */
  mac?: string;
  /** Host-side device name (veth) or, for macvlan, the device name inside the namespace. */
  interfaceName: string;
  create?: InterfaceCreate;
  /** Security labels (metadata.labels); a key without "source:" gets source "k8s". */
  labels: LabelSet;
  /** spec.ports: the named ports the endpoint declares (Cilium resolves named ports in toPorts
   *  against a pod's container ports the same way). Undefined = none. Names are lower-case. */
  ports?: NamedPort[];
  /** `reconcile.io/enforcement: audit` (metadata.annotations): the endpoint's policy is audited
   *  (denies and default deny let packets pass and report them). Absent = enforce. */
  audit?: true;
  at: Provenance;
}

/** One named port an endpoint declares. */
export interface NamedPort {
  /** IANA service name (lower-case). */
  name: string;
  /** 1..65535 */
  port: number;
  protocol: "TCP" | "UDP" | "SCTP";
}

/** `kind: CiliumCIDRGroup` (cilium.io/v2alpha1 or v2): a named, labelled set of CIDRs that rules
 *  reference with cidrGroupRef or select with cidrGroupSelector. */
export interface CIDRGroupManifest {
  kind: "CiliumCIDRGroup";
  name: string;
  /** metadata.labels (a key without "source:" gets source "k8s"): what cidrGroupSelector matches. */
  labels: LabelSet;
  /** spec.externalCIDRs, canonical prefixes (host bits cleared). */
  cidrs: string[];
  at: Provenance;
}

export interface IdentityManifest {
  kind: "Identity";
  name: string;
  /** 256..65535 */
  id: number;
  labels: LabelSet;
  at: Provenance;
}

export interface NodeManifest {
  kind: "Node";
  name: string;
  /** Underlay address (IPv4 or IPv6 text). */
  address: string;
  tunnel?: { type: "vxlan"; vni: number; port: number };
  /** Pod CIDRs routed to this node, canonical "a.b.c.d/n" or "x::/n". */
  podCIDRs: string[];
  /** The node's labels (metadata.labels; a key without "source:" gets source "k8s"), which the
   *  nodeSelector of host policies matches, as Cilium matches node labels. The loader always sets
   *  it; undefined (models built in code) = no labels. */
  labels?: LabelSet;
  /** spec.hostFirewall: host devices (adopted, never created or changed) on which reconcile attaches
   *  the host firewall programs, so that traffic between this node and the outside is judged by
   *  its host policies. Undefined = no host firewall on devices (host policies still apply to
   *  traffic between the host and its local endpoints). */
  hostFirewall?: { devices: string[] };
  at: Provenance;
}

// ---- Cilium rules, normalized ----

export type SelectorOperator = "In" | "NotIn" | "Exists" | "DoesNotExist";

export interface SelectorRequirement {
  /** Label source; "any" matches every source. */
  source: string;
  key: string;
  operator: SelectorOperator;
  values: string[];
}

/** A label selector. matchLabels entries are turned into `In` requirements with one value.
 *  An empty requirement list selects every endpoint (Cilium's `{}`). */
export interface Selector {
  requirements: SelectorRequirement[];
  at: Provenance;
}

export type Entity =
  | "all"
  | "world"
  | "world-ipv4"
  | "world-ipv6"
  | "cluster"
  | "host"
  | "remote-node"
  | "kube-apiserver"
  | "health"
  | "init"
  | "unmanaged"
  | "ingress";

export interface CIDRSelector {
  /** Canonical prefix "a.b.c.d/n" or "x::/n" (host bits zero). Absent when the element names a
   *  CIDR group instead (groupRef or groupSelector): its prefixes are the group's. */
  cidr?: string;
  /** Canonical prefixes inside `cidr` (or inside the group's prefixes) that are excluded. */
  except: string[];
  /** cidrGroupRef: the name of a CiliumCIDRGroup. */
  groupRef?: string;
  /** cidrGroupSelector: selects CiliumCIDRGroups by their labels. */
  groupSelector?: Selector;
}

export type PortProtocolName = "TCP" | "UDP" | "SCTP" | "ANY" | "ICMP" | "ICMPv6";

export interface PortRule {
  /** 0 = all ports. For ICMP / ICMPv6 (from `icmps`): the ICMP type, exactly (endPort = port). */
  port: number;
  /** A named port (toPorts `port: http`, lower-case): resolved per destination endpoint against
   *  Endpoint spec.ports; `port` and `endPort` are then 0 and unused. */
  name?: string;
  /** Inclusive end of a range; equals `port` for a single port; 65535 with port 0. */
  endPort: number;
  protocol: PortProtocolName;
}

/** One element of ingress / egress / ingressDeny / egressDeny. */
export interface PeerRule {
  at: Provenance;
  /** fromEndpoints / toEndpoints; undefined when the field is absent. */
  endpoints?: Selector[];
  /** fromCIDR + fromCIDRSet (toCIDR + toCIDRSet). */
  cidrs?: CIDRSelector[];
  /** fromEntities / toEntities. */
  entities?: Entity[];
  /** fromNodes / toNodes: node selectors over Node labels; a matching node is the host (the node
   *  compiled for) or a remote node (identity remote-node). */
  nodes?: Selector[];
  /** toPorts[*].ports and icmps[*].fields flattened; undefined = L3-only (all ports and protocols). */
  ports?: PortRule[];
}

export interface PolicyRule {
  /** Endpoints the rule applies to. Exactly one of endpointSelector and nodeSelector is set. */
  endpointSelector?: Selector;
  /** Nodes the rule applies to (Cilium's host policies): the rule's subject is the host endpoint of
   *  every node whose labels match; ingress is traffic into the host, egress traffic from it. */
  nodeSelector?: Selector;
  ingress: PeerRule[];
  egress: PeerRule[];
  ingressDeny: PeerRule[];
  egressDeny: PeerRule[];
  /** Cilium's enableDefaultDeny; undefined = true when the direction has rules. */
  enableDefaultDeny: { ingress?: boolean; egress?: boolean };
  /** Cilium rule labels (`labels: [{key, value, source}]`). */
  labels: Label[];
  description?: string;
}

export interface RuleManifest {
  kind: "Rule";
  /** metadata.name, or for a Cilium JSON rule the value of its `name` label (else file#index). */
  name: string;
  /** CiliumNetworkPolicy namespace, when given; restricts selectors like Cilium does. */
  namespace?: string;
  /** The manifest kind as written: Rule, CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy, or "json". */
  origin: "Rule" | "CiliumNetworkPolicy" | "CiliumClusterwideNetworkPolicy" | "json";
  rule: PolicyRule;
  /** An audit rule (`reconcile.io/enforcement: audit` in its metadata annotations or its Cilium
   *  labels): its denies, and a default deny only audit rules cause, let packets pass and report
   *  them. Absent = enforce. */
  audit?: true;
  at: Provenance;
}

/** A validated snapshot. */
export interface Model {
  /** Revision of the source (git commit SHA or content hash of a directory). */
  revision: string;
  endpoints: EndpointManifest[];
  identities: IdentityManifest[];
  rules: RuleManifest[];
  nodes: NodeManifest[];
  /** CiliumCIDRGroup objects (undefined in models built in code = none). */
  cidrGroups?: CIDRGroupManifest[];
}

/** One validation problem, rendered as `file:line: Kind/name: path: message`. */
export interface ManifestProblem {
  file: string;
  line: number;
  /** "Kind/name" when known. */
  object?: string;
  /** Dotted field path, e.g. "spec.ingress[0].toPorts[0].ports[0].port". */
  path?: string;
  message: string;
  severity: "error" | "warning";
}
