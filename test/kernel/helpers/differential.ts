// Helpers for the differential test (explain vs the kernel datapath): the flows' vocabulary (the
// models come from test/unit/helpers/random-policy.ts), and a "node": a private bpffs pin root whose
// maps are written by the real reconciler targets (map, endpoint, ipcache, policy) through
// reconcileOnce, with endpoint.o's programs loaded against those pinned maps for BPF_PROG_RUN, and
// the events those programs write to the node's ring buffer.

import { mkdirSync, readFileSync, rmSync } from "node:fs";
import { MapTarget } from "../../../reconciler/apply/kernel/maps.js";
import { endpointsTarget, ipcacheTarget } from "../../../reconciler/apply/kernel/entries.js";
import { PolicyTarget } from "../../../reconciler/apply/kernel/policy.js";
import { KernelContext } from "../../../reconciler/apply/kernel/context.js";
import { reconcileOnce, Targets } from "../../../reconciler/apply/executor.js";
import { buildDesiredState, type DesiredOptions } from "../../../reconciler/datapath/desired.js";
import * as L from "../../../reconciler/datapath/layouts.js";
import type { DesiredState } from "../../../reconciler/datapath/state.js";
import { BpfMap, loadCollection, numPossibleCpus, RingBuffer, type Collection } from "../../../reconciler/ebpf-loader/index.js";
import type { CIDRSelector, Model, PeerRule } from "../../../reconciler/manifest/model.js";
import { compile } from "../../../reconciler/policy/compile.js";
import { selectorString } from "../../../reconciler/policy/selector.js";
import type { CompiledPolicy, CompileOptions } from "../../../reconciler/policy/types.js";
import { namingContext, type NamingContext } from "../../../reconciler/monitor/event.js";
import { NODES, type NodeName } from "../../unit/helpers/random-policy.js";
import { readEvents, suffix } from "./datapath.js";

// ---- flows -------------------------------------------------------------------------------------------

/** Peers outside every endpoint, per family: inside and outside the CIDRs, and the node addresses. */
export const EXTERNAL = {
  4: ["20.1.2.3", "20.1.9.9", "20.7.0.1", "30.0.0.1", "8.8.8.8", NODES.n1, NODES.n2, "10.0.0.200"],
  6: ["2001:db8:1::5", "2001:db8:2::5", "2001:db9::1", "f00d::99"],
} as const;
/** ICMP types flows carry, per family (no errors or neighbour discovery: those bypass policy). */
export const FLOW_ICMP_TYPES = { 4: [0, 8, 13], 6: [128, 129, 130] } as const;
/** Destination ports flows use: every rule port and range boundary, ±1, and some others. */
export const FLOW_PORTS = [1, 53, 54, 79, 80, 81, 82, 83, 84, 89, 90, 91, 443, 999, 1000, 1023, 1024, 1500, 1999, 2000, 7999, 8000, 8100, 8191, 8192, 65535];

export function compileOptions(nodeName: NodeName, enforcement: CompileOptions["enforcement"]): CompileOptions {
  return { node: nodeName, enforcement, hostAddresses: [NODES[nodeName]] };
}

// ---- printing ----------------------------------------------------------------------------------------

function peerText(p: PeerRule): string {
  const parts: string[] = [];
  if (p.endpoints) parts.push(`endpoints ${p.endpoints.map(selectorString).join(" | ")}`);
  const cidr = (c: CIDRSelector) => c.cidr ?? (c.groupRef !== undefined ? `group ${c.groupRef}` : `groups ${selectorString(c.groupSelector!)}`);
  if (p.cidrs) parts.push(`cidrs ${p.cidrs.map((c) => (c.except.length ? `${cidr(c)} except ${c.except.join(",")}` : cidr(c))).join(" | ")}`);
  if (p.entities) parts.push(`entities ${p.entities.join(",")}`);
  if (p.nodes) parts.push(`nodes ${p.nodes.map(selectorString).join(" | ")}`);
  parts.push(p.ports ? `ports ${p.ports.map((x) => `${x.name ?? x.port}${x.name === undefined && x.endPort !== x.port ? `-${x.endPort}` : ""}/${x.protocol}`).join(",")}` : "L3-only");
  return parts.join("; ");
}

/** The model as text: endpoints with labels, node and addresses, identities, and every rule. */
export function describeModel(m: Model, enforcement: string): string {
  const lines = [`enforcement ${enforcement}`];
  for (const e of m.endpoints) {
    lines.push(`  endpoint ${e.name} on ${e.node ?? "n1"} ${[e.ipv4, e.ipv6].filter(Boolean).join(" ")} labels {${e.labels.map((l) => `${l.source}:${l.key}=${l.value}`).join(", ")}}`);
  }
  for (const n of m.nodes) lines.push(`  node ${n.name} ${n.address} labels {${(n.labels ?? []).map((l) => `${l.source}:${l.key}=${l.value}`).join(", ")}}${n.hostFirewall ? " host firewall" : ""}`);
  for (const g of m.cidrGroups ?? []) lines.push(`  cidr group ${g.name} ${g.cidrs.join(",")} labels {${g.labels.map((l) => `${l.source}:${l.key}=${l.value}`).join(", ")}}`);
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
  private ring: RingBuffer | undefined;
  /** Endpoint name → endpoint number, of the last applied desired state. */
  epIds = new Map<string, number>();
  /** The last applied compile, and its names for events (as monitor names them). */
  compiled: CompiledPolicy | undefined;
  naming: NamingContext | undefined;

  constructor(readonly name: NodeName) {
    mkdirSync(this.pinRoot);
    this.ctx = new KernelContext({ pinRoot: this.pinRoot, datapathObject: DATAPATH_OBJECT });
    this.targets = new Targets([new MapTarget(this.ctx), endpointsTarget(this.ctx), ipcacheTarget(this.ctx), new PolicyTarget(this.ctx)]);
  }

  /** Compiles the model for this node, reconciles the maps to it, and checks a second run is a no-op.
   *  `events` are the event settings every endpoint entry gets (--monitor-verdicts, --event-rate). */
  async apply(m: Model, enforcement: CompileOptions["enforcement"], events: Pick<DesiredOptions, "monitorVerdicts" | "eventRate"> = {}): Promise<ApplyStats> {
    const compiled = compile(m, compileOptions(this.name, enforcement));
    const desired = mapsOnly(buildDesiredState(m, compiled, { attachMode: "tcx", ...events }));
    this.compiled = compiled;
    this.naming = namingContext({ desired, policy: compiled });
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

  /** The events written since the last call (the ring buffer drained). */
  events(): L.DatapathEvent[] {
    if (!this.ring) {
      const m = this.ctx.map("events");
      if (!m) throw new Error(`${this.name}: map events is not pinned at ${this.ctx.mapPath("events")}`);
      this.ring = RingBuffer.open(m);
    }
    return readEvents(this.ring);
  }

  clearConntrack(): void {
    const m = this.ctx.map("conntrack");
    if (!m) return;
    for (const k of [...m.keys()]) m.delete(k);
  }

  close(): void {
    this.ring?.close();
    this.programs?.close();
    this.ctx.close();
    rmSync(this.pinRoot, { recursive: true, force: true });
  }
}
