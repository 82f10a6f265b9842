// Saved plans (plan/saved.ts) through the reconcile service against in-memory targets: a plan made
// by --dry-run --out applies when nothing changed, and is refused, with nothing written, after the
// datapath changed (drift behind its back) or for another revision.

import assert from "node:assert/strict";
import { test } from "node:test";
import { Targets } from "../../reconciler/apply/executor.js";
import type { KernelPort } from "../../reconciler/apply/port.js";
import { MemoryTarget } from "../../reconciler/apply/target.js";
import { emptyState, RESOURCE_KINDS, type ActualState, type ResourceKind } from "../../reconciler/datapath/state.js";
import { ReconcileService } from "../../reconciler/daemon/service.js";
import { diff } from "../../reconciler/plan/diff.js";
import { compileForNode } from "../../reconciler/plan/snapshot-to-desired.js";
import { checkSavedPlan, parseSavedPlan, PlanFileError, savePlan, stateDigest, StalePlanError } from "../../reconciler/plan/saved.js";
import type { Snapshot } from "../../reconciler/source/snapshot.js";
import { snapshotOfDir } from "./helpers/manifest-snapshot.js";

function memoryKernel() {
  const target = new Map(RESOURCE_KINDS.map((k) => [k, new MemoryTarget(k)]));
  const kernel: KernelPort = {
    targets: new Targets([...target.values()]),
    attachMode: "tcx",
    programTags: new Map(),
    host: () => ({ addresses: [], mtuByAddress: new Map() }),
    ownedNetns: () => [],
    watch: () => ({ close: () => {}, stale: () => false }),
    policyStats: () => new Map(),
    drops: () => [],
    events: () => undefined,
    eventBudget: () => ({ suppressed: 0n, lost: 0n }),
    tcxChains: () => [],
    linkPin: (h) => `/pins/links/${h.device}/${h.hook}`,
    recordedRevision: () => undefined,
    recordRevision: () => {},
    recordedSuspension: () => undefined,
    recordSuspension: () => {},
    prune: () => {},
    close: () => {},
  };
  const writes = () => [...target.values()].reduce((n, t) => n + t.writes, 0);
  return { kernel, target: (k: ResourceKind) => target.get(k)!, writes };
}

const OPTS = { node: "vm", enforcement: "default" as const, attachMode: "tcx" as const };

/** The seed with the rule's port changed: another revision with a few policy changes. */
function seedOnPort(port: number, revision: string): Snapshot {
  const s = snapshotOfDir("examples/seed", revision);
  return { revision, files: s.files.map((f) => (f.path === "l3-rule.json" ? { ...f, content: f.content.replace('"port": "80"', `"port": "${port}"`) } : f)) };
}

/** What --dry-run --out does: plan against the kernel, save with the observed state's digest. */
async function dryRunOut(kernel: KernelPort, snapshot: Snapshot) {
  const compiled = compileForNode(snapshot, OPTS, kernel);
  const observed = await kernel.targets.observe(compiled.desired);
  const plan = diff(compiled.desired, observed);
  // Through the file format, as --once --plan reads it.
  return { saved: parseSavedPlan(JSON.stringify(savePlan(plan, observed, new Date(0))), "plan.json"), plan };
}

function checker(saved: ReturnType<typeof parseSavedPlan>) {
  return (plan: Parameters<typeof checkSavedPlan>[2], observed: ActualState) => checkSavedPlan(saved, "plan.json", plan, observed);
}

test("saved plan: applied when revision and datapath are unchanged; a dry-run afterwards finds nothing", async () => {
  const k = memoryKernel();
  const service = new ReconcileService(k.kernel, OPTS);
  await service.run(seedOnPort(80, "r1"), "manual");
  const { saved, plan } = await dryRunOut(k.kernel, seedOnPort(8080, "r2"));
  assert.equal(saved.revision, "r2");
  assert.equal(saved.plan.changes.length, plan.changes.length);
  assert.deepEqual(saved.plan.changes.map((c) => `${c.op} ${c.id}`).sort(), ["create app1/ingress/36895/6/8080/16", "delete app1/ingress/36895/6/80/16"]);
  const before = k.writes();
  const { report } = await service.run(seedOnPort(8080, "r2"), "manual", checker(saved));
  assert.equal(report.failed.length, 0);
  assert.equal(k.writes() - before, 2, "exactly the two planned changes were written");
  assert.equal((await dryRunOut(k.kernel, seedOnPort(8080, "r2"))).plan.changes.length, 0);
});

test("saved plan: refused with nothing written after the datapath changed behind it", async () => {
  const k = memoryKernel();
  const service = new ReconcileService(k.kernel, OPTS);
  await service.run(seedOnPort(80, "r1"), "manual");
  const { saved } = await dryRunOut(k.kernel, seedOnPort(8080, "r2"));
  // Someone edits a map by hand.
  k.target("ipcache").objects.set("10.99.0.1/32", { prefix: "10.99.0.1/32", identity: 2 });
  const before = k.writes();
  await assert.rejects(service.run(seedOnPort(8080, "r2"), "manual", checker(saved)), (err: unknown) => err instanceof StalePlanError && err.what === "observed" && /datapath changed/.test(err.message));
  assert.equal(k.writes(), before, "nothing written");
  assert.ok(k.target("ipcache").objects.has("10.99.0.1/32"));
});

test("saved plan: refused for another revision (a new commit since) and for other options", async () => {
  const k = memoryKernel();
  const service = new ReconcileService(k.kernel, OPTS);
  await service.run(seedOnPort(80, "r1"), "manual");
  const { saved } = await dryRunOut(k.kernel, seedOnPort(8080, "r2"));
  const before = k.writes();
  await assert.rejects(service.run(seedOnPort(8081, "r3"), "manual", checker(saved)), (err: unknown) => err instanceof StalePlanError && err.what === "revision" && /revision r3, the plan was made for r2/.test(err.message));
  const always = new ReconcileService(k.kernel, { ...OPTS, enforcement: "always" });
  await assert.rejects(always.run(seedOnPort(8080, "r2"), "manual", checker(saved)), (err: unknown) => err instanceof StalePlanError && err.what === "plan");
  assert.equal(k.writes(), before, "nothing written");
});

test("stateDigest: independent of insertion order, sensitive to any field", () => {
  const a = emptyState();
  const b = emptyState();
  a.ipcache.set("10.0.0.1/32", { prefix: "10.0.0.1/32", identity: 5 });
  a.ipcache.set("10.0.0.2/32", { prefix: "10.0.0.2/32", identity: 6 });
  b.ipcache.set("10.0.0.2/32", { identity: 6, prefix: "10.0.0.2/32" });
  b.ipcache.set("10.0.0.1/32", { prefix: "10.0.0.1/32", identity: 5 });
  assert.equal(stateDigest(a), stateDigest(b));
  b.ipcache.set("10.0.0.1/32", { prefix: "10.0.0.1/32", identity: 7 });
  assert.notEqual(stateDigest(a), stateDigest(b));
  assert.notEqual(stateDigest(emptyState()), stateDigest(a));
});

test("parseSavedPlan: a file that is not a saved plan says so", () => {
  assert.throws(() => parseSavedPlan("{", "p.json"), PlanFileError);
  assert.throws(() => parseSavedPlan(JSON.stringify({ revision: "x" }), "p.json"), /expected "format": "reconcile-plan\/v1"/);
});
