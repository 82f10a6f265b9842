// Schema of a Cilium policy rule (api.Rule in cilium/cilium pkg/policy/api), as written in a
// reconcile `Rule`, a CiliumNetworkPolicy `spec`/`specs` item or an element of a `cilium policy
// import` JSON array. Field names follow Cilium's JSON tags. Fields Cilium has but reconcile does not
// implement are errors that say so; fields Cilium does not have are errors too.

import type {
  CIDRSelector,
  NamedPort,
  Entity,
  Label,
  PeerRule,
  PolicyRule,
  PortProtocolName,
  PortRule,
  Selector,
  SelectorOperator,
  SelectorRequirement,
} from "./model.js";
import { describe, parseCIDRLoose, parseLabelKey, type Field, type Reader } from "./fields.js";
import { prefixContains, type Prefix } from "./ip.js";

const NOT_SUPPORTED = "not supported by reconcile";

const RULE_FIELDS = [
  "endpointSelector",
  "nodeSelector",
  "ingress",
  "ingressDeny",
  "egress",
  "egressDeny",
  "labels",
  "enableDefaultDeny",
  "description",
] as const;

/** Why the L7-only parts of a rule are refused: reconcile has no proxy. */
const NEEDS_L7_PROXY = "needs an L7 proxy, which reconcile does not have (it enforces L3/L4 in eBPF only)";
const NEEDS_DNS_PROXY = "needs a DNS proxy that learns the addresses names resolve to, which reconcile does not have; use toCIDR or toCIDRSet";
const NEEDS_SERVICE_LB = "needs service load balancing (Kubernetes Services and their backends), which reconcile does not have; use toEndpoints or toCIDR";

/** Cilium's limits (pkg/policy/api rule_validation.go: maxPorts, maxICMPFields). */
export const MAX_PORTS = 40;
export const MAX_ICMP_FIELDS = 40;

export const ENTITIES: readonly Entity[] = [
  "all",
  "world",
  "world-ipv4",
  "world-ipv6",
  "cluster",
  "host",
  "remote-node",
  "kube-apiserver",
  "health",
  "init",
  "unmanaged",
  "ingress",
];

const PROTOCOLS: readonly PortProtocolName[] = ["TCP", "UDP", "SCTP", "ANY"];

/** Protocols an Endpoint's spec.ports may declare. */
export const NAMED_PORT_PROTOCOLS: readonly NamedPort["protocol"][] = ["TCP", "UDP", "SCTP"];

type Direction = "ingress" | "egress";

interface SectionSpec {
  direction: Direction;
  deny: boolean;
}

/** Read one Cilium rule at `f`. Returns undefined when it had errors (all reported on `r`). */
export function readRule(r: Reader, f: Field): PolicyRule | undefined {
  const before = r.errorCount();
  if (r.mapping(f, true) === undefined) return undefined;
  r.onlyKeys(f, [...RULE_FIELDS, "log"]);
  const logField = r.child(f, "log");
  if (logField.value !== undefined && logField.value !== null) {
    // Cilium's `log` sets a cookie that its proxy-less datapath only reports to Hubble.
    if (r.mapping(logField) !== undefined) {
      r.onlyKeys(logField, ["value"]);
      r.string(r.child(logField, "value"));
    }
    r.warn(logField, "log is accepted and ignored: reconcile keeps no per-rule log cookie (reconcile monitor names the rule of every verdict instead)");
  }

  // Exactly one subject: endpoints (endpointSelector) or nodes (nodeSelector: a host policy).
  const selField = r.child(f, "endpointSelector");
  const nodeField = r.child(f, "nodeSelector");
  let endpointSelector: Selector | undefined;
  let nodeSelector: Selector | undefined;
  const hasEp = selField.value !== undefined && selField.value !== null;
  const hasNode = nodeField.value !== undefined && nodeField.value !== null;
  if (!hasEp && !hasNode) {
    r.error(selField, "required field is missing (expected endpointSelector, a label selector where {} selects every endpoint, or nodeSelector for a host policy)");
  } else if (hasEp && hasNode) {
    r.error(nodeField, "a rule selects endpoints or nodes, not both (expected exactly one of endpointSelector and nodeSelector, got both)");
  } else if (hasEp) {
    endpointSelector = readSelector(r, selField);
  } else {
    nodeSelector = readSelector(r, nodeField);
  }

  const ingress = readSection(r, r.child(f, "ingress"), { direction: "ingress", deny: false });
  const ingressDeny = readSection(r, r.child(f, "ingressDeny"), { direction: "ingress", deny: true });
  const egress = readSection(r, r.child(f, "egress"), { direction: "egress", deny: false });
  const egressDeny = readSection(r, r.child(f, "egressDeny"), { direction: "egress", deny: true });
  if (["ingress", "ingressDeny", "egress", "egressDeny"].every((k) => r.child(f, k).value === undefined)) {
    r.warn(f, "rule has no ingress, ingressDeny, egress or egressDeny section and has no effect");
  }

  const enableDefaultDeny: PolicyRule["enableDefaultDeny"] = {};
  const edd = r.child(f, "enableDefaultDeny");
  if (r.mapping(edd) !== undefined) {
    r.onlyKeys(edd, ["ingress", "egress"]);
    const i = r.bool(r.child(edd, "ingress"));
    const e = r.bool(r.child(edd, "egress"));
    if (i !== undefined) enableDefaultDeny.ingress = i;
    if (e !== undefined) enableDefaultDeny.egress = e;
  }

  const labels = readRuleLabels(r, r.child(f, "labels"));
  const description = r.string(r.child(f, "description"));

  if (r.errorCount() > before || (endpointSelector === undefined && nodeSelector === undefined)) return undefined;
  const rule: PolicyRule = {
    ...(endpointSelector !== undefined ? { endpointSelector } : {}),
    ...(nodeSelector !== undefined ? { nodeSelector } : {}),
    ingress: ingress ?? [],
    egress: egress ?? [],
    ingressDeny: ingressDeny ?? [],
    egressDeny: egressDeny ?? [],
    enableDefaultDeny,
    labels: labels ?? [],
  };
  if (description !== undefined) rule.description = description;
  return rule;
}

/** Cilium rule labels: `[{key, value, source}]`. An empty source is Cilium's "unspec". */
export function readRuleLabels(r: Reader, f: Field): Label[] | undefined {
  const items = r.list(f);
  if (items === undefined) return undefined;
  const out: Label[] = [];
  for (const it of items) {
    if (r.mapping(it, true) === undefined) continue;
    r.onlyKeys(it, ["key", "value", "source"]);
    const key = r.string(r.child(it, "key"), true);
    const value = r.string(r.child(it, "value")) ?? "";
    const source = r.string(r.child(it, "source")) ?? "";
    if (key === undefined) continue;
    if (key === "") {
      r.error(r.child(it, "key"), 'invalid label key (expected a non-empty key, got "")');
      continue;
    }
    out.push({ source: source === "" ? "unspec" : source, key, value });
  }
  return out;
}

function readSection(r: Reader, f: Field, spec: SectionSpec): PeerRule[] | undefined {
  const items = r.list(f);
  if (items === undefined) return undefined;
  const out: PeerRule[] = [];
  for (const it of items) {
    const p = readPeerRule(r, it, spec);
    if (p !== undefined) out.push(p);
  }
  return out;
}

function sectionName(spec: SectionSpec): string {
  return spec.direction + (spec.deny ? "Deny" : "");
}

/** The peer fields of an ingress element (from…) or an egress element (to…), in Cilium's order. */
function peerKinds(dir: "from" | "to", direction: Direction): string[] {
  const base = [`${dir}Endpoints`, `${dir}CIDR`, `${dir}CIDRSet`, `${dir}Entities`, `${dir}Nodes`, `${dir}Groups`];
  return direction === "egress" ? [...base, "toServices", "toFQDNs"] : base;
}

function capitalized(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

function hasItems(v: unknown): boolean {
  return Array.isArray(v) ? v.length > 0 : v !== undefined && v !== null;
}

function readPeerRule(r: Reader, f: Field, spec: SectionSpec): PeerRule | undefined {
  if (r.mapping(f, true) === undefined) return undefined;
  const before = r.errorCount();
  const dir = spec.direction === "ingress" ? "from" : "to";
  checkPeerKeys(r, f, spec, dir);

  const peer: PeerRule = { at: { file: r.file, line: f.line } };
  const endpoints = readSelectors(r, r.child(f, `${dir}Endpoints`));
  if (endpoints !== undefined) peer.endpoints = endpoints;
  const cidrs = readPeerCidrs(r, f, dir);
  if (cidrs !== undefined) peer.cidrs = cidrs;
  const entities = readEntities(r, r.child(f, `${dir}Entities`));
  if (entities !== undefined) peer.entities = entities;
  const nodes = readSelectors(r, r.child(f, `${dir}Nodes`));
  if (nodes !== undefined) peer.nodes = nodes;
  const ports = readPeerPorts(r, f, spec);
  if (ports !== undefined) peer.ports = ports;

  if (r.errorCount() > before) return undefined;
  // Cilium: a nil peer list with toPorts is a wildcard (L4-only); with neither peers nor ports the
  // rule element selects nothing (`ingress: [{}]` is Cilium's "default deny, allow nothing").
  // Say "nothing" explicitly so that consumers cannot read it as "everything on all ports".
  if (peer.endpoints === undefined && peer.cidrs === undefined && peer.entities === undefined && peer.nodes === undefined && peer.ports === undefined) {
    peer.endpoints = [];
  }
  return peer;
}

/** The keys a rule element may have, why the others are refused, and Cilium's one-peer-kind rule. */
function checkPeerKeys(r: Reader, f: Field, spec: SectionSpec, dir: "from" | "to"): void {
  const allowed = [`${dir}Endpoints`, `${dir}CIDR`, `${dir}CIDRSet`, `${dir}Entities`, `${dir}Nodes`, "toPorts", "icmps"];
  const unsupported: Record<string, string> = {
    [`${dir}Requires`]: `${dir}Requires was removed from Cilium (deprecated in 1.17, then dropped from the policy API); put the required labels into each ${dir}Endpoints selector instead`,
    [`${dir}Groups`]: `${dir}Groups (cloud provider security groups) needs Cilium's cloud provider integration to turn groups into addresses, which reconcile does not have; use ${dir}CIDR`,
  };
  if (!spec.deny) unsupported["authentication"] = "authentication (mutual authentication) needs Cilium's SPIFFE-based auth agent and an L7 handshake, which reconcile does not have";
  if (spec.direction === "egress") {
    unsupported["toServices"] = `toServices ${NEEDS_SERVICE_LB}`;
    unsupported["toFQDNs"] = `toFQDNs ${NEEDS_DNS_PROXY}`;
  }
  r.onlyKeys(f, allowed, unsupported);

  // Cilium's IngressRule/EgressRule.sanitize: "Combining %s and %s is not supported yet" for any
  // two peer kinds in one element (deny sections are not sanitized by Cilium and may combine).
  if (!spec.deny) {
    const present = peerKinds(dir, spec.direction).filter((k) => hasItems(r.child(f, k).value));
    if (present.length > 1) {
      r.error(r.child(f, present[1]!), `Combining ${capitalized(present[0]!)} and ${capitalized(present[1]!)} is not supported yet (Cilium refuses it too: write one element per peer kind)`);
    }
  }
}

/** A list of label selectors (fromEndpoints, toNodes, …); undefined when the field is absent. */
function readSelectors(r: Reader, f: Field): Selector[] | undefined {
  const items = r.list(f);
  if (items === undefined) return undefined;
  const sels: Selector[] = [];
  for (const e of items) {
    const s = readSelector(r, e);
    if (s !== undefined) sels.push(s);
  }
  return sels;
}

/** fromCIDR/toCIDR and fromCIDRSet/toCIDRSet together; undefined when both are absent. */
function readPeerCidrs(r: Reader, f: Field, dir: "from" | "to"): CIDRSelector[] | undefined {
  const cidrs: CIDRSelector[] = [];
  let hasCidr = false;
  const plain = r.list(r.child(f, `${dir}CIDR`));
  if (plain !== undefined) {
    hasCidr = true;
    for (const c of plain) {
      // Cilium's CIDR.sanitize: a prefix, or a bare address (a host prefix).
      const p = readPrefixLoose(r, c, true);
      if (p !== undefined) cidrs.push({ cidr: p.text, except: [] });
    }
  }
  const sets = r.list(r.child(f, `${dir}CIDRSet`));
  if (sets !== undefined) {
    hasCidr = true;
    for (const s of sets) {
      const c = readCIDRRule(r, s);
      if (c !== undefined) cidrs.push(c);
    }
  }
  return hasCidr ? cidrs : undefined;
}

function readEntities(r: Reader, f: Field): Entity[] | undefined {
  const ents = r.list(f);
  if (ents === undefined) return undefined;
  const list: Entity[] = [];
  for (const e of ents) {
    const s = r.string(e, true);
    if (s === undefined) continue;
    if ((ENTITIES as readonly string[]).includes(s)) {
      list.push(s as Entity);
    } else if (s === "none") {
      r.error(e, `entity "none" is ${NOT_SUPPORTED} (expected one of ${ENTITIES.join(", ")})`);
    } else {
      r.error(e, `unsupported entity: ${s} (expected one of ${ENTITIES.join(", ")})`);
    }
  }
  return list;
}

/** toPorts, then icmps, as one list of port rules; undefined when both are absent. */
function readPeerPorts(r: Reader, f: Field, spec: SectionSpec): PortRule[] | undefined {
  const tpField = r.child(f, "toPorts");
  const icmpField = r.child(f, "icmps");
  // Cilium: "The ICMPs block may only be present without ToPorts. Define a separate rule to use ToPorts."
  if (!spec.deny && hasItems(tpField.value) && hasItems(icmpField.value)) {
    r.error(icmpField, "The ICMPs block may only be present without ToPorts. Define a separate rule to use ToPorts.");
  }
  let ports: PortRule[] | undefined;
  const tp = r.list(tpField);
  if (tp !== undefined) {
    ports = [];
    for (const t of tp) ports.push(...readPortRule(r, t, spec));
  }
  const icmps = r.list(icmpField);
  if (icmps !== undefined) {
    ports ??= [];
    for (const ic of icmps) ports.push(...readICMPRule(r, ic));
  }
  return ports;
}

/** A prefix or bare address, as Cilium's CIDR.sanitize takes it; host bits are cleared with a warning. */
function readPrefixLoose(r: Reader, f: Field, required: boolean): Prefix | undefined {
  const s = r.string(f, required);
  if (s === undefined) return undefined;
  const p = parseCIDRLoose(s);
  if (typeof p === "string") {
    r.error(f, p);
    return undefined;
  }
  if (p.hostBits) r.warn(f, `host bits set: read as the network ${p.prefix.text} (Cilium uses the network of ${JSON.stringify(s)} too)`);
  return p.prefix;
}

/** ICMP type names Cilium accepts (pkg/policy/api icmp.go), per family. */
export const ICMP_TYPE_NAMES: { readonly IPv4: Readonly<Record<string, number>>; readonly IPv6: Readonly<Record<string, number>> } = {
  IPv4: {
    EchoReply: 0,
    DestinationUnreachable: 3,
    Redirect: 5,
    Echo: 8,
    EchoRequest: 8,
    RouterAdvertisement: 9,
    RouterSelection: 10,
    TimeExceeded: 11,
    ParameterProblem: 12,
    Timestamp: 13,
    TimestampReply: 14,
    Photuris: 40,
    ExtendedEchoRequest: 42,
    ExtendedEchoReply: 43,
  },
  IPv6: {
    DestinationUnreachable: 1,
    PacketTooBig: 2,
    TimeExceeded: 3,
    ParameterProblem: 4,
    EchoRequest: 128,
    EchoReply: 129,
    MulticastListenerQuery: 130,
    MulticastListenerReport: 131,
    MulticastListenerDone: 132,
    RouterSolicitation: 133,
    RouterAdvertisement: 134,
    NeighborSolicitation: 135,
    NeighborAdvertisement: 136,
    RedirectMessage: 137,
    RouterRenumbering: 138,
    ICMPNodeInformationQuery: 139,
    ICMPNodeInformationResponse: 140,
    InverseNeighborDiscoverySolicitation: 141,
    InverseNeighborDiscoveryAdvertisement: 142,
    HomeAgentAddressDiscoveryRequest: 144,
    HomeAgentAddressDiscoveryReply: 145,
    MobilePrefixSolicitation: 146,
    MobilePrefixAdvertisement: 147,
    DuplicateAddressRequestCodeSuffix: 157,
    DuplicateAddressConfirmationCodeSuffix: 158,
    ExtendedEchoRequest: 160,
    ExtendedEchoReply: 161,
  },
};

/** `icmps: [{fields: [{type, family}]}]`: each field is an exact ICMP (IPv4) or ICMPv6 type. */
function readICMPRule(r: Reader, f: Field): PortRule[] {
  if (r.mapping(f, true) === undefined) return [];
  r.onlyKeys(f, ["fields"]);
  const fieldsField = r.child(f, "fields");
  const items = r.list(fieldsField) ?? [];
  // Cilium's ICMPRule.verify: "too many types, the max is 40".
  if (items.length > MAX_ICMP_FIELDS) {
    r.error(fieldsField, `too many types, the max is ${MAX_ICMP_FIELDS} (got ${items.length})`);
    return [];
  }
  const out: PortRule[] = [];
  for (const it of items) {
    if (r.mapping(it, true) === undefined) continue;
    r.onlyKeys(it, ["type", "family"]);
    const famField = r.child(it, "family");
    const fam = r.string(famField) ?? "IPv4";
    // Cilium's ICMPRule.verify: "wrong family".
    if (fam !== "IPv4" && fam !== "IPv6" && fam !== "") {
      r.error(famField, `wrong family: ${fam} (expected IPv4 or IPv6)`);
      continue;
    }
    const family = fam === "IPv6" ? "IPv6" : "IPv4";
    const typeField = r.child(it, "type");
    const tv = typeField.value;
    let type: number | undefined;
    if (typeof tv === "number") {
      type = r.int(typeField, 0, 255, true);
    } else if (typeof tv === "string") {
      if (/^(0|[1-9][0-9]{0,2})$/.test(tv) && Number(tv) <= 255) type = Number(tv);
      else if (Object.prototype.hasOwnProperty.call(ICMP_TYPE_NAMES[family], tv)) type = ICMP_TYPE_NAMES[family][tv];
      else r.error(typeField, `ICMP type ${tv} not found in ${family} (expected 0..255 or one of ${Object.keys(ICMP_TYPE_NAMES[family]).join(", ")})`);
    } else {
      r.error(typeField, tv === undefined || tv === null ? "required field is missing (expected an ICMP type 0..255 or its name)" : `wrong type (expected an ICMP type 0..255 or its name, got ${describe(tv)})`);
    }
    if (type !== undefined) out.push({ port: type, endPort: type, protocol: family === "IPv6" ? "ICMPv6" : "ICMP" });
  }
  return out;
}

function readCIDRRule(r: Reader, f: Field): CIDRSelector | undefined {
  if (r.mapping(f, true) === undefined) return undefined;
  r.onlyKeys(f, ["cidr", "except", "cidrGroupRef", "cidrGroupSelector"]);
  const cidrField = r.child(f, "cidr");
  const refField = r.child(f, "cidrGroupRef");
  const selField = r.child(f, "cidrGroupSelector");
  const given = [cidrField, refField, selField].filter((x) => x.value !== undefined && x.value !== null);
  if (given.length !== 1) {
    r.error(f, given.length === 0
      ? "required field is missing (expected one of cidr, cidrGroupRef and cidrGroupSelector)"
      : `a CIDR set element names its addresses one way (expected one of cidr, cidrGroupRef and cidrGroupSelector, got ${given.map((x) => x.path.split(".").pop()).join(" and ")})`);
    return undefined;
  }
  let base: Prefix | undefined;
  const out: CIDRSelector = { except: [] };
  let ok = true;
  if (cidrField.value !== undefined && cidrField.value !== null) {
    const s = r.string(cidrField, true);
    if (s === undefined) return undefined;
    // Cilium's CIDRRule.sanitize: "Only allow notation <IP address>/<prefix>".
    if (!s.includes("/")) {
      r.error(cidrField, `Unable to parse CIDRRule ${JSON.stringify(s)}: a CIDR set takes a prefix, not a bare address (expected ${s}/${s.includes(":") ? 128 : 32} or a fromCIDR/toCIDR entry)`);
      return undefined;
    }
    base = readPrefixLoose(r, cidrField, true);
    if (base === undefined) return undefined;
    out.cidr = base.text;
  } else if (refField.value !== undefined && refField.value !== null) {
    const name = r.name(refField, true);
    if (name === undefined) return undefined;
    out.groupRef = name;
  } else {
    const sel = readSelector(r, selField);
    if (sel === undefined) return undefined;
    out.groupSelector = sel;
  }
  for (const e of r.list(r.child(f, "except")) ?? []) {
    const p = readPrefixLoose(r, e, true);
    if (p === undefined) {
      ok = false;
      continue;
    }
    if (base !== undefined && !prefixContains(base, p)) {
      r.error(e, `allow CIDR prefix ${base.text} does not contain exclude CIDR prefix ${p.text} (expected a prefix within ${base.text})`);
      ok = false;
      continue;
    }
    out.except.push(p.text);
  }
  return ok ? out : undefined;
}

function readPortRule(r: Reader, f: Field, spec: SectionSpec): PortRule[] {
  if (r.mapping(f, true) === undefined) return [];
  const l7 = spec.deny
    ? (what: string) => `${what} is not allowed in ${sectionName(spec)} (deny rules are L3/L4 only)`
    : (what: string) => `${what} ${NEEDS_L7_PROXY}`;
  r.onlyKeys(f, ["ports"], {
    rules: l7("rules (L7 HTTP/Kafka/DNS rules)"),
    terminatingTLS: l7("terminatingTLS (TLS termination)"),
    originatingTLS: l7("originatingTLS (TLS origination)"),
    serverNames: l7("serverNames (TLS SNI matching)"),
    listener: l7("listener (Envoy listener)"),
  });
  const portsField = r.child(f, "ports");
  const items = r.list(portsField, true);
  // Cilium's PortRule.sanitize: "too many ports, the max is 40".
  if (items !== undefined && items.length > MAX_PORTS) {
    r.error(portsField, `too many ports, the max is ${MAX_PORTS} (got ${items.length})`);
    return [];
  }
  const out: PortRule[] = [];
  for (const it of items ?? []) {
    const p = readPortProtocol(r, it);
    if (p !== undefined) out.push(p);
  }
  return out;
}

/** An IANA service name (RFC 6335 §5.1, Cilium's iana.IsSvcName): 1..15 letters, digits and
 *  '-', at least one letter, no '-' at either end and no "--". */
export function isServiceName(s: string): boolean {
  return s.length >= 1 && s.length <= 15 && /^[A-Za-z0-9]+(-[A-Za-z0-9]+)*$/.test(s) && /[A-Za-z]/.test(s);
}

function readPortProtocol(r: Reader, f: Field): PortRule | undefined {
  if (r.mapping(f, true) === undefined) return undefined;
  r.onlyKeys(f, ["port", "endPort", "protocol"]);
  const portField = r.child(f, "port");
  let port: number | undefined = 0;
  let name: string | undefined;
  const pv = portField.value;
  if (typeof pv === "number") {
    port = r.int(portField, 0, 65535);
  } else if (typeof pv === "string") {
    if (/^(0|[1-9][0-9]{0,4})$/.test(pv) && Number(pv) <= 65535) {
      port = Number(pv);
    } else if (/^[0-9]+$/.test(pv)) {
      r.error(portField, `out of range (expected a port 0..65535, got ${describe(pv)})`);
      port = undefined;
    } else if (isServiceName(pv)) {
      // Cilium lower-cases port names for case-insensitive comparison.
      name = pv.toLowerCase();
      port = 0;
    } else {
      r.error(portField, `Unable to parse port (expected a port number 0..65535 or a port name of at most 15 letters, digits and '-', got ${describe(pv)})`);
      port = undefined;
    }
  } else if (pv !== undefined && pv !== null) {
    r.error(portField, `wrong type (expected a port number 0..65535 or a port name, got ${describe(pv)})`);
    port = undefined;
  }

  const endField = r.child(f, "endPort");
  let endPort: number | undefined;
  let ok = port !== undefined;
  if (endField.value !== undefined && endField.value !== null) {
    endPort = r.int(endField, 0, 65535);
    if (endPort === undefined) {
      ok = false;
    } else if (name !== undefined && endPort !== 0) {
      r.error(endField, `endPort needs a port number (expected a numeric port, got the port name ${JSON.stringify(name)})`);
      ok = false;
    } else if (name === undefined && port === 0 && endPort !== 0) {
      r.error(endField, `endPort needs a non-zero port (expected port 1..${endPort}, got port 0 which already means all ports)`);
      ok = false;
    } else if (port !== undefined && endPort !== 0 && endPort < port) {
      r.error(endField, `endPort below port (expected endPort >= ${port}, got ${endPort})`);
      ok = false;
    }
  }

  const protoField = r.child(f, "protocol");
  let protocol: PortProtocolName = "ANY";
  const proto = r.string(protoField);
  if (proto !== undefined) {
    // Cilium's ParseL4Proto is case-insensitive ("Minor edits such as capitalization ... are fixed up").
    const up = proto.toUpperCase();
    if (up === "" || (PROTOCOLS as readonly string[]).includes(up)) {
      protocol = (up === "" ? "ANY" : up) as PortProtocolName;
    } else if (["ICMP", "ICMPV6", "VRRP", "IGMP"].includes(up)) {
      r.error(protoField, `protocol ${proto} in toPorts is ${NOT_SUPPORTED} (expected one of ${PROTOCOLS.join(", ")}; ICMP types go in an icmps block)`);
      ok = false;
    } else {
      r.error(protoField, `unknown protocol (expected one of ${PROTOCOLS.join(", ")}, got ${describe(proto)})`);
      ok = false;
    }
  }
  if (!ok || port === undefined) return undefined;
  if (name !== undefined) return { port: 0, endPort: 0, name, protocol };
  if (port === 0) return { port: 0, endPort: 65535, protocol };
  return { port, endPort: endPort === undefined || endPort === 0 ? port : endPort, protocol };
}

const OPERATORS: readonly SelectorOperator[] = ["In", "NotIn", "Exists", "DoesNotExist"];

/** A Cilium EndpointSelector. Keys without "source:" get source "any", as in Cilium selectors. */
export function readSelector(r: Reader, f: Field): Selector | undefined {
  if (r.mapping(f, true) === undefined) return undefined;
  const before = r.errorCount();
  r.onlyKeys(f, ["matchLabels", "matchExpressions"]);
  const reqs: SelectorRequirement[] = [];
  const ml = r.child(f, "matchLabels");
  const m = r.mapping(ml);
  for (const rawKey of Object.keys(m ?? {})) {
    const c = r.child(ml, rawKey);
    const k = parseLabelKey(rawKey, "any");
    if (typeof k === "string") {
      r.error(c, k);
      continue;
    }
    const v = r.labelValue(c);
    if (v !== undefined) reqs.push({ source: k.source, key: k.key, operator: "In", values: [v] });
  }
  for (const e of r.list(r.child(f, "matchExpressions")) ?? []) {
    if (r.mapping(e, true) === undefined) continue;
    r.onlyKeys(e, ["key", "operator", "values"]);
    const keyField = r.child(e, "key");
    const rawKey = r.string(keyField, true);
    const k = rawKey === undefined ? undefined : parseLabelKey(rawKey, "any");
    if (typeof k === "string") r.error(keyField, k);
    const opField = r.child(e, "operator");
    const op = r.string(opField, true);
    if (op !== undefined && !(OPERATORS as readonly string[]).includes(op)) {
      r.error(opField, `unknown operator (expected one of ${OPERATORS.join(", ")}, got ${describe(op)})`);
      continue;
    }
    const valuesField = r.child(e, "values");
    const values: string[] = [];
    const valueFields = r.list(valuesField);
    for (const v of valueFields ?? []) {
      const s = r.labelValue(v);
      if (s !== undefined) values.push(s);
    }
    // `values: []` is refused as Kubernetes and Cilium refuse it (a wrong type or bad value already has its error).
    if ((op === "In" || op === "NotIn") && (valuesField.value === undefined || valueFields?.length === 0)) {
      const got = valueFields?.length === 0 ? "an empty list" : describe(valuesField.value);
      r.error(valuesField, `${op} needs values (expected a non-empty list, got ${got})`);
      continue;
    }
    if ((op === "In" || op === "NotIn") && values.length === 0) continue;
    if ((op === "Exists" || op === "DoesNotExist") && valuesField.value !== undefined && values.length > 0) {
      r.error(valuesField, `${op} takes no values (expected none, got ${values.length})`);
      continue;
    }
    if (k === undefined || typeof k === "string" || op === undefined) continue;
    reqs.push({ source: k.source, key: k.key, operator: op as SelectorOperator, values });
  }
  if (r.errorCount() > before) return undefined;
  return { requirements: reqs, at: { file: r.file, line: f.line } };
}
