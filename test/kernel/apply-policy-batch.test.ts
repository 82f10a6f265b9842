// The policy target against the real kernel, at a scale where its batching matters: more endpoints
// than one batch of outer-map slots (swaps and removals are written SLOT_BATCH at a time), and a
// plan that swaps in complete new maps, the swapped endpoints' deletes planned in the same batch as
// their creates. After every step, a fresh observe must diff to nothing.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, rmSync } from "node:fs";
import { test } from "node:test";
import { reconcileOnce, Targets } from "../../reconciler/apply/executor.js";
import { KernelContext } from "../../reconciler/apply/kernel/context.js";
import { endpointsTarget, ipcacheTarget } from "../../reconciler/apply/kernel/entries.js";
import { MapTarget } from "../../reconciler/apply/kernel/maps.js";
import { PolicyTarget } from "../../reconciler/apply/kernel/policy.js";
import { buildDesiredState } from "../../reconciler/datapath/desired.js";
import type { DesiredState } from "../../reconciler/datapath/state.js";
import type { Model } from "../../reconciler/manifest/model.js";
import { diff } from "../../reconciler/plan/diff.js";
import { compile } from "../../reconciler/policy/compile.js";
import { generateModel } from "../bench/generate.js";

function mapsOnly(model: Model): DesiredState {
  const d = buildDesiredState(model, compile(model, { node: "n", enforcement: "default" }), { attachMode: "tcx" });
  return { ...d, devices: new Map(), addresses: new Map(), routes: new Map(), sysctls: new Map(), attachments: new Map() };
}

test("policy target: batched swaps and removals over 600 endpoints; a swapped map keeps its deletes in its batch", async (t) => {
  const pinRoot = `/sys/fs/bpf/apply-policy-batch-${randomBytes(3).toString("hex")}`;
  let ctx: KernelContext | undefined;
  t.after(() => {
    ctx?.close();
    rmSync(pinRoot, { recursive: true, force: true });
  });
  mkdirSync(pinRoot);
  ctx = new KernelContext({ pinRoot, datapathObject: readFileSync("bpf/build/endpoint.o") });
  const targets = new Targets([new MapTarget(ctx), endpointsTarget(ctx), ipcacheTarget(ctx), new PolicyTarget(ctx)]);
  const model = generateModel({ endpoints: 600, rules: 60, remoteEndpoints: 100, apps: 10, groups: 20 });

  const step = async (label: string, m: Model, expect: { create: number; delete: number }): Promise<void> => {
    const desired = mapsOnly(m);
    const report = await reconcileOnce(targets, desired);
    assert.deepEqual(report.failed.slice(0, 3), [], `${label}: failed objects`);
    assert.equal(report.plan.summary.create, expect.create, `${label}: planned creates`);
    assert.equal(report.plan.summary.delete, expect.delete, `${label}: planned deletes`);
    const left = diff(desired, await targets.observe(desired));
    assert.equal(left.changes.length, 0, `${label}: the kernel differs from the desired state afterwards: ${left.changes[0]?.id}`);
    // One slot per endpoint that has entries: no entries is no map (the datapath reads a missing map
    // as an empty one), so a slot never outlives its endpoint's last entry.
    const withEntries = [...desired.policy.values()].filter((m) => m.size > 0).length;
    assert.equal([...ctx!.map("policy")!.keys()].length, withEntries, `${label}: one outer slot per endpoint with entries`);
  };

  // Creates include the 8 pinned maps (events and event_budget among them).
  await step("cold", model, { create: 109_310, delete: 0 });
  // Ten rules move to another port and gain a deny: allows and denies added and allows removed for
  // the same endpoints, so the plan swaps their maps, their deletes included in the swap.
  for (const r of model.rules.slice(0, 10)) {
    const p = r.rule.ingress[0]!.ports![0]!;
    p.port = p.endPort = p.port + 30_000;
    r.rule.ingressDeny = [{ ...r.rule.ingress[0]!, ports: [{ port: 9, endPort: 9, protocol: "TCP" }] }];
  }
  await step("swap", model, { create: 36_000, delete: 18_000 });
  await step("remove 300 endpoints", { ...model, endpoints: model.endpoints.slice(300) }, { create: 0, delete: 95_100 });
  await step("add them back", model, { create: 95_100, delete: 0 });
  // Every rule removed: the endpoints stay, enforced by nothing; their slots go with their entries.
  const total = (await targets.observe(mapsOnly(model))).policy;
  let entries = 0;
  for (const m of total.values()) entries += m.size;
  await step("all rules removed", { ...model, rules: [] }, { create: 0, delete: entries });
  // No policy entries are left to delete: what goes is the endpoints' map entries and ipcache
  // entries (the world prefixes stay).
  const before = mapsOnly({ ...model, rules: [] });
  const after = mapsOnly({ ...model, rules: [], endpoints: [] });
  await step("endpoints removed too", { ...model, rules: [], endpoints: [] }, {
    create: 0,
    delete: before.endpoints.size - after.endpoints.size + before.ipcache.size - after.ipcache.size,
  });
});
