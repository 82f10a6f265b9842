// Policy impact (plan/impact.ts) and the plan between two revisions (plan/preview.ts): worked
// examples on the seed, and a property against explain: for random rule edits, a flow is in
// "newly allowed/denied" exactly when explain gives the two sides different verdicts.

import assert from "node:assert/strict";
import { test } from "node:test";
import { Targets, reconcileOnce } from "../../reconciler/apply/executor.js";
import { MemoryTarget } from "../../reconciler/apply/target.js";
import { RESOURCE_KINDS } from "../../reconciler/datapath/state.js";
import type { Entity, Model, PortRule, RuleManifest, Selector } from "../../reconciler/manifest/model.js";
import { diff } from "../../reconciler/plan/diff.js";
import { policyImpact, ruleRefs, type ImpactLine, type PolicyImpact } from "../../reconciler/plan/impact.js";
import { compileModel, IncrementalPipeline, loadModel } from "../../reconciler/plan/snapshot-to-desired.js";
import { planBetween, previewDocument, previewNodes } from "../../reconciler/plan/preview.js";
import { compile } from "../../reconciler/policy/compile.js";
import { explain } from "../../reconciler/policy/explain.js";
import { labelSetString } from "../../reconciler/policy/labels.js";
import type { CompiledPolicy, CompileOptions, Direction } from "../../reconciler/policy/types.js";
import { snapshotOfDir } from "./helpers/manifest-snapshot.js";
import { endpoint, identity, model, port, rule, sel, type PeerSpec } from "./helpers/policy-model.js";

const OPTS: CompileOptions = { node: "n1", enforcement: "default" };

function impactOf(a: Model, b: Model, opts = OPTS): PolicyImpact {
  return policyImpact({ policy: compile(a, opts), rules: ruleRefs(a.rules) }, { policy: compile(b, opts), rules: ruleRefs(b.rules) });
}

function texts(i: PolicyImpact): string[] {
  return [...i.newlyDenied, ...i.newlyAllowed].map((l) => l.text);
}

const seed = () => loadModel(snapshotOfDir("examples/seed", "base")).model;

/** The seed with its l3-rule's port range replaced. */
function seedWithPort(from: number, to = from): Model {
  const m = structuredClone(seed());
  const r = m.rules[0]!;
  r.rule.ingress[0]!.ports = [{ port: from, endPort: to, protocol: "TCP" }];
  return { ...m, revision: "ref" };
}

test("impact: removing the seed's only rule takes app1 out of enforcement: all it denied is newly allowed", () => {
  const base = seed();
  const ref: Model = { ...base, revision: "ref", rules: [] };
  const i = impactOf(base, ref);
  // Without any rule, app1's ingress is not enforced: everything it denied is newly allowed,
  // which is all but app2's TCP/80 (allowed before and after).
  assert.deepEqual(i.newlyDenied, []);
  const why = "(not enforced any more; was default deny of rule l3-rule, l3-rule.json:2 removed)";
  assert.deepEqual(texts(i), [
    `app1 ingress: newly ALLOWED from {id=app2} TCP/0-79,81-65535 ${why}`,
    `app1 ingress: newly ALLOWED from any identity but {id=app2} any protocol ${why}`,
    `app1 ingress: newly ALLOWED from {id=app2} any protocol but TCP ${why}`,
  ]);
  const l = i.newlyAllowed[1]!;
  assert.equal(l.after.by, "not-enforced");
  assert.equal(l.before.by, "default-deny");
  assert.deepEqual(l.peers, [{ others: true, display: "any identity but {id=app2}", except: ["k8s:id=app2"] }]);
  assert.equal(l.protocol, null);
});

test("impact: narrowing a port range names exactly the ports cut off, with the rule that no longer allows them", () => {
  const i = impactOf(seedWithPort(80, 90), seedWithPort(80, 85));
  assert.deepEqual(i.newlyAllowed, []);
  assert.equal(i.newlyDenied.length, 1);
  const l = i.newlyDenied[0]!;
  assert.deepEqual(l.ports, [[86, 90]]);
  assert.equal(l.protocol, 6);
  assert.deepEqual(l.peers.map((p) => ("others" in p ? "*" : p.labels)), ["k8s:id=app2"]);
  assert.match(l.text, /^app1 ingress: newly DENIED from \{id=app2\} TCP\/86-90 \(rule l3-rule, l3-rule\.json:\d+ no longer allows it\)$/);
  // Moving the port: one line each way.
  const moved = impactOf(seedWithPort(80), seedWithPort(8080));
  assert.deepEqual(texts(moved).map((t) => t.replace(/\(.*\)$/, "")), ["app1 ingress: newly DENIED from {id=app2} TCP/80 ", "app1 ingress: newly ALLOWED from {id=app2} TCP/8080 "]);
});

test("impact: a new deny names the deny rule; a new rule on an unenforced endpoint says it is now enforced", () => {
  const base = model({
    endpoints: [endpoint("web", { app: "web" }, { ipv4: "10.0.0.1" }), endpoint("db", { app: "db" }, { ipv4: "10.0.0.2" })],
    rules: [rule({ name: "web-in", selector: sel({ app: "web" }), ingress: [{ ports: [port(80)] }] })],
  });
  const deny = rule({ name: "no-db", selector: sel({ app: "web" }), ingressDeny: [{ endpoints: [sel({ app: "db" })], ports: [port(80)] }] });
  const withDeny = { ...base, revision: "ref", rules: [...base.rules, deny] };
  const i = impactOf(base, withDeny);
  assert.deepEqual(texts(i), ["web ingress: newly DENIED from {app=db} TCP/80 (denied by rule no-db, no-db.yaml:1)"]);

  const dbRule = rule({ name: "db-in", selector: sel({ app: "db" }), ingress: [{ endpoints: [sel({ app: "web" })], ports: [port(5432)] }] });
  const enforced = impactOf(base, { ...base, revision: "ref", rules: [...base.rules, dbRule] });
  const lines = enforced.newlyDenied;
  assert.ok(lines.length > 0 && lines.every((l) => l.endpoint === "db" && l.before.by === "not-enforced"), texts(enforced).join("\n"));
  assert.ok(lines.every((l) => l.text.includes("now enforced by rule db-in, db-in.yaml:1")), texts(enforced).join("\n"));
  // TCP/5432 from web stays allowed: it is in no line.
  assert.ok(!lines.some((l) => l.protocol === 6 && l.ports.some(([lo, hi]) => lo <= 5432 && 5432 <= hi) && l.peers.some((p) => !("others" in p))));
});

test("impact: a renumbered identity (pinned number changed) is the same peer: no verdict changes", () => {
  const base = seed();
  const ref = structuredClone(base);
  ref.revision = "ref";
  ref.identities[0] = { ...ref.identities[0]!, id: 40000 };
  const i = impactOf(base, ref);
  assert.deepEqual(texts(i), []);
  // ... while the plan rewrites the entries under the new number.
  const [p] = previewNodes({ name: "a", model: base, warnings: [] }, { name: "b", model: ref, warnings: [] }, ["n1"], { enforcement: "default", attachMode: "tcx" });
  assert.ok(p!.plan.changes.some((c) => c.resource === "policy" && c.id === "app1/ingress/40000/6/80/16" && c.op === "create"));
  assert.deepEqual(p!.impact.newlyAllowed, []);
});

test("previewNodes in the pipeline that loaded both sides (diff's path): the ref is loaded and compiled incrementally, and the previews equal separate full compiles", () => {
  const baseSnap = snapshotOfDir("examples/seed", "base");
  const refSnap = { revision: "ref", files: baseSnap.files.map((f) => (f.path === "l3-rule.json" ? { ...f, content: f.content.replace('"port": "80"', '"port": "8080"') } : f)) };
  const opts = { enforcement: "default", attachMode: "tcx" } as const;
  const nodes = ["n1", "n2"];
  const pipeline = new IncrementalPipeline();
  const b = pipeline.load(baseSnap);
  const r = pipeline.load(refSnap);
  assert.match(pipeline.describeLast(), /^2 files reused, 1 parsed$/);
  const side = (name: string, m: typeof b) => ({ name, model: m.model, warnings: m.warnings });
  const inc = previewNodes(side("base", b), side("ref", r), nodes, opts, pipeline);
  // The last node's ref: compiled from its base, only the changed rule's endpoints recomputed.
  assert.match(pipeline.describeLast(), /; \d+ rules changed, 1 endpoint policies recomputed, ipcache reused$/);
  // Each side loaded alone and each node compiled afresh give the same document.
  const full = previewNodes(side("base", loadModel(baseSnap)), side("ref", loadModel(refSnap)), nodes, opts);
  const doc = (p: typeof inc) => JSON.stringify(previewDocument(side("base", b), side("ref", r), p));
  assert.equal(doc(inc), doc(full));
  assert.equal(inc.length, 2);
  assert.ok(inc.every((p) => p.plan.changes.length === 2 && p.impact.newlyAllowed.length === 1 && p.impact.newlyDenied.length === 1));
});

test("impact: endpoints only one side has are listed, not compared cell by cell", () => {
  const base = seed();
  const ref: Model = { ...base, revision: "ref", endpoints: base.endpoints.filter((e) => e.name !== "app3") };
  const i = impactOf(base, ref);
  assert.deepEqual(i.endpointsRemoved, ["app3"]);
  assert.deepEqual(i.endpointsAdded, []);
  assert.deepEqual(impactOf(ref, base).endpointsAdded, ["app3"]);
});

/** Memory targets for every kind: a kernel that holds exactly what was applied. */
function memoryKernel(): Targets {
  return new Targets(RESOURCE_KINDS.map((k) => new MemoryTarget(k)));
}

test("planBetween: the same change list --dry-run plans on a kernel holding the base", async () => {
  const base = compileModel(loadModel(snapshotOfDir("examples/seed", "base")).model, [], { node: "n1", enforcement: "default", attachMode: "tcx" });
  const refModel = seedWithPort(8080);
  refModel.endpoints = refModel.endpoints.filter((e) => e.name !== "app3");
  const ref = compileModel(refModel, [], { node: "n1", enforcement: "default", attachMode: "tcx" });
  const kernel = memoryKernel();
  const applied = await reconcileOnce(kernel, base.desired);
  assert.equal(applied.failed.length, 0);
  const dryRun = diff(ref.desired, await kernel.observe(ref.desired));
  const between = planBetween(base.desired, ref.desired);
  const ids = (p: typeof between) => p.changes.map((c) => `${c.op} ${c.resource} ${c.id}`);
  assert.ok(between.changes.length > 5, "the edit changes devices, routes, maps entries and policy");
  // The kernel keeps a policy slot for every endpoint, empty or not (the memory target keeps
  // entries only): the removed endpoint's empty slot goes too.
  assert.ok(ids(between).includes("delete policy app3/*"));
  assert.deepEqual(ids(between).filter((c) => c !== "delete policy app3/*"), ids(dryRun));
  assert.deepEqual(planBetween(base.desired, base.desired).changes, []);
});

// ---- Property: impact ⇔ explain differs ----

function prng(seed: number) {
  let s = seed >>> 0;
  const next = () => ((s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x9e3779b9) >>> 0) / 2 ** 32);
  return { next, int: (n: number) => Math.floor(next() * n), pick: <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)]!, chance: (p: number) => next() < p };
}
type Rng = ReturnType<typeof prng>;

const APPS = ["a", "b", "c"];
const CIDRS = ["20.0.0.0/8", "20.1.0.0/16", "0.0.0.0/0"];
const ENTITIES: Entity[] = ["all", "world", "cluster"];
const PORTS: Array<() => PortRule> = [() => port(80), () => port(81), () => port(80, "TCP", 83), () => port(0, "TCP"), () => port(53, "UDP"), () => port(53, "ANY"), () => ({ port: 8, endPort: 8, protocol: "ICMP" })];

function randSelector(r: Rng): Selector {
  return r.chance(0.2) ? sel({}) : sel({ app: r.pick(APPS) });
}

function randPeer(r: Rng): PeerSpec {
  const p: PeerSpec = {};
  const kind = r.int(4);
  if (kind === 0) p.endpoints = [randSelector(r)];
  if (kind === 1) p.cidrs = [r.pick(CIDRS)];
  if (kind === 2) p.entities = [r.pick(ENTITIES)];
  if (kind === 3 || r.chance(0.6)) p.ports = Array.from({ length: 1 + r.int(2) }, () => r.pick(PORTS)());
  return p;
}

let ruleNo = 0;
function randRule(r: Rng): RuleManifest {
  const secs = () => (r.chance(0.5) ? [randPeer(r)] : []);
  const name = `r${ruleNo++}`;
  return rule({
    name,
    selector: randSelector(r),
    ingress: secs(),
    egress: secs(),
    ingressDeny: r.chance(0.25) ? [randPeer(r)] : [],
    egressDeny: r.chance(0.25) ? [randPeer(r)] : [],
    enableDefaultDeny: r.chance(0.15) ? { ingress: false } : {},
  });
}

function randBase(r: Rng): Model {
  const endpoints = Array.from({ length: 3 + r.int(2) }, (_, i) => endpoint(`e${i}`, { app: r.pick(APPS) }, { ipv4: `10.0.0.${i + 1}` }));
  return model({ endpoints, rules: Array.from({ length: 1 + r.int(3) }, () => randRule(r)), identities: r.chance(0.3) ? [identity("pin", 1000 + r.int(100), { app: "a" })] : [] });
}

/** One random edit: a rule added, removed, its ports or selector changed, or a pinned identity renumbered. */
function randEdit(r: Rng, m: Model): Model {
  const out = structuredClone(m);
  out.revision = "ref";
  const i = r.int(out.rules.length);
  switch (r.int(5)) {
    case 0:
      out.rules.push(randRule(r));
      break;
    case 1:
      out.rules.splice(i, 1);
      break;
    case 2:
      for (const sec of [out.rules[i]!.rule.ingress, out.rules[i]!.rule.egress]) for (const p of sec) p.ports = [r.pick(PORTS)()];
      break;
    case 3:
      out.rules[i]!.rule.endpointSelector = randSelector(r);
      break;
    default:
      if (out.identities[0]) out.identities[0] = { ...out.identities[0], id: 2000 + r.int(100) };
      else out.rules[i] = randRule(r);
  }
  return out;
}

function labelsOf(c: CompiledPolicy, id: number): string | undefined {
  const info = c.identities.get(id);
  return info ? labelSetString(info.labels) : undefined;
}

/** The lines of `impact` covering one flow of one endpoint's direction. */
function covering(impact: PolicyImpact, endpoint: string, direction: Direction, peer: string, protocol: number, p: number): ImpactLine[] {
  return [...impact.newlyAllowed, ...impact.newlyDenied].filter(
    (l) =>
      l.endpoint === endpoint &&
      l.direction === direction &&
      (l.protocol === null ? !l.protocolsExcept.includes(protocol) : l.protocol === protocol && l.ports.some(([lo, hi]) => lo <= p && p <= hi)) &&
      l.peers.some((x) => ("others" in x ? !x.except.includes(peer) : x.labels === peer)),
  );
}

test("property: a flow is newly allowed/denied exactly when explain differs between the sides", () => {
  const r = prng(1414);
  const IPS = ["20.1.2.3", "20.7.0.1", "8.8.8.8"];
  let cases = 0;
  let changed = 0;
  for (let mi = 0; mi < 250; mi++) {
    const a = randBase(r);
    const b = randEdit(r, a);
    const ca = compile(a, OPTS);
    const cb = compile(b, OPTS);
    const impact = impactOf(a, b);
    const enforced = (c: CompiledPolicy, name: string, d: Direction) => c.endpoints.find((e) => e.endpoint === name)!.enforce[d];
    for (let fi = 0; fi < 30; fi++) {
      const ep = r.pick(a.endpoints).name;
      const direction: Direction = r.chance(0.5) ? "ingress" : "egress";
      const other = r.chance(0.6) ? r.pick(a.endpoints.filter((e) => e.name !== ep)).name : r.pick(IPS);
      // Only one side of the flow may be judged, so that explain's verdict is this side's.
      const otherDir: Direction = direction === "ingress" ? "egress" : "ingress";
      if (!other.includes(".") && (enforced(ca, other, otherDir) || enforced(cb, other, otherDir))) continue;
      const protocol = r.pick([6, 6, 17, 1]);
      const p = protocol === 1 ? r.pick([0, 8]) : r.pick([53, 79, 80, 81, 83, 84, 443]);
      const q = direction === "ingress" ? { from: other, to: ep, port: p, protocol } : { from: ep, to: other, port: p, protocol };
      const xa = explain(a, OPTS, q);
      const xb = explain(b, OPTS, q);
      const peerId = (x: typeof xa) => (direction === "ingress" ? x.fromIdentity : x.toIdentity);
      const peer = labelsOf(ca, peerId(xa));
      // A peer whose identity itself changes (an address whose CIDR no rule names any more) is
      // the ipcache's change, not a verdict of the same peer.
      if (peer === undefined || peer !== labelsOf(cb, peerId(xb))) continue;
      const lines = covering(impact, ep, direction, peer, protocol, p);
      const ctx = JSON.stringify({ mi, q, direction, a: xa.reason, b: xb.reason, lines: lines.map((l) => l.text) });
      assert.ok(lines.length <= 1, `cells are in one line at most: ${ctx}`);
      if (xa.verdict === xb.verdict) assert.equal(lines.length, 0, `unchanged flow listed: ${ctx}`);
      else {
        assert.equal(lines.length, 1, `changed flow missing: ${ctx}`);
        assert.equal(lines[0]!.verdict, xb.verdict, ctx);
        changed++;
      }
      cases++;
    }
  }
  assert.ok(cases > 2000, `cases ${cases}`);
  assert.ok(changed > 200 && changed < cases - 200, `changed ${changed} of ${cases}: both outcomes must be well represented`);
});
