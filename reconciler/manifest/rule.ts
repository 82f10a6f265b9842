// Schema of a Cilium policy rule (api.Rule in cilium/cilium pkg/policy/api), as written in a
// reconcile `Rule`, a CiliumNetworkPolicy `spec`/`specs` item or an element of a `cilium policy
// import` JSON array. Field names follow Cilium's JSON tags. Fields Cilium has but reconcile does not
// implement are errors that say so; fields Cilium does not have are errors too.

import type {
  CIDRSelector,
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
import { describe, parseLabelKey, prefixContains, type Field, type Prefix, type Reader } from "./fields.js";

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

const RULE_UNSUPPORTED: Record<string, string> = {
  log: `policy logging (log) is ${NOT_SUPPORTED}`,
};

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

type Direction = "ingress" | "egress";

interface SectionSpec {
  direction: Direction;
  deny: boolean;
}

/** Read one Cilium rule at `f`. Returns undefined when it had errors (all reported on `r`). */
export function readRule(r: Reader, f: Field): PolicyRule | undefined {
  const before = r.errorCount();
  if (r.mapping(f, true) === undefined) return undefined;
  r.onlyKeys(f, RULE_FIELDS, RULE_UNSUPPORTED);

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

function readPeerRule(r: Reader, f: Field, spec: SectionSpec): PeerRule | undefined {
  if (r.mapping(f, true) === undefined) return undefined;
  const dir = spec.direction === "ingress" ? "from" : "to";
  const allowed = [`${dir}Endpoints`, `${dir}CIDR`, `${dir}CIDRSet`, `${dir}Entities`, "toPorts"];
  const unsupported: Record<string, string> = {
    [`${dir}Requires`]: `${dir}Requires is ${NOT_SUPPORTED} (deprecated in Cilium)`,
    [`${dir}Groups`]: `${dir}Groups (cloud provider groups) is ${NOT_SUPPORTED}`,
    [`${dir}Nodes`]: `${dir}Nodes is ${NOT_SUPPORTED}; use ${dir}Entities: [remote-node] or ${dir}CIDR`,
    icmps: `icmps (ICMP type rules) is ${NOT_SUPPORTED}`,
  };
  if (!spec.deny) unsupported["authentication"] = `authentication (mutual auth) is ${NOT_SUPPORTED}`;
  if (spec.direction === "egress") {
    unsupported["toServices"] = `toServices is ${NOT_SUPPORTED}; use toEndpoints or toCIDR`;
    if (!spec.deny) unsupported["toFQDNs"] = `toFQDNs (DNS-based policy) is ${NOT_SUPPORTED}; use toCIDR or toCIDRSet`;
  }
  r.onlyKeys(f, allowed, unsupported);

  const peer: PeerRule = { at: { file: r.file, line: f.line } };
  const epField = r.child(f, `${dir}Endpoints`);
  const eps = r.list(epField);
  if (eps !== undefined) {
    const sels: Selector[] = [];
    for (const e of eps) {
      const s = readSelector(r, e);
      if (s !== undefined) sels.push(s);
    }
    peer.endpoints = sels;
  }

  const cidrs: CIDRSelector[] = [];
  let hasCidr = false;
  const plain = r.list(r.child(f, `${dir}CIDR`));
  if (plain !== undefined) {
    hasCidr = true;
    for (const c of plain) {
      const p = r.cidr(c, true);
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
  if (hasCidr) peer.cidrs = cidrs;

  const ents = r.list(r.child(f, `${dir}Entities`));
  if (ents !== undefined) {
    const list: Entity[] = [];
    for (const e of ents) {
      const s = r.string(e, true);
      if (s === undefined) continue;
      if ((ENTITIES as readonly string[]).includes(s)) {
        list.push(s as Entity);
      } else if (s === "none") {
        r.error(e, `entity "none" is ${NOT_SUPPORTED} (expected one of ${ENTITIES.join(", ")})`);
      } else {
        r.error(e, `unknown entity (expected one of ${ENTITIES.join(", ")}, got ${describe(s)})`);
      }
    }
    peer.entities = list;
  }

  const tp = r.list(r.child(f, "toPorts"));
  if (tp !== undefined) {
    const ports: PortRule[] = [];
    for (const t of tp) ports.push(...readPortRule(r, t, spec));
    peer.ports = ports;
  }

  // Cilium: a nil peer list with toPorts is a wildcard (L4-only); with neither peers nor ports the
  // rule element selects nothing (`ingress: [{}]` is Cilium's "default deny, allow nothing").
  // Say "nothing" explicitly so that consumers cannot read it as "everything on all ports".
  if (peer.endpoints === undefined && peer.cidrs === undefined && peer.entities === undefined && peer.ports === undefined) {
    peer.endpoints = [];
  }
  return peer;
}

function readCIDRRule(r: Reader, f: Field): CIDRSelector | undefined {
  if (r.mapping(f, true) === undefined) return undefined;
  r.onlyKeys(f, ["cidr", "except"], {
    cidrGroupRef: `cidrGroupRef (CiliumCIDRGroup) is ${NOT_SUPPORTED}; write the cidr`,
    cidrGroupSelector: `cidrGroupSelector (CiliumCIDRGroup) is ${NOT_SUPPORTED}; write the cidr`,
  });
  const base = r.cidr(r.child(f, "cidr"), true);
  const except: string[] = [];
  const exField = r.child(f, "except");
  const exItems = r.list(exField);
  let ok = base !== undefined;
  for (const e of exItems ?? []) {
    const p: Prefix | undefined = r.cidr(e, true);
    if (p === undefined) {
      ok = false;
      continue;
    }
    if (base !== undefined && !prefixContains(base, p)) {
      r.error(e, `except prefix is not inside cidr (expected a prefix within ${base.text}, got ${p.text})`);
      ok = false;
      continue;
    }
    except.push(p.text);
  }
  return ok && base !== undefined ? { cidr: base.text, except } : undefined;
}

function readPortRule(r: Reader, f: Field, spec: SectionSpec): PortRule[] {
  if (r.mapping(f, true) === undefined) return [];
  const l7 = spec.deny
    ? (what: string) => `${what} is not allowed in ${sectionName(spec)} (deny rules are L3/L4 only)`
    : (what: string) => `${what} is ${NOT_SUPPORTED} (no L7 proxy; L3/L4 only)`;
  r.onlyKeys(f, ["ports"], {
    rules: l7("rules (L7 HTTP/Kafka/DNS rules)"),
    terminatingTLS: l7("terminatingTLS"),
    originatingTLS: l7("originatingTLS"),
    serverNames: l7("serverNames (TLS SNI)"),
    listener: l7("listener (Envoy listener)"),
  });
  const items = r.list(r.child(f, "ports"), true);
  const out: PortRule[] = [];
  for (const it of items ?? []) {
    const p = readPortProtocol(r, it);
    if (p !== undefined) out.push(p);
  }
  return out;
}

function readPortProtocol(r: Reader, f: Field): PortRule | undefined {
  if (r.mapping(f, true) === undefined) return undefined;
  r.onlyKeys(f, ["port", "endPort", "protocol"]);
  const portField = r.child(f, "port");
  let port: number | undefined = 0;
  const pv = portField.value;
  if (typeof pv === "number") {
    port = r.int(portField, 0, 65535);
  } else if (typeof pv === "string") {
    if (/^(0|[1-9][0-9]{0,4})$/.test(pv) && Number(pv) <= 65535) {
      port = Number(pv);
    } else if (/^[0-9]+$/.test(pv)) {
      r.error(portField, `out of range (expected a port 0..65535, got ${describe(pv)})`);
      port = undefined;
    } else {
      r.error(portField, `named ports are ${NOT_SUPPORTED} (expected a port number 0..65535, got ${describe(pv)})`);
      port = undefined;
    }
  } else if (pv !== undefined && pv !== null) {
    r.error(portField, `wrong type (expected a port number 0..65535, got ${describe(pv)})`);
    port = undefined;
  }

  const endField = r.child(f, "endPort");
  let endPort: number | undefined;
  let ok = port !== undefined;
  if (endField.value !== undefined && endField.value !== null) {
    endPort = r.int(endField, 0, 65535);
    if (endPort === undefined) {
      ok = false;
    } else if (port === 0 && endPort !== 0) {
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
    if ((PROTOCOLS as readonly string[]).includes(proto)) {
      protocol = proto as PortProtocolName;
    } else if (["ICMP", "ICMPV6", "ICMPv6", "VRRP", "IGMP"].includes(proto)) {
      r.error(protoField, `protocol ${proto} is ${NOT_SUPPORTED} (expected one of ${PROTOCOLS.join(", ")})`);
      ok = false;
    } else {
      r.error(protoField, `unknown protocol (expected one of ${PROTOCOLS.join(", ")}, got ${describe(proto)})`);
      ok = false;
    }
  }
  if (!ok || port === undefined) return undefined;
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
