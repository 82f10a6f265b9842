// Policy impact of a change: for every local endpoint and direction, the (peer identity, protocol,
// port range) cells whose verdict differs between two compiled policies, grouped into readable
// lines with the rules that decide them. Exact: computed from the compiled entries of both sides
// under the datapath's lookup rule (bpf/endpoint.bpf.c policy_verdict: an LPM lookup with the
// peer's identity and one with identity 0, a deny from either wins, else an allow, else default
// deny; an unenforced direction allows everything), never by sampling flows. Pure.
//
// Peers are compared by label set, not by number: an identity renumbered between the sides is the
// same peer. A label set with an identity on one side only is judged on the other by what that
// side gives an identity no entry names (its identity-0 entries).

import type { LabelSet } from "../manifest/model.js";
import { longestMatch } from "../policy/explain.js";
import { HOST_ENDPOINT } from "../policy/host.js";
import { labelSetString } from "../policy/labels.js";
import { protocolName } from "../policy/ports.js";
import type { CompiledPolicy, Decision, Direction, EndpointPolicy, PolicyEntry, RuleRef } from "../policy/types.js";

/** One side of the comparison: its compiled policy and every rule it has (to tell a removed rule). */
export interface ImpactSide {
  policy: CompiledPolicy;
  /** Every rule of the side's model, found or not in an entry. */
  rules: readonly RuleRef[];
}

/** A peer of a line: an identity by its labels, or every identity the line's endpoint does not name. */
export type ImpactPeer =
  | {
      /** The canonical label set, `k8s:app=web, k8s:tier=db` (compare by this). */
      labels: string;
      /** Short form for people: `{app=web, tier=db}`, `world`, `10.0.0.0/8`. */
      display: string;
      /** Its number on the ref side (on the base side when it is gone). */
      identity: number;
    }
  | {
      /** Every identity except the `except` ones (those that entries of this endpoint and
       *  direction name on either side; they have their own lines when their verdict changes). */
      others: true;
      display: string;
      /** Canonical label sets of the named identities. */
      except: string[];
    };

/** How one side decides the cells of a line. */
export interface ImpactVerdict {
  decision: Decision;
  /** An entry decides; the direction is enforced and no entry matches; it is not enforced. */
  by: "entry" | "default-deny" | "not-enforced";
  /** The entry's rules, or for default deny the rules that put the direction into enforcement. */
  rules: RuleRef[];
}

export interface ImpactLine {
  endpoint: string;
  direction: Direction;
  /** The verdict on the ref side: newly allowed or newly denied. */
  verdict: Decision;
  peers: ImpactPeer[];
  /** IANA protocol number, or null: any protocol but `protocolsExcept`. */
  protocol: number | null;
  protocolsExcept: number[];
  /** Inclusive port ranges (ICMP: types) of `protocol`; [[0, 65535]] for all. */
  ports: Array<[number, number]>;
  before: ImpactVerdict;
  after: ImpactVerdict;
  /** The line as people read it: `app1 ingress: newly DENIED from {id=app2} TCP/8080 (rule web, web.yaml:7 removed)`. */
  text: string;
}

export interface PolicyImpact {
  newlyAllowed: ImpactLine[];
  newlyDenied: ImpactLine[];
  /** Local endpoints only one side has (their whole policy comes or goes; not listed cell by cell). */
  endpointsAdded: string[];
  endpointsRemoved: string[];
}

const ALL_PORTS: [number, number] = [0, 65535];
/** The protocol class "any protocol no entry names": only protocol-0 entries match it. */
const OTHER_PROTOCOL = -1;

/** The policy impact of going from `base` to `ref` (compiled for the same node). */
export function policyImpact(base: ImpactSide, ref: ImpactSide): PolicyImpact {
  const baseBy = new Map(base.policy.endpoints.map((e) => [e.endpoint, e]));
  const refBy = new Map(ref.policy.endpoints.map((e) => [e.endpoint, e]));
  const refRules = new Set(ref.rules.map(ruleKey));
  const baseIds = labelIndex(base.policy);
  const refIds = labelIndex(ref.policy);
  // Same numbers for the same label sets: an endpoint with the same entries has the same verdicts.
  const sameNumbers = base.policy.identities.size === ref.policy.identities.size && [...baseIds].every(([labels, id]) => refIds.get(labels) === id);
  const lines: ImpactLine[] = [];
  for (const [name, b] of baseBy) {
    const r = refBy.get(name);
    if (!r) continue;
    if (sameNumbers && b.entrySet.sameEntries(r.entrySet) && b.enforce.ingress === r.enforce.ingress && b.enforce.egress === r.enforce.egress) continue;
    for (const direction of ["ingress", "egress"] as const) {
      const sb = { policy: b, identities: base.policy.identities, identityOf: baseIds };
      const sr = { policy: r, identities: ref.policy.identities, identityOf: refIds };
      lines.push(...endpointImpact(name, direction, sb, sr, refRules));
    }
  }
  return {
    newlyAllowed: lines.filter((l) => l.verdict === "allow"),
    newlyDenied: lines.filter((l) => l.verdict === "deny"),
    endpointsAdded: [...refBy.keys()].filter((n) => !baseBy.has(n)).sort(),
    endpointsRemoved: [...baseBy.keys()].filter((n) => !refBy.has(n)).sort(),
  };
}

/** One endpoint's policy and the identities of its side. */
interface SidePolicy {
  policy: EndpointPolicy;
  identities: CompiledPolicy["identities"];
  /** Identity number by canonical label set. */
  identityOf: ReadonlyMap<string, number>;
}

function labelIndex(policy: CompiledPolicy): Map<string, number> {
  const out = new Map<string, number>();
  for (const [id, info] of policy.identities) out.set(labelSetString(info.labels), id);
  return out;
}

/** One direction of one endpoint's policy, indexed for lookups. */
interface Judge {
  enforced: boolean;
  enforcedBy: RuleRef[];
  /** Entries by peer identity (0 = any identity). */
  byIdentity: Map<number, PolicyEntry[]>;
}

function judgeOf(side: SidePolicy, direction: Direction): Judge {
  const byIdentity = new Map<number, PolicyEntry[]>();
  const set = side.policy.entrySet;
  for (let i = 0; i < set.size; i++) {
    const e = set.entry(i, side.policy.endpoint);
    if (e.direction !== direction) continue;
    let list = byIdentity.get(e.identity);
    if (!list) byIdentity.set(e.identity, (list = []));
    list.push(e);
  }
  return { enforced: side.policy.enforce[direction], enforcedBy: side.policy.enforcedBy[direction], byIdentity };
}

/** The most specific entry of `entries` for the protocol (class) and port, as the kernel's LPM picks it. */
function lpm(entries: readonly PolicyEntry[] | undefined, protocol: number, port: number): PolicyEntry | undefined {
  return longestMatch(entries ?? [], protocol, port);
}

/** The verdict for a peer identity (undefined: one no entry can name) on a protocol and port. */
function judge(j: Judge, identity: number | undefined, protocol: number, port: number): ImpactVerdict {
  if (!j.enforced) return { decision: "allow", by: "not-enforced", rules: [] };
  const exact = identity === undefined || identity === 0 ? undefined : lpm(j.byIdentity.get(identity), protocol, port);
  const any = lpm(j.byIdentity.get(0), protocol, port);
  const deciding = exact?.decision === "deny" ? exact : any?.decision === "deny" ? any : (exact ?? any);
  if (deciding) return { decision: deciding.decision, by: "entry", rules: deciding.rules };
  return { decision: "deny", by: "default-deny", rules: j.enforcedBy };
}

/** A peer class of one endpoint and direction: a named label set, or every identity not named. */
interface PeerClass {
  peer: ImpactPeer;
  base: number | undefined;
  ref: number | undefined;
}

/** One (peer, protocol, port range) whose verdict changes. */
interface Cell {
  peer: number; // index into the peer classes
  protocol: number;
  lo: number;
  hi: number;
  before: ImpactVerdict;
  after: ImpactVerdict;
}

function endpointImpact(endpoint: string, direction: Direction, base: SidePolicy, ref: SidePolicy, refRules: ReadonlySet<string>): ImpactLine[] {
  const jb = judgeOf(base, direction);
  const jr = judgeOf(ref, direction);
  if (!jb.enforced && !jr.enforced) return [];
  const peers = peerClasses(base, ref, jb, jr);
  // Protocols any entry of the direction names, on either side; the rest form one class.
  const protocols = new Set<number>();
  for (const j of [jb, jr]) for (const list of j.byIdentity.values()) for (const e of list) if (e.protocol !== 0) protocols.add(e.protocol);
  const cells: Cell[] = [];
  peers.forEach((pc, peer) => {
    for (const protocol of [...[...protocols].sort((a, b) => a - b), OTHER_PROTOCOL]) {
      for (const [lo, hi] of intervals(protocol, [jb.byIdentity.get(pc.base ?? 0), jb.byIdentity.get(0), jr.byIdentity.get(pc.ref ?? 0), jr.byIdentity.get(0)])) {
        const before = judge(jb, pc.base, protocol, lo);
        const after = judge(jr, pc.ref, protocol, lo);
        if (before.decision !== after.decision) cells.push({ peer, protocol, lo, hi, before, after });
      }
    }
  });
  return groupCells(endpoint, direction, cells, peers, [...protocols].sort((a, b) => a - b), refRules);
}

/** The label sets named by entries of the direction on either side, and the class of all others. */
function peerClasses(base: SidePolicy, ref: SidePolicy, jb: Judge, jr: Judge): PeerClass[] {
  const named = new Map<string, LabelSet>();
  for (const [side, j] of [[base, jb], [ref, jr]] as const) {
    for (const id of j.byIdentity.keys()) {
      const info = side.identities.get(id);
      if (id !== 0 && info) named.set(labelSetString(info.labels), info.labels);
    }
  }
  const keys = [...named.keys()].sort();
  const classes: PeerClass[] = keys.map((labels) => {
    const b = base.identityOf.get(labels);
    const r = ref.identityOf.get(labels);
    return { peer: { labels, display: displayLabels(named.get(labels)!), identity: (r ?? b)! }, base: b, ref: r };
  });
  const display = keys.length === 0 ? "any identity" : `any identity but ${keys.length <= 3 ? keys.map((k) => displayLabels(named.get(k)!)).join(", ") : `the ${keys.length} named ones`}`;
  classes.push({ peer: { others: true, display, except: keys }, base: undefined, ref: undefined });
  return classes;
}

/** The port intervals on which no entry of `lists` changes its match (one verdict per interval). */
function intervals(protocol: number, lists: ReadonlyArray<readonly PolicyEntry[] | undefined>): Array<[number, number]> {
  if (protocol === OTHER_PROTOCOL) return [ALL_PORTS];
  const cuts = new Set<number>([0, 65536]);
  for (const list of lists) {
    for (const e of list ?? []) {
      if (e.protocol !== protocol) continue;
      cuts.add(e.port);
      cuts.add(e.endPort + 1);
    }
  }
  const sorted = [...cuts].sort((a, b) => a - b);
  const out: Array<[number, number]> = [];
  for (let i = 0; i + 1 < sorted.length; i++) out.push([sorted[i]!, sorted[i + 1]! - 1]);
  return out;
}

function verdictKey(v: ImpactVerdict): string {
  return `${v.decision}|${v.by}|${v.rules.map(ruleKeyWithLine).join(",")}`;
}

/**
 * Cells into lines: adjacent port ranges of one peer and protocol with the same verdicts merge;
 * a protocol changed on all its ports like the other protocols folds into them; then peers with
 * the same protocol, ports and verdicts share a line.
 */
function groupCells(endpoint: string, direction: Direction, cells: Cell[], peers: PeerClass[], protocols: number[], refRules: ReadonlySet<string>): ImpactLine[] {
  // peer → verdicts → protocol → port ranges
  const perPeer = new Map<string, { peer: number; before: ImpactVerdict; after: ImpactVerdict; ports: Map<number, Array<[number, number]>> }>();
  for (const c of cells) {
    const key = `${c.peer}#${verdictKey(c.before)}#${verdictKey(c.after)}`;
    let g = perPeer.get(key);
    if (!g) perPeer.set(key, (g = { peer: c.peer, before: c.before, after: c.after, ports: new Map() }));
    const ranges = g.ports.get(c.protocol) ?? [];
    const last = ranges[ranges.length - 1];
    if (last && last[1] + 1 === c.lo) last[1] = c.hi;
    else ranges.push([c.lo, c.hi]);
    g.ports.set(c.protocol, ranges);
  }
  const lines = new Map<string, ImpactLine>();
  for (const g of perPeer.values()) {
    const other = g.ports.get(OTHER_PROTOCOL);
    const folded = new Set<number>();
    if (other) {
      for (const p of protocols) {
        const r = g.ports.get(p);
        if (r && r.length === 1 && r[0]![0] === 0 && r[0]![1] === 65535) folded.add(p);
      }
    }
    for (const [protocol, ports] of g.ports) {
      if (folded.has(protocol)) continue;
      const isOther = protocol === OTHER_PROTOCOL;
      const except = isOther ? protocols.filter((p) => !folded.has(p)) : [];
      const key = `${protocol}#${except.join(",")}#${JSON.stringify(ports)}#${verdictKey(g.before)}#${verdictKey(g.after)}`;
      let line = lines.get(key);
      if (!line) {
        line = { endpoint, direction, verdict: g.after.decision, peers: [], protocol: isOther ? null : protocol, protocolsExcept: except, ports, before: g.before, after: g.after, text: "" };
        lines.set(key, line);
      }
      line.peers.push(peers[g.peer]!.peer);
    }
  }
  const out = [...lines.values()];
  for (const l of out) l.text = lineText(l, refRules);
  return out.sort((a, b) => (a.verdict < b.verdict ? -1 : a.verdict > b.verdict ? 1 : 0) || (a.protocol ?? 1e9) - (b.protocol ?? 1e9) || a.ports[0]![0] - b.ports[0]![0] || (a.text < b.text ? -1 : 1));
}

/** `{app=web, tier=db}`; a reserved identity by its name (`world`), a CIDR identity by its prefix. */
export function displayLabels(labels: LabelSet): string {
  if (labels.length === 1 && (labels[0]!.source === "reserved" || labels[0]!.source === "cidr") && labels[0]!.value === "") return labels[0]!.key;
  const plain = new Set(["any", "k8s", "unspec"]);
  return `{${labels.map((l) => `${plain.has(l.source) ? "" : `${l.source}:`}${l.key}${l.value === "" ? "" : `=${l.value}`}`).join(", ")}}`;
}

function ruleKey(r: RuleRef): string {
  return `${r.file}\0${r.name}`;
}

function ruleKeyWithLine(r: RuleRef): string {
  return `${r.file}:${r.line}:${r.name}`;
}

function protocolText(l: Pick<ImpactLine, "protocol" | "protocolsExcept" | "ports">): string {
  if (l.protocol === null) return l.protocolsExcept.length === 0 ? "any protocol" : `any protocol but ${l.protocolsExcept.map(protocolName).join(", ")}`;
  const name = protocolName(l.protocol);
  const all = l.ports.length === 1 && l.ports[0]![0] === 0 && l.ports[0]![1] === 65535;
  if (all) return `${name} (all ${l.protocol === 1 || l.protocol === 58 ? "types" : "ports"})`;
  const ranges = l.ports.map(([lo, hi]) => (lo === hi ? `${lo}` : `${lo}-${hi}`)).join(",");
  return l.protocol === 1 || l.protocol === 58 ? `${name} type ${ranges}` : `${name}/${ranges}`;
}

function refs(rules: RuleRef[], refRules: ReadonlySet<string>, stillThere: string): string {
  return rules.map((r) => `rule ${r.name}, ${r.file}:${r.line}${refRules.has(ruleKey(r)) ? stillThere : " removed"}`).join("; ");
}

/** Why the verdict changed, from the deciding entries and rules of both sides. */
function because(l: ImpactLine, refRules: ReadonlySet<string>): string {
  const { before, after } = l;
  if (after.decision === "allow") {
    if (after.by === "not-enforced") return before.rules.length ? `not enforced any more; was ${before.by === "entry" ? "denied by" : "default deny of"} ${refs(before.rules, refRules, "")}` : "not enforced any more";
    const was = before.by === "entry" ? `; deny ${refs(before.rules, refRules, " no longer denies it")}` : "";
    return `${after.rules.map((r) => `rule ${r.name}, ${r.file}:${r.line}`).join("; ")}${was}`;
  }
  if (after.by === "entry") return `denied by ${after.rules.map((r) => `rule ${r.name}, ${r.file}:${r.line}`).join("; ")}`;
  if (before.by === "not-enforced") return after.rules.length ? `now enforced by ${after.rules.map((r) => `rule ${r.name}, ${r.file}:${r.line}`).join("; ")}` : "now enforced";
  return refs(before.rules, refRules, " no longer allows it");
}

function lineText(l: ImpactLine, refRules: ReadonlySet<string>): string {
  const who = l.endpoint === HOST_ENDPOINT ? "host" : l.endpoint;
  const prep = l.direction === "ingress" ? "from" : "to";
  const verdict = l.verdict === "allow" ? "newly ALLOWED" : "newly DENIED";
  return `${who} ${l.direction}: ${verdict} ${prep} ${l.peers.map((p) => p.display).join(", ")} ${protocolText(l)} (${because(l, refRules)})`;
}

/** Every rule of a model as a RuleRef (rule provenance as entries carry it). */
export function ruleRefs(rules: ReadonlyArray<{ name: string; at: { file: string; line: number } }>): RuleRef[] {
  return rules.map((r) => ({ file: r.at.file, line: r.at.line, name: r.name }));
}
