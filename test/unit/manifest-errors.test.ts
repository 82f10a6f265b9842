// A broken snapshot yields every expected problem, each with its exact file:line and field path,
// and no model.

import { test } from "node:test";
import assert from "node:assert/strict";
import { formatProblem, loadSnapshot, ManifestError } from "../../reconciler/manifest/load.js";
import type { Snapshot } from "../../reconciler/source/snapshot.js";

const endpoints = `apiVersion: reconcile/v1
kind: Endpoint
metadata:
  name: web
  labels:
    app: web
spec:
  ipv4: 10.11.0.300
  color: blue
  interface:
    name: lxc-web
---
apiVersion: reconcile/v1
kind: Endpoint
metadata:
  name: db
  labels:
    app: db
spec:
  node: node-x
  ipv4: 10.11.0.5
  interface:
    name: lxc-db
---
apiVersion: reconcile/v1
kind: Endpoint
metadata:
  name: db2
  labels:
    app: db
    replicas: 2
spec:
  node: node-x
  ipv4: 10.11.0.5
  interface:
    name: lxc-db2
---
apiVersion: reconcile/v1
kind: Endpoint
metadata:
  name: mv
spec:
  interface:
    name: this-name-is-too-long
    create:
      kind: macvlan
      netns: rc-mv
`;

const identities = `apiVersion: reconcile/v1
kind: Identity
metadata:
  name: low
spec:
  id: 12
  labels:
    app: web
---
apiVersion: reconcile/v1
kind: Identity
metadata:
  name: a
spec:
  id: 4000
  labels:
    app: a
---
apiVersion: reconcile/v1
kind: Identity
metadata:
  name: b
spec:
  id: 4000
  labels:
    app: b
---
apiVersion: reconcile/v2
kind: Identity
metadata:
  name: c
`;

const policies = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: l7
spec:
  endpointSelector:
    matchLabels:
      app: web
  ingress:
    - fromEndpoints:
        - matchLabels:
            app: db
      toPorts:
        - ports:
            - port: "80"
              protocol: TCP
          rules:
            http:
              - method: GET
  egress:
    - toFQDNs:
        - matchName: example.com
    - toPorts:
        - ports:
            - port: http
    - toCIDRSet:
        - cidr: 10.0.0.0/8
          except:
            - 192.168.0.0/16
            - 10.1.0.1/16
  egressDeny:
    - toCIDR:
        - 10.0.0.1/8
      toPorts:
        - ports:
            - port: "1000"
              endPort: 999
              protocol: ICMP
          serverNames: [example.com]
`;

const node = `apiVersion: reconcile/v1
kind: Node
metadata:
  name: n1
spec:
  address: 192.0.2.1
   tunnel:
    vni: 5
`;

const nodes = `apiVersion: reconcile/v1
kind: Node
metadata:
  name: node-a
spec:
  address: 192.0.2.11
`;

const json = `[
  {
    "endpointSelector": {"matchLabels": {"any:id": "x"}},
    "ingress": [{"fromEntities": ["world", "moon"]}],
    "labels": [{"key": "name", "value": "broken-json", "source": ""}]
  }
]
`;

const snapshot: Snapshot = {
  revision: "r1",
  files: [
    { path: "apps/endpoints.yaml", content: endpoints },
    { path: "ids.yml", content: identities },
    { path: "policy/l7.yaml", content: policies },
    { path: "nodes/bad.yaml", content: node },
    { path: "nodes/good.yaml", content: nodes },
    { path: "rules.json", content: json },
    { path: "README.md", content: "# not a manifest: ignored\n  : : :" },
  ],
};

const expected = [
  "apps/endpoints.yaml:8: Endpoint/web: spec.ipv4: invalid IPv4 address (expected a dotted quad like 192.0.2.1, got \"10.11.0.300\")",
  "apps/endpoints.yaml:9: Endpoint/web: spec.color: unknown field (expected one of node, ipv4, ipv6, mac, interface, ports, got \"color\")",
  "apps/endpoints.yaml:20: Endpoint/db: spec.node: warning: no Node manifest with this name (expected one of node-a, got \"node-x\")",
  "apps/endpoints.yaml:31: Endpoint/db2: metadata.labels.replicas: wrong type for a label value (expected a string; quote it, got 2)",
  "apps/endpoints.yaml:42: Endpoint/mv: spec: an endpoint needs an address (expected ipv4 or ipv6 or both, got neither)",
  "apps/endpoints.yaml:44: Endpoint/mv: spec.interface.name: invalid value (expected an interface name of 1..15 printable characters without '/', ':' or spaces, got \"this-name-is-too-long\")",
  "apps/endpoints.yaml:45: Endpoint/mv: spec.interface.create: macvlan needs a parent device (expected create.parent, got nothing)",
  "ids.yml:6: Identity/low: spec.id: out of range (expected an integer 256..65535, got 12)",
  "ids.yml:24: Identity/b: spec.id: duplicate identity number 4000 (first used by Identity/a at ids.yml:10)",
  "ids.yml:28: Identity/c: apiVersion: unknown apiVersion (expected reconcile/v1 or cilium.io/v2 or cilium.io/v2alpha1, got \"reconcile/v2\")",
  "nodes/bad.yaml:7: invalid YAML: bad indentation of a mapping entry",
  "policy/l7.yaml:17: CiliumNetworkPolicy/l7: spec.ingress[0].toPorts[0].rules: rules (L7 HTTP/Kafka/DNS rules) needs an L7 proxy, which reconcile does not have (it enforces L3/L4 in eBPF only)",
  "policy/l7.yaml:21: CiliumNetworkPolicy/l7: spec.egress[0].toFQDNs: toFQDNs needs a DNS proxy that learns the addresses names resolve to, which reconcile does not have; use toCIDR or toCIDRSet",
  "policy/l7.yaml:29: CiliumNetworkPolicy/l7: spec.egress[2].toCIDRSet[0].except[0]: allow CIDR prefix 10.0.0.0/8 does not contain exclude CIDR prefix 192.168.0.0/16 (expected a prefix within 10.0.0.0/8)",
  "policy/l7.yaml:30: CiliumNetworkPolicy/l7: spec.egress[2].toCIDRSet[0].except[1]: warning: host bits set: read as the network 10.1.0.0/16 (Cilium uses the network of \"10.1.0.1/16\" too)",
  "policy/l7.yaml:33: CiliumNetworkPolicy/l7: spec.egressDeny[0].toCIDR[0]: warning: host bits set: read as the network 10.0.0.0/8 (Cilium uses the network of \"10.0.0.1/8\" too)",
  "policy/l7.yaml:37: CiliumNetworkPolicy/l7: spec.egressDeny[0].toPorts[0].ports[0].endPort: endPort below port (expected endPort >= 1000, got 999)",
  "policy/l7.yaml:38: CiliumNetworkPolicy/l7: spec.egressDeny[0].toPorts[0].ports[0].protocol: protocol ICMP in toPorts is not supported by reconcile (expected one of TCP, UDP, SCTP, ANY; ICMP types go in an icmps block)",
  "policy/l7.yaml:39: CiliumNetworkPolicy/l7: spec.egressDeny[0].toPorts[0].serverNames: serverNames (TLS SNI matching) is not allowed in egressDeny (deny rules are L3/L4 only)",
  "rules.json:4: Rule/broken-json: ingress[0].fromEntities[1]: unsupported entity: moon (expected one of all, world, world-ipv4, world-ipv6, cluster, host, remote-node, kube-apiserver, health, init, unmanaged, ingress)",
];

test("broken snapshot: every problem, exact file:line, object and path; no model", () => {
  const result = loadSnapshot(snapshot);
  assert.equal(result.model, undefined);
  assert.deepEqual(result.problems.map(formatProblem), expected);
});

test("duplicate IP and duplicate interface on the same node are reported at the second endpoint", () => {
  const ep = (name: string, ip: string, ifname: string, node?: string): string =>
    `apiVersion: reconcile/v1\nkind: Endpoint\nmetadata:\n  name: ${name}\nspec:\n${node ? `  node: ${node}\n` : ""}  ipv4: ${ip}\n  interface:\n    name: ${ifname}\n`;
  const result = loadSnapshot({
    revision: "r",
    files: [
      { path: "a.yaml", content: ep("one", "10.11.0.5", "lxc-one") },
      { path: "b.yaml", content: [ep("two", "10.11.0.5", "lxc-one"), ep("three", "10.11.0.5", "lxc-three", "other")].join("---\n") },
      { path: "c.yaml", content: ep("one", "10.11.0.6", "lxc-six") },
    ],
  });
  assert.deepEqual(result.problems.map(formatProblem), [
    "b.yaml:6: Endpoint/two: spec.ipv4: duplicate IPv4 address 10.11.0.5 on the same node (first used by Endpoint/one at a.yaml:1)",
    "b.yaml:8: Endpoint/two: spec.interface.name: duplicate interface name lxc-one on the same node (first used by Endpoint/one at a.yaml:1)",
    "c.yaml:4: Endpoint/one: metadata.name: duplicate Endpoint name (first used by Endpoint/one at a.yaml:1)",
  ]);
});

test("an unknown kind, a non-mapping document and a CCNP with a namespace are errors; empty documents are skipped", () => {
  const result = loadSnapshot({
    revision: "r",
    files: [
      {
        path: "x.yaml",
        content: [
          "---\n# only a comment\n",
          "apiVersion: reconcile/v1\nkind: Service\nmetadata:\n  name: s\n",
          "- just\n- a list\n",
          'apiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\nmetadata:\n  name: c\n  namespace: default\nspec:\n  endpointSelector: {}\n  ingress:\n  - fromEntities: [world]\n',
        ].join("---\n"),
      },
    ],
  });
  assert.deepEqual(result.problems.map(formatProblem), [
    "x.yaml:5: Service/s: kind: unknown kind for reconcile/v1 (expected one of Endpoint, Identity, Rule, Node, got \"Service\")",
    "x.yaml:9: wrong type (expected a mapping, got a list)",
    "x.yaml:16: CiliumClusterwideNetworkPolicy/c: metadata.namespace: a cluster-wide policy has no namespace (remove metadata.namespace)",
  ]);
});

test("ManifestError carries the problems and lists the errors in its message", () => {
  const result = loadSnapshot(snapshot);
  const err = new ManifestError(result.problems);
  assert.equal(err.name, "ManifestError");
  assert.equal(err.problems, result.problems);
  assert.match(err.message, /^invalid manifests \(17 errors\):\napps\/endpoints\.yaml:8: Endpoint\/web: spec\.ipv4: /);
  assert.ok(!err.message.includes("warning:"));
});

test("formatProblem: with and without object and path, warning prefix", () => {
  assert.equal(
    formatProblem({ file: "a/b.yaml", line: 7, object: "Endpoint/x", path: "spec.ipv4", message: "bad (expected X, got Y)", severity: "error" }),
    "a/b.yaml:7: Endpoint/x: spec.ipv4: bad (expected X, got Y)",
  );
  assert.equal(formatProblem({ file: "c.yaml", line: 1, message: "invalid YAML: oops", severity: "error" }), "c.yaml:1: invalid YAML: oops");
  assert.equal(
    formatProblem({ file: "d.yaml", line: 3, object: "Rule/r", message: "no effect", severity: "warning" }),
    "d.yaml:3: Rule/r: warning: no effect",
  );
});

test("identities with the same label set and endpoints creating the same netns interface clash; macvlan names are per netns", () => {
  const ep = (name: string, ip: string, iface: string, create: string): string =>
    `apiVersion: reconcile/v1\nkind: Endpoint\nmetadata:\n  name: ${name}\nspec:\n  ipv4: ${ip}\n  interface:\n    name: ${iface}\n    create: ${create}\n`;
  const id = (name: string, n: number, labels: string): string =>
    `apiVersion: reconcile/v1\nkind: Identity\nmetadata:\n  name: ${name}\nspec:\n  id: ${n}\n  labels: ${labels}\n`;
  const result = loadSnapshot({
    revision: "r",
    files: [
      {
        path: "e.yaml",
        content: [
          ep("a", "10.11.0.1", "lxc-a", "{netns: ns1, ifname: eth0}"),
          ep("b", "10.11.0.2", "lxc-b", "{netns: ns1, ifname: eth0}"),
          ep("m1", "10.11.0.3", "eth0", "{kind: macvlan, parent: dummy0, netns: ns3}"),
          ep("m2", "10.11.0.4", "eth0", "{kind: macvlan, parent: dummy0, netns: ns4}"),
        ].join("---\n"),
      },
      { path: "i.yaml", content: [id("x", 1000, "{app: x, k8s:team: t}"), id("y", 1001, "{team: t, app: x}")].join("---\n") },
    ],
  });
  assert.deepEqual(result.problems.map(formatProblem), [
    "e.yaml:19: Endpoint/b: spec.interface.create: interface eth0 in netns ns1 is also created by another endpoint (first used by Endpoint/a at e.yaml:1)",
    "i.yaml:15: Identity/y: spec.labels: duplicate label set (one label set has one identity) (first used by Identity/x at i.yaml:1)",
  ]);
});

test("duplicate keys in YAML are reported with the parser's line", () => {
  const r = loadSnapshot({ revision: "r", files: [{ path: "d.yaml", content: "apiVersion: reconcile/v1\nkind: Node\nmetadata:\n  name: n\n  name: m\n" }] });
  assert.deepEqual(r.problems.map(formatProblem), ["d.yaml:5: invalid YAML: duplicated mapping key"]);
});
