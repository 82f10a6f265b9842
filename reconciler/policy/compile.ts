// Model → per-endpoint policy entries, identities and ipcache (DESIGN §4), with Cilium semantics.
//
// Work is organised to stay linear in the output size:
// - identities are indexed by label (key → value → identities), and every distinct selector is
//   evaluated once (cache by its canonical string);
// - each PeerRule's peer identities and port keys are computed once;
// - a policy is computed once per security identity and shared by the endpoints that carry it
//   (as in Cilium, policy is a function of the identity);
// - policy keys are packed into one number while merging, RuleRefs are interned per rule.

import type { ManifestProblem, Model, NamedPort, PeerRule, RuleManifest, Selector } from "../manifest/model.js";
import { parsePrefix, prefixContains, PrefixSet, type Prefix } from "../manifest/ip.js";
import {
  buildContext,
  ENTITY_RESERVED,
  worldEntityCovers,
  type EffectiveRule,
  hasDirection,
  isLocal,
  type PolicyContext,
  sections,
} from "./context.js";
import { HOST_ENDPOINT, hostRuleWarnings, localHost } from "./host.js";
import type { IdentityAllocatorOptions } from "./identity.js";
import { LabelIndex, isWildcard, selectorKey, selectorString } from "./selector.js";
import { ANY_PORT_KEY, hasNamedPorts, type PortKey, portKeys } from "./ports.js";
import { expandCidr, nodeSelectorIdentities } from "./peers.js";
import { PolicyEntrySet } from "./entry-set.js";
import { anyIdentityKey, keyBaseOf, packEntry, policyKeyBase, policyKeyPortPart, portPartContains, sameKeyBase } from "./key.js";
import {
  type CompiledPolicy,
  type CompileOptions,
  type Direction,
  type EndpointPolicy,
  type IpcacheEntry,
  type PolicyEntry,
  ReservedIdentity,
  type RuleRef,
} from "./types.js";

// Keys are packed into one number while merging (policy/key.ts): policyKeyBase(direction,
// identity) + policyKeyPortPart(protocol, port block), the form the entry sets hold.

function portPart(pk: PortKey): number {
  return policyKeyPortPart(pk.protocol, pk.port, pk.portPrefixLen);
}

function compareRefs(a: RuleRef, b: RuleRef): number {
  return a.file < b.file ? -1 : a.file > b.file ? 1 : a.line - b.line || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
}

/** Add a rule to a key. Values start as the rule's interned one-element array (no allocation per
 *  entry); a second rule on the same key makes a sorted copy. */
function addEntry(map: Map<number, RuleRef[]>, key: number, single: RuleRef[]): void {
  const rules = map.get(key);
  if (rules === undefined) {
    map.set(key, single);
    return;
  }
  const ref = single[0]!;
  if (rules.includes(ref)) return;
  map.set(key, [...rules, ref].sort(compareRefs));
}

/** Remove allows that a deny of the same direction and identity covers (its block contains the
 *  allow's block), because the datapath's LPM lookup would pick the more specific allow. Keys must
 *  be sorted. */
function dropShadowedAllows(keys: Float64Array, deny: Map<number, RuleRef[]>): number[] {
  const out: number[] = [];
  let i = 0;
  while (i < keys.length) {
    let j = i;
    const denies: number[] = [];
    while (j < keys.length && sameKeyBase(keys[j]!, keys[i]!)) {
      if (deny.has(keys[j]!)) denies.push(keys[j]!);
      j++;
    }
    for (let k = i; k < j; k++) {
      const key = keys[k]!;
      if (denies.length > 0 && !deny.has(key) && coveredBy(denies, key)) continue;
      out.push(key);
    }
    i = j;
  }
  return out;
}

function coveredBy(denies: readonly number[], key: number): boolean {
  for (const d of denies) if (portPartContains(d, key)) return true;
  return false;
}

/** An identity's policy as the packed set its endpoints share (see entry-set.ts). A deny is audited
 *  when the endpoints are in audit mode or every rule that produced it is an audit rule (and no
 *  enforced deny covers it, see auditedDenies). */
function entrySetOf(pol: IdentityPolicy, auditMode: boolean): PolicyEntrySet {
  const packed = new Float64Array(pol.keys.length);
  const rules: RuleRef[][] = new Array(pol.keys.length);
  const audited = auditMode ? undefined : auditedDenies(pol);
  pol.keys.forEach((key, i) => {
    const denied = pol.deny.get(key);
    const audit = denied !== undefined && (auditMode || audited?.has(key) === true);
    packed[i] = packEntry(key, denied ? "deny" : "allow", audit);
    rules[i] = denied ?? pol.allow.get(key)!;
  });
  return PolicyEntrySet.fromPackedWithRules(packed, rules);
}

/**
 * The deny keys only audit rules produce, less those an enforced deny of the same direction covers
 * (same identity or identity 0, a port block containing theirs): the datapath's LPM lookup would
 * pick the more specific audited entry and let through a packet an enforce rule denies.
 */
function auditedDenies(pol: IdentityPolicy): Set<number> {
  const audited = new Set<number>();
  if (pol.auditRules.size === 0) return audited;
  // Enforced denies by (direction, identity).
  const enforced = new Map<number, number[]>();
  for (const [key, refs] of pol.deny) {
    if (refs.every((ref) => pol.auditRules.has(ref))) {
      audited.add(key);
      continue;
    }
    const list = enforced.get(keyBaseOf(key));
    if (list) list.push(key);
    else enforced.set(keyBaseOf(key), [key]);
  }
  if (enforced.size === 0) return audited;
  const covers = (base: number, key: number): boolean => enforced.get(base)?.some((e) => portPartContains(e, key)) === true;
  for (const key of audited) if (covers(keyBaseOf(key), key) || covers(keyBaseOf(anyIdentityKey(key)), key)) audited.delete(key);
  return audited;
}

/** Whether each direction's default deny is audited: in audit mode, or when every rule that puts
 *  the direction into default deny is an audit rule (a direction forced by --enforcement always
 *  without any rule is not). */
function auditedDirections(pol: IdentityPolicy, auditMode: boolean): { ingress: boolean; egress: boolean } {
  const audited = (refs: RuleRef[]): boolean => auditMode || (refs.length > 0 && refs.every((ref) => pol.auditRules.has(ref)));
  return { ingress: pol.enforce.ingress && audited(pol.enforcedBy.ingress), egress: pol.enforce.egress && audited(pol.enforcedBy.egress) };
}

/** An endpoint's compiled policy; `entries` are made from the shared packed set when read. */
class CompiledEndpointPolicy implements EndpointPolicy {
  constructor(
    readonly endpoint: string,
    readonly identity: number,
    readonly enforce: { ingress: boolean; egress: boolean },
    readonly enforcedBy: { ingress: RuleRef[]; egress: RuleRef[] },
    readonly entrySet: PolicyEntrySet,
    readonly auditMode: boolean,
    readonly audit: { ingress: boolean; egress: boolean },
  ) {}

  get entries(): PolicyEntry[] {
    return this.entrySet.toEntries(this.endpoint);
  }
}

/** Resolves PeerRules to peer identities, with caches. Valid for one identity allocation: an
 *  incremental compile over the same identities keeps using it (caches keyed by PeerRule object are
 *  weak, so the rules of older snapshots do not pile up in a long-running daemon). */
export class PeerResolver {
  private readonly index = new LabelIndex();
  private readonly selectorCache = new Map<string, number[]>();
  private readonly cidrCache = new Map<string, number[]>();
  private readonly peerCache = new WeakMap<PeerRule, number[]>();
  private readonly lowCache = new WeakMap<PeerRule, number[]>();
  /** Named-port keys per peer rule and per list of declared ports it resolved against. */
  private readonly namedLowCache = new WeakMap<PeerRule, Map<readonly NamedPort[] | undefined, number[]>>();
  private readonly ctx: PolicyContext;
  private readonly prefixes: PrefixSet;
  private readonly cidrIdOf = new Map<string, number>();
  private readonly clusterIds: number[];
  /** CIDR identities with their prefixes: the world entities select them too. */
  private readonly cidrIdentities: Array<[string, number]> = [];

  constructor(ctx: PolicyContext) {
    this.ctx = ctx;
    const cluster: number[] = [...ENTITY_RESERVED.cluster];
    for (const info of ctx.alloc.identities.values()) {
      this.index.add(info.id, info.labels);
      if (info.origin === "pinned" || info.origin === "derived") cluster.push(info.id);
    }
    this.clusterIds = cluster;
    const parsed: Prefix[] = [];
    for (const [text, id] of ctx.alloc.byCidr) {
      parsed.push(parsePrefix(text));
      this.cidrIdOf.set(text, id);
      this.cidrIdentities.push([text, id]);
    }
    this.prefixes = new PrefixSet(parsed);
  }

  /** Identities a selector picks among all identities; `{}` is the wildcard identity 0. */
  selector(sel: Selector): number[] {
    if (isWildcard(sel)) return [ReservedIdentity.unknown];
    const k = selectorKey(sel);
    let ids = this.selectorCache.get(k);
    if (!ids) this.selectorCache.set(k, (ids = this.index.select(sel)));
    return ids;
  }

  private cidr(cidr: string, except: string[]): number[] {
    const k = `${cidr}|${except.join(",")}`;
    let ids = this.cidrCache.get(k);
    if (ids) return ids;
    const outer = parsePrefix(cidr);
    const ex = except.map(parsePrefix);
    ids = [];
    for (const p of this.prefixes.within(outer)) {
      if (ex.some((e) => prefixContains(e, p))) continue;
      ids.push(this.cidrIdOf.get(p.text)!);
    }
    if (outer.len === 0) {
      ids.push(ReservedIdentity.world, outer.family === 4 ? ReservedIdentity.worldIPv4 : ReservedIdentity.worldIPv6);
    }
    this.cidrCache.set(k, ids);
    return ids;
  }

  peers(peer: PeerRule): number[] {
    let ids = this.peerCache.get(peer);
    if (ids) return ids;
    const set = new Set<number>();
    if (peer.endpoints === undefined && peer.cidrs === undefined && peer.entities === undefined && peer.nodes === undefined) {
      // L4-only (toPorts without from*) selects every peer; an empty peer rule selects none.
      if (peer.ports !== undefined) set.add(ReservedIdentity.unknown);
    }
    for (const sel of peer.endpoints ?? []) for (const id of this.selector(sel)) set.add(id);
    for (const c of peer.cidrs ?? []) for (const x of expandCidr(this.ctx.model, c)) for (const id of this.cidr(x.cidr, x.except)) set.add(id);
    if (peer.nodes !== undefined) for (const id of nodeSelectorIdentities(this.ctx.model, this.ctx.opts, peer.nodes)) set.add(id);
    for (const e of peer.entities ?? []) {
      for (const id of ENTITY_RESERVED[e]) set.add(id);
      if (e === "cluster") for (const id of this.clusterIds) set.add(id);
      for (const [cidr, id] of this.cidrIdentities) if (worldEntityCovers(e, cidr)) set.add(id);
    }
    ids = [...set].sort((a, b) => a - b);
    this.peerCache.set(peer, ids);
    return ids;
  }

  /** The port parts of a peer rule's keys. With named ports they depend on the destination:
   *  `declared` is the named ports it resolves against (ingress: the subject endpoint's own;
   *  egress: the peer identity's, see declaredFor). */
  lows(peer: PeerRule, declared?: readonly NamedPort[]): number[] {
    if (!hasNamedPorts(peer.ports)) {
      let lows = this.lowCache.get(peer);
      if (!lows) this.lowCache.set(peer, (lows = portKeys(peer.ports).map(portPart)));
      return lows;
    }
    let byDeclared = this.namedLowCache.get(peer);
    if (byDeclared === undefined) this.namedLowCache.set(peer, (byDeclared = new Map()));
    let lows = byDeclared.get(declared);
    if (!lows) byDeclared.set(declared, (lows = portKeys(peer.ports, declared).map(portPart)));
    return lows;
  }

  /** Named ports a peer identity's endpoints declare (identity 0, every identity: all of them). */
  declaredFor(identity: number): readonly NamedPort[] | undefined {
    return identity === ReservedIdentity.unknown ? this.ctx.allPorts : this.ctx.portsByIdentity.get(identity);
  }

  /** Whether a local endpoint is in audit mode (its annotation, or --enforcement-mode audit). */
  endpointAudit(name: string): boolean {
    return this.ctx.opts.audit === true || this.ctx.endpointByName.get(name)?.audit === true;
  }

  /** The named ports of a local endpoint (what its ingress named ports resolve against). */
  endpointPorts(name: string): readonly NamedPort[] | undefined {
    return this.ctx.endpointByName.get(name)?.ports;
  }
}

const DIRECTIONS: readonly Direction[] = ["ingress", "egress"];

export interface IdentityPolicy {
  enforce: { ingress: boolean; egress: boolean };
  enforcedBy: { ingress: RuleRef[]; egress: RuleRef[] };
  /** Final keys, sorted, shadowed allows removed. */
  keys: number[];
  /** Rules per key; a key in `deny` is a deny entry (deny wins over an allow of the same key). */
  allow: Map<number, RuleRef[]>;
  deny: Map<number, RuleRef[]>;
  /** The refs of the audit rules among the rules evaluated. */
  auditRules: ReadonlySet<RuleRef>;
}

export function policyForIdentity(
  rules: EffectiveRule[],
  resolver: PeerResolver,
  opts: CompileOptions,
  singles: Map<RuleRef, RuleRef[]>,
  subjectPorts?: readonly NamedPort[],
): IdentityPolicy {
  const allowMap = new Map<number, RuleRef[]>();
  const denyMap = new Map<number, RuleRef[]>();
  const enforce = { ingress: false, egress: false };
  const enforcedBy: { ingress: RuleRef[]; egress: RuleRef[] } = { ingress: [], egress: [] };
  for (let d = 0; d < 2; d++) {
    const dir = DIRECTIONS[d]!;
    const denyRules: RuleRef[] = [];
    const allowOnly: RuleRef[] = [];
    for (const r of rules) {
      if (!hasDirection(r, dir)) continue;
      (r.defaultDeny[dir] ? denyRules : allowOnly).push(r.ref);
      const single = singles.get(r.ref)!;
      const s = sections(r, dir);
      for (const [peers, deny] of [[s.allow, false], [s.deny, true]] as const) {
        const target = deny ? denyMap : allowMap;
        for (const peer of peers) {
          const ids = resolver.peers(peer);
          const named = hasNamedPorts(peer.ports);
          // Named ports resolve at the destination: the subject itself on ingress, each peer
          // identity on egress.
          const fixed = !named || dir === "ingress" ? resolver.lows(peer, subjectPorts) : undefined;
          for (const id of ids) {
            const b = policyKeyBase(dir, id);
            const lows = fixed ?? resolver.lows(peer, resolver.declaredFor(id));
            for (const low of lows) addEntry(target, b + low, single);
          }
        }
      }
    }
    const enabled = denyRules.length > 0 || allowOnly.length > 0;
    if (opts.enforcement === "always") {
      enforce[dir] = true;
      enforcedBy[dir] = denyRules.length > 0 ? denyRules : allowOnly;
    } else {
      enforce[dir] = opts.enforcement === "default" && enabled;
      enforcedBy[dir] = !enforce[dir] ? [] : denyRules.length > 0 ? denyRules : allowOnly;
      if (enabled && denyRules.length === 0) {
        // Cilium: only enableDefaultDeny=false rules select the endpoint in this direction. The
        // direction is still enforced (so denies apply), with an allow-all entry from those rules.
        const wild = policyKeyBase(dir, ReservedIdentity.unknown) + portPart(ANY_PORT_KEY);
        for (const ref of allowOnly) addEntry(allowMap, wild, singles.get(ref)!);
      }
    }
    enforcedBy[dir] = [...enforcedBy[dir]].sort(compareRefs);
  }
  // Deny wins over allow on the same key: such keys appear once, as deny entries.
  const all = new Float64Array(allowMap.size + denyMap.size);
  let n = 0;
  for (const k of denyMap.keys()) all[n++] = k;
  for (const k of allowMap.keys()) if (!denyMap.has(k)) all[n++] = k;
  const sorted = all.subarray(0, n).sort();
  const auditRules = new Set<RuleRef>();
  for (const r of rules) if (r.manifest.audit) auditRules.add(r.ref);
  return { enforce, enforcedBy, keys: dropShadowedAllows(sorted, denyMap), allow: allowMap, deny: denyMap, auditRules };
}

function selectorProblem(rule: EffectiveRule, sel: Selector, what: string): ManifestProblem {
  return {
    file: sel.at.file,
    line: sel.at.line,
    object: `Rule/${rule.manifest.name}`,
    message: `${what} ${selectorString(sel)} matches no endpoint and no Identity`,
    severity: "warning",
  };
}

function hostPrefix(addr: string): string {
  if (addr.includes("/")) return addr;
  return addr.includes(":") ? `${addr}/128` : `${addr}/32`;
}

const IPCACHE_RANK: Record<IpcacheEntry["origin"], number> = { endpoint: 0, "remote-endpoint": 0, host: 1, node: 2, cidr: 3 };

/** Rule that first names each CIDR (model order), as "Rule/<name>": the ref of its ipcache entry. */
export function cidrRuleRefs(model: Model): Map<string, string> {
  const firstRule = new Map<string, string>();
  for (const r of model.rules) {
    for (const s of [r.rule.ingress, r.rule.egress, r.rule.ingressDeny, r.rule.egressDeny]) {
      for (const p of s) {
        for (const c of p.cidrs ?? []) {
          for (const e of expandCidr(model, c)) for (const x of [e.cidr, ...e.except]) if (!firstRule.has(x)) firstRule.set(x, `Rule/${r.name}`);
        }
      }
    }
  }
  return firstRule;
}

export function buildIpcache(ctx: PolicyContext, warnings: ManifestProblem[], firstRule = cidrRuleRefs(ctx.model)): IpcacheEntry[] {
  const { model, opts } = ctx;
  const byPrefix = new Map<string, IpcacheEntry>();
  const put = (e: IpcacheEntry): void => {
    const prev = byPrefix.get(e.prefix);
    if (prev === undefined || IPCACHE_RANK[e.origin] < IPCACHE_RANK[prev.origin]) byPrefix.set(e.prefix, e);
  };
  const nodes = new Map(model.nodes.map((n) => [n.name, n]));
  const missingNodes = new Set<string>();
  // Model order (deterministic for a snapshot) decides which endpoint keeps a duplicated address.
  for (const ep of model.endpoints) {
    const identity = ctx.endpointIdentity.get(ep.name)!;
    const local = isLocal(ep, opts);
    let tunnelEndpoint: string | undefined;
    if (!local) {
      const node = nodes.get(ep.node!);
      if (node) tunnelEndpoint = node.address;
      else if (!missingNodes.has(ep.node!)) {
        missingNodes.add(ep.node!);
        warnings.push({
          file: ep.at.file,
          line: ep.at.line,
          object: `Endpoint/${ep.name}`,
          path: "spec.node",
          message: `node ${JSON.stringify(ep.node)} has no Node manifest, so its endpoints get no tunnel endpoint`,
          severity: "warning",
        });
      }
    }
    for (const addr of [ep.ipv4, ep.ipv6]) {
      if (addr === undefined) continue;
      const prefix = hostPrefix(addr);
      const prev = byPrefix.get(prefix);
      if (prev !== undefined) {
        warnings.push({
          file: ep.at.file,
          line: ep.at.line,
          object: `Endpoint/${ep.name}`,
          message: `address ${addr} is also used by ${prev.ref}; the ipcache keeps the first`,
          severity: "warning",
        });
        continue;
      }
      const e: IpcacheEntry = local
        ? { prefix, identity, origin: "endpoint", ref: `Endpoint/${ep.name}` }
        : tunnelEndpoint !== undefined
          ? { prefix, identity, origin: "remote-endpoint", tunnelEndpoint, ref: `Endpoint/${ep.name}` }
          : { prefix, identity, origin: "remote-endpoint", ref: `Endpoint/${ep.name}` };
      byPrefix.set(prefix, e);
    }
  }
  for (const n of model.nodes) {
    const prefix = hostPrefix(n.address);
    if (n.name === opts.node) put({ prefix, identity: ReservedIdentity.host, origin: "host", ref: `Node/${n.name}` });
    else put({ prefix, identity: ReservedIdentity.remoteNode, origin: "node", ref: `Node/${n.name}` });
  }
  for (const a of opts.hostAddresses ?? []) put({ prefix: hostPrefix(a), identity: ReservedIdentity.host, origin: "host" });
  for (const [prefix, identity] of ctx.alloc.byCidr) {
    const ref = firstRule.get(prefix);
    put(ref !== undefined ? { prefix, identity, origin: "cidr", ref } : { prefix, identity, origin: "cidr" });
  }
  // Everything outside known prefixes is the world of its family (Cilium's dual-stack ipcache).
  put({ prefix: "0.0.0.0/0", identity: ReservedIdentity.worldIPv4, origin: "cidr" });
  put({ prefix: "::/0", identity: ReservedIdentity.worldIPv6, origin: "cidr" });
  // Insertion order: endpoints (model order), nodes, host addresses, CIDRs (sorted), world.
  // Deterministic for a snapshot; not sorted by address because at 10^5 prefixes that costs more
  // than everything else here, and consumers key the entries by prefix anyway.
  return [...byPrefix.values()];
}

/** Compile a model for one node: the one compile path with nothing to reuse. Pure. `idOpts`
 *  exists for tests (injected hash / ranges). */
export function compile(model: Model, opts: CompileOptions, idOpts: IdentityAllocatorOptions = {}): CompiledPolicy {
  return compileFrom(model, opts, idOpts).policy;
}

/**
 * What a compile worked out on the way, kept so that the next snapshot can be compiled
 * incrementally (policy/incremental.ts): everything here is a function of the model's identity
 * universe (identities, endpoints, CIDRs, nodes) and the options, except what is noted per rule.
 */
export interface CompileMemo {
  /** The model compiled (never modified afterwards). */
  model: Model;
  /** The options it was compiled with; any change means a full compile. */
  opts: CompileOptions;
  idOpts: IdentityAllocatorOptions;
  /** Identity allocation, endpoint identities and evaluated rules of `model`. */
  ctx: PolicyContext;
  /** Peer resolution over ctx's identities, with its caches. */
  resolver: PeerResolver;
  /** Subject selection over the identities endpoints or Identity manifests carry. */
  subjectIndex: LabelIndex;
  /** selectorKey(subject) → selected identities. */
  subjectCache: Map<string, number[]>;
  /** Local endpoints by identity, in model order. */
  localByIdentity: Map<number, string[]>;
  /** The evaluated form of each rule manifest of `model`. */
  effective: Map<RuleManifest, EffectiveRule>;
  /** Per rule: the identities its endpointSelector picks and its warnings (depend on the rule and
   *  the identity universe only). */
  perRule: WeakMap<EffectiveRule, RuleFacts>;
  /** cidrRuleRefs(model): the refs of the CIDR ipcache entries. */
  cidrRefs: Map<string, string>;
  /** Warnings buildIpcache gave (kept with the ipcache it built). */
  ipcacheWarnings: ManifestProblem[];
  /** The result: its EndpointPolicy objects and ipcache array are reused by reference. */
  policy: CompiledPolicy;
}

/** What one rule contributes before per-identity evaluation. */
export interface RuleFacts {
  /** Identities the rule's endpointSelector selects (all, not only local ones). */
  subjects: number[];
  /** Selectors of the rule that match nothing. */
  warnings: ManifestProblem[];
}

/** Subject identities and selector warnings of one rule. */
export function ruleFacts(r: EffectiveRule, subjectIndex: LabelIndex, subjectCache: Map<string, number[]>, resolver: PeerResolver): RuleFacts {
  const warnings: ManifestProblem[] = [];
  const k = selectorKey(r.subject);
  let ids = subjectCache.get(k);
  if (!ids) subjectCache.set(k, (ids = subjectIndex.select(r.subject)));
  if (ids.length === 0) warnings.push(selectorProblem(r, r.subject, "endpointSelector"));
  for (const dir of DIRECTIONS) {
    const s = sections(r, dir);
    for (const peer of [...s.allow, ...s.deny]) {
      for (const sel of peer.endpoints ?? []) {
        if (!isWildcard(sel) && resolver.selector(sel).length === 0) {
          warnings.push(selectorProblem(r, sel, dir === "ingress" ? "fromEndpoints" : "toEndpoints"));
        }
      }
      // A port name resolves at the destination (the subject on ingress, the peers on egress); a
      // name none of them declares allows nothing (Cilium: the port is not opened).
      for (const pr of peer.ports ?? []) {
        if (pr.name === undefined) continue;
        const dests = dir === "ingress" ? ids : resolver.peers(peer);
        const declared = dests.some((id) => (resolver.declaredFor(id) ?? []).some((d) => d.name === pr.name && (pr.protocol === "ANY" || pr.protocol === d.protocol)));
        if (!declared) {
          warnings.push({
            file: peer.at.file,
            line: peer.at.line,
            object: `Rule/${r.manifest.name}`,
            message: `port name ${JSON.stringify(pr.name)}${pr.protocol === "ANY" ? "" : `/${pr.protocol}`} is declared (Endpoint spec.ports) by no ${dir === "ingress" ? "endpoint the rule selects" : "endpoint of the peers"}, so it allows nothing`,
            severity: "warning",
          });
        }
      }
    }
  }
  return { subjects: ids, warnings };
}

/** One interned one-element ref array per rule: the value of a key only that rule produced. */
export function internRefs(rules: readonly EffectiveRule[]): Map<RuleRef, RuleRef[]> {
  return new Map<RuleRef, RuleRef[]>(rules.map((r) => [r.ref, Object.freeze([r.ref]) as RuleRef[]]));
}

/** The policies of the local endpoints that carry identity `id` (policy is a function of the
 *  identity; they share one packed entry set). */
export function endpointPolicies(id: number, names: readonly string[], rules: EffectiveRule[], resolver: PeerResolver, opts: CompileOptions, singles: Map<RuleRef, RuleRef[]>): EndpointPolicy[] {
  // Endpoints of one identity share a policy, except where they declare different named ports
  // (ingress named ports resolve against the endpoint itself) or differ in audit mode: one policy
  // per set of declarations, one entry set per mode.
  const groups = new Map<string, { ports: readonly NamedPort[] | undefined; names: string[] }>();
  for (const name of names) {
    const ports = resolver.endpointPorts(name);
    const key = ports === undefined || ports.length === 0 ? "" : JSON.stringify(ports);
    const g = groups.get(key);
    if (g) g.names.push(name);
    else groups.set(key, { ports: key === "" ? undefined : ports, names: [name] });
  }
  const byName = new Map<string, EndpointPolicy>();
  for (const g of groups.values()) {
    const pol = policyForIdentity(rules, resolver, opts, singles, g.ports);
    const sets = new Map<boolean, PolicyEntrySet>();
    for (const name of g.names) {
      const auditMode = resolver.endpointAudit(name);
      let entrySet = sets.get(auditMode);
      if (entrySet === undefined) sets.set(auditMode, (entrySet = entrySetOf(pol, auditMode)));
      const enforcedBy = { ingress: pol.enforcedBy.ingress, egress: pol.enforcedBy.egress };
      byName.set(name, new CompiledEndpointPolicy(name, id, { ...pol.enforce }, enforcedBy, entrySet, auditMode, auditedDirections(pol, auditMode)));
    }
  }
  return names.map((n) => byName.get(n)!);
}

export function byEndpointName(a: EndpointPolicy, b: EndpointPolicy): number {
  return a.endpoint < b.endpoint ? -1 : a.endpoint > b.endpoint ? 1 : 0;
}

export function byFileLine(a: ManifestProblem, b: ManifestProblem): number {
  return a.file < b.file ? -1 : a.file > b.file ? 1 : a.line - b.line;
}

/**
 * Where a compile starts: the model's context and evaluated rules and, for an incremental compile,
 * the previous compile whose identity universe the model shares (policy/incremental.ts decides
 * when that holds and matches the rules).
 */
export interface CompileStart {
  /** The previous compile: its universe part (allocation, resolver, subject selection, per-rule
   *  facts) is used as is, its endpoint policies and ipcache are kept where still valid. */
  previous?: CompileMemo;
  /** Identity allocation, endpoint identities and evaluated rules of the model. */
  ctx: PolicyContext;
  /** The evaluated form of each rule manifest of the model. */
  effective: Map<RuleManifest, EffectiveRule>;
  /** Rules added, removed or changed since `previous` (every rule without one). */
  changed: EffectiveRule[];
}

/** What a compile recomputed, for logs and benchmarks (policy/incremental.ts reports it). */
export interface CompileWork {
  /** Rules added, removed or changed. */
  changedRules: number;
  /** Identities whose policy was recomputed. */
  recomputedIdentities: number;
  /** Local endpoints (the host endpoint included) whose EndpointPolicy was recomputed. */
  recomputedEndpoints: number;
  /** Whether the ipcache array is the previous one. */
  ipcacheReused: boolean;
}

/** The part of a memo that depends only on the identity universe and the options. */
type Universe = Pick<CompileMemo, "opts" | "idOpts" | "resolver" | "subjectIndex" | "subjectCache" | "localByIdentity" | "perRule">;

/** A start with nothing to reuse: every rule is new. */
function fullStart(model: Model, opts: CompileOptions, idOpts: IdentityAllocatorOptions): CompileStart {
  const ctx = buildContext(model, opts, idOpts);
  const all = [...ctx.rules, ...ctx.hostRules];
  return { ctx, effective: new Map(all.map((r) => [r.manifest, r])), changed: all };
}

/**
 * The one compile path: compile(), and compileIncremental() both with and without a previous
 * compile, come here. Without `start.previous` every local identity's policy is computed; with it,
 * only those of the identities a changed rule selects, and the rest is the previous objects. The
 * result is the same either way (a property test checks it). Pure.
 */
export function compileFrom(
  model: Model,
  opts: CompileOptions,
  idOpts: IdentityAllocatorOptions = {},
  start: CompileStart = fullStart(model, opts, idOpts),
): { policy: CompiledPolicy; memo: CompileMemo; work: CompileWork } {
  const { previous, ctx, effective, changed } = start;
  const universe = previous ?? newUniverse(ctx, opts, idOpts);
  const facts = (r: EffectiveRule): RuleFacts => {
    let f = universe.perRule.get(r);
    if (f === undefined) universe.perRule.set(r, (f = ruleFacts(r, universe.subjectIndex, universe.subjectCache, universe.resolver)));
    return f;
  };
  const dirty = previous === undefined ? new Set(universe.localByIdentity.keys()) : selectedLocals(changed, facts, universe.localByIdentity);

  // Warnings in this order: allocation, rules (model order), host rules, sorted; then the ipcache's.
  const warnings: ManifestProblem[] = [...ctx.alloc.problems];
  const rulesFor = rulesByIdentity(ctx.rules, facts, dirty, warnings);
  const recomputed = recomputePolicies(dirty, universe, rulesFor, ctx.rules, opts);
  // The host endpoint's policy: the previous one while the host policies are the same rules (the
  // nodes, whose labels they select, are part of the universe).
  const prevHost = previous?.policy.endpoints.find((p) => p.endpoint === HOST_ENDPOINT);
  const host = previous !== undefined && sameItems(ctx.hostRules, previous.ctx.hostRules) ? prevHost : hostPolicy(ctx, universe.resolver);
  warnings.push(...hostRuleWarnings(ctx));
  const endpoints = mergeEndpoints(previous?.policy.endpoints ?? [], prevHost, dirty, recomputed, host);
  warnings.sort(byFileLine);

  const cidrRefs = cidrRuleRefs(model);
  const ipcacheReused = previous !== undefined && sameMap(cidrRefs, previous.cidrRefs);
  const ipcacheWarnings: ManifestProblem[] = ipcacheReused ? previous.ipcacheWarnings : [];
  const ipcache = ipcacheReused ? previous.policy.ipcache : buildIpcache(ctx, ipcacheWarnings, cidrRefs);
  for (const w of ipcacheWarnings) warnings.push(w);

  const policy: CompiledPolicy = { revision: model.revision, node: opts.node, identities: ctx.alloc.identities, endpoints, ipcache, warnings };
  return {
    policy,
    memo: { ...universe, model, ctx, effective, cidrRefs, ipcacheWarnings, policy },
    work: {
      changedRules: changed.length,
      recomputedIdentities: dirty.size,
      recomputedEndpoints: recomputed.length + (host !== undefined && host !== prevHost ? 1 : 0),
      ipcacheReused,
    },
  };
}

/** Peer resolution and subject selection over a new identity allocation. */
function newUniverse(ctx: PolicyContext, opts: CompileOptions, idOpts: IdentityAllocatorOptions): Universe {
  // Subject selection over identities that endpoints or Identity manifests carry.
  const subjectIndex = new LabelIndex();
  for (const info of ctx.alloc.identities.values()) {
    if (info.origin === "pinned" || info.origin === "derived") subjectIndex.add(info.id, info.labels);
  }
  const localByIdentity = new Map<number, string[]>();
  for (const ep of ctx.model.endpoints) {
    if (!isLocal(ep, opts)) continue;
    const id = ctx.endpointIdentity.get(ep.name)!;
    const list = localByIdentity.get(id);
    if (list) list.push(ep.name);
    else localByIdentity.set(id, [ep.name]);
  }
  return { opts, idOpts, resolver: new PeerResolver(ctx), subjectIndex, subjectCache: new Map(), localByIdentity, perRule: new WeakMap() };
}

/** The local identities the changed endpoint rules select (host policies are the host endpoint's). */
function selectedLocals(changed: readonly EffectiveRule[], facts: (r: EffectiveRule) => RuleFacts, localByIdentity: ReadonlyMap<number, string[]>): Set<number> {
  const dirty = new Set<number>();
  for (const r of changed) {
    if (r.manifest.rule.nodeSelector !== undefined) continue;
    for (const id of facts(r).subjects) if (localByIdentity.has(id)) dirty.add(id);
  }
  return dirty;
}

/** The rules that select each dirty identity, in model order; appends every rule's warnings. */
function rulesByIdentity(rules: readonly EffectiveRule[], facts: (r: EffectiveRule) => RuleFacts, dirty: ReadonlySet<number>, warnings: ManifestProblem[]): Map<number, EffectiveRule[]> {
  const rulesFor = new Map<number, EffectiveRule[]>();
  for (const r of rules) {
    const f = facts(r);
    for (const w of f.warnings) warnings.push(w);
    if (dirty.size === 0) continue;
    for (const id of f.subjects) {
      if (!dirty.has(id)) continue;
      const list = rulesFor.get(id);
      if (list) list.push(r);
      else rulesFor.set(id, [r]);
    }
  }
  return rulesFor;
}

/** The policies of the local endpoints of the dirty identities. */
function recomputePolicies(dirty: ReadonlySet<number>, universe: Universe, rulesFor: ReadonlyMap<number, EffectiveRule[]>, rules: readonly EffectiveRule[], opts: CompileOptions): EndpointPolicy[] {
  const out: EndpointPolicy[] = [];
  if (dirty.size === 0) return out;
  const singles = internRefs(rules);
  for (const id of dirty) {
    for (const p of endpointPolicies(id, universe.localByIdentity.get(id)!, rulesFor.get(id) ?? [], universe.resolver, opts, singles)) out.push(p);
  }
  return out;
}

/** The previous endpoint policies of the identities not recomputed, the recomputed ones and the
 *  host's, in name order; the previous array itself when nothing changed. */
function mergeEndpoints(
  before: EndpointPolicy[],
  prevHost: EndpointPolicy | undefined,
  dirty: ReadonlySet<number>,
  recomputed: readonly EndpointPolicy[],
  host: EndpointPolicy | undefined,
): EndpointPolicy[] {
  if (recomputed.length === 0 && host === prevHost) return before;
  const endpoints: EndpointPolicy[] = [];
  for (const p of before) if (p !== prevHost && !dirty.has(p.identity)) endpoints.push(p);
  for (const p of recomputed) endpoints.push(p);
  if (host !== undefined) endpoints.push(host);
  return endpoints.sort(byEndpointName);
}

/** The same objects in the same order. */
function sameItems<T>(a: readonly T[], b: readonly T[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function sameMap<K, V>(a: ReadonlyMap<K, V>, b: ReadonlyMap<K, V>): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) if (b.get(k) !== v) return false;
  return true;
}

/** The local host endpoint's policy (HOST_ENDPOINT, identity host) from the host policies that select
 *  the local node, computed like an endpoint's; undefined when host policy does not apply here. */
export function hostPolicy(ctx: PolicyContext, resolver: PeerResolver): EndpointPolicy | undefined {
  const host = localHost(ctx);
  if (host === undefined) return undefined;
  const singles = new Map<RuleRef, RuleRef[]>(host.rules.map((r) => [r.ref, Object.freeze([r.ref]) as RuleRef[]]));
  const pol = policyForIdentity(host.rules, resolver, ctx.opts, singles);
  const auditMode = ctx.opts.audit === true;
  return new CompiledEndpointPolicy(HOST_ENDPOINT, ReservedIdentity.host, { ...pol.enforce }, pol.enforcedBy, entrySetOf(pol, auditMode), auditMode, auditedDirections(pol, auditMode));
}
