// Differential (DESIGN §8): for random policies and flows, explain's verdict (evaluated from the rules)
// equals the kernel datapath's verdict.
//
// Each random model is compiled with the real pipeline (compile + buildDesiredState) for each of two
// nodes, and the real reconciler targets (map, endpoints, ipcache, policy) write it into that node's
// private pin root with reconcileOnce, planned against what the kernel holds from the previous model
// (so policy changes go through the same in-place / swap logic as in production). Each flow then runs
// through endpoint.o with BPF_PROG_RUN where the datapath would see it: from_endpoint on the source
// endpoint's node (its egress policy), then, if it passed, to_endpoint on the destination endpoint's
// node (its ingress policy). A side that is not an endpoint has no program. Every flow uses a source
// port (ICMP: echo id) no earlier flow of the model used, conntrack is emptied per model and before
// every GRE flow (no ports), so no flow is judged as the reply of another.
//
// Compared per flow: the verdict, and for a deny the side that denies and the kind (an explicit deny
// rule = POLICY_DENIED, default deny = NO_POLICY, read from the drop counters).
//
// The models come from the shared generator (test/unit/helpers/random-policy.ts) with every feature
// on. Host policies: a rule in five selects nodes (by their random role labels) instead of
// endpoints, and then a Node sometimes has a host firewall. Flows between an endpoint and its own
// node's address are then also judged by the host's policy in the endpoint programs, and a drop
// there is read from the host endpoint's counters.
//
// DIFF_SEED=<n> and DIFF_MODELS=<n> reproduce or widen a run; the seed is printed on failure.

import { after, test } from "node:test";
import assert from "node:assert/strict";
import * as L from "../../reconciler/datapath/layouts.js";
import { HOST_ENDPOINT_ID } from "../../reconciler/datapath/desired.js";
import type { Model } from "../../reconciler/manifest/model.js";
import { prng, randomModel, type NodeName, type RandomPolicyOptions, type Rng } from "../unit/helpers/random-policy.js";
import { explain } from "../../reconciler/policy/explain.js";
import { numPossibleCpus } from "../../reconciler/ebpf-loader/index.js";
import { TC_ACT_OK, TC_ACT_SHOT, icmpEcho, tcp, udp, v4, v6 } from "./helpers/datapath.js";
import { DiffNode, EXTERNAL, FLOW_ICMP_TYPES, FLOW_PORTS, compileOptions, describeModel } from "./helpers/differential.js";

const SEED = Number(process.env.DIFF_SEED ?? 20261127);
const MODELS = Number(process.env.DIFF_MODELS ?? 150);
const FLOWS_PER_MODEL = 30;
const TCP = 6;
const UDP = 17;
const SCTP = 132;
const GRE = 47; // no ports: only L3-only entries (protocol 0) can match it
/** Every feature of the generator; a rule in five is a host policy (and a node may have a host
 *  firewall); deny sections a little more often than the default, so that explicit denies stay
 *  near a tenth of the flows. */
const GENERATOR: RandomPolicyOptions = { endpoints: [3, 7], rules: [1, 5], hostRules: 0.2, deny: 0.4 };

type Side = "egress" | "ingress";
type DenyKind = "POLICY_DENIED" | "NO_POLICY";

interface Flow {
  /** Endpoint name or external IP. */
  from: string;
  to: string;
  family: 4 | 6;
  protocol: number;
  port: number;
}

interface Verdict {
  verdict: "allow" | "deny";
  /** For a deny: where and why. */
  side?: Side;
  kind?: DenyKind | "other";
}

function sctp(sport: number, dport: number): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt16BE(sport, 0);
  b.writeUInt16BE(dport, 2);
  return b;
}

function frame(src: string, dst: string, family: 4 | 6, protocol: number, sport: number, dport: number): Buffer {
  let l4: Buffer;
  if (protocol === TCP) l4 = tcp(sport, dport);
  else if (protocol === UDP) l4 = udp(sport, dport);
  else if (protocol === SCTP) l4 = sctp(sport, dport);
  else if (protocol === GRE) l4 = Buffer.alloc(8);
  else l4 = icmpEcho(dport, sport); // ICMP: "dport" is the type (as in the policy key), the id is sport
  return family === 4 ? v4({ src, dst, proto: protocol }, l4) : v6({ src, dst, proto: protocol }, l4);
}

function randomFlow(r: Rng, m: Model): Flow | undefined {
  const eps = m.endpoints;
  const kind = r.int(4); // 0,1: endpoint → endpoint; 2: external → endpoint; 3: endpoint → external
  const a = r.pick(eps);
  let b = r.pick(eps);
  if (kind <= 1 && b.name === a.name) b = eps[(eps.indexOf(a) + 1) % eps.length]!;
  let family: 4 | 6 = 4;
  if (kind <= 1) family = a.ipv6 && b.ipv6 && r.chance(0.5) ? 6 : 4;
  else family = a.ipv6 && r.chance(0.35) ? 6 : 4;
  const protoRoll = r.int(20);
  const protocol = protoRoll < 9 ? TCP : protoRoll < 14 ? UDP : protoRoll < 17 ? SCTP : protoRoll < 18 ? GRE : family === 4 ? 1 : 58;
  const portless = protocol === 1 || protocol === 58 || protocol === GRE;
  const icmpFlow = protocol === 1 || protocol === 58;
  const port = icmpFlow ? r.pick(FLOW_ICMP_TYPES[family]) : portless ? 0 : r.chance(0.9) ? r.pick(FLOW_PORTS) : 1 + r.int(65535);
  const ext = r.pick(EXTERNAL[family]);
  if (kind <= 1) return { from: a.name, to: b.name, family, protocol, port };
  if (kind === 2) return { from: ext, to: a.name, family, protocol, port };
  return { from: a.name, to: ext, family, protocol, port };
}

/** What explain's reason says about a deny: the side (direction) and the kind. */
function explainedDeny(reason: string): { side?: Side; kind?: DenyKind } {
  const denied = /^denied by .* at \S+ (ingress|egress)$/.exec(reason);
  if (denied) return { side: denied[1] as Side, kind: "POLICY_DENIED" };
  const dflt = /^default deny: .* none allows (ingress|egress) /.exec(reason);
  if (dflt) return { side: dflt[1] as Side, kind: "NO_POLICY" };
  return {};
}

const nodes: Partial<Record<NodeName, DiffNode>> = {};
after(() => {
  for (const n of Object.values(nodes)) n?.close();
});

function dropKey(epId: number, reason: number, direction: Side): Buffer {
  const k = Buffer.alloc(L.DROP_KEY.size);
  L.encodeDropKey({ epId, reason, direction }, k, 0);
  return k;
}

test(`differential: explain's verdict equals BPF_PROG_RUN through the reconciled maps (seed ${SEED}, ${MODELS} models × ${FLOWS_PER_MODEL} flows)`, async (t) => {
  nodes.n1 = new DiffNode("n1");
  nodes.n2 = new DiffNode("n2");
  const ncpu = numPossibleCpus();
  const dropped = (n: DiffNode, epId: number, reason: number, dir: Side): bigint => {
    const v = n.ctx.map("drops")!.lookup(dropKey(epId, reason, dir));
    return v ? L.decodePerCpuCounters(v, 0, ncpu).packets : 0n;
  };
  /** Runs one program for endpoint `ep` on node `n`; returns the verdict and, for a drop, its reason
   *  and side: the endpoint's, or the host's opposite one (endpoint egress = host ingress). */
  const runAt = (n: DiffNode, ep: string, side: Side, pkt: Buffer): Verdict => {
    const epId = n.epIds.get(ep);
    if (epId === undefined) throw new Error(`endpoint ${ep} has no number on ${n.name}`);
    const hostSide: Side = side === "egress" ? "ingress" : "egress";
    const counters = () => [
      dropped(n, epId, L.DropReason.POLICY_DENIED, side),
      dropped(n, epId, L.DropReason.NO_POLICY, side),
      dropped(n, HOST_ENDPOINT_ID, L.DropReason.POLICY_DENIED, hostSide),
      dropped(n, HOST_ENDPOINT_ID, L.DropReason.NO_POLICY, hostSide),
    ];
    const before = counters();
    const rc = n.run(side === "egress" ? "from_endpoint" : "to_endpoint", pkt);
    if (rc === TC_ACT_OK) return { verdict: "allow" };
    if (rc !== TC_ACT_SHOT) throw new Error(`program returned ${rc} (expected TC_ACT_OK or TC_ACT_SHOT)`);
    const after = counters();
    const grew = (i: number) => after[i]! > before[i]!;
    if (grew(2) || grew(3)) {
      hostDrops++;
      return { verdict: "deny", side: hostSide, kind: grew(2) ? "POLICY_DENIED" : "NO_POLICY" };
    }
    return { verdict: "deny", side, kind: grew(0) ? "POLICY_DENIED" : grew(1) ? "NO_POLICY" : "other" };
  };

  const mismatches: string[] = [];
  let hostDrops = 0;
  let hostJudged = 0;
  let flows = 0;
  let allows = 0;
  const kinds = { POLICY_DENIED: 0, NO_POLICY: 0 };
  const apply = { swaps: 0, inPlace: 0, slotChanges: 0 };
  const started = Date.now();

  for (let mi = 0; mi < MODELS; mi++) {
    const modelSeed = (SEED + Math.imul(mi, 0x9e3779b1)) >>> 0;
    const r = prng(modelSeed);
    const m = randomModel(r, { ...GENERATOR, revision: `diff-${SEED}-${mi}` });
    const enforcement = r.pick(["default", "default", "default", "default", "default", "always", "never"] as const);
    for (const name of ["n1", "n2"] as const) {
      const s = await nodes[name]!.apply(m, enforcement);
      apply.swaps += s.swaps;
      apply.inPlace += s.inPlace;
      apply.slotChanges += s.slotChanges;
      nodes[name]!.clearConntrack();
    }
    const byName = new Map(m.endpoints.map((e) => [e.name, e]));
    const nodeOf = (name: string): DiffNode => nodes[(byName.get(name)!.node ?? "n1") as NodeName]!;
    const addr = (x: string, family: 4 | 6): string => {
      const ep = byName.get(x);
      return ep ? (family === 4 ? ep.ipv4! : ep.ipv6!) : x;
    };

    let sport = 1024;
    for (let fi = 0; fi < FLOWS_PER_MODEL; fi++) {
      const f = randomFlow(r, m)!;
      sport++;
      const pkt = frame(addr(f.from, f.family), addr(f.to, f.family), f.family, f.protocol, sport, f.port);
      // A GRE flow's conntrack tuple has no ports: an earlier GRE flow between the same two
      // addresses in the other direction would make this one its reply. Start it from empty tables.
      if (f.protocol === GRE) for (const n of Object.values(nodes)) n!.clearConntrack();
      // Kernel: the source endpoint's egress, then the destination endpoint's ingress.
      let kernel: Verdict = { verdict: "allow" };
      if (byName.has(f.from)) kernel = runAt(nodeOf(f.from), f.from, "egress", pkt);
      if (kernel.verdict === "allow" && byName.has(f.to)) kernel = runAt(nodeOf(f.to), f.to, "ingress", pkt);

      // Model: explain, with the options of the node that judges an external peer (node addresses
      // are "host" on their own node and "remote-node" elsewhere).
      const judge: NodeName = byName.has(f.to) ? ((byName.get(f.to)!.node ?? "n1") as NodeName) : ((byName.get(f.from)!.node ?? "n1") as NodeName);
      const x = explain(m, compileOptions(judge, enforcement), { from: f.from, to: f.to, protocol: f.protocol, port: f.port });
      const xd = x.verdict === "deny" ? explainedDeny(x.reason) : {};

      flows++;
      if (/reserved:host/.test(x.reason)) hostJudged++;
      if (kernel.verdict === "allow") allows++;
      else if (kernel.kind === "POLICY_DENIED" || kernel.kind === "NO_POLICY") kinds[kernel.kind]++;
      const same = x.verdict === kernel.verdict && (x.verdict === "allow" || (xd.side === kernel.side && xd.kind === kernel.kind));
      if (!same) {
        mismatches.push(
          [
            `MISMATCH seed ${SEED} model ${mi} (model seed ${modelSeed}) flow ${fi}: ${f.from} (${addr(f.from, f.family)}) -> ${f.to} (${addr(f.to, f.family)}) protocol ${f.protocol} port ${f.port} sport ${sport}`,
            `  explain: ${x.verdict}${xd.side ? ` at ${xd.side} (${xd.kind})` : ""}; identities ${x.fromIdentity} -> ${x.toIdentity}; reason: ${x.reason}`,
            `  kernel:  ${kernel.verdict}${kernel.side ? ` at ${kernel.side} (drop reason ${kernel.kind})` : ""}`,
            describeModel(m, enforcement),
          ].join("\n"),
        );
      }
    }
  }

  const ms = Date.now() - started;
  t.diagnostic(`${MODELS} models, ${flows} flows in ${ms} ms: ${allows} allowed, ${kinds.POLICY_DENIED} denied by a deny rule, ${kinds.NO_POLICY} by default deny; ${mismatches.length} mismatches`);
  t.diagnostic(`host policy: ${hostJudged} flows explained by the host's policy, ${hostDrops} dropped by it in the kernel`);
  t.diagnostic(`policy applies (both nodes): ${apply.swaps} inner-map swaps, ${apply.inPlace} in-place endpoint updates, ${apply.slotChanges} slots added/removed`);
  for (const text of mismatches.slice(0, 200)) console.error(text);
  assert.equal(mismatches.length, 0, `${mismatches.length} of ${flows} flows differ (seed ${SEED}; the first ${Math.min(200, mismatches.length)} are printed above)`);
  // The comparison must exercise both outcomes and both kinds of deny, or it says little.
  assert.ok(flows >= 3000, `only ${flows} flows`);
  assert.ok(allows > flows * 0.15 && allows < flows * 0.85, `allowed ${allows} of ${flows}: the generator is lopsided`);
  assert.ok(kinds.POLICY_DENIED > flows * 0.03 && kinds.NO_POLICY > flows * 0.05, `deny kinds ${JSON.stringify(kinds)} of ${flows}`);
  assert.ok(hostDrops > 10 && hostJudged > hostDrops, `host policy barely exercised: ${hostJudged} flows explained by it, ${hostDrops} dropped by it`);
  assert.ok(apply.swaps > 0 && apply.inPlace > 0, `policy applies never swapped or never wrote in place: ${JSON.stringify(apply)}`);
});
