// Cilium rule normalization: selectors, peers, ports, defaults, CRD envelopes.

import { test } from "node:test";
import assert from "node:assert/strict";
import { formatProblem, loadSnapshot } from "../../reconciler/manifest/load.js";
import type { PolicyRule, RuleManifest } from "../../reconciler/manifest/model.js";

function rules(yaml: string): RuleManifest[] {
  const r = loadSnapshot({ revision: "r", files: [{ path: "p.yaml", content: yaml }] });
  assert.deepEqual(r.problems.map(formatProblem), []);
  return r.model!.rules;
}

function rule(spec: string): PolicyRule {
  return rules(`apiVersion: reconcile/v1\nkind: Rule\nmetadata:\n  name: r\nspec:\n${spec}`)[0]!.rule;
}

function problems(spec: string): string[] {
  const r = loadSnapshot({ revision: "r", files: [{ path: "p.yaml", content: `apiVersion: reconcile/v1\nkind: Rule\nmetadata:\n  name: r\nspec:\n${spec}` }] });
  return r.problems.map(formatProblem);
}

test("empty selector selects everything; ingress [{}] allows nothing (explicit empty peer list)", () => {
  const r = rule("  endpointSelector: {}\n  ingress:\n  - {}\n");
  assert.deepEqual(r.endpointSelector!.requirements, []);
  assert.deepEqual(r.ingress.map((p) => [p.endpoints, p.cidrs, p.entities, p.ports]), [[[], undefined, undefined, undefined]]);
});

test("ports: string or number, 0 = all ports, protocol defaults to ANY, endPort range", () => {
  const r = rule(
    "  endpointSelector: {}\n  ingress:\n  - toPorts:\n    - ports:\n      - port: 53\n      - port: \"0\"\n        protocol: UDP\n      - port: \"8080\"\n        endPort: 8090\n        protocol: SCTP\n",
  );
  assert.equal(r.ingress[0]!.endpoints, undefined);
  assert.deepEqual(r.ingress[0]!.ports, [
    { port: 53, endPort: 53, protocol: "ANY" },
    { port: 0, endPort: 65535, protocol: "UDP" },
    { port: 8080, endPort: 8090, protocol: "SCTP" },
  ]);
});

test("selector sources: no prefix is any, explicit prefixes kept; matchExpressions", () => {
  const r = rule(
    "  endpointSelector:\n    matchLabels:\n      app: web\n      k8s:tier: db\n      reserved:host: \"\"\n    matchExpressions:\n    - {key: env, operator: NotIn, values: [prod, stage]}\n  egress:\n  - toEntities: [world-ipv4, kube-apiserver]\n",
  );
  assert.deepEqual(r.endpointSelector!.requirements, [
    { source: "any", key: "app", operator: "In", values: ["web"] },
    { source: "k8s", key: "tier", operator: "In", values: ["db"] },
    { source: "reserved", key: "host", operator: "In", values: [""] },
    { source: "any", key: "env", operator: "NotIn", values: ["prod", "stage"] },
  ]);
  assert.deepEqual(r.egress[0]!.entities, ["world-ipv4", "kube-apiserver"]);
});

test("selector and port mistakes", () => {
  assert.deepEqual(
    problems(
      "  endpointSelector:\n    matchExpressions:\n    - key: a\n      operator: In\n    - key: b\n      operator: Exists\n      values: [x]\n    - key: c\n      operator: Like\n  ingress:\n  - toPorts:\n    - ports:\n      - port: \"0\"\n        endPort: 10\n      - port: 70000\n      - port: \"80\"\n        protocol: tcpx\n    nodeSelector: {}\n",
    ),
    [
      "p.yaml:8: Rule/r: spec.endpointSelector.matchExpressions[0].values: In needs values (expected a non-empty list, got nothing)",
      "p.yaml:12: Rule/r: spec.endpointSelector.matchExpressions[1].values: Exists takes no values (expected none, got 1)",
      "p.yaml:14: Rule/r: spec.endpointSelector.matchExpressions[2].operator: unknown operator (expected one of In, NotIn, Exists, DoesNotExist, got \"Like\")",
      "p.yaml:19: Rule/r: spec.ingress[0].toPorts[0].ports[0].endPort: endPort needs a non-zero port (expected port 1..10, got port 0 which already means all ports)",
      "p.yaml:20: Rule/r: spec.ingress[0].toPorts[0].ports[1].port: out of range (expected an integer 0..65535, got 70000)",
      "p.yaml:22: Rule/r: spec.ingress[0].toPorts[0].ports[2].protocol: unknown protocol (expected one of TCP, UDP, SCTP, ANY, got \"tcpx\")",
      "p.yaml:23: Rule/r: spec.ingress[0].nodeSelector: unknown field (expected one of fromEndpoints, fromCIDR, fromCIDRSet, fromEntities, fromNodes, toPorts, icmps, got \"nodeSelector\")",
    ],
  );
});

test("unsupported Cilium fields are named, never ignored", () => {
  const out = problems(
    "  nodeSelector: {}\n  ingress:\n  - fromRequires: [{}]\n    fromNodes: [{}]\n    icmps: []\n    authentication: {mode: required}\n  egress:\n  - toServices: []\n    toGroups: []\n    toCIDRSet:\n    - cidrGroupRef: x\n    toPorts:\n    - ports: [{port: \"53\"}]\n      listener: {}\n      terminatingTLS: {}\n",
  );
  assert.deepEqual(
    out.map((s) => s.replace(/ \(.*$|;.*$/, "")),
    [
      // fromNodes, icmps and cidrGroupRef are supported now; the rest say why they are refused.
      "p.yaml:8: Rule/r: spec.ingress[0].fromRequires: fromRequires was removed from Cilium",
      "p.yaml:11: Rule/r: spec.ingress[0].authentication: authentication",
      "p.yaml:13: Rule/r: spec.egress[0].toServices: toServices needs service load balancing",
      "p.yaml:14: Rule/r: spec.egress[0].toGroups: toGroups",
      "p.yaml:19: Rule/r: spec.egress[0].toPorts[0].listener: listener",
      "p.yaml:20: Rule/r: spec.egress[0].toPorts[0].terminatingTLS: terminatingTLS",
    ],
  );
});

test("CiliumNetworkPolicy: spec and specs together, namespace kept", () => {
  const rs = rules(
    "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: both\n  namespace: prod\nspec:\n  endpointSelector: {}\n  egress:\n  - toEntities: [cluster]\nspecs:\n- endpointSelector: {}\n  ingressDeny:\n  - fromEntities: [world]\n",
  );
  assert.deepEqual(rs.map((r) => [r.name, r.namespace, r.origin, r.at.line]), [
    ["both", "prod", "CiliumNetworkPolicy", 6],
    ["both#0", "prod", "CiliumNetworkPolicy", 11],
  ]);
});

test("a rule without any section is accepted with a warning", () => {
  const r = loadSnapshot({ revision: "r", files: [{ path: "p.yaml", content: "apiVersion: reconcile/v1\nkind: Rule\nmetadata:\n  name: r\nspec:\n  endpointSelector: {}\n" }] });
  assert.ok(r.model);
  assert.deepEqual(r.problems.map(formatProblem), ["p.yaml:5: Rule/r: spec: warning: rule has no ingress, ingressDeny, egress or egressDeny section and has no effect"]);
});

test("In/NotIn with values: [] are refused (as Kubernetes and Cilium refuse them), in YAML, CRD and JSON rules; one error per mistake", () => {
  assert.deepEqual(
    problems(
      "  endpointSelector:\n    matchExpressions:\n    - {key: a, operator: In, values: []}\n  ingress:\n  - fromEndpoints:\n    - matchExpressions:\n      - {key: b, operator: NotIn, values: []}\n      - {key: c, operator: In, values: x}\n      - {key: d, operator: NotIn, values: [{}]}\n      - {key: e, operator: DoesNotExist, values: [v]}\n      - {key: f, operator: Exists, values: []}\n",
    ),
    [
      "p.yaml:8: Rule/r: spec.endpointSelector.matchExpressions[0].values: In needs values (expected a non-empty list, got an empty list)",
      "p.yaml:12: Rule/r: spec.ingress[0].fromEndpoints[0].matchExpressions[0].values: NotIn needs values (expected a non-empty list, got an empty list)",
      "p.yaml:13: Rule/r: spec.ingress[0].fromEndpoints[0].matchExpressions[1].values: wrong type (expected a list, got \"x\")",
      "p.yaml:14: Rule/r: spec.ingress[0].fromEndpoints[0].matchExpressions[2].values[0]: wrong type for a label value (expected a string; quote it, got a mapping)",
      "p.yaml:15: Rule/r: spec.ingress[0].fromEndpoints[0].matchExpressions[3].values: DoesNotExist takes no values (expected none, got 1)",
    ],
  );
  const crd = loadSnapshot({
    revision: "r",
    files: [{ path: "c.yaml", content: "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: c}\nspec:\n  endpointSelector:\n    matchExpressions:\n    - key: a\n      operator: NotIn\n      values: []\n" }],
  });
  assert.deepEqual(crd.problems.filter((p) => p.severity === "error").map(formatProblem), ["c.yaml:9: CiliumNetworkPolicy/c: spec.endpointSelector.matchExpressions[0].values: NotIn needs values (expected a non-empty list, got an empty list)"]);
  const json = loadSnapshot({
    revision: "r",
    files: [{ path: "j.json", content: '[{\n  "labels": [{"key": "name", "value": "j", "source": "unspec"}],\n  "endpointSelector": {"matchExpressions": [{"key": "a", "operator": "In",\n    "values": []}]}\n}]\n' }],
  });
  const jsonErrors = json.problems.filter((p) => p.severity === "error");
  assert.equal(jsonErrors.length, 1, json.problems.map(formatProblem).join("\n"));
  assert.match(formatProblem(jsonErrors[0]!), /^j\.json:4: .*endpointSelector\.matchExpressions\[0\]\.values: In needs values \(expected a non-empty list, got an empty list\)$/);
});
