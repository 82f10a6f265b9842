// Model + compiled policy → the devices, addresses, routes, attachments and map entries a node needs.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { buildDesiredState, endpointIds } from "../../reconciler/datapath/desired.js";
import { GATEWAY_V4 } from "../../reconciler/policy/host.js";
import type { EndpointManifest, Model } from "../../reconciler/manifest/model.js";
import { compile } from "../../reconciler/policy/compile.js";
import { policyEntryId } from "../../reconciler/datapath/state.js";
import { loadSnapshot } from "../../reconciler/manifest/load.js";

function seed(): Model {
  const files = ["endpoints.yaml", "identities.yaml", "l3-rule.json"].map((path) => ({ path, content: readFileSync(`examples/seed/${path}`, "utf8") }));
  const { model, problems } = loadSnapshot({ revision: "r1", files });
  assert.ok(model, problems.map((p) => p.message).join("; "));
  return model;
}

test("seed: veth pairs into their namespaces, gateway, routes, attachments, endpoint and policy entries", () => {
  const model = seed();
  const d = buildDesiredState(model, compile(model, { node: "n1", enforcement: "default" }), { attachMode: "tcx", programTags: new Map([["to_endpoint", "aa"]]) });

  assert.deepEqual(d.devices.get("lxc-app1"), { name: "lxc-app1", kind: "veth", peer: { name: "eth0", netns: "rc-app1" }, owned: true, up: true, endpoint: "app1" });
  assert.deepEqual(d.devices.get("rc-app1/eth0"), { name: "eth0", netns: "rc-app1", kind: "veth", peer: { name: "lxc-app1" }, mac: "6e:b0:7d:4e:6b:e5", owned: true, up: true, endpoint: "app1" });
  assert.ok(d.addresses.has("rc-app1/eth0/10.11.255.104/32"));
  assert.ok(d.addresses.has(`lxc-app1/${GATEWAY_V4}/32`));
  assert.deepEqual(d.routes.get("10.11.255.104/32"), { destination: "10.11.255.104/32", device: "lxc-app1", scope: "link" });
  assert.deepEqual(d.routes.get("rc-app1/default"), { netns: "rc-app1", destination: "default", device: "eth0", gateway: GATEWAY_V4 });
  assert.equal(d.sysctls.get("net/ipv4/ip_forward")?.value, "1");

  // Ingress policy of app1 runs where traffic leaves the host towards it: the host veth's egress.
  assert.deepEqual(d.attachments.get("lxc-app1/egress"), { device: "lxc-app1", hook: "egress", program: "to_endpoint", mode: "tcx", tag: "aa" });
  assert.deepEqual(d.attachments.get("lxc-app1/ingress"), { device: "lxc-app1", hook: "ingress", program: "from_endpoint", mode: "tcx" });

  const app1 = d.endpoints.get("10.11.255.104")!;
  assert.equal(app1.enforceIngress, true);
  assert.equal(app1.enforceEgress, false);
  assert.equal(d.endpoints.get("10.11.90.17")!.identity, 36895);
  assert.deepEqual(d.policy.get("app1")!.toEntries("app1").map(policyEntryId), ["app1/ingress/36895/6/80/16"]);
  assert.deepEqual([...d.policy.keys()], ["app1", "app2", "app3"]);
  const entry = d.policy.get("app1")!.entry(0, "app1");
  assert.deepEqual([entry.endPort, entry.rules], [80, [{ file: "l3-rule.json", line: 2, name: "l3-rule" }]]);
  assert.equal(d.ipcache.get("10.11.90.17/32")!.identity, 36895);
  assert.deepEqual([...d.maps.keys()], ["ipcache", "endpoints", "policy", "policy_stats", "conntrack", "drops", "events", "event_budget", "policy_rev"]);
});

test("macvlan endpoints attach inside their namespace with the hooks reversed; adopted interfaces are not owned", () => {
  const model = seed();
  const { mac: _unused, ...base } = model.endpoints[0]!;
  const mac: EndpointManifest = { ...base, name: "mv1", ipv4: "10.11.7.7", interfaceName: "mv1", create: { kind: "macvlan", netns: "mvns", ifname: "eth0", parent: "ens5" } };
  const adopted: EndpointManifest = { ...base, name: "ad1", ipv4: "10.11.8.8", interfaceName: "tap9" };
  delete (adopted as { create?: unknown }).create;
  const m2: Model = { ...model, endpoints: [...model.endpoints, mac, adopted] };
  const d = buildDesiredState(m2, compile(m2, { node: "n1", enforcement: "default" }), { attachMode: "tc" });
  assert.deepEqual(d.devices.get("mvns/eth0"), { name: "eth0", netns: "mvns", kind: "macvlan", parent: "ens5", owned: true, up: true, endpoint: "mv1" });
  assert.equal(d.attachments.get("mvns/eth0/ingress")?.program, "to_endpoint");
  assert.equal(d.attachments.get("mvns/eth0/egress")?.program, "from_endpoint");
  assert.equal(d.attachments.get("mvns/eth0/ingress")?.mode, "tc");
  assert.deepEqual(d.devices.get("tap9"), { name: "tap9", kind: "adopted", owned: false, endpoint: "ad1" });
  assert.equal(d.attachments.get("tap9/egress")?.program, "to_endpoint");
});

test("endpoint numbers are stable: order does not matter and adding an endpoint renumbers no other", () => {
  const a = endpointIds(["app1", "app2", "app3"]);
  const b = endpointIds(["app3", "app1", "app2", "zz-new"]);
  for (const name of ["app1", "app2", "app3"]) assert.equal(b.get(name), a.get(name));
  const all = [...b.values()];
  assert.equal(new Set(all).size, all.length);
  for (const id of all) assert.ok(id >= 1 && id <= 65535);
});

test("endpoints on other nodes get no devices, only ipcache entries", () => {
  const model = seed();
  const remote: EndpointManifest = { ...model.endpoints[2]!, name: "far", node: "n2", ipv4: "10.12.0.9", interfaceName: "lxc-far" };
  const m2: Model = { ...model, endpoints: [...model.endpoints, remote] };
  const d = buildDesiredState(m2, compile(m2, { node: "n1", enforcement: "default" }), { attachMode: "tcx" });
  assert.equal(d.devices.has("lxc-far"), false);
  assert.equal(d.endpoints.has("10.12.0.9"), false);
  assert.ok(d.ipcache.has("10.12.0.9/32"));
});
