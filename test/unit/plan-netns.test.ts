// Namespaces as objects of the plan, and the veth pair whose peer is not where the desired state
// puts it (its namespace was deleted and made again).
import assert from "node:assert/strict";
import { test } from "node:test";
import { emptyDesired, emptyState, type DesiredState, type DeviceSpec } from "../../reconciler/datapath/state.js";
import { diff } from "../../reconciler/plan/diff.js";
import { planDocument, renderPlanText } from "../../reconciler/plan/render.js";

const host: DeviceSpec = { name: "lxc1", kind: "veth", peer: { name: "eth0", netns: "ns1" }, owned: true, up: true, endpoint: "app1" };
const inner: DeviceSpec = { name: "eth0", netns: "ns1", kind: "veth", peer: { name: "lxc1" }, owned: true, up: true, endpoint: "app1" };

function desired(): DesiredState {
  const d = emptyDesired("r1", "n1");
  d.namespaces.set("ns1", { name: "ns1", owned: true });
  d.devices.set("lxc1", host);
  d.devices.set("ns1/eth0", inner);
  d.addresses.set("lxc1/169.254.1.1/32", { device: "lxc1", address: "169.254.1.1/32" });
  d.attachments.set("lxc1/egress", { device: "lxc1", hook: "egress", program: "to_endpoint", mode: "tcx" });
  return d;
}

function observedAsDesired(): ReturnType<typeof emptyState> {
  const a = emptyState();
  const d = desired();
  for (const k of ["namespaces", "devices", "addresses", "attachments"] as const) (a[k] as Map<string, unknown>) = new Map(d[k] as Map<string, unknown>);
  return a;
}

test("a namespace is created before the devices that go into it, shown as + netns in text and JSON", () => {
  const plan = diff(desired(), emptyState());
  assert.deepEqual(plan.changes.slice(0, 3).map((c) => `${c.op} ${c.resource} ${c.id}`), ["create netns ns1", "create device lxc1", "create device ns1/eth0"]);
  assert.match(renderPlanText(plan, { notes: [] }, { colour: false }), /^  \+ netns ns1$/m);
  const doc = planDocument(plan, { notes: [] });
  assert.deepEqual(doc.changes[0], { op: "create", resource: "netns", id: "ns1", before: null, after: { name: "ns1", owned: true }, reason: "missing" });
});

test("an owned namespace no longer desired is deleted after its devices; a foreign one the endpoints use is left alone", () => {
  const actual = observedAsDesired();
  const plan = diff(emptyDesired("r2", "n1"), actual);
  const ops = plan.changes.map((c) => `${c.op} ${c.resource} ${c.id}`);
  assert.equal(ops.at(-1), "delete netns ns1");
  assert.ok(ops.indexOf("delete device ns1/eth0") < ops.indexOf("delete netns ns1"));
  assert.match(renderPlanText(plan, { notes: [] }, { colour: false }), /^  - netns ns1 \[no longer desired\]$/m);

  // The host veth deleted by hand took its peer along: the namespace alone is left, and goes.
  const leak = emptyState();
  leak.namespaces.set("ns1", { name: "ns1", owned: true });
  assert.deepEqual(diff(emptyDesired("r2", "n1"), leak).changes.map((c) => `${c.op} ${c.resource} ${c.id}`), ["delete netns ns1"]);

  // A namespace that existed before (observed unmarked) satisfies the desired one: nothing to do.
  const foreign = observedAsDesired();
  foreign.namespaces.set("ns1", { name: "ns1", owned: false });
  assert.deepEqual(diff(desired(), foreign).changes, []);
});

test("a veth whose peer is not seen paired is replaced, and what sits on it is written again", () => {
  const actual = observedAsDesired();
  // The namespace was made again: the old peer lives in the old namespace, the new one is empty.
  const { peer: _gone, ...unpaired } = host;
  actual.devices.set("lxc1", unpaired);
  actual.devices.delete("ns1/eth0");
  const plan = diff(desired(), actual);
  assert.deepEqual(
    plan.changes.map((c) => `${c.op} ${c.resource} ${c.id} [${c.reason}]`),
    [
      `update device lxc1 [peer undefined → {"name":"eth0","netns":"ns1"}]`,
      "create device ns1/eth0 [missing]",
      "update address lxc1/169.254.1.1/32 [device lxc1 is replaced]",
      // A tcx link of the old device attaches nothing once it is gone: attached anew.
      "create attachment lxc1/egress [device lxc1 is replaced]",
    ],
  );
});
