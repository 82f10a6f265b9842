import assert from "node:assert/strict";
import { test } from "node:test";
import { emptyDesired, emptyState, policyEntryId, PolicyEntrySet, type DesiredPolicyEntry, type DesiredState } from "../../reconciler/datapath/state.js";
import { diff } from "../../reconciler/plan/diff.js";
import { planDocument, portBlockEnd, renderPlanText } from "../../reconciler/plan/render.js";

function desired(): DesiredState {
  return emptyDesired("r1", "n1");
}

const seedEntry: DesiredPolicyEntry = {
  endpoint: "app1",
  direction: "ingress",
  identity: 36895,
  protocol: 6,
  port: 80,
  portPrefixLen: 16,
  decision: "allow",
  endPort: 80,
  rules: [{ file: "l3-rule.json", line: 2, name: "l3-rule" }],
};

test("an empty datapath gets every desired resource created, in dependency order", () => {
  const d = desired();
  d.attachments.set("lxc1/egress", { device: "lxc1", hook: "egress", program: "to_endpoint", mode: "tcx" });
  d.policy.set("app1", PolicyEntrySet.fromEntries([seedEntry]));
  d.ipcache.set("10.11.90.17/32", { prefix: "10.11.90.17/32", identity: 36895 });
  d.devices.set("lxc1", { name: "lxc1", kind: "veth", owned: true, peer: { name: "eth0", netns: "ns1" } });
  d.maps.set("ipcache", { name: "ipcache", type: "lpm_trie", keySize: 24, valueSize: 12, maxEntries: 10, flags: 1 });

  const plan = diff(d, emptyState());
  assert.deepEqual(
    plan.changes.map((c) => `${c.op} ${c.resource} ${c.id}`),
    [
      "create device lxc1",
      "create map ipcache",
      "create ipcache 10.11.90.17/32",
      "create policy app1/ingress/36895/6/80/16",
      "create attachment lxc1/egress",
    ],
  );
  assert.deepEqual(plan.summary, { create: 5, update: 0, delete: 0 });
});

test("equal states plan nothing; changed kernel fields are updates; extra owned objects are deleted last in reverse order", () => {
  const d = desired();
  d.ipcache.set("10.0.0.1/32", { prefix: "10.0.0.1/32", identity: 300 });
  d.ipcache.set("10.0.0.2/32", { prefix: "10.0.0.2/32", identity: 301 });
  const same = emptyState();
  same.ipcache.set("10.0.0.1/32", { prefix: "10.0.0.1/32", identity: 300 });
  same.ipcache.set("10.0.0.2/32", { prefix: "10.0.0.2/32", identity: 301 });
  assert.equal(diff(d, same).changes.length, 0);

  const drifted = emptyState();
  drifted.ipcache.set("10.0.0.1/32", { prefix: "10.0.0.1/32", identity: 999 });
  drifted.ipcache.set("10.0.0.2/32", { prefix: "10.0.0.2/32", identity: 301 });
  drifted.ipcache.set("10.0.0.3/32", { prefix: "10.0.0.3/32", identity: 5 });
  drifted.devices.set("old0", { name: "old0", kind: "dummy", owned: true });
  drifted.policy.set("app1", PolicyEntrySet.fromEntries([seedEntry]));
  const plan = diff(d, drifted);
  assert.deepEqual(
    plan.changes.map((c) => [c.op, c.resource, c.id, c.reason]),
    [
      ["update", "ipcache", "10.0.0.1/32", "identity 999 → 300"],
      ["delete", "policy", "app1/ingress/36895/6/80/16", "no longer desired"],
      ["delete", "ipcache", "10.0.0.3/32", "no longer desired"],
      ["delete", "device", "old0", "no longer desired"],
    ],
  );
});

test("a remote ipcache entry that lost its tunnel endpoint is an update", () => {
  const d = desired();
  d.ipcache.set("10.1.0.5/32", { prefix: "10.1.0.5/32", identity: 300 });
  const a = emptyState();
  a.ipcache.set("10.1.0.5/32", { prefix: "10.1.0.5/32", identity: 300, tunnelEndpoint: "192.0.2.2" });
  const plan = diff(d, a);
  assert.equal(plan.changes.length, 1);
  assert.equal(plan.changes[0]!.reason, "tunnelEndpoint 192.0.2.2 → undefined");
});

test("adopted devices are never created or deleted, and optional fields left open do not cause updates", () => {
  const d = desired();
  d.devices.set("ens9", { name: "ens9", kind: "adopted", owned: false });
  d.devices.set("lxc1", { name: "lxc1", kind: "veth", owned: true });
  d.attachments.set("lxc1/ingress", { device: "lxc1", hook: "ingress", program: "from_endpoint", mode: "tcx" });
  const a = emptyState();
  a.devices.set("lxc1", { name: "lxc1", kind: "veth", owned: true, mtu: 1500, mac: "02:00:00:00:00:01" });
  a.attachments.set("lxc1/ingress", { device: "lxc1", hook: "ingress", program: "from_endpoint", mode: "tcx", tag: "abcd" });
  assert.deepEqual(diff(d, a).changes, []);
});

test("the JSON document carries policy provenance in DESIGN §6 shape", () => {
  const d = desired();
  const id = policyEntryId(seedEntry);
  d.policy.set("app1", PolicyEntrySet.fromEntries([seedEntry]));
  const doc = planDocument(diff(d, emptyState()), { notes: [] });
  assert.deepEqual(doc.summary, { create: 1, update: 0, delete: 0 });
  assert.deepEqual(doc.changes[0], {
    op: "create",
    resource: "policy",
    id,
    before: null,
    after: {
      endpoint: "app1",
      direction: "ingress",
      identity: 36895,
      protocol: 6,
      port: 80,
      endPort: 80,
      decision: "allow",
      audit: false,
      rule: { file: "l3-rule.json", line: 2, name: "l3-rule" },
      rules: [{ file: "l3-rule.json", line: 2, name: "l3-rule" }],
      protocolName: "TCP",
    },
    reason: "missing",
  });
});

test("text rendering: signs, provenance, summary line, no colour unless asked", () => {
  const d = desired();
  d.policy.set("app1", PolicyEntrySet.fromEntries([seedEntry]));
  const a = emptyState();
  a.ipcache.set("10.9.9.9/32", { prefix: "10.9.9.9/32", identity: 7 });
  const plan = diff(d, a);
  const text = renderPlanText(plan, { notes: ["kernel not read"] }, { colour: false });
  assert.match(text, /^Note: kernel not read$/m);
  assert.match(text, /^ {2}\+ policy app1 ingress allow TCP\/80 from identity 36895 ← l3-rule \(l3-rule\.json:2\)$/m);
  assert.match(text, /^ {2}- ipcache 10\.9\.9\.9\/32 \[no longer desired\]$/m);
  assert.match(text, /^Plan: 1 to create, 0 to update, 1 to delete\.$/m);
  assert.doesNotMatch(text, /\x1b\[/);
  const coloured = renderPlanText(plan, { notes: [] }, { colour: true });
  assert.match(coloured, /^ {2}\x1b\[32m\+ policy app1 .*\x1b\[0m$/m);
  assert.match(coloured, /^ {2}\x1b\[31m- ipcache 10\.9\.9\.9\/32 \[no longer desired\]\x1b\[0m$/m);
  assert.match(renderPlanText(diff(d, { ...emptyState(), policy: new Map(d.policy) }), { notes: [] }, { colour: false }), /^No changes\./m);
});

test("port blocks: prefix length → last port", () => {
  assert.equal(portBlockEnd(80, 16), 80);
  assert.equal(portBlockEnd(0, 0), 65535);
  assert.equal(portBlockEnd(8080, 13), 8087);
});

test("a map of another layout is replaced: its entries are planned into the new map and every program moves onto it", () => {
  const d = desired();
  d.maps.set("endpoints", { name: "endpoints", type: "hash", keySize: 20, valueSize: 16, maxEntries: 65536, flags: 1 });
  d.endpoints.set("10.0.0.1", { address: "10.0.0.1", endpointId: 7, identity: 300, enforceIngress: true, enforceEgress: false, auditIngress: false, auditEgress: false, verdictAllow: false, verdictDeny: false, hostPolicy: false, eventRate: 1000, endpoint: "a" });
  d.ipcache.set("10.0.0.1/32", { prefix: "10.0.0.1/32", identity: 300 });
  d.attachments.set("lxc1/egress", { device: "lxc1", hook: "egress", program: "to_endpoint", mode: "tcx", tag: "t1" });
  const a = emptyState();
  a.maps.set("endpoints", { name: "endpoints", type: "hash", keySize: 20, valueSize: 16, maxEntries: 1024, flags: 1 });
  a.endpoints = new Map(d.endpoints);
  a.ipcache = new Map(d.ipcache);
  a.attachments = new Map(d.attachments);
  assert.deepEqual(
    diff(d, a).changes.map((c) => [c.op, c.resource, c.id, c.reason]),
    [
      ["update", "map", "endpoints", "maxEntries 1024 → 65536"],
      ["create", "endpoint", "10.0.0.1", "missing"],
      ["update", "attachment", "lxc1/egress", "programs move onto the new endpoints map"],
    ],
  );
});

test("a device the kernel cannot change in place is planned as a replacement (-/+, replace: true); an MTU change is not", () => {
  const vxlan = { vni: 7, port: 8472, local: "192.0.2.11", learning: false };
  const d = desired();
  d.devices.set("rc-vxlan", { name: "rc-vxlan", kind: "vxlan", vxlan: { ...vxlan, vni: 9 }, mtu: 1450, owned: true });
  d.devices.set("lxc1", { name: "lxc1", kind: "veth", mtu: 1400, owned: true, peer: { name: "eth0", netns: "ns1" } });
  d.addresses.set("rc-vxlan/10.0.0.1/32", { device: "rc-vxlan", address: "10.0.0.1/32" });
  const a = emptyState();
  a.devices.set("rc-vxlan", { name: "rc-vxlan", kind: "vxlan", vxlan, mtu: 1450, owned: true });
  a.devices.set("lxc1", { name: "lxc1", kind: "veth", mtu: 1500, owned: true, peer: { name: "eth0", netns: "ns1" } });
  a.addresses.set("rc-vxlan/10.0.0.1/32", { device: "rc-vxlan", address: "10.0.0.1/32" });
  const plan = diff(d, a);
  const byId = new Map(plan.changes.map((c) => [`${c.resource} ${c.id}`, c]));
  const vx = byId.get("device rc-vxlan")!;
  assert.equal(vx.op, "update");
  assert.equal("replace" in vx && vx.replace, true);
  const veth = byId.get("device lxc1")!;
  assert.equal(veth.op, "update");
  assert.equal("replace" in veth ? veth.replace : undefined, undefined);
  // What sits on the replaced device is written again.
  assert.equal(byId.get("address rc-vxlan/10.0.0.1/32")?.reason, "device rc-vxlan is replaced");
  const text = renderPlanText(plan, { notes: [] }, { colour: false });
  assert.match(text, /^ {2}-\/\+ device rc-vxlan \[vxlan /m);
  assert.match(text, /^ {2}~ device lxc1 \[mtu 1500 → 1400\]/m);
  const doc = planDocument(plan, { notes: [] });
  assert.deepEqual(doc.changes.filter((c) => c.replace).map((c) => c.id), ["rc-vxlan"]);
});
