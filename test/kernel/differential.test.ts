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
// Events (issue 13): every endpoint reports all verdicts (--monitor-verdicts all, a rate no flow
// reaches), and each program run's events are read from the node's ring buffer and checked against
// the same flow: the run's verdict, side and drop reason; the matched entry equals the compiled
// policy's LPM lookup (policyVerdict) for the event's endpoint, direction and peer; the peer identity
// equals explain's; a default deny's rules (as monitor names them: the rules that put the direction
// into default deny) equal explain's; a deny entry's and an allow's rules (the entry's provenance)
// are among explain's, which names every rule that denies or allows the flow while the kernel
// reports the one entry it took.
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
import { explain, policyVerdict } from "../../reconciler/policy/explain.js";
import { MAX_EVENT_RATE } from "../../reconciler/datapath/desired.js";
import { nameEvent } from "../../reconciler/monitor/event.js";
import { sampleClock } from "../../reconciler/monitor/clock.js";
import type { RuleRef } from "../../reconciler/policy/types.js";
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

/** Every verdict reported, at a rate no flow reaches: each program run's events are complete. */
const ALL_EVENTS = { monitorVerdicts: "all", eventRate: MAX_EVENT_RATE } as const;
const CLOCK = sampleClock();

const ruleKey = (r: RuleRef): string => `${r.name} ${r.file}:${r.line}`;
const ruleSet = (refs: readonly RuleRef[]): string[] => [...new Set(refs.map(ruleKey))].sort();

/**
 * What is wrong with the events one program run wrote (empty: nothing). rc is the run's return
 * code; epId the endpoint whose program ran, in direction `side`; peer the identity explain gives
 * that endpoint's peer. Events of the host endpoint (host policy checks in the same run) are in
 * the opposite direction with the endpoint's identity as peer.
 */
function checkRunEvents(n: DiffNode, evs: L.DatapathEvent[], rc: number, epId: number, side: Side, peer: number, f: Flow, sport: number): string[] {
  const problems: string[] = [];
  const hostSide: Side = side === "egress" ? "ingress" : "egress";
  const policyOf = (id: number) => n.naming!.endpoints.get(id)?.policy;
  const own = policyOf(epId);
  const portless = f.protocol === 1 || f.protocol === 58 || f.protocol === GRE;
  for (const ev of evs) {
    const at = `event ${ev.kind} ${ev.verdict} ep ${ev.epId} ${ev.direction}`;
    const host = ev.epId === HOST_ENDPOINT_ID;
    if (ev.epId !== epId && !host) problems.push(`${at}: not the endpoint of the run (${epId}) nor the host`);
    if (ev.direction !== (host ? hostSide : side)) problems.push(`${at}: direction, expected ${host ? hostSide : side}`);
    const wantPeer = host ? own?.identity : peer;
    if (ev.peerIdentity !== wantPeer) problems.push(`${at}: peer identity ${ev.peerIdentity}, expected ${wantPeer}`);
    if (ev.protocol !== f.protocol || ev.dport !== f.port || (!portless && ev.sport !== sport)) {
      problems.push(`${at}: flow ${ev.protocol} ${ev.sport}->${ev.dport}, expected ${f.protocol} ${sport}->${f.port}`);
    }
    const policy = policyOf(ev.epId);
    if (!policy) {
      problems.push(`${at}: the compiled revision has no policy for endpoint ${ev.epId}`);
      continue;
    }
    const looked = policyVerdict(policy, ev.direction, ev.peerIdentity, f.protocol, f.port);
    const e = looked.entry;
    const want = e ? `${e.identity}/${e.protocol}/${e.port}/${e.portPrefixLen}` : "none";
    const got = ev.match ? `${ev.match.identity}/${ev.match.protocol}/${ev.match.port}/${ev.match.portPrefixLen}` : "none";
    if (got !== want) problems.push(`${at}: matched entry ${got}, the compiled lookup gives ${want} (${looked.decision})`);
    const decision = ev.verdict === "allow" ? "allow" : ev.reason === L.DropReason.POLICY_DENIED ? "deny" : "none";
    if (decision !== looked.decision) problems.push(`${at} reason ${ev.reason}: the compiled lookup decides ${looked.decision}`);
  }
  if (rc === TC_ACT_OK) {
    if (evs.some((ev) => ev.kind !== "verdict" || ev.verdict !== "allow")) problems.push(`passed, but events ${evs.map((e) => `${e.kind}/${e.verdict}`).join(", ")}`);
    const mine = evs.filter((ev) => ev.epId === epId).length;
    const enforced = own?.enforce[side] ? 1 : 0;
    if (mine !== enforced) problems.push(`passed: ${mine} VERDICT allow events for the endpoint, expected ${enforced} (direction ${enforced ? "" : "not "}enforced)`);
    if (evs.filter((ev) => ev.epId === HOST_ENDPOINT_ID).length > 1) problems.push(`passed: more than one host VERDICT event`);
  } else {
    const drops = evs.filter((ev) => ev.kind === "drop");
    const last = evs.at(-1);
    const verdict = evs.at(-2);
    if (drops.length !== 1 || last?.kind !== "drop") problems.push(`dropped: events ${evs.map((e) => `${e.kind}/${e.verdict}`).join(", ") || "none"}, expected one DROP last`);
    else if (verdict?.kind !== "verdict" || verdict.verdict !== "deny" || verdict.epId !== last.epId || verdict.reason !== last.reason || JSON.stringify(verdict.match) !== JSON.stringify(last.match)) {
      problems.push(`dropped: no VERDICT deny with the DROP's endpoint, reason and entry just before it`);
    }
  }
  return problems;
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
  const runAt = (n: DiffNode, ep: string, side: Side, pkt: Buffer, ev: { flow: Flow; sport: number; peer: number; out: L.DatapathEvent[]; problems: string[] }): Verdict => {
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
    const evs = n.events();
    for (const p of checkRunEvents(n, evs, rc, epId, side, ev.peer, ev.flow, ev.sport)) ev.problems.push(`${n.name} ${ep} ${side}: ${p}`);
    ev.out.push(...evs.map((e) => ({ ...e, node: n }) as L.DatapathEvent & { node: DiffNode }));
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
  const eventMismatches: string[] = [];
  const eventStats = { events: 0, drops: 0, dropRulesEqual: 0, allows: 0, allowRulesEqual: 0 };
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
      const s = await nodes[name]!.apply(m, enforcement, ALL_EVENTS);
      apply.swaps += s.swaps;
      apply.inPlace += s.inPlace;
      apply.slotChanges += s.slotChanges;
      nodes[name]!.clearConntrack();
      nodes[name]!.events();
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
      // Model: explain, with the options of the node that judges an external peer (node addresses
      // are "host" on their own node and "remote-node" elsewhere).
      const judge: NodeName = byName.has(f.to) ? ((byName.get(f.to)!.node ?? "n1") as NodeName) : ((byName.get(f.from)!.node ?? "n1") as NodeName);
      const x = explain(m, compileOptions(judge, enforcement), { from: f.from, to: f.to, protocol: f.protocol, port: f.port });
      const xd = x.verdict === "deny" ? explainedDeny(x.reason) : {};

      // Kernel: the source endpoint's egress, then the destination endpoint's ingress.
      const flowEvents: Array<L.DatapathEvent & { node: DiffNode }> = [];
      const problems: string[] = [];
      const ev = (peer: number) => ({ flow: f, sport, peer, out: flowEvents, problems });
      let kernel: Verdict = { verdict: "allow" };
      if (byName.has(f.from)) kernel = runAt(nodeOf(f.from), f.from, "egress", pkt, ev(x.toIdentity));
      if (kernel.verdict === "allow" && byName.has(f.to)) kernel = runAt(nodeOf(f.to), f.to, "ingress", pkt, ev(x.fromIdentity));

      // Events against explain: the verdict and the rules monitor would name.
      eventStats.events += flowEvents.length;
      const named = flowEvents.map((e) => nameEvent(e, e.node.naming, CLOCK));
      const explained = ruleSet(x.rules);
      if (x.verdict === "deny") {
        const drop = named.find((e) => e.type === "drop");
        if (drop) {
          eventStats.drops++;
          const got = ruleSet(drop.rules);
          if (got.join("|") === explained.join("|")) eventStats.dropRulesEqual++;
          else if (drop.reason !== L.DropReason.POLICY_DENIED || !got.length || got.some((r) => !explained.includes(r))) {
            // Default deny: the rules that enforce the direction, the same list. A deny entry: its
            // rules, which are all of explain's when one entry decides; several deny entries may
            // match (the peer's and identity 0's), and the kernel reports the one it took.
            problems.push(`DROP names rules [${got.join("; ")}], explain [${explained.join("; ")}]`);
          }
        } else if (kernel.verdict === "deny") problems.push("no DROP event");
      } else if (kernel.verdict === "allow") {
        eventStats.allows++;
        const got = ruleSet(named.flatMap((e) => e.rules));
        if (got.join("|") === explained.join("|")) eventStats.allowRulesEqual++;
        const extra = got.filter((r) => !explained.includes(r));
        if (extra.length) problems.push(`VERDICT allow names rules [${extra.join("; ")}] that explain does not [${explained.join("; ")}]`);
        if (explained.length && !got.length) problems.push(`explain allows by [${explained.join("; ")}], the events name no rule`);
      }
      if (problems.length) {
        eventMismatches.push(
          [
            `EVENTS seed ${SEED} model ${mi} (model seed ${modelSeed}) flow ${fi}: ${f.from} -> ${f.to} protocol ${f.protocol} port ${f.port} sport ${sport}; explain ${x.verdict}: ${x.reason}`,
            ...problems.map((p) => `  ${p}`),
            ...named.map((e) => `  event ${JSON.stringify(e)}`),
          ].join("\n"),
        );
      }

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
  t.diagnostic(`events: ${eventStats.events} read; ${eventStats.drops} denied flows' DROP checked against explain's rules, ${eventStats.dropRulesEqual} naming exactly explain's; ${eventStats.allows} allowed flows, ${eventStats.allowRulesEqual} naming exactly explain's rules; ${eventMismatches.length} flows with event mismatches`);
  for (const text of mismatches.slice(0, 200)) console.error(text);
  for (const text of eventMismatches.slice(0, 50)) console.error(text);
  assert.equal(mismatches.length, 0, `${mismatches.length} of ${flows} flows differ (seed ${SEED}; the first ${Math.min(200, mismatches.length)} are printed above)`);
  assert.equal(eventMismatches.length, 0, `${eventMismatches.length} of ${flows} flows' events differ from explain or the compiled lookup (seed ${SEED}; the first ${Math.min(50, eventMismatches.length)} are printed above)`);
  // The comparison must exercise both outcomes and both kinds of deny, or it says little.
  assert.ok(flows >= 3000, `only ${flows} flows`);
  assert.ok(allows > flows * 0.15 && allows < flows * 0.85, `allowed ${allows} of ${flows}: the generator is lopsided`);
  assert.ok(kinds.POLICY_DENIED > flows * 0.03 && kinds.NO_POLICY > flows * 0.05, `deny kinds ${JSON.stringify(kinds)} of ${flows}`);
  assert.ok(hostDrops > 10 && hostJudged > hostDrops, `host policy barely exercised: ${hostJudged} flows explained by it, ${hostDrops} dropped by it`);
  assert.ok(apply.swaps > 0 && apply.inPlace > 0, `policy applies never swapped or never wrote in place: ${JSON.stringify(apply)}`);
});
