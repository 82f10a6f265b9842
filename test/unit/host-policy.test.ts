// Host policies (rules with nodeSelector): manifest validation, the local host endpoint's compiled
// policy, explain for flows to and from the host, and the desired datapath (host endpoint entries,
// its policy map, host firewall attachments).
import { test } from "node:test";
import assert from "node:assert/strict";
import { HOST_ENDPOINT_ID, PROGRAM_FROM_NETDEV, PROGRAM_TO_NETDEV, VXLAN_DEVICE } from "../../reconciler/datapath/desired.js";
import { formatProblem, loadSnapshot } from "../../reconciler/manifest/load.js";
import type { Model } from "../../reconciler/manifest/model.js";
import { compile } from "../../reconciler/policy/compile.js";
import { explain } from "../../reconciler/policy/explain.js";
import { GATEWAY_V4, GATEWAY_V6, HOST_ENDPOINT, HOST_GATEWAYS } from "../../reconciler/policy/host.js";
import type { CompileOptions } from "../../reconciler/policy/types.js";
import { compileModel } from "../../reconciler/plan/snapshot-to-desired.js";
import { diff } from "../../reconciler/plan/diff.js";
import type { DesiredState } from "../../reconciler/datapath/state.js";
import { snapshotOfDir } from "./helpers/manifest-snapshot.js";

const TCP = 6;

function load(files: Record<string, string>): { model?: Model; problems: string[] } {
  const r = loadSnapshot({ revision: "rev1", files: Object.entries(files).map(([path, content]) => ({ path, content })) });
  return { ...(r.model ? { model: r.model } : {}), problems: r.problems.map(formatProblem) };
}

function loadOk(files: Record<string, string>): Model {
  const r = load(files);
  assert.deepEqual(r.problems, []);
  return r.model!;
}

const RULE = (spec: string): string => `apiVersion: reconcile/v1\nkind: Rule\nmetadata:\n  name: r\nspec:\n${spec}`;

// ---- manifests ----

test("a rule with both endpointSelector and nodeSelector, or with neither, is refused at file:line", () => {
  assert.deepEqual(load({ "r.yaml": RULE("  endpointSelector: {}\n  nodeSelector: {}\n  ingress: [{}]\n") }).problems, [
    "r.yaml:7: Rule/r: spec.nodeSelector: a rule selects endpoints or nodes, not both (expected exactly one of endpointSelector and nodeSelector, got both)",
  ]);
  assert.deepEqual(load({ "r.yaml": RULE("  ingress: [{}]\n") }).problems, [
    "r.yaml:5: Rule/r: spec.endpointSelector: required field is missing (expected endpointSelector, a label selector where {} selects every endpoint, or nodeSelector for a host policy)",
  ]);
});

test("a host policy in a namespaced CiliumNetworkPolicy is refused; a cluster-wide one is read", () => {
  const cnp = "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: p\n  namespace: prod\nspec:\n  nodeSelector: {}\n  ingress: [{}]\n";
  assert.deepEqual(load({ "p.yaml": cnp }).problems, [
    "p.yaml:7: CiliumNetworkPolicy/p: spec.nodeSelector: a host policy (nodeSelector) must be a CiliumClusterwideNetworkPolicy (expected kind CiliumClusterwideNetworkPolicy or Rule, got CiliumNetworkPolicy)",
  ]);
  const ccnp = "apiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\nmetadata:\n  name: p\nspec:\n  nodeSelector:\n    matchLabels:\n      role: edge\n  ingress:\n  - fromEntities: [remote-node]\n";
  const m = loadOk({ "p.yaml": ccnp });
  assert.equal(m.rules[0]!.rule.endpointSelector, undefined);
  assert.deepEqual(m.rules[0]!.rule.nodeSelector!.requirements, [{ source: "any", key: "role", operator: "In", values: ["edge"] }]);
});

test("Node: metadata.labels are the node's labels (source k8s); spec.hostFirewall.devices are checked", () => {
  const m = loadOk({
    "n.yaml": "apiVersion: reconcile/v1\nkind: Node\nmetadata:\n  name: n1\n  labels:\n    role: edge\n    node:zone: a\nspec:\n  address: 192.0.2.11\n  hostFirewall:\n    devices: [eth1, bond0]\n",
  });
  assert.deepEqual(m.nodes[0]!.labels, [
    { source: "k8s", key: "role", value: "edge" },
    { source: "node", key: "zone", value: "a" },
  ]);
  assert.deepEqual(m.nodes[0]!.hostFirewall, { devices: ["eth1", "bond0"] });
  const bad = load({
    "n.yaml": "apiVersion: reconcile/v1\nkind: Node\nmetadata:\n  name: n1\nspec:\n  address: 192.0.2.11\n  hostFirewall:\n    devices: [eth1, eth1, a/b]\n    mode: strict\n",
  }).problems;
  assert.deepEqual(bad.map((p) => p.replace(/ \(expected.*$/, "")), [
    "n.yaml:8: Node/n1: spec.hostFirewall.devices[1]: duplicate device",
    "n.yaml:8: Node/n1: spec.hostFirewall.devices[2]: invalid value",
    "n.yaml:9: Node/n1: spec.hostFirewall.mode: unknown field",
  ]);
});

// ---- policy ----

const NODES = `apiVersion: reconcile/v1
kind: Node
metadata:
  name: n1
  labels:
    role: edge
spec:
  address: 192.0.2.11
---
apiVersion: reconcile/v1
kind: Node
metadata:
  name: n2
  labels:
    role: core
spec:
  address: 192.0.2.12
`;

const EPS = ["app1", "app2"]
  .map((n, i) => `apiVersion: reconcile/v1\nkind: Endpoint\nmetadata:\n  name: ${n}\n  labels:\n    id: ${n}\nspec:\n  node: n1\n  ipv4: 10.11.0.${i + 1}\n  interface:\n    name: lxc-${n}\n`)
  .join("---\n");

// Line 1: the host may receive TCP/8080 from app2; egress from the host only to app1 on TCP/80.
const HOST_RULE = `apiVersion: reconcile/v1
kind: Rule
metadata:
  name: edge-host
spec:
  nodeSelector:
    matchLabels:
      role: edge
  ingress:
  - fromEndpoints:
    - matchLabels:
        id: app2
    toPorts:
    - ports:
      - port: "8080"
        protocol: TCP
  egress:
  - toEndpoints:
    - matchLabels:
        id: app1
    toPorts:
    - ports:
      - port: "80"
        protocol: TCP
`;

const model = (extra: Record<string, string> = {}): Model => loadOk({ "nodes.yaml": NODES, "eps.yaml": EPS, "host.yaml": HOST_RULE, ...extra });
const opts = (node: string, o: Partial<CompileOptions> = {}): CompileOptions => ({ node, enforcement: "default", ...o });

test("compile: the host endpoint of a selected node gets the host rules' entries; endpoints are not selected by them", () => {
  const m = model();
  const c = compile(m, opts("n1"));
  const host = c.endpoints.find((e) => e.endpoint === HOST_ENDPOINT)!;
  const app2 = c.endpoints.find((e) => e.endpoint === "app2")!.identity;
  const app1 = c.endpoints.find((e) => e.endpoint === "app1")!.identity;
  assert.equal(host.identity, 1);
  assert.deepEqual(host.enforce, { ingress: true, egress: true });
  assert.deepEqual(host.enforcedBy.ingress, [{ file: "host.yaml", line: 1, name: "edge-host" }]);
  assert.deepEqual(
    host.entries.map((e) => [e.direction, e.identity, e.protocol, e.port, e.portPrefixLen, e.decision, e.rules.map((r) => r.name)]),
    [
      ["ingress", app2, TCP, 8080, 16, "allow", ["edge-host"]],
      ["egress", app1, TCP, 80, 16, "allow", ["edge-host"]],
    ],
  );
  for (const name of ["app1", "app2"]) {
    const ep = c.endpoints.find((e) => e.endpoint === name)!;
    assert.deepEqual([ep.enforce, ep.entries], [{ ingress: false, egress: false }, []], `${name} is not selected by a host policy`);
  }
});

test("compile: a host policy whose nodeSelector matches no Node is a warning at the selector", () => {
  const rule = HOST_RULE.replace("name: edge-host", "name: nowhere").replace("role: edge", "role: gateway");
  const c = compile(model({ "nowhere.yaml": rule }), opts("n1"));
  assert.deepEqual(c.warnings.map((w) => `${w.file}:${w.line}: ${w.object}: ${w.message}`), [
    "nowhere.yaml:6: Rule/nowhere: nodeSelector {any:role=gateway} matches no Node (host policies select Nodes by their metadata.labels)",
  ]);
  assert.deepEqual(compile(model(), opts("n1")).warnings, []);
});

test("compile: a node whose labels do not match has no host endpoint, unless it has a host firewall (then nothing is enforced)", () => {
  assert.equal(compile(model(), opts("n2")).endpoints.find((e) => e.endpoint === HOST_ENDPOINT), undefined);
  const withFirewall = model({ "nodes.yaml": NODES.replace("  address: 192.0.2.12\n", "  address: 192.0.2.12\n  hostFirewall:\n    devices: [eth1]\n") });
  const host = compile(withFirewall, opts("n2")).endpoints.find((e) => e.endpoint === HOST_ENDPOINT)!;
  assert.deepEqual([host.enforce, host.entries], [{ ingress: false, egress: false }, []]);
  // --enforcement always puts the existing host endpoint in default deny, as any endpoint.
  assert.deepEqual(compile(withFirewall, opts("n2", { enforcement: "always" })).endpoints.find((e) => e.endpoint === HOST_ENDPOINT)!.enforce, { ingress: true, egress: true });
  assert.deepEqual(compile(model(), opts("n1", { enforcement: "never" })).endpoints.find((e) => e.endpoint === HOST_ENDPOINT)!.enforce, { ingress: false, egress: false });
});

test("explain: flows to and from the host (by name or by a host address) follow the host's policy", () => {
  const m = model();
  const o = opts("n1", { hostAddresses: ["198.51.100.7"] });
  const ex = (from: string, to: string, port: number) => explain(m, o, { from, to, port, protocol: TCP });
  assert.equal(ex("app2", "host", 8080).verdict, "allow");
  assert.deepEqual(ex("app2", "192.0.2.11", 8080).rules, [{ file: "host.yaml", line: 1, name: "edge-host" }]);
  assert.equal(ex("app2", "198.51.100.7", 8080).verdict, "allow", "a host address of this machine is the host");
  const denied = ex("app1", "host", 8080);
  assert.equal(denied.verdict, "deny");
  assert.match(denied.reason, /^default deny: reserved:host is selected by rule host\.yaml:1 and none allows ingress from identity \d+ \(app1\) on 8080\/TCP$/);
  assert.equal(ex("app2", "host", 8081).verdict, "deny");
  // Host → endpoint: the host's egress policy.
  assert.equal(ex("host", "app1", 80).verdict, "allow");
  assert.match(ex("host", "app2", 80).reason, /^default deny: reserved:host is selected by rule host\.yaml:1 and none allows egress to identity/);
  // From outside: a remote node and the world reach the host only as the ingress rules say.
  assert.equal(ex("192.0.2.12", "host", 8080).verdict, "deny");
  // The endpoints' gateway address is the host's, with its ipcache identity (world) as a peer.
  const gw = ex("app1", "169.254.1.1", 8080);
  assert.equal(gw.verdict, "deny");
  assert.equal(gw.toIdentity, 9);
  assert.equal(ex("169.254.1.1", "app1", 80).verdict, "allow");
  assert.equal(ex("169.254.1.1", "app2", 80).verdict, "deny");
  // On n2 (labels do not match) the host is unaffected.
  assert.match(explain(m, opts("n2"), { from: "app1", to: "host", port: 8080, protocol: TCP }).reason, /^allowed: no policy is enforced on app1 egress$/);
});

// ---- desired state ----

test("desired: the host endpoint has an endpoints entry per host address, its policy under its own number, and host firewall links", () => {
  const nodes = NODES.replace("  address: 192.0.2.11\n", "  address: 192.0.2.11\n  tunnel: {type: vxlan}\n  podCIDRs: [10.11.0.0/24]\n  hostFirewall:\n    devices: [eth1]\n");
  const m = model({ "nodes.yaml": nodes });
  const { desired } = compileModel(m, [], { node: "n1", enforcement: "default", attachMode: "tcx", hostAddresses: ["198.51.100.7", "fd00::7"] });
  for (const address of ["192.0.2.11", "198.51.100.7", "fd00::7"]) {
    assert.deepEqual(desired.endpoints.get(address), {
      address,
      endpointId: HOST_ENDPOINT_ID,
      identity: 1,
      enforceIngress: true,
      enforceEgress: true,
      auditIngress: false,
      auditEgress: false,
      verdictAllow: false,
      verdictDeny: false,
      hostPolicy: false,
      eventRate: 1000,
      endpoint: HOST_ENDPOINT,
    });
  }
  assert.equal(desired.policy.get(HOST_ENDPOINT)!.size, 2);
  assert.ok([...desired.endpoints.values()].filter((e) => e.endpoint !== HOST_ENDPOINT).every((e) => e.endpointId >= 1 && e.endpointId <= 65535));
  assert.deepEqual(desired.devices.get("eth1"), { name: "eth1", kind: "adopted", owned: false });
  const links = [...desired.attachments.values()].filter((a) => a.program === PROGRAM_FROM_NETDEV || a.program === PROGRAM_TO_NETDEV);
  assert.deepEqual(
    links.map((a) => [a.device, a.hook, a.program]).sort(),
    [
      ["eth1", "egress", "to_netdev"],
      ["eth1", "ingress", "from_netdev"],
      [VXLAN_DEVICE, "egress", "to_netdev"],
      [VXLAN_DEVICE, "ingress", "from_netdev"],
    ].sort(),
  );
});

test("desired: created veth endpoints' gateway addresses are host endpoint entries too; policy/ and datapath/ agree on them", () => {
  assert.deepEqual(HOST_GATEWAYS, [GATEWAY_V4, GATEWAY_V6]);
  const eps = EPS.replaceAll("    name: lxc-app1\n", "    name: lxc-app1\n    create: {netns: ns-app1}\n");
  const { desired } = compileModel(model({ "eps.yaml": eps }), [], { node: "n1", enforcement: "default", attachMode: "tcx" });
  assert.equal(desired.endpoints.get(GATEWAY_V4)?.endpointId, HOST_ENDPOINT_ID);
  assert.equal(desired.endpoints.has(GATEWAY_V6), false, "no IPv6 endpoint, no IPv6 gateway");
  assert.equal(desired.ipcache.has(`${GATEWAY_V4}/32`), false, "the ipcache is unchanged: endpoint policies see the gateway as world");
});

test("desired: a host firewall device that is an endpoint's interface is skipped with a warning", () => {
  const nodes = NODES.replace("  address: 192.0.2.11\n", "  address: 192.0.2.11\n  hostFirewall:\n    devices: [lxc-app1, eth1]\n");
  const { desired, warnings } = compileModel(model({ "nodes.yaml": nodes }), [], { node: "n1", enforcement: "default", attachMode: "tcx" });
  assert.deepEqual([...desired.attachments.values()].filter((a) => a.device === "lxc-app1").map((a) => a.program).sort(), ["from_endpoint", "to_endpoint"]);
  assert.deepEqual([...desired.attachments.values()].filter((a) => a.device === "eth1").map((a) => a.program).sort(), ["from_netdev", "to_netdev"]);
  assert.deepEqual(warnings.filter((w) => w.path === "spec.hostFirewall.devices").map((w) => w.message), [
    "device lxc-app1 is endpoint app1's interface, not a host device; no host firewall on it",
  ]);
});

test("desired: endpoint entries carry hostPolicy exactly while the host endpoint enforces; the plan rewrites them as host policy comes and goes", () => {
  const epFlags = (d: DesiredState) => [...d.endpoints.values()].filter((e) => e.endpoint !== HOST_ENDPOINT).map((e) => [e.endpoint, e.hostPolicy]);
  const withHost = compileModel(model(), [], { node: "n1", enforcement: "default", attachMode: "tcx" }).desired;
  assert.deepEqual(epFlags(withHost), [["app1", true], ["app2", true]]);
  assert.ok([...withHost.endpoints.values()].filter((e) => e.endpoint === HOST_ENDPOINT).every((e) => !e.hostPolicy), "the host's own entries do not need it");
  const without = compileModel(loadOk({ "nodes.yaml": NODES, "eps.yaml": EPS }), [], { node: "n1", enforcement: "default", attachMode: "tcx" }).desired;
  assert.deepEqual(epFlags(without), [["app1", false], ["app2", false]]);
  // A host endpoint that enforces nothing (a host firewall, no selecting rule) needs no lookup either.
  const firewallOnly = loadOk({ "nodes.yaml": NODES.replace("  address: 192.0.2.11\n", "  address: 192.0.2.11\n  hostFirewall:\n    devices: [eth1]\n"), "eps.yaml": EPS });
  const idle = compileModel(firewallOnly, [], { node: "n1", enforcement: "default", attachMode: "tcx" }).desired;
  assert.ok(idle.policy.has(HOST_ENDPOINT));
  assert.deepEqual(epFlags(idle), [["app1", false], ["app2", false]]);
  assert.deepEqual(epFlags(compileModel(firewallOnly, [], { node: "n1", enforcement: "always", attachMode: "tcx" }).desired), [["app1", true], ["app2", true]], "--enforcement always: the host enforces");
  assert.deepEqual(epFlags(compileModel(model(), [], { node: "n1", enforcement: "never", attachMode: "tcx" }).desired), [["app1", false], ["app2", false]]);

  // Planned as data: host policy appearing updates each endpoint's entry (and creates the host's);
  // going clears the flag again; the same state again is no change.
  const endpointOps = (d: DesiredState, a: DesiredState) =>
    diff(d, a, ["endpoint"]).changes.map((c) => `${c.op} ${c.id}${c.op === "update" ? ` (${c.reason})` : ""}`).filter((s) => s.startsWith("update") || s.includes("10.11."));
  assert.deepEqual(endpointOps(withHost, without), ["update 10.11.0.1 (hostPolicy false → true)", "update 10.11.0.2 (hostPolicy false → true)"]);
  assert.deepEqual(endpointOps(without, withHost), ["update 10.11.0.1 (hostPolicy true → false)", "update 10.11.0.2 (hostPolicy true → false)"]);
  assert.deepEqual(diff(withHost, withHost, ["endpoint"]).changes, []);
});

test("desired: without host policy for the node, nothing of the host endpoint is there (existing datapaths unchanged)", () => {
  const { desired } = compileModel(model(), [], { node: "n2", enforcement: "default", attachMode: "tcx" });
  assert.ok([...desired.endpoints.values()].every((e) => !e.hostPolicy), "no host-policy lookup in the programs");
  assert.equal(desired.policy.has(HOST_ENDPOINT), false);
  assert.deepEqual([...desired.endpoints.values()].filter((e) => e.identity === 1), []);
  assert.deepEqual([...desired.attachments.values()].filter((a) => a.program.endsWith("_netdev")), []);
});

test("examples/host-policy: the verdicts its README lists", () => {
  const r = loadSnapshot(snapshotOfDir("examples/host-policy"));
  assert.deepEqual(r.problems.map(formatProblem), []);
  const m = r.model!;
  const ex = (node: string, from: string, to: string, port: number, protocol = TCP) => explain(m, opts(node), { from, to, port, protocol }).verdict;
  assert.deepEqual(
    [
      ex("edge-1", "monitor", "host", 9100),
      ex("edge-1", "web", "host", 9100),
      ex("edge-1", "198.51.100.7", "host", 22),
      ex("edge-1", "192.0.2.32", "host", 22),
      ex("edge-1", "host", "web", 8080),
      ex("edge-1", "host", "monitor", 8080),
      ex("edge-1", "host", "203.0.113.53", 53, 17),
      ex("edge-1", "monitor", "web", 8080),
    ],
    ["allow", "deny", "allow", "deny", "allow", "deny", "allow", "allow"],
  );
  assert.deepEqual([ex("core-1", "192.0.2.9", "host", 22), ex("core-1", "host", "monitor", 8080)], ["allow", "allow"]);
});
