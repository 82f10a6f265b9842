// Every example set loads without problems, into the objects its README describes.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { formatProblem, loadSnapshot } from "../../reconciler/manifest/load.js";
import { REPO_ROOT, snapshotOfDir } from "./helpers/manifest-snapshot.js";

const sets = readdirSync(join(REPO_ROOT, "examples")).filter((d) => statSync(join(REPO_ROOT, "examples", d)).isDirectory());

test("the four example sets exist", () => {
  for (const d of ["seed", "cidr-entities", "deny-egress", "cilium-crd"]) assert.ok(sets.includes(d), `examples/${d} missing`);
});

for (const dir of sets) {
  test(`examples/${dir} loads without problems`, () => {
    const r = loadSnapshot(snapshotOfDir(`examples/${dir}`));
    assert.deepEqual(r.problems.map(formatProblem), []);
    assert.ok(r.model);
  });
}

test("cidr-entities: CIDR sets with except, entities", () => {
  const m = loadSnapshot(snapshotOfDir("examples/cidr-entities")).model!;
  const web = m.rules.find((r) => r.name === "web-ingress")!.rule;
  assert.deepEqual(web.ingress.map((p) => [p.cidrs, p.entities, p.ports]), [
    [[{ cidr: "192.0.2.0/24", except: ["192.0.2.128/25"] }], undefined, [{ port: 443, endPort: 443, protocol: "TCP" }]],
    [undefined, ["world"], [{ port: 80, endPort: 80, protocol: "TCP" }]],
    [undefined, ["host"], undefined],
  ]);
  const api = m.rules.find((r) => r.name === "api-egress")!.rule;
  assert.deepEqual(api.egress[1]!.cidrs, [
    { cidr: "192.0.2.53/32", except: [] },
    { cidr: "fd00:11::53/128", except: [] },
  ]);
  assert.deepEqual(api.ingress[0]!.entities, ["all"]);
  assert.equal(m.endpoints.find((e) => e.name === "web")!.ipv6, "fd00:11::10");
});

test("deny-egress: endPort ranges, deny sections, expressions, enableDefaultDeny", () => {
  const m = loadSnapshot(snapshotOfDir("examples/deny-egress")).model!;
  const client = m.rules.find((r) => r.name === "client-egress")!.rule;
  assert.deepEqual(client.egress[0]!.ports, [{ port: 8000, endPort: 8099, protocol: "TCP" }]);
  assert.deepEqual(client.egressDeny[0]!.endpoints![0]!.requirements, [{ source: "any", key: "pci", operator: "Exists", values: [] }]);
  const backend = m.rules.find((r) => r.name === "backend-ingress")!.rule;
  assert.deepEqual(backend.endpointSelector!.requirements, [
    { source: "any", key: "tier", operator: "In", values: ["backend"] },
    { source: "any", key: "pci", operator: "DoesNotExist", values: [] },
  ]);
  assert.equal(backend.ingress[0]!.endpoints, undefined, "L4-only rule has no peer list");
  assert.equal(backend.ingressDeny.length, 1);
  const secret = m.rules.find((r) => r.name === "secret-open")!.rule;
  assert.deepEqual(secret.enableDefaultDeny, { egress: false });
  const pci = m.endpoints.find((e) => e.name === "secret")!.labels;
  assert.deepEqual(pci, [
    { source: "k8s", key: "app", value: "secret" },
    { source: "k8s", key: "pci", value: "true" },
    { source: "k8s", key: "tier", value: "backend" },
  ]);
});

test("cilium-crd: specs become name#i, CCNP spec, nodes with tunnel defaults", () => {
  const m = loadSnapshot(snapshotOfDir("examples/cilium-crd")).model!;
  assert.deepEqual(
    m.rules.map((r) => [r.name, r.origin, r.at.line]),
    [
      ["rule1#0", "CiliumNetworkPolicy", 9],
      ["rule1#1", "CiliumNetworkPolicy", 22],
      ["clusterwide-policy-example", "CiliumClusterwideNetworkPolicy", 35],
    ],
  );
  assert.deepEqual(m.nodes.map((n) => [n.name, n.address, n.tunnel, n.podCIDRs]), [
    ["node-a", "192.0.2.11", { type: "vxlan", vni: 2, port: 8472 }, ["10.11.10.0/24", "fd00:11::a:0/112"]],
    ["node-b", "192.0.2.12", { type: "vxlan", vni: 2, port: 8472 }, ["10.11.20.0/24"]],
  ]);
  assert.equal(m.endpoints.find((e) => e.name === "deathstar")!.node, "node-b");
});
