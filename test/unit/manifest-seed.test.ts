// The seed scenario (DESIGN §9) loads into exactly the expected Model.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { loadSnapshot } from "../../reconciler/manifest/load.js";
import type { Model } from "../../reconciler/manifest/model.js";
import { REPO_ROOT, snapshotOfDir } from "./helpers/manifest-snapshot.js";

test("examples/seed/l3-rule.json is the seed's rule (DESIGN §9), in cilium policy import form", () => {
  const ours: unknown = JSON.parse(readFileSync(join(REPO_ROOT, "examples/seed/l3-rule.json"), "utf8"));
  assert.deepEqual(ours, [
    {
      endpointSelector: { matchLabels: { "any:id": "app1" } },
      ingress: [
        {
          fromEndpoints: [{ matchLabels: { "any:id": "app2" } }],
          toPorts: [{ ports: [{ port: "80", protocol: "TCP" }] }],
        },
      ],
      labels: [{ key: "name", value: "l3-rule", source: "" }],
    },
  ]);
});

test("seed snapshot loads into exactly the expected model", () => {
  const result = loadSnapshot(snapshotOfDir("examples/seed", "abc123"));
  assert.deepEqual(result.problems, []);
  const expected: Model = {
    revision: "abc123",
    endpoints: [
      {
        kind: "Endpoint",
        name: "app1",
        ipv4: "10.11.255.104",
        mac: "6e:b0:7d:4e:6b:e5",
        interfaceName: "lxc-app1",
        create: { kind: "veth", netns: "rc-app1", ifname: "eth0" },
        labels: [{ source: "k8s", key: "id", value: "app1" }],
        at: { file: "endpoints.yaml", line: 4 },
      },
      {
        kind: "Endpoint",
        name: "app2",
        ipv4: "10.11.90.17",
        mac: "1a:6d:c6:85:08:4d",
        interfaceName: "lxc-app2",
        create: { kind: "veth", netns: "rc-app2", ifname: "eth0" },
        labels: [{ source: "k8s", key: "id", value: "app2" }],
        at: { file: "endpoints.yaml", line: 20 },
      },
      {
        kind: "Endpoint",
        name: "app3",
        ipv4: "10.11.33.3",
        interfaceName: "lxc-app3",
        create: { kind: "veth", netns: "rc-app3", ifname: "eth0" },
        labels: [{ source: "k8s", key: "id", value: "app3" }],
        at: { file: "endpoints.yaml", line: 36 },
      },
    ],
    identities: [
      {
        kind: "Identity",
        name: "app2",
        id: 36895,
        labels: [{ source: "k8s", key: "id", value: "app2" }],
        at: { file: "identities.yaml", line: 3 },
      },
    ],
    rules: [
      {
        kind: "Rule",
        name: "l3-rule",
        origin: "json",
        at: { file: "l3-rule.json", line: 2 },
        rule: {
          endpointSelector: {
            requirements: [{ source: "any", key: "id", operator: "In", values: ["app1"] }],
            at: { file: "l3-rule.json", line: 3 },
          },
          ingress: [
            {
              at: { file: "l3-rule.json", line: 9 },
              endpoints: [
                {
                  requirements: [{ source: "any", key: "id", operator: "In", values: ["app2"] }],
                  at: { file: "l3-rule.json", line: 11 },
                },
              ],
              ports: [{ port: 80, endPort: 80, protocol: "TCP" }],
            },
          ],
          egress: [],
          ingressDeny: [],
          egressDeny: [],
          enableDefaultDeny: {},
          labels: [{ source: "unspec", key: "name", value: "l3-rule" }],
        },
      },
    ],
    nodes: [],
    cidrGroups: [],
  };
  assert.deepEqual(result.model, expected);
});

test("seed JSON line numbers point at the right text", () => {
  const lines = readFileSync(join(REPO_ROOT, "examples/seed/l3-rule.json"), "utf8").split("\n");
  const model = loadSnapshot(snapshotOfDir("examples/seed")).model!;
  const rule = model.rules[0]!;
  assert.match(lines[rule.at.line - 1]!, /^\s*\{$/);
  assert.match(lines[rule.rule.endpointSelector!.at.line - 1]!, /"endpointSelector"/);
  assert.match(lines[rule.rule.ingress[0]!.at.line - 1]!, /^\s*\{$/);
  assert.match(lines[rule.rule.ingress[0]!.at.line]!, /"fromEndpoints"/);
});
