import assert from "node:assert/strict";
import { test } from "node:test";
import { batches, canPlanAgainst, reconcileOnce, StatusTable, Targets } from "../../reconciler/apply/executor.js";
import { MemoryTarget } from "../../reconciler/apply/target.js";
import { emptyDesired, PolicyEntrySet, type DesiredState, type DesiredPolicyEntry } from "../../reconciler/datapath/state.js";
import type { Change } from "../../reconciler/plan/diff.js";

function fakeKernel() {
  const ipcache = new MemoryTarget("ipcache");
  const policy = new MemoryTarget("policy");
  const attachments = new MemoryTarget("attachment");
  return { ipcache, policy, attachments, targets: new Targets([ipcache, policy, attachments]) };
}

function desired(): DesiredState {
  const d: DesiredState = emptyDesired("r1", "n1");
  d.ipcache.set("10.11.90.17/32", { prefix: "10.11.90.17/32", identity: 36895 });
  const e: DesiredPolicyEntry = { endpoint: "app1", direction: "ingress", identity: 36895, protocol: 6, port: 80, portPrefixLen: 16, decision: "allow", endPort: 80, rules: [] };
  d.policy.set("app1", PolicyEntrySet.fromEntries([e]));
  d.attachments.set("lxc-app1/egress", { device: "lxc-app1", hook: "egress", program: "to_endpoint", mode: "tcx" });
  return d;
}

test("apply converges, and a second run plans and writes nothing", async () => {
  const k = fakeKernel();
  const first = await reconcileOnce(k.targets, desired());
  assert.equal(first.plan.changes.length, 3);
  assert.equal(first.failed.length, 0);
  const writes = k.ipcache.writes + k.policy.writes + k.attachments.writes;
  assert.equal(writes, 3);

  const second = await reconcileOnce(k.targets, desired());
  assert.equal(second.plan.changes.length, 0);
  assert.equal(k.ipcache.writes + k.policy.writes + k.attachments.writes, writes);
});

test("drift behind reconcile's back is planned and corrected", async () => {
  const k = fakeKernel();
  await reconcileOnce(k.targets, desired());
  k.ipcache.objects.set("10.11.90.17/32", { prefix: "10.11.90.17/32", identity: 2 });
  k.ipcache.objects.set("10.99.0.1/32", { prefix: "10.99.0.1/32", identity: 5 });
  k.policy.objects.clear();
  const report = await reconcileOnce(k.targets, desired());
  assert.deepEqual(
    report.plan.changes.map((c) => `${c.op} ${c.resource} ${c.id}`),
    ["update ipcache 10.11.90.17/32", "create policy app1/ingress/36895/6/80/16", "delete ipcache 10.99.0.1/32"],
  );
  assert.deepEqual((k.ipcache.objects.get("10.11.90.17/32") as { identity: number }).identity, 36895);
  assert.equal(k.ipcache.objects.has("10.99.0.1/32"), false);
});

test("a failing object is reported with its error, the others are applied, and the next run retries it", async () => {
  const k = fakeKernel();
  k.attachments.failNext.set("lxc-app1/egress", "attach tcx egress lxc-app1: bpf(BPF_LINK_CREATE): ENODEV");
  const status = new StatusTable(() => 42);
  const first = await reconcileOnce(k.targets, desired());
  status.record(first);
  assert.deepEqual(first.failed, [
    { resource: "attachment", id: "lxc-app1/egress", error: "attach tcx egress lxc-app1: bpf(BPF_LINK_CREATE): ENODEV" },
  ]);
  assert.equal(k.policy.objects.size, 1);
  assert.deepEqual(status.errors(), [
    { resource: "attachment", id: "lxc-app1/egress", state: "error", error: "attach tcx egress lxc-app1: bpf(BPF_LINK_CREATE): ENODEV", at: 42 },
  ]);

  const retry = await reconcileOnce(k.targets, desired());
  status.record(retry);
  assert.deepEqual(retry.plan.changes.map((c) => c.id), ["lxc-app1/egress"]);
  assert.equal(retry.failed.length, 0);
  assert.deepEqual(status.errors(), []);
});

test("a target that throws fails its whole batch without stopping later kinds", async () => {
  const k = fakeKernel();
  k.policy.apply = async () => {
    throw new Error("open pinned map policy: bpf(BPF_OBJ_GET): ENOENT");
  };
  const report = await reconcileOnce(k.targets, desired());
  assert.deepEqual(report.failed.map((r) => [r.id, r.error]), [["app1/ingress/36895/6/80/16", "open pinned map policy: bpf(BPF_OBJ_GET): ENOENT"]]);
  assert.equal(k.attachments.objects.size, 1);
});

test("batches group consecutive changes of one kind, deletes apart from creates", () => {
  const c = (op: Change["op"], resource: Change["resource"], id: string) => ({ op, resource, id, reason: "" }) as Change;
  const groups = [...batches([c("create", "ipcache", "a"), c("update", "ipcache", "b"), c("create", "policy", "p"), c("delete", "policy", "q"), c("delete", "ipcache", "z")])];
  assert.deepEqual(groups.map((g) => g.map((x) => x.id)), [["a", "b"], ["p"], ["q"], ["z"]]);
});

test("with a known kernel state nothing is read back: only the difference to it is applied", async () => {
  const k = fakeKernel();
  await reconcileOnce(k.targets, desired());
  let reads = 0;
  for (const t of [k.ipcache, k.policy, k.attachments] as MemoryTarget[]) {
    const observe = t.observe.bind(t);
    t.observe = async () => {
      reads++;
      return observe();
    };
  }
  const next = desired();
  next.ipcache.set("10.11.90.18/32", { prefix: "10.11.90.18/32", identity: 300 });
  const report = await reconcileOnce(k.targets, next, desired());
  assert.equal(reads, 0);
  assert.deepEqual(report.plan.changes.map((c) => `${c.op} ${c.resource} ${c.id}`), ["create ipcache 10.11.90.18/32"]);
  assert.equal(k.ipcache.objects.size, 2);
});

test("a replaced map is filled from the desired state in the same run: the rest is planned after the maps", async () => {
  const k = fakeKernel();
  const maps = new MemoryTarget("map");
  const targets = new Targets([maps, k.ipcache, k.policy, k.attachments]);
  const want = desired();
  want.maps.set("ipcache", { name: "ipcache", type: "lpm_trie", keySize: 24, valueSize: 12, maxEntries: 512000, flags: 1 });
  await reconcileOnce(targets, want);
  assert.equal(k.ipcache.objects.size, 1);

  // An older release left the map with another layout; replacing it leaves the new map empty.
  maps.objects.set("ipcache", { name: "ipcache", type: "lpm_trie", keySize: 24, valueSize: 12, maxEntries: 1024, flags: 1 });
  const apply = maps.apply.bind(maps);
  maps.apply = async (changes) => {
    k.ipcache.objects.clear();
    return apply(changes);
  };
  const report = await reconcileOnce(targets, want);
  assert.deepEqual(report.plan.changes.map((c) => `${c.op} ${c.resource} ${c.id}`), ["update map ipcache", "create ipcache 10.11.90.17/32"]);
  assert.deepEqual(report.plan.summary, { create: 1, update: 1, delete: 0 });
  assert.equal(report.failed.length, 0);
  assert.equal((k.ipcache.objects.get("10.11.90.17/32") as { identity: number }).identity, 36895);
});

test("a known state is not planned against when an endpoint with a policy leaves or is renumbered: the kernel is read", async () => {
  const withEndpoints = (names: Record<string, number>): DesiredState => {
    const d = desired();
    d.policy.clear();
    for (const [name, endpointId] of Object.entries(names)) {
      const address = `10.11.0.${endpointId}`;
      d.endpoints.set(address, { address, endpointId, identity: 300 + endpointId, enforceIngress: true, enforceEgress: false, auditIngress: false, auditEgress: false, verdictAllow: false, verdictDeny: false, hostPolicy: false, eventRate: 1000, endpoint: name });
      const e: DesiredPolicyEntry = { endpoint: name, direction: "ingress", identity: 36895, protocol: 6, port: 80, portPrefixLen: 16, decision: "allow", endPort: 80, rules: [] };
      d.policy.set(name, PolicyEntrySet.fromEntries([e]));
    }
    return d;
  };
  const known = withEndpoints({ app1: 1, app2: 2 });
  assert.equal(canPlanAgainst(known, withEndpoints({ app1: 1, app2: 2 })), true, "same endpoints");
  assert.equal(canPlanAgainst(known, withEndpoints({ app1: 1, app2: 2, app3: 3 })), true, "an endpoint added");
  assert.equal(canPlanAgainst(known, withEndpoints({ app1: 1 })), false, "app2 left: its slot is found by number only in the kernel");
  assert.equal(canPlanAgainst(known, withEndpoints({ app1: 1, app2: 7 })), false, "app2 renumbered");

  const k = fakeKernel();
  await reconcileOnce(k.targets, known);
  let reads = 0;
  const observe = k.policy.observe.bind(k.policy);
  k.policy.observe = async () => {
    reads++;
    return observe();
  };
  await reconcileOnce(k.targets, withEndpoints({ app1: 1, app2: 2, app3: 3 }), known);
  assert.equal(reads, 0, "adding an endpoint plans against the known state");
  await reconcileOnce(k.targets, withEndpoints({ app1: 1, app3: 3 }), withEndpoints({ app1: 1, app2: 2, app3: 3 }));
  assert.equal(reads, 1, "removing one reads the kernel");
});

test("unconfirmed: a change the next observation does not show is reported; one that stuck is not", async () => {
  const { unconfirmed } = await import("../../reconciler/apply/executor.js");
  const k = fakeKernel();
  const report = await reconcileOnce(k.targets, desired());
  assert.deepEqual(await unconfirmed(k.targets, desired(), report.plan), []);

  // A target whose writes land somewhere its reads do not look (a socket on a namespace that is no
  // longer the one the name binds): apply reports success, observation shows nothing.
  class Ghost extends MemoryTarget<"ipcache"> {
    override async observe() {
      return new Map();
    }
  }
  const ghost = new Ghost("ipcache");
  const targets = new Targets([ghost, k.policy, k.attachments]);
  const again = await reconcileOnce(targets, desired());
  assert.deepEqual(again.failed, []);
  assert.deepEqual(again.plan.changes.map((c) => `${c.op} ${c.resource} ${c.id}`), ["create ipcache 10.11.90.17/32"]);
  const left = await unconfirmed(targets, desired(), again.plan);
  assert.deepEqual(left.map((c) => `${c.op} ${c.resource} ${c.id}`), ["create ipcache 10.11.90.17/32"]);
});

test("a cold policy map is applied as one fill: a failing entry in it is named, the rest count as applied, progress counts entries", async () => {
  const k = fakeKernel();
  const want = desired();
  const entries = [80, 81, 82].map((port): DesiredPolicyEntry => ({ endpoint: "app1", direction: "ingress", identity: 36895, protocol: 6, port, portPrefixLen: 16, decision: "allow", endPort: port, rules: [] }));
  want.policy.set("app1", PolicyEntrySet.fromEntries(entries));
  const seen: number[] = [];
  const apply = k.policy.apply.bind(k.policy);
  k.policy.apply = async (changes, d, progress) => {
    seen.push(changes.length);
    return apply(changes, d, progress);
  };
  k.policy.failNext.set("app1/ingress/36895/6/81/16", "bpf(BPF_MAP_UPDATE_BATCH): E2BIG");
  const batchesSeen: Array<[string, number, number]> = [];
  const report = await reconcileOnce(k.targets, want, undefined, (e) => {
    if (e.type === "batch") batchesSeen.push([e.resource, e.changes, e.failed]);
  });
  assert.deepEqual(seen, [1], "the policy target is handed one change for the endpoint's three entries");
  assert.deepEqual(report.failed, [{ resource: "policy", id: "app1/ingress/36895/6/81/16", error: "bpf(BPF_MAP_UPDATE_BATCH): E2BIG" }]);
  assert.equal(report.applied, report.plan.size - 1);
  assert.deepEqual(batchesSeen, [["ipcache", 1, 0], ["policy", 3, 1], ["attachment", 1, 0]]);
  assert.deepEqual([...k.policy.objects.keys()].sort(), ["app1/ingress/36895/6/80/16", "app1/ingress/36895/6/82/16"]);
});
