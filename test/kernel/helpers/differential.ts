// Helpers for the differential test (explain vs the kernel datapath): a seeded random generator of
// models and flows (pure), and a "node": a private bpffs pin root whose maps are written by the real
// reconciler targets (map, endpoint, ipcache, policy) through reconcileOnce, with endpoint.o's
// programs loaded against those pinned maps for BPF_PROG_RUN.

import { mkdirSync, readFileSync, rmSync } from "node:fs";
import { MapTarget } from "../../../reconciler/apply/kernel/maps.js";
import { endpointsTarget, ipcacheTarget } from "../../../reconciler/apply/kernel/entries.js";
import { PolicyTarget } from "../../../reconciler/apply/kernel/policy.js";
import { KernelContext } from "../../../reconciler/apply/kernel/context.js";
import { reconcileOnce, Targets } from "../../../reconciler/apply/executor.js";
import { buildDesiredState } from "../../../reconciler/datapath/desired.js";
import * as L from "../../../reconciler/datapath/layouts.js";
import type { DesiredState } from "../../../reconciler/datapath/state.js";
import { BpfMap, loadCollection, numPossibleCpus, type Collection } from "../../../reconciler/ebpf-loader/index.js";
import type { CIDRSelector, Entity, Model, PeerRule, PortRule, Selector } from "../../../reconciler/manifest/model.js";
import { parsePrefix, prefixContains } from "../../../reconciler/manifest/ip.js";
import { compile } from "../../../reconciler/policy/compile.js";
import { selectorString } from "../../../reconciler/policy/selector.js";
import type { CompileOptions } from "../../../reconciler/policy/types.js";
import { cidrGroup, endpoint, icmp, identity, model, named, node, port, rule, sel, type PeerSpec } from "../../unit/helpers/policy-model.js";
import { suffix } from "./datapath.js";

// ---- seeded PRNG -----------------------------------------------------------------------------------

export interface Rng {
  next(): number;
  int(n: number): number;
  pick<T>(xs: readonly T[]): T;
  chance(p: number): boolean;
}

/** Small deterministic PRNG (same seed → same sequence on every machine). */
export function prng(seed: number): Rng {
  let s = seed >>> 0;
  const next = () => ((s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x9e3779b9) >>> 0) / 2 ** 32);
  return {
    next,
    int: (n) => Math.floor(next() * n),
    pick: (xs) => xs[Math.floor(next() * xs.length)]!,
    chance: (p) => next() < p,
  };
}

// ---- random models ---------------------------------------------------------------------------------

/** The two nodes every model has: endpoints live on one of them; each is compiled for separately. */
export const NODES = { n1: "192.168.0.1", n2: "192.168.0.2" } as const;
export type NodeName = keyof typeof NODES;

const APPS = ["a", "b", "c"];
const ENVS = ["x", "y"];
/** CIDRs rules name (with nested ones, for except lists and longest-prefix resolution). */
const CIDRS = [
  "20.0.0.0/8",
  "20.1.0.0/16",
  "20.1.2.0/24",
  "30.0.0.0/8",
  "0.0.0.0/0",
  "10.0.0.0/24",
  "2001:db8::/32",
  "2001:db8:1::/48",
  "::/0",
];
/** Peers outside every endpoint, per family: inside and outside the CIDRs, and the node addresses. */
export const EXTERNAL = {
  4: ["20.1.2.3", "20.1.9.9", "20.7.0.1", "30.0.0.1", "8.8.8.8", NODES.n1, NODES.n2, "10.0.0.200"],
  6: ["2001:db8:1::5", "2001:db8:2::5", "2001:db9::1", "f00d::99"],
} as const;
const ENTITIES: Entity[] = ["all", "world", "cluster", "host", "remote-node", "world-ipv4", "world-ipv6"];
const PORTS: Array<() => PortRule> = [
  () => port(80),
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
  () => icmp(8), // ICMP types: the type is the key's port
  () => icmp(0),
  () => icmp(128, "IPv6"),
  () => icmp(129, "IPv6"),
  () => named("http"), // named ports: resolved per destination (see DECLS)
  () => named("http", "TCP"),
  () => named("dns", "UDP"),
  () => named("nope"),
];
/** Named ports endpoints declare: one name, different numbers on different endpoints. */
const DECLS = [
  [{ name: "http", port: 80, protocol: "TCP" as const }],
  [{ name: "http", port: 8000, protocol: "TCP" as const }],
  [{ name: "http", port: 81, protocol: "TCP" as const }, { name: "dns", port: 53, protocol: "UDP" as const }],
  [{ name: "dns", port: 53, protocol: "TCP" as const }],
];
/** ICMP types flows carry, per family (no errors or neighbour discovery: those bypass policy). */
export const FLOW_ICMP_TYPES = { 4: [0, 8, 13], 6: [128, 129, 130] } as const;
/** Destination ports flows use: every rule port and range boundary, ±1, and some others. */
export const FLOW_PORTS = [1, 53, 54, 79, 80, 81, 82, 83, 84, 89, 90, 91, 443, 999, 1000, 1023, 1024, 1500, 1999, 2000, 7999, 8000, 8191, 8192, 65535];

function randSelector(r: Rng): Selector {
  switch (r.int(7)) {
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
    default:
      return sel({ app: r.pick(APPS), env: r.pick(ENVS) });
  }
}

function randCidr(r: Rng): CIDRSelector {
  if (r.chance(0.25)) {
    // A CIDR group by name or by label (randomModel's groups).
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

function randPeer(r: Rng): PeerSpec {
  const p: PeerSpec = {};
  const kind = r.int(7);
  if (kind === 6) p.nodes = [r.chance(0.3) ? sel({}) : sel({ role: r.pick(["edge", "core"]) })];
  if (kind === 0 || kind === 4 || (kind === 5 && r.chance(0.5))) p.endpoints = Array.from({ length: 1 + r.int(2) }, () => randSelector(r));
  if (kind === 1 || (kind === 5 && r.chance(0.5))) p.cidrs = Array.from({ length: 1 + r.int(2) }, () => randCidr(r));
  if (kind === 2 || (kind === 5 && r.chance(0.5))) p.entities = [r.pick(ENTITIES)];
  // kind 3: L4-only (ports, no peer); kind 4: L3-only (peer, no ports); otherwise ports half the time.
  if (kind === 3 || (kind !== 4 && r.chance(0.5))) p.ports = Array.from({ length: 1 + r.int(2) }, () => r.pick(PORTS)());
  return p;
}

export interface GeneratedModel {
  model: Model;
  enforcement: CompileOptions["enforcement"];
}

/** A random model: 3..7 endpoints on n1 or n2 (all IPv4, some IPv6), 1..5 rules, maybe a pinned identity. */
export function randomModel(r: Rng, revision: string): GeneratedModel {
  const n = 3 + r.int(5);
  const endpoints = Array.from({ length: n }, (_, i) => {
    const lbl: Record<string, string> = { app: r.pick(APPS) };
    if (r.chance(0.6)) lbl.env = r.pick(ENVS);
    return endpoint(`e${i}`, lbl, {
      ipv4: `10.0.0.${i + 1}`,
      ...(r.chance(0.4) ? { ipv6: `f00d::${i + 1}` } : {}),
      ...(r.chance(0.3) ? { node: "n2" } : {}),
      ...(r.chance(0.5) ? { ports: r.pick(DECLS) } : {}),
    });
  });
  const rules = Array.from({ length: 1 + r.int(5) }, (_, i) => {
    const sections = () => (r.chance(0.5) ? Array.from({ length: 1 + r.int(2) }, () => randPeer(r)) : []);
    return rule({
      name: `r${i}`,
      selector: randSelector(r),
      ingress: sections(),
      egress: sections(),
      ingressDeny: r.chance(0.3) ? [randPeer(r)] : [],
      egressDeny: r.chance(0.3) ? [randPeer(r)] : [],
      enableDefaultDeny: { ...(r.chance(0.2) ? { ingress: false } : {}), ...(r.chance(0.2) ? { egress: false } : {}) },
    });
  });
  // Pin an identity to the label set of one endpoint (sometimes to a set no endpoint has).
  const identities = [];
  if (r.chance(0.6)) {
    const ep = r.pick(endpoints);
    const lbl = r.chance(0.8) ? Object.fromEntries(ep.labels.map((l) => [l.key, l.value])) : { app: "zz" };
    identities.push(identity("pin", 256 + r.int(65000), lbl));
  }
  const enforcement = r.pick(["default", "default", "default", "default", "default", "always", "never"] as const);
  // Node peers are judged from the node compiled for (its own Node is the host, the other
  // remote-node); explain judges a flow with one node's view, so with node peers every endpoint
  // lives on n1.
  const usesNodes = rules.some((q) => [q.rule.ingress, q.rule.egress, q.rule.ingressDeny, q.rule.egressDeny].some((sec) => sec.some((x) => x.nodes !== undefined)));
  if (usesNodes) for (const e of endpoints) delete e.node;
  const cidrGroups = [cidrGroup("g1", ["20.1.0.0/16", "2001:db8:1::/48"], { tier: "ext" }), cidrGroup("g2", ["30.0.0.0/8", "20.1.2.0/24"], { tier: r.pick(["ext", "int"]) })];
  const roles = ["edge", "core"];
  return {
    model: model({
      revision,
      endpoints,
      rules,
      identities,
      cidrGroups,
      nodes: [node("n1", NODES.n1, { role: r.pick(roles) }), node("n2", NODES.n2, { role: r.pick(roles) })],
    }),
    enforcement,
  };
}

export function compileOptions(nodeName: NodeName, enforcement: CompileOptions["enforcement"]): CompileOptions {
  return { node: nodeName, enforcement, hostAddresses: [NODES[nodeName]] };
}

// ---- printing ----------------------------------------------------------------------------------------

function peerText(p: PeerRule): string {
  const parts: string[] = [];
  if (p.endpoints) parts.push(`endpoints ${p.endpoints.map(selectorString).join(" | ")}`);
  if (p.cidrs) parts.push(`cidrs ${p.cidrs.map((c) => (c.except.length ? `${c.cidr} except ${c.except.join(",")}` : c.cidr)).join(" | ")}`);
  if (p.entities) parts.push(`entities ${p.entities.join(",")}`);
  parts.push(p.ports ? `ports ${p.ports.map((x) => `${x.name ?? x.port}${x.name === undefined && x.endPort !== x.port ? `-${x.endPort}` : ""}/${x.protocol}`).join(",")}` : "L3-only");
  return parts.join("; ");
}

/** The model as text: endpoints with labels, node and addresses, identities, and every rule. */
export function describeModel(m: Model, enforcement: string): string {
  const lines = [`enforcement ${enforcement}`];
  for (const e of m.endpoints) {
    lines.push(`  endpoint ${e.name} on ${e.node ?? "n1"} ${[e.ipv4, e.ipv6].filter(Boolean).join(" ")} labels {${e.labels.map((l) => `${l.source}:${l.key}=${l.value}`).join(", ")}}`);
  }
  for (const i of m.identities) lines.push(`  identity ${i.id} = {${i.labels.map((l) => `${l.source}:${l.key}=${l.value}`).join(", ")}}`);
  for (const r of m.rules) {
    const dd = r.rule.enableDefaultDeny;
    lines.push(`  rule ${r.name} selects ${r.rule.nodeSelector ? `nodes ${selectorString(r.rule.nodeSelector)}` : selectorString(r.rule.endpointSelector!)}${dd.ingress === false ? " enableDefaultDeny.ingress=false" : ""}${dd.egress === false ? " enableDefaultDeny.egress=false" : ""}`);
    for (const [name, peers] of [
      ["ingress", r.rule.ingress],
      ["egress", r.rule.egress],
      ["ingressDeny", r.rule.ingressDeny],
      ["egressDeny", r.rule.egressDeny],
    ] as const) {
      for (const p of peers) lines.push(`    ${name}: ${peerText(p)}`);
    }
  }
  return lines.join("\n");
}

// ---- a node: maps written by the real targets, programs loaded against them ----------------------

const DATAPATH_OBJECT = readFileSync(new URL("../../../bpf/build/endpoint.o", import.meta.url));

/** Only the map-writing parts of a desired state: no devices, addresses, routes or attachments. */
export function mapsOnly(d: DesiredState): DesiredState {
  return { ...d, namespaces: new Map(), devices: new Map(), addresses: new Map(), routes: new Map(), neighbours: new Map(), sysctls: new Map(), attachments: new Map() };
}

export interface ApplyStats {
  /** Endpoints whose inner policy map was replaced (swap) in this apply. */
  swaps: number;
  /** Endpoints whose policy changed in place (same inner map, entries written). */
  inPlace: number;
  /** Endpoints whose slot appeared or vanished. */
  slotChanges: number;
}

/** One node's datapath: a private pin root, the real targets, and endpoint.o's programs. */
export class DiffNode {
  readonly pinRoot = `/sys/fs/bpf/diff-${suffix()}`;
  readonly ctx: KernelContext;
  private readonly targets: Targets;
  private programs: Collection | undefined;
  /** Endpoint name → endpoint number, of the last applied desired state. */
  epIds = new Map<string, number>();

  constructor(readonly name: NodeName) {
    mkdirSync(this.pinRoot);
    this.ctx = new KernelContext({ pinRoot: this.pinRoot, datapathObject: DATAPATH_OBJECT });
    this.targets = new Targets([new MapTarget(this.ctx), endpointsTarget(this.ctx), ipcacheTarget(this.ctx), new PolicyTarget(this.ctx)]);
  }

  /** Compiles the model for this node, reconciles the maps to it, and checks a second run is a no-op. */
  async apply(m: Model, enforcement: CompileOptions["enforcement"]): Promise<ApplyStats> {
    const compiled = compile(m, compileOptions(this.name, enforcement));
    const desired = mapsOnly(buildDesiredState(m, compiled, { attachMode: "tcx" }));
    const before = this.innerIds();
    const report = await reconcileOnce(this.targets, desired);
    if (report.failed.length) throw new Error(`${this.name}: reconcile failed: ${report.failed.map((f) => `${f.resource} ${f.id}: ${f.error}`).join("; ")}`);
    const again = await reconcileOnce(this.targets, desired);
    if (again.plan.changes.length) {
      throw new Error(`${this.name}: the maps do not hold the desired state after apply: ${again.plan.changes.slice(0, 10).map((c) => `${c.op} ${c.resource} ${c.id}`).join("; ")}`);
    }
    this.epIds = new Map([...desired.endpoints.values()].map((e) => [e.endpoint, e.endpointId]));
    const after = this.innerIds();
    const stats: ApplyStats = { swaps: 0, inPlace: 0, slotChanges: 0 };
    const touched = new Set(report.plan.changes.filter((c) => c.resource === "policy").map((c) => ((c.after ?? c.before) as { endpoint: string }).endpoint));
    for (const [epId, id] of after) {
      const old = before.get(epId);
      if (old === undefined) stats.slotChanges++;
      else if (old !== id) stats.swaps++;
    }
    for (const epId of before.keys()) if (!after.has(epId)) stats.slotChanges++;
    for (const name of touched) {
      const epId = this.epIds.get(name);
      if (epId !== undefined && before.has(epId) && before.get(epId) === after.get(epId)) stats.inPlace++;
    }
    this.programs ??= this.loadPrograms();
    return stats;
  }

  /** Outer policy map: endpoint number → inner map id. */
  innerIds(): Map<number, number> {
    const out = new Map<number, number>();
    const outer = this.ctx.map("policy");
    if (!outer) return out;
    for (const k of outer.keys()) {
      const id = outer.innerId(k);
      if (id !== undefined) out.set(k.readUInt32LE(0), id);
    }
    return out;
  }

  /** As the attachment target loads them: the object's programs with every map the pinned one. */
  private loadPrograms(): Collection {
    const spec = this.ctx.collectionSpec();
    const replaceMaps = new Map<string, BpfMap>();
    for (const name of spec.maps.keys()) {
      const m = this.ctx.map(name);
      if (!m) throw new Error(`${this.name}: map ${name} is not pinned at ${this.ctx.mapPath(name)}`);
      replaceMaps.set(name, m);
    }
    return loadCollection(spec, { replaceMaps });
  }

  run(prog: "to_endpoint" | "from_endpoint", frame: Buffer): number {
    if (!this.programs) throw new Error(`${this.name}: programs not loaded (apply a model first)`);
    return this.programs.programs.get(prog)!.testRun({ data: frame }).retval;
  }

  /** Drop counters: "epId/reason/direction" → packets. */
  drops(): Map<string, bigint> {
    const out = new Map<string, bigint>();
    const m = this.ctx.map("drops");
    if (!m) return out;
    for (const k of m.keys()) {
      const key = L.decodeDropKey(k, 0);
      const v = m.lookup(k)!;
      out.set(`${key.epId}/${key.reason}/${key.direction}`, L.decodePerCpuCounters(v, 0, numPossibleCpus()).packets);
    }
    return out;
  }

  clearConntrack(): void {
    const m = this.ctx.map("conntrack");
    if (!m) return;
    for (const k of [...m.keys()]) m.delete(k);
  }

  close(): void {
    this.programs?.close();
    this.ctx.close();
    rmSync(this.pinRoot, { recursive: true, force: true });
  }
}
