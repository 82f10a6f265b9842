// The policy target against the real kernel, at a scale where its batching matters: more endpoints
// than one batch of outer-map slots (swaps and removals are written SLOT_BATCH at a time), and a
// plan that swaps in complete new maps, the swapped endpoints' deletes planned in the same batch as
// their creates. After every step, a fresh observe must diff to nothing.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, rmSync } from "node:fs";
import { test, type TestContext } from "node:test";
import { reconcileOnce, Targets } from "../../reconciler/apply/executor.js";
import { KernelContext } from "../../reconciler/apply/kernel/context.js";
import { kernelTargets } from "../../reconciler/apply/kernel/index.js";
import { endpointsTarget, ipcacheTarget } from "../../reconciler/apply/kernel/entries.js";
import { MapTarget } from "../../reconciler/apply/kernel/maps.js";
import { PolicyTarget } from "../../reconciler/apply/kernel/policy.js";
import { decodePolicyValue, encodePolicyValue, POLICY_VALUE } from "../../reconciler/datapath/layouts.js";
import { BpfMap } from "../../reconciler/ebpf-loader/index.js";
import { POLICY_KEY, policyEntryKey, writePackedPolicyKey } from "../../reconciler/policy/key.js";
import { buildDesiredState } from "../../reconciler/datapath/desired.js";
import type { DesiredState } from "../../reconciler/datapath/state.js";
import type { Model } from "../../reconciler/manifest/model.js";
import { diff } from "../../reconciler/plan/diff.js";
import { compile } from "../../reconciler/policy/compile.js";
import { generateModel } from "../bench/generate.js";

/** A pin root of its own and the map targets over it; removed after the test. */
function mapTargets(t: TestContext, name: string): { ctx: KernelContext; targets: Targets } {
  const pinRoot = `/sys/fs/bpf/${name}-${randomBytes(3).toString("hex")}`;
  mkdirSync(pinRoot);
  let ctx: KernelContext | undefined;
  t.after(() => {
    ctx?.close();
    rmSync(pinRoot, { recursive: true, force: true });
  });
  ctx = new KernelContext({ pinRoot, datapathObject: readFileSync("bpf/build/endpoint.o") });
  return { ctx, targets: new Targets([new MapTarget(ctx), endpointsTarget(ctx), ipcacheTarget(ctx), new PolicyTarget(ctx)]) };
}

function mapsOnly(model: Model): DesiredState {
  const d = buildDesiredState(model, compile(model, { node: "n", enforcement: "default" }), { attachMode: "tcx" });
  return { ...d, devices: new Map(), addresses: new Map(), routes: new Map(), sysctls: new Map(), attachments: new Map() };
}

test("policy target: batched swaps and removals over 600 endpoints; a swapped map keeps its deletes in its batch", async (t) => {
  const { ctx, targets } = mapTargets(t, "apply-policy-batch");
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
    assert.equal([...ctx.map("policy")!.keys()].length, withEntries, `${label}: one outer slot per endpoint with entries`);
  };

  // Creates include the 9 pinned maps (events, event_budget and policy_rev among them).
  await step("cold", model, { create: 109_311, delete: 0 });
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

test("policy target: a resync that reads the bytes it verified last reuses the desired sets; a trie changed behind its back is decoded and repaired", async (t) => {
  const { ctx, targets } = mapTargets(t, "apply-policy-verified");
  const desired = mapsOnly(generateModel({ endpoints: 20, rules: 10, remoteEndpoints: 10, apps: 5, groups: 5 }));
  assert.deepEqual((await reconcileOnce(targets, desired)).failed, []);
  const withEntries = [...desired.policy].filter(([, set]) => set.size > 1);
  assert.ok(withEntries.length >= 2, "the model gives endpoints entries");
  for (let i = 0; i < 2; i++) {
    const seen = (await targets.observe(desired)).policy;
    for (const [name, set] of withEntries) assert.equal(seen.get(name), set, `observe ${i + 1}: ${name} is found as desired`);
  }

  // Behind the reconciler's back, in the same trie (its id unchanged): one entry deleted from the
  // first endpoint, one allow turned into a deny in the second.
  const [[first], [second]] = withEntries as [[string, unknown], [string, unknown]];
  const inner = (name: string): BpfMap => {
    const outer = ctx.map("policy")!;
    const epId = [...desired.endpoints.values()].find((e) => e.endpoint === name)!.endpointId;
    const id = outer.innerId(u32(epId))!;
    return BpfMap.fromId(id);
  };
  const a = inner(first);
  const read = a.lookupBatch();
  a.delete(read.keys.subarray(0, POLICY_KEY.size));
  a.close();
  const b = inner(second);
  const readB = b.lookupBatch();
  const value = Buffer.alloc(POLICY_VALUE.size);
  const { decision, prefixlen } = decodePolicyValue(readB.values, 0);
  encodePolicyValue(decision === "allow" ? "deny" : "allow", prefixlen, value, 0);
  b.update(readB.keys.subarray(0, POLICY_KEY.size), value);
  b.close();

  const drifted = diff(desired, await targets.observe(desired));
  assert.deepEqual(drifted.changes.map((c) => `${c.op} ${c.id.split("/")[0]}`).sort(), [`create ${first}`, `update ${second}`].sort());
  assert.deepEqual((await reconcileOnce(targets, desired)).failed, []);
  const after = (await targets.observe(desired)).policy;
  for (const [name, set] of withEntries) assert.equal(after.get(name), set, `after the repair: ${name} is found as desired`);
});

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
}

test("policy target: an endpoint planned with no map, whose slot holds one when the plan is applied, gets a whole new map", async (t) => {
  const { ctx, targets } = mapTargets(t, "apply-policy-fill");
  const desired = mapsOnly(generateModel({ endpoints: 20, rules: 10, remoteEndpoints: 10, apps: 5, groups: 5 }));
  assert.deepEqual((await reconcileOnce(targets, desired)).failed, []);
  const [name, set] = [...desired.policy].find(([, s]) => s.size > 1)!;
  const epId = [...desired.endpoints.values()].find((e) => e.endpoint === name)!.endpointId;
  const outer = ctx.map("policy")!;
  const before = outer.innerId(u32(epId))!;

  // Its map gains an entry no rule asks for (someone else's write), and the run plans against a
  // known state in which the endpoint has no map yet: its entries come as one fill of a new map.
  const stray = Buffer.alloc(POLICY_KEY.size);
  const prefixlen = writePackedPolicyKey(policyEntryKey({ direction: "ingress", identity: 987_654, protocol: 6, port: 7, portPrefixLen: 16 }), stray, 0);
  const allow = Buffer.alloc(POLICY_VALUE.size);
  encodePolicyValue("allow", prefixlen, allow, 0);
  const inner = BpfMap.fromId(before);
  inner.update(stray, allow);
  inner.close();
  const known = await targets.observe(desired);
  known.policy.delete(name);
  const report = await reconcileOnce(targets, desired, known);
  assert.deepEqual(report.failed, []);
  assert.equal(report.plan.summary.create, set.size, "the endpoint's entries are planned as creates");

  // Written in place, the stray entry would have stayed; the new map holds exactly the desired set.
  assert.notEqual(outer.innerId(u32(epId)), before, "the slot points at a new map");
  assert.equal(diff(desired, await targets.observe(desired)).changes.length, 0, "the kernel holds exactly the desired state");
});

test("kernel targets report their steps to the executor's progress (a long batch lets the event loop run)", async (t) => {
  const pinRoot = `/sys/fs/bpf/apply-steps-${randomBytes(3).toString("hex")}`;
  mkdirSync(pinRoot);
  const ctx = new KernelContext({ pinRoot, datapathObject: readFileSync("bpf/build/endpoint.o") });
  t.after(() => {
    ctx.close();
    rmSync(pinRoot, { recursive: true, force: true });
  });
  const desired = mapsOnly(generateModel({ endpoints: 5, rules: 2, remoteEndpoints: 5, apps: 2, groups: 2 }));
  desired.namespaces = new Map();
  const steps: Array<[number, number]> = [];
  const report = await reconcileOnce(kernelTargets(ctx), desired, undefined, (e) => {
    if (e.type === "step" && e.resource === "policy") steps.push([e.done, e.of]);
  });
  assert.deepEqual(report.failed, []);
  // One batch (fewer entries than POLICY_BATCH_CHANGES); the policy target reports before each
  // endpoint after the first how many entries it has written.
  const sizes = [...desired.policy.values()].map((set) => set.size).filter((n) => n > 0);
  const total = sizes.reduce((a, b) => a + b, 0);
  assert.ok(sizes.length >= 3, "the model gives several endpoints entries");
  const expected = sizes.slice(0, -1).map((_, i) => [sizes.slice(0, i + 1).reduce((a, b) => a + b, 0), total]);
  assert.deepEqual(steps, expected);
});
