// The one random-policy generator of the property, incremental and differential tests: a seeded
// PRNG and random selectors, peers, rules and models built with policy-model.ts's constructors.
// Every feature any of those tests needs is on by default; an option turns off what a test's
// oracle cannot judge (see RandomPolicyOptions). Pure and deterministic: the same seed and
// options give the same model on every machine.

import type { CIDRSelector, Entity, Model, NamedPort, PortRule, RuleManifest, Selector } from "../../../reconciler/manifest/model.js";
import { parsePrefix, prefixContains } from "../../../reconciler/manifest/ip.js";
import { cidrGroup, endpoint, icmp, identity, model, named, node, port, rule, sel, type PeerSpec } from "./policy-model.js";

// ---- seeded PRNG -----------------------------------------------------------------------------------

export interface Rng {
  /** A number in [0, 1). */
  next(): number;
  /** An integer in [0, n). */
  int(n: number): number;
  pick<T>(xs: readonly T[]): T;
  /** True with probability p. */
  chance(p: number): boolean;
}

/** mulberry32: small, fast, deterministic from its seed (a failure names the seed to reproduce). */
export function prng(seed: number): Rng {
  let a = seed >>> 0;
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
  return {
    next,
    int: (n) => Math.floor(next() * n),
    pick: (xs) => xs[Math.floor(next() * xs.length)]!,
    chance: (p) => next() < p,
  };
}

// ---- vocabulary ------------------------------------------------------------------------------------

/** Values of the endpoints' `app` label. */
export const APPS = ["a", "b", "c"] as const;
/** Values of the endpoints' optional `env` label. */
export const ENVS = ["x", "y"] as const;
/** Values of the nodes' `role` label (node peers and host policies select on it). */
export const ROLES = ["edge", "core"] as const;
/** The two nodes every model has: endpoints live on one of them. */
export const NODES = { n1: "192.168.0.1", n2: "192.168.0.2" } as const;
export type NodeName = keyof typeof NODES;

/** CIDRs rules name: nested ones (except lists, longest-prefix resolution), /0s, the endpoints' /24, IPv6. */
const CIDRS = ["20.0.0.0/8", "20.1.0.0/16", "20.1.2.0/24", "30.0.0.0/8", "0.0.0.0/0", "10.0.0.0/24", "2001:db8::/32", "2001:db8:1::/48", "::/0"];
const ENTITIES: Entity[] = ["all", "world", "cluster", "host", "remote-node", "world-ipv4", "world-ipv6", "health"];
const PORTS: Array<() => PortRule> = [
  () => port(80),
  () => port(81),
  () => port(81, "UDP"),
  () => port(80, "TCP", 83),
  () => port(0, "TCP"),
  () => port(0, "UDP"),
  () => port(53, "ANY"),
  () => port(53, "UDP"),
  () => port(8000, "TCP", 8191),
  () => port(1000, "ANY", 1999), // not aligned: several LPM blocks
  () => port(82, "SCTP", 90),
  () => port(443, "TCP"),
  () => port(1, "TCP", 65535), // 16 blocks
  () => port(1024, "UDP", 65535),
  () => port(0, "ANY"), // every port of TCP, UDP and SCTP
];
/** ICMP types: the type is the policy key's port. */
const ICMP_PORTS: Array<() => PortRule> = [() => icmp(8), () => icmp(0), () => icmp(128, "IPv6"), () => icmp(129, "IPv6")];
/** Named ports: resolved per destination endpoint (see DECLS); "nope" no endpoint declares. */
const NAMED_PORTS: Array<() => PortRule> = [() => named("http"), () => named("http", "TCP"), () => named("dns", "UDP"), () => named("nope")];
/** Named ports endpoints declare: one name, different numbers on different endpoints. */
const DECLS: NamedPort[][] = [
  [{ name: "http", port: 80, protocol: "TCP" }],
  [{ name: "http", port: 8000, protocol: "TCP" }],
  [{ name: "http", port: 8100, protocol: "TCP" }],
  [{ name: "http", port: 81, protocol: "TCP" }, { name: "dns", port: 53, protocol: "UDP" }],
  [{ name: "dns", port: 53, protocol: "TCP" }],
];

// ---- options ---------------------------------------------------------------------------------------

export interface RandomPolicyOptions {
  /** Endpoints per model, [min, max]. Default [3, 7]. */
  endpoints?: readonly [number, number];
  /** Rules per model, [min, max]. Default [1, 5]. */
  rules?: readonly [number, number];
  /** Peers may name CIDRs (each a CIDR identity). Off, a rule adds nothing to the identity universe. Default on. */
  cidrs?: boolean;
  /** CIDR peers may name a CiliumCIDRGroup (by name, by labels, or a missing one); the model holds groups g1 and g2. Default on. */
  cidrGroups?: boolean;
  /** toPorts may name ICMP and ICMPv6 types. Default on. */
  icmp?: boolean;
  /** toPorts may name ports by name, and half the endpoints declare named ports. Default on. */
  namedPorts?: boolean;
  /** Peers may select nodes by their role label (fromNodes/toNodes); then every endpoint lives on n1. Default on. */
  nodePeers?: boolean;
  /** Chance that a rule is a host policy (a nodeSelector instead of an endpointSelector); above 0 a
   *  node sometimes has a host firewall. Default 0. */
  hostRules?: number;
  /** Chance that a rule has an ingressDeny section, and (apart) an egressDeny section. Default 0.3. */
  deny?: number;
  /** Rules come from rules/0..2.yaml at random lines (the provenance entries carry); otherwise rule
   *  r<i> is r<i>.yaml line 1. Default off. */
  provenance?: boolean;
  /** The model's revision. Default "test-rev". */
  revision?: string;
}

type Resolved = Required<Omit<RandomPolicyOptions, "revision">> & { revision?: string };

function resolve(o: RandomPolicyOptions): Resolved {
  return {
    endpoints: [3, 7],
    rules: [1, 5],
    cidrs: true,
    cidrGroups: true,
    icmp: true,
    namedPorts: true,
    nodePeers: true,
    hostRules: 0,
    deny: 0.3,
    provenance: false,
    ...o,
  };
}

/** An integer in [min, max]. */
const between = (r: Rng, [min, max]: readonly [number, number]) => min + r.int(max - min + 1);

// ---- generators ------------------------------------------------------------------------------------

export function randomSelector(r: Rng): Selector {
  switch (r.int(8)) {
    case 0:
      return sel({});
    case 1:
      return sel({ app: r.pick(APPS) });
    case 2:
      return sel({ env: r.pick(ENVS) }, [["app", r.pick(["In", "NotIn"] as const), [r.pick(APPS), r.pick(APPS)]]]);
    case 3:
      return sel({}, [["env", r.pick(["Exists", "DoesNotExist"] as const)]]);
    case 4:
      return sel({ "k8s:app": r.pick(APPS) });
    case 5:
      return sel({}, [["app", "In", [r.pick(APPS), r.pick(APPS)]]]);
    case 6:
      return sel({ "reserved:host": "" });
    default:
      return sel({ app: r.pick(APPS), env: r.pick(ENVS) });
  }
}

function randomCidr(r: Rng, o: Resolved): CIDRSelector {
  if (o.cidrGroups && r.chance(0.25)) {
    const except = r.chance(0.3) ? ["20.1.2.0/24"] : [];
    return r.chance(0.5) ? { groupRef: r.pick(["g1", "g2", "missing"]), except } : { groupSelector: sel({ tier: r.pick(["ext", "int"]) }), except };
  }
  const cidr = r.pick(CIDRS);
  const outer = parsePrefix(cidr);
  const except = CIDRS.filter((x) => {
    const p = parsePrefix(x);
    return p.family === outer.family && p.len > outer.len && prefixContains(outer, p) && r.chance(0.4);
  });
  return { cidr, except };
}

function randomPorts(r: Rng, o: Resolved): PortRule[] {
  const choices = [...PORTS, ...(o.icmp ? ICMP_PORTS : []), ...(o.namedPorts ? NAMED_PORTS : [])];
  return Array.from({ length: 1 + r.int(2) }, () => r.pick(choices)());
}

/** One peer: endpoints, CIDRs, entities, nodes, a mix, L4-only (ports, no peer) or L3-only (peer, no ports). */
export function randomPeer(r: Rng, opts: RandomPolicyOptions = {}): PeerSpec {
  const o = resolve(opts);
  const kinds = ["endpoints", "endpoints", "entities", "l4", "mixed", ...(o.cidrs ? ["cidrs"] : []), ...(o.nodePeers ? ["nodes"] : [])];
  const kind = r.pick(kinds);
  const l3Only = kind === "endpoints" && r.chance(0.5);
  const p: PeerSpec = {};
  if (kind === "nodes") p.nodes = [r.chance(0.3) ? sel({}) : sel({ role: r.pick(ROLES) })];
  if (kind === "endpoints" || (kind === "mixed" && r.chance(0.5))) p.endpoints = Array.from({ length: 1 + r.int(2) }, () => randomSelector(r));
  if (kind === "cidrs" || (kind === "mixed" && o.cidrs && r.chance(0.5))) p.cidrs = Array.from({ length: 1 + r.int(2) }, () => randomCidr(r, o));
  if (kind === "entities" || (kind === "mixed" && r.chance(0.5))) p.entities = [r.pick(ENTITIES)];
  if (kind === "l4" || (!l3Only && r.chance(0.5))) p.ports = randomPorts(r, o);
  return p;
}

/** Where a random rule comes from, when the caller does not say. */
export interface RuleAt {
  name: string;
  file?: string;
  line?: number;
}

/**
 * A random rule: an endpoint selector (or, with `hostRules`, sometimes a node selector), up to two
 * ingress and egress peers each, maybe deny sections, maybe default deny switched off.
 */
export function randomRule(r: Rng, at: RuleAt, opts: RandomPolicyOptions = {}): RuleManifest {
  const o = resolve(opts);
  const sections = (): PeerSpec[] => (r.chance(0.5) ? Array.from({ length: 1 + r.int(2) }, () => randomPeer(r, o)) : []);
  const file = at.file ?? (o.provenance ? `rules/${r.int(3)}.yaml` : undefined);
  const line = at.line ?? (o.provenance ? 1 + r.int(200) : undefined);
  const m = rule({
    name: at.name,
    ...(file !== undefined ? { file } : {}),
    ...(line !== undefined ? { line } : {}),
    selector: randomSelector(r),
    ingress: sections(),
    egress: sections(),
    ingressDeny: r.chance(o.deny) ? [randomPeer(r, o)] : [],
    egressDeny: r.chance(o.deny) ? [randomPeer(r, o)] : [],
    enableDefaultDeny: { ...(r.chance(0.2) ? { ingress: false } : {}), ...(r.chance(0.2) ? { egress: false } : {}) },
  });
  if (!r.chance(o.hostRules)) return m;
  // A host policy: the same rule selecting nodes by their labels instead of endpoints.
  const { endpointSelector: _, ...rest } = m.rule;
  return { ...m, rule: { ...rest, nodeSelector: r.chance(0.3) ? sel({}) : sel({ role: r.pick(ROLES) }) } };
}

/**
 * A random model: endpoints e0.. (10.0.0.i+1, sometimes f00d::i+1, on n1 or n2, labels app and
 * maybe env, maybe named ports), rules r0.., maybe an Identity pinned to an endpoint's label set
 * (or to a set no endpoint has), nodes n1 and n2 with a role label, and CIDR groups g1 and g2.
 */
export function randomModel(r: Rng, opts: RandomPolicyOptions = {}): Model {
  const o = resolve(opts);
  const endpoints = Array.from({ length: between(r, o.endpoints) }, (_, i) => {
    const lbl: Record<string, string> = { app: r.pick(APPS) };
    if (r.chance(0.6)) lbl.env = r.pick(ENVS);
    return endpoint(`e${i}`, lbl, {
      ipv4: `10.0.0.${i + 1}`,
      ...(r.chance(0.4) ? { ipv6: `f00d::${i + 1}` } : {}),
      ...(r.chance(0.3) ? { node: "n2" } : {}),
      ...(o.namedPorts && r.chance(0.5) ? { ports: r.pick(DECLS) } : {}),
    });
  });
  const rules = Array.from({ length: between(r, o.rules) }, (_, i) => randomRule(r, { name: `r${i}` }, o));
  const identities = [];
  if (r.chance(0.6)) {
    const ep = r.pick(endpoints);
    const lbl = r.chance(0.8) ? Object.fromEntries(ep.labels.map((l) => [l.key, l.value])) : { app: "zz" };
    identities.push(identity("pin", 256 + r.int(65000), lbl));
  }
  // Node peers are judged from the node compiled for (its own Node is the host, the other
  // remote-node) while explain judges a flow with one node's view: with node peers, every endpoint
  // lives on n1.
  const usesNodes = rules.some((q) => [q.rule.ingress, q.rule.egress, q.rule.ingressDeny, q.rule.egressDeny].some((sec) => sec.some((x) => x.nodes !== undefined)));
  if (usesNodes) for (const e of endpoints) delete e.node;
  const nodes = (Object.keys(NODES) as NodeName[]).map((name) => ({
    ...node(name, NODES[name], { role: r.pick(ROLES) }),
    ...(o.hostRules > 0 && r.chance(0.2) ? { hostFirewall: { devices: [] } } : {}),
  }));
  const cidrGroups = o.cidrGroups ? [cidrGroup("g1", ["20.1.0.0/16", "2001:db8:1::/48"], { tier: "ext" }), cidrGroup("g2", ["30.0.0.0/8", "20.1.2.0/24"], { tier: r.pick(["ext", "int"]) })] : [];
  return model({ ...(o.revision !== undefined ? { revision: o.revision } : {}), endpoints, rules, identities, nodes, cidrGroups });
}
