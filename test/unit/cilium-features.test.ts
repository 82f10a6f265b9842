// Issue 15: the Cilium L3/L4 features people write (icmps, named ports, fromNodes/toNodes, CIDR
// groups, log), Cilium's sanitize checks, and Cilium's own examples. Each feature: the loaded
// model, the compiled entries, and explain (the independent evaluator) on the same flows.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { formatProblem, loadSnapshot } from "../../reconciler/manifest/load.js";
import type { Model } from "../../reconciler/manifest/model.js";
import { compile } from "../../reconciler/policy/compile.js";
import { explain, policyVerdict } from "../../reconciler/policy/explain.js";
import type { CompileOptions, PolicyEntry } from "../../reconciler/policy/types.js";
import { REPO_ROOT } from "./helpers/manifest-snapshot.js";

const OPTS: CompileOptions = { node: "n1", enforcement: "default" };

/** Endpoints and nodes the documents below refer to. */
const WORLD = `apiVersion: reconcile/v1
kind: Node
metadata:
  name: n1
  labels: {role: worker}
spec:
  address: 192.168.0.1
---
apiVersion: reconcile/v1
kind: Node
metadata:
  name: n2
  labels: {role: control}
spec:
  address: 192.168.0.2
---
apiVersion: reconcile/v1
kind: Endpoint
metadata:
  name: web1
  labels: {app: web}
spec:
  ipv4: 10.0.0.1
  ipv6: fd00::1
  ports: [{name: http, port: 8080, protocol: TCP}]
  interface: {name: lxc-web1}
---
apiVersion: reconcile/v1
kind: Endpoint
metadata:
  name: web2
  labels: {app: web}
spec:
  ipv4: 10.0.0.2
  ports: [{name: http, port: 9090}]
  interface: {name: lxc-web2}
---
apiVersion: reconcile/v1
kind: Endpoint
metadata:
  name: client
  labels: {app: client}
spec:
  ipv4: 10.0.0.3
  ipv6: fd00::3
  interface: {name: lxc-client}
`;

function load(docs: string): { model?: Model; problems: string[] } {
  const r = loadSnapshot({ revision: "r", files: [{ path: "world.yaml", content: WORLD }, { path: "p.yaml", content: docs }] });
  return { ...(r.model ? { model: r.model } : {}), problems: r.problems.map(formatProblem) };
}

function modelOf(docs: string): Model {
  const r = load(docs);
  assert.deepEqual(r.problems.filter((p) => !p.includes("warning:")), [], "no errors");
  return r.model!;
}

const rule = (spec: string, name = "r"): string => `apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: ${name}\nspec:\n${spec}`;

function entries(m: Model, ep: string, opts = OPTS): PolicyEntry[] {
  return compile(m, opts).endpoints.find((e) => e.endpoint === ep)!.entries;
}

/** explain and the compiled entries (the datapath's lookup) give the same verdict; returns it. */
function verdict(m: Model, from: string, to: string, protocol: number, port: number, opts = OPTS): string {
  const x = explain(m, opts, { from, to, protocol, port });
  const c = compile(m, opts);
  const side = (name: string, dir: "ingress" | "egress", peer: number): boolean => {
    const pol = c.endpoints.find((e) => e.endpoint === name);
    if (!pol || !pol.enforce[dir]) return true;
    return policyVerdict(pol, dir, peer, protocol, port).decision === "allow";
  };
  const compiled = side(from, "egress", x.toIdentity) && side(to, "ingress", x.fromIdentity) ? "allow" : "deny";
  assert.equal(x.verdict, compiled, `explain and compiled entries agree on ${from} -> ${to} ${protocol}/${port}: ${x.reason}`);
  return x.verdict;
}

// ---- icmps ----

test("icmps: types by number and by name, IPv4 and IPv6, in the port's place of the key", () => {
  const m = modelOf(rule("  endpointSelector: {matchLabels: {app: web}}\n  ingress:\n  - fromEndpoints: [{matchLabels: {app: client}}]\n    icmps:\n    - fields:\n      - type: 8\n      - type: EchoRequest\n        family: IPv6\n      - type: \"13\"\n        family: IPv4\n"));
  assert.deepEqual(m.rules[0]!.rule.ingress[0]!.ports, [
    { port: 8, endPort: 8, protocol: "ICMP" },
    { port: 128, endPort: 128, protocol: "ICMPv6" },
    { port: 13, endPort: 13, protocol: "ICMP" },
  ]);
  const icmpEntries = entries(m, "web1").filter((e) => e.protocol === 1 || e.protocol === 58);
  assert.deepEqual(icmpEntries.map((e) => [e.protocol, e.port, e.endPort, e.portPrefixLen, e.decision]), [
    [1, 8, 8, 16, "allow"],
    [1, 13, 13, 16, "allow"],
    [58, 128, 128, 16, "allow"],
  ]);
  assert.equal(verdict(m, "client", "web1", 1, 8), "allow");
  assert.equal(verdict(m, "client", "web1", 1, 13), "allow");
  assert.equal(verdict(m, "client", "web1", 1, 0), "deny", "echo reply is not a request");
  assert.equal(verdict(m, "client", "web1", 58, 128), "allow");
  assert.equal(verdict(m, "client", "web1", 58, 8), "deny", "type 8 means nothing for ICMPv6");
  assert.equal(verdict(m, "client", "web1", 6, 8), "deny", "ICMP types are not TCP ports");
  assert.match(explain(m, OPTS, { from: "client", to: "web1", protocol: 1, port: 0 }).reason, /on ICMP type 0$/);
});

test("icmps in a deny section deny that type only", () => {
  const m = modelOf(rule("  endpointSelector: {matchLabels: {app: web}}\n  ingress:\n  - fromEndpoints: [{matchLabels: {app: client}}]\n  ingressDeny:\n  - fromEndpoints: [{matchLabels: {app: client}}]\n    icmps: [{fields: [{type: 8}]}]\n"));
  assert.equal(verdict(m, "client", "web1", 1, 8), "deny");
  assert.equal(verdict(m, "client", "web1", 1, 13), "allow");
  assert.equal(verdict(m, "client", "web1", 6, 80), "allow");
});

test("icmps: a name of the other family, a type above 255 and a wrong family are refused", () => {
  const r = load(rule("  endpointSelector: {}\n  ingress:\n  - icmps:\n    - fields:\n      - type: PacketTooBig\n      - type: 256\n      - type: 8\n        family: IPv5\n"));
  assert.deepEqual(r.problems.map((p) => p.replace(/ \(.*$/, "")), [
    "p.yaml:10: CiliumNetworkPolicy/r: spec.ingress[0].icmps[0].fields[0].type: ICMP type PacketTooBig not found in IPv4",
    "p.yaml:11: CiliumNetworkPolicy/r: spec.ingress[0].icmps[0].fields[1].type: out of range",
    "p.yaml:13: CiliumNetworkPolicy/r: spec.ingress[0].icmps[0].fields[2].family: wrong family: IPv5",
  ]);
});

// ---- named ports ----

test("named port: resolved per destination endpoint (8080 on web1, 9090 on web2)", () => {
  const m = modelOf(rule("  endpointSelector: {matchLabels: {app: web}}\n  ingress:\n  - fromEndpoints: [{matchLabels: {app: client}}]\n    toPorts: [{ports: [{port: HTTP}]}]\n"));
  assert.deepEqual(m.rules[0]!.rule.ingress[0]!.ports, [{ port: 0, endPort: 0, name: "http", protocol: "ANY" }], "names are lower-cased");
  const ports = (ep: string) => entries(m, ep).filter((e) => e.protocol !== 0).map((e) => [e.protocol, e.port, e.portPrefixLen]);
  assert.deepEqual(ports("web1"), [[6, 8080, 16]]);
  assert.deepEqual(ports("web2"), [[6, 9090, 16]]);
  const c = compile(m, OPTS);
  assert.notEqual(c.endpoints.find((e) => e.endpoint === "web1")!.entrySet, c.endpoints.find((e) => e.endpoint === "web2")!.entrySet);
  assert.equal(verdict(m, "client", "web1", 6, 8080), "allow");
  assert.equal(verdict(m, "client", "web1", 6, 9090), "deny");
  assert.equal(verdict(m, "client", "web2", 6, 9090), "allow");
  assert.equal(verdict(m, "client", "web2", 6, 8080), "deny");
  assert.equal(verdict(m, "client", "web1", 17, 8080), "deny", "declared as TCP");
});

test("named port on egress resolves against the peer's declarations", () => {
  const m = modelOf(rule("  endpointSelector: {matchLabels: {app: client}}\n  egress:\n  - toEndpoints: [{matchLabels: {app: web}}]\n    toPorts: [{ports: [{port: http, protocol: TCP}]}]\n"));
  // web1 and web2 share an identity: the datapath keys by identity, so both numbers go to it.
  assert.deepEqual(entries(m, "client").filter((e) => e.protocol !== 0).map((e) => e.port), [8080, 9090]);
  assert.equal(verdict(m, "client", "web1", 6, 8080), "allow");
  assert.equal(verdict(m, "client", "web2", 6, 9090), "allow");
  assert.equal(verdict(m, "client", "web1", 6, 80), "deny");
});

test("a port name no selected endpoint declares allows nothing and is a warning", () => {
  const docs = rule("  endpointSelector: {matchLabels: {app: web}}\n  ingress:\n  - toPorts: [{ports: [{port: grpc}, {port: http, protocol: UDP}]}]\n");
  const m = modelOf(docs);
  assert.deepEqual(entries(m, "web1").filter((e) => e.protocol !== 0), []);
  assert.equal(verdict(m, "client", "web1", 6, 8080), "deny");
  const w = compile(m, OPTS).warnings.map(formatProblem);
  assert.deepEqual(w, [
    'p.yaml:8: Rule/r: warning: port name "grpc" is declared (Endpoint spec.ports) by no endpoint the rule selects, so it allows nothing',
    'p.yaml:8: Rule/r: warning: port name "http"/UDP is declared (Endpoint spec.ports) by no endpoint the rule selects, so it allows nothing',
  ]);
});

test("spec.ports: names are service names, unique per endpoint; endPort needs a number", () => {
  const r = loadSnapshot({
    revision: "r",
    files: [
      {
        path: "e.yaml",
        content: "apiVersion: reconcile/v1\nkind: Endpoint\nmetadata:\n  name: e\nspec:\n  ipv4: 10.0.0.9\n  ports:\n  - {name: http, port: 80}\n  - {name: HTTP, port: 81}\n  - {name: a--b, port: 82}\n  - {name: dns, port: 53, protocol: ICMP}\n  interface: {name: lxc-e}\n---\n" +
          rule("  endpointSelector: {}\n  ingress:\n  - toPorts: [{ports: [{port: http, endPort: 90}]}]\n"),
      },
    ],
  });
  assert.deepEqual(r.problems.map(formatProblem).map((p) => p.replace(/ \(.*$/, "")), [
    "e.yaml:9: Endpoint/e: spec.ports[1].name: duplicate port name http",
    "e.yaml:10: Endpoint/e: spec.ports[2].name: invalid value",
    "e.yaml:11: Endpoint/e: spec.ports[3].protocol: unknown protocol",
    "e.yaml:21: CiliumNetworkPolicy/r: spec.ingress[0].toPorts[0].ports[0].endPort: endPort needs a port number",
  ]);
});

// ---- fromNodes / toNodes ----

test("fromNodes: the local node is the host identity, other nodes remote-node", () => {
  const worker = modelOf(rule("  endpointSelector: {matchLabels: {app: web}}\n  ingress:\n  - fromNodes: [{matchLabels: {role: worker}}]\n"));
  const ids = (m: Model, node: string) => [...new Set(entries(m, "web1", { ...OPTS, node }).map((e) => e.identity))];
  assert.deepEqual(ids(worker, "n1"), [1], "n1 is the worker: the host");
  assert.deepEqual(ids(worker, "n2"), [6], "seen from n2, n1 is a remote node");
  assert.equal(verdict(worker, "192.168.0.1", "web1", 6, 80), "allow");
  assert.equal(verdict(worker, "192.168.0.2", "web1", 6, 80), "deny", "n2 is no worker");
  assert.equal(verdict(worker, "client", "web1", 6, 80), "deny");
  const any = modelOf(rule("  endpointSelector: {matchLabels: {app: client}}\n  egress:\n  - toNodes: [{}]\n    toPorts: [{ports: [{port: \"22\", protocol: TCP}]}]\n"));
  assert.deepEqual(entries(any, "client").filter((e) => e.protocol !== 0).map((e) => [e.identity, e.port]), [[1, 22], [6, 22]]);
  assert.equal(verdict(any, "client", "192.168.0.2", 6, 22), "allow");
  assert.equal(verdict(any, "client", "192.168.0.2", 6, 23), "deny");
});

// ---- CIDR groups ----

const GROUPS = `apiVersion: cilium.io/v2alpha1
kind: CiliumCIDRGroup
metadata:
  name: partners
  labels: {kind: external}
spec:
  externalCIDRs: [198.51.100.0/24, "2001:db8::/32"]
---
apiVersion: cilium.io/v2
kind: CiliumCIDRGroup
metadata:
  name: vendors
  labels: {kind: external}
spec:
  externalCIDRs: [203.0.113.0/24]
---
`;

test("cidrGroupRef: the group's prefixes, with except; a group change moves the traffic", () => {
  const spec = rule("  endpointSelector: {matchLabels: {app: web}}\n  ingress:\n  - fromCIDRSet:\n    - cidrGroupRef: partners\n      except: [198.51.100.128/25]\n");
  const m = modelOf(GROUPS + spec);
  assert.deepEqual(m.cidrGroups!.map((g) => [g.name, g.cidrs]), [["partners", ["198.51.100.0/24", "2001:db8::/32"]], ["vendors", ["203.0.113.0/24"]]]);
  const ipc = compile(m, OPTS).ipcache.filter((e) => e.origin === "cidr" && e.ref === "Rule/r").map((e) => e.prefix).sort();
  assert.deepEqual(ipc, ["198.51.100.0/24", "198.51.100.128/25", "2001:db8::/32"]);
  assert.equal(verdict(m, "198.51.100.7", "web1", 6, 80), "allow");
  assert.equal(verdict(m, "198.51.100.200", "web1", 6, 80), "deny", "except");
  assert.equal(verdict(m, "2001:db8::5", "web1", 6, 80), "allow");
  assert.equal(verdict(m, "203.0.113.7", "web1", 6, 80), "deny");
  const moved = modelOf(GROUPS.replace("externalCIDRs: [198.51.100.0/24, \"2001:db8::/32\"]", "externalCIDRs: [203.0.113.0/24]") + spec);
  assert.equal(verdict(moved, "203.0.113.7", "web1", 6, 80), "allow");
  assert.equal(verdict(moved, "198.51.100.7", "web1", 6, 80), "deny");
});

test("cidrGroupSelector selects groups by label; a missing group is a warning and selects nothing", () => {
  const m = modelOf(GROUPS + rule("  endpointSelector: {matchLabels: {app: web}}\n  ingress:\n  - fromCIDRSet:\n    - cidrGroupSelector: {matchLabels: {kind: external}}\n  - fromCIDRSet:\n    - cidrGroupRef: nobody\n"));
  assert.equal(verdict(m, "198.51.100.7", "web1", 6, 80), "allow");
  assert.equal(verdict(m, "203.0.113.7", "web1", 6, 80), "allow");
  assert.equal(verdict(m, "192.0.2.7", "web1", 6, 80), "deny");
  assert.ok(load(GROUPS + rule("  endpointSelector: {}\n  ingress:\n  - fromCIDRSet:\n    - cidrGroupRef: nobody\n")).problems.some((p) => /warning: cidrGroupRef "nobody" names no CiliumCIDRGroup/.test(p)));
});

// ---- log, requires and what stays refused ----

test("log is accepted with a warning; fromRequires is refused saying it was removed", () => {
  const r = load(rule("  endpointSelector: {}\n  log: {value: audit-me}\n  ingress:\n  - fromEndpoints: [{}]\n"));
  assert.ok(r.model);
  assert.deepEqual(r.problems.filter((p) => !p.startsWith("world.yaml")).map((p) => p.replace(/: log is .*/, "")), ["p.yaml:7: CiliumNetworkPolicy/r: spec.log: warning"]);
  const q = load(rule("  endpointSelector: {}\n  ingress:\n  - fromEndpoints: [{}]\n    fromRequires: [{matchLabels: {a: b}}]\n"));
  assert.match(q.problems.join("\n"), /p\.yaml:9: CiliumNetworkPolicy\/r: spec\.ingress\[0\]\.fromRequires: fromRequires was removed from Cilium/);
});

test("L7, DNS and service fields are refused with the reason and file:line", () => {
  const r = load(rule("  endpointSelector: {}\n  egress:\n  - toFQDNs: [{matchName: a.example}]\n  - toServices: [{k8sService: {serviceName: s}}]\n  - toPorts:\n    - ports: [{port: \"80\", protocol: TCP}]\n      rules: {http: [{method: GET}]}\n"));
  assert.deepEqual(r.problems.map((p) => p.replace(/(needs [^,]*),.*$/, "$1")), [
    "p.yaml:8: CiliumNetworkPolicy/r: spec.egress[0].toFQDNs: toFQDNs needs a DNS proxy that learns the addresses names resolve to",
    "p.yaml:9: CiliumNetworkPolicy/r: spec.egress[1].toServices: toServices needs service load balancing (Kubernetes Services and their backends)",
    "p.yaml:12: CiliumNetworkPolicy/r: spec.egress[2].toPorts[0].rules: rules (L7 HTTP/Kafka/DNS rules) needs an L7 proxy",
  ]);
});

// ---- Cilium's sanitize (pkg/policy/api rule_validation.go), one test per check ----

function problemsOf(spec: string): string[] {
  return load(rule(spec)).problems;
}

test("sanitize: IngressRule.sanitize refuses combining peer kinds (\"Combining %s and %s is not supported yet\")", () => {
  assert.deepEqual(problemsOf("  endpointSelector: {}\n  ingress:\n  - fromEndpoints: [{}]\n    fromEntities: [world]\n"), [
    "p.yaml:9: CiliumNetworkPolicy/r: spec.ingress[0].fromEntities: Combining FromEndpoints and FromEntities is not supported yet (Cilium refuses it too: write one element per peer kind)",
  ]);
  assert.match(problemsOf("  endpointSelector: {}\n  ingress:\n  - fromCIDR: [10.0.0.0/8]\n    fromCIDRSet: [{cidr: 11.0.0.0/8}]\n").join(), /Combining FromCIDR and FromCIDRSet is not supported yet/);
  assert.match(problemsOf("  endpointSelector: {}\n  ingress:\n  - fromNodes: [{}]\n    fromEndpoints: [{}]\n").join(), /Combining FromEndpoints and FromNodes is not supported yet/);
});

test("sanitize: EgressRule.sanitize refuses combining peer kinds, e.g. toEndpoints with toCIDR", () => {
  assert.match(problemsOf("  endpointSelector: {}\n  egress:\n  - toEndpoints: [{}]\n    toCIDR: [10.0.0.0/8]\n").join(), /spec\.egress\[0\]\.toCIDR: Combining ToEndpoints and ToCIDR is not supported yet/);
  // Cilium does not sanitize deny sections: they may combine.
  assert.deepEqual(problemsOf("  endpointSelector: {}\n  egressDeny:\n  - toEndpoints: [{}]\n    toCIDR: [10.0.0.0/8]\n"), []);
});

test("sanitize: \"The ICMPs block may only be present without ToPorts\"", () => {
  assert.match(problemsOf("  endpointSelector: {}\n  ingress:\n  - icmps: [{fields: [{type: 8}]}]\n    toPorts: [{ports: [{port: \"80\"}]}]\n").join(), /icmps: The ICMPs block may only be present without ToPorts\. Define a separate rule to use ToPorts\./);
});

test("sanitize: CIDRRule.sanitize takes only <IP address>/<prefix>: a bare IP in fromCIDRSet is refused, in fromCIDR accepted", () => {
  assert.match(problemsOf("  endpointSelector: {}\n  ingress:\n  - fromCIDRSet: [{cidr: 10.1.2.3}]\n").join(), /fromCIDRSet\[0\]\.cidr: Unable to parse CIDRRule "10\.1\.2\.3": a CIDR set takes a prefix/);
  assert.deepEqual(problemsOf("  endpointSelector: {}\n  ingress:\n  - fromCIDR: [10.1.2.3]\n"), []);
});

test("sanitize: netip.ParsePrefix accepts host bits; reconcile reads the network and warns naming it", () => {
  const r = load(rule("  endpointSelector: {}\n  ingress:\n  - fromCIDRSet: [{cidr: \"2001:db8::1/48\"}]\n"));
  assert.deepEqual(r.problems, ['p.yaml:8: CiliumNetworkPolicy/r: spec.ingress[0].fromCIDRSet[0].cidr: warning: host bits set: read as the network 2001:db8::/48 (Cilium uses the network of "2001:db8::1/48" too)']);
  assert.equal(r.model!.rules[0]!.rule.ingress[0]!.cidrs![0]!.cidr, "2001:db8::/48");
});

test("sanitize: CIDRRule.sanitize: except must lie inside cidr (\"allow CIDR prefix ... does not contain exclude CIDR prefix ...\")", () => {
  assert.match(problemsOf("  endpointSelector: {}\n  ingress:\n  - fromCIDRSet: [{cidr: 10.0.0.0/8, except: [11.0.0.0/8]}]\n").join(), /allow CIDR prefix 10\.0\.0\.0\/8 does not contain exclude CIDR prefix 11\.0\.0\.0\/8/);
});

test("sanitize: PortRule.sanitize: \"too many ports, the max is 40\"; ICMPRule.verify: \"too many types, the max is 40\"", () => {
  const ports = Array.from({ length: 41 }, (_, i) => `{port: "${i + 1}"}`).join(", ");
  assert.match(problemsOf(`  endpointSelector: {}\n  ingress:\n  - toPorts: [{ports: [${ports}]}]\n`).join(), /too many ports, the max is 40 \(got 41\)/);
  const types = Array.from({ length: 41 }, (_, i) => `{type: ${i}}`).join(", ");
  assert.match(problemsOf(`  endpointSelector: {}\n  ingress:\n  - icmps: [{fields: [${types}]}]\n`).join(), /too many types, the max is 40 \(got 41\)/);
});

test("sanitize: PortProtocol.sanitize: names are IANA service names (lower-cased), numbers parse, ParseL4Proto ignores case", () => {
  assert.deepEqual(problemsOf("  endpointSelector: {}\n  ingress:\n  - toPorts: [{ports: [{port: \"80\", protocol: tcp}, {port: Web-Api, protocol: Udp}]}]\n"), []);
  assert.match(problemsOf("  endpointSelector: {}\n  ingress:\n  - toPorts: [{ports: [{port: \"-http\"}]}]\n").join(), /Unable to parse port/);
});

test("sanitize: unsupported entity (\"unsupported entity: %s\")", () => {
  assert.match(problemsOf("  endpointSelector: {}\n  ingress:\n  - fromEntities: [moon]\n").join(), /unsupported entity: moon/);
});

test("sanitize: a rule must have one of EndpointSelector or NodeSelector, not both", () => {
  assert.match(problemsOf("  ingress: [{}]\n").join(), /required field is missing \(expected endpointSelector/);
  assert.match(load("apiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\nmetadata:\n  name: r\nspec:\n  endpointSelector: {}\n  nodeSelector: {}\n  ingress: [{}]\n").problems.join(), /not both/);
});

test("a CIDR set element takes one of cidr, cidrGroupRef and cidrGroupSelector", () => {
  assert.match(problemsOf("  endpointSelector: {}\n  ingress:\n  - fromCIDRSet: [{cidr: 10.0.0.0/8, cidrGroupRef: partners}]\n").join(), /expected one of cidr, cidrGroupRef and cidrGroupSelector, got cidr and cidrGroupRef/);
});

// ---- Cilium's own examples ----

const FIXTURES = join(REPO_ROOT, "test/fixtures/cilium-examples");
const EXAMPLE_WORLD = `apiVersion: reconcile/v1
kind: Node
metadata: {name: n1, labels: {role: worker}}
spec: {address: 192.168.0.1}
---
apiVersion: reconcile/v1
kind: Node
metadata: {name: n2}
spec: {address: 192.168.0.2}
---
apiVersion: reconcile/v1
kind: Endpoint
metadata: {name: svc, labels: {app: myService, env: dev, role: frontend}}
spec: {ipv4: 10.1.0.1, ipv6: "fd00::1", interface: {name: lxc-svc}}
---
apiVersion: reconcile/v1
kind: Endpoint
metadata: {name: backend, labels: {role: backend}}
spec: {ipv4: 10.1.0.2, interface: {name: lxc-backend}}
`;

const files = readdirSync(FIXTURES).filter((f) => f.endsWith(".yaml")).sort();

test("every vendored Cilium example is there", () => {
  assert.equal(files.length, 6);
});

for (const f of files) {
  test(`Cilium example ${f} validates and compiles`, () => {
    const r = loadSnapshot({ revision: "r", files: [{ path: "world.yaml", content: EXAMPLE_WORLD }, { path: f, content: readFileSync(join(FIXTURES, f), "utf8") }] });
    assert.deepEqual(r.problems.map(formatProblem), []);
    const c = compile(r.model!, OPTS);
    assert.ok(c.endpoints.some((e) => e.entries.length > 0), "the example compiles to entries");
  });
}

test("Cilium examples: the verdicts they describe", () => {
  const m = (f: string): Model => loadSnapshot({ revision: "r", files: [{ path: "world.yaml", content: EXAMPLE_WORLD }, { path: f, content: readFileSync(join(FIXTURES, f), "utf8") }] }).model!;
  const icmp = m("l4-icmp.yaml");
  assert.equal(verdict(icmp, "svc", "backend", 1, 8), "allow");
  assert.equal(verdict(icmp, "svc", "backend", 1, 13), "deny");
  assert.equal(verdict(icmp, "svc", "8.8.8.8", 1, 8), "allow");
  assert.equal(verdict(icmp, "svc", "2001:db8::1", 58, 128), "allow");
  const nodes = m("l3-entities-from_nodes.yaml");
  assert.equal(verdict(nodes, "192.168.0.1", "svc", 6, 80), "allow");
  assert.equal(verdict(nodes, "192.168.0.2", "svc", 6, 80), "deny");
  const cidr = m("l3-cidr-cidr.yaml");
  assert.equal(verdict(cidr, "svc", "10.200.0.1", 6, 443), "allow");
  assert.equal(verdict(cidr, "svc", "10.96.0.1", 6, 443), "deny");
  assert.equal(verdict(cidr, "svc", "20.1.1.1", 17, 53), "allow");
  const range = m("l4-l4_port_range.yaml");
  assert.equal(verdict(range, "svc", "backend", 6, 444), "allow");
  assert.equal(verdict(range, "svc", "backend", 6, 445), "deny");
});
