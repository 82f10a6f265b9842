// Cilium's documented policy examples (L3, L4, ranges, entities, CIDR/except, deny, default deny,
// enableDefaultDeny, matchExpressions, `{}`), written as in-memory fixtures from the documented
// semantics, checked on compiled entries, on explain, and on their agreement.
import { test } from "node:test";
import assert from "node:assert/strict";
import { compile } from "../../reconciler/policy/compile.js";
import { explain, policyVerdict } from "../../reconciler/policy/explain.js";
import type { CompiledPolicy, CompileOptions, EndpointPolicy, PolicyEntry } from "../../reconciler/policy/types.js";
import type { Model } from "../../reconciler/manifest/model.js";
import { endpoint, model, node, port, rule, sel } from "./helpers/policy-model.js";

const opts: CompileOptions = { node: "n1", enforcement: "default", hostAddresses: ["192.168.0.1"] };

/** frontend, backend, db locally; a remote "other" on n2. */
function cluster(rules: Model["rules"]): Model {
  return model({
    endpoints: [
      endpoint("frontend", { role: "frontend", env: "prod" }, { ipv4: "10.0.1.1", ipv6: "f00d::1" }),
      endpoint("backend", { role: "backend", env: "prod" }, { ipv4: "10.0.1.2" }),
      endpoint("db", { role: "db", env: "dev" }, { ipv4: "10.0.1.3" }),
      endpoint("other", { role: "other" }, { ipv4: "10.0.2.1", node: "n2" }),
    ],
    nodes: [node("n1", "192.168.0.1"), node("n2", "192.168.0.2")],
    rules,
  });
}

const ep = (c: CompiledPolicy, name: string): EndpointPolicy => c.endpoints.find((e) => e.endpoint === name)!;
const idOf = (c: CompiledPolicy, name: string): number => ep(c, name).identity;
const brief = (e: PolicyEntry) => `${e.direction} ${e.identity} ${e.protocol}/${e.port}/${e.portPrefixLen} ${e.decision}`;
const verdict = (m: Model, from: string, to: string, p: number, proto = 6) => explain(m, opts, { from, to, port: p, protocol: proto }).verdict;

/** Explain and the compiled entries (via the datapath lookup rule) agree on a flow into `to`. */
function agreeIngress(m: Model, c: CompiledPolicy, from: string, to: string, p: number, proto = 6): void {
  const x = explain(m, opts, { from, to, port: p, protocol: proto });
  const pol = ep(c, to);
  const v = policyVerdict(pol, "ingress", x.fromIdentity, proto, p).decision;
  const compiled = !pol.enforce.ingress ? "allow" : v === "allow" ? "allow" : "deny";
  assert.equal(compiled, x.verdict, `${from}→${to} ${p}/${proto}: compiled ${compiled}, explain ${x.verdict} (${x.reason})`);
}

test("L3 labels-based: backend accepts everything from frontend", () => {
  const m = cluster([rule({ name: "l3", selector: sel({ role: "backend" }), ingress: [{ endpoints: [sel({ role: "frontend" })] }] })]);
  const c = compile(m, opts);
  assert.deepEqual(ep(c, "backend").entries.map(brief), [`ingress ${idOf(c, "frontend")} 0/0/0 allow`]);
  assert.equal(ep(c, "backend").entries[0]!.endPort, 65535);
  assert.equal(verdict(m, "frontend", "backend", 1234), "allow");
  assert.equal(verdict(m, "frontend", "backend", 0, 1), "allow", "ICMP too");
  assert.equal(verdict(m, "db", "backend", 80), "deny");
  assert.equal(verdict(m, "8.8.8.8", "backend", 80), "deny");
  for (const f of ["frontend", "db", "other", "8.8.8.8", "f00d::1"]) agreeIngress(m, c, f, "backend", 80);
});

test("L4-only: port 80/TCP from anywhere is identity 0", () => {
  const m = cluster([rule({ name: "l4", selector: sel({ role: "backend" }), ingress: [{ ports: [port(80)] }] })]);
  const c = compile(m, opts);
  assert.deepEqual(ep(c, "backend").entries.map(brief), ["ingress 0 6/80/16 allow"]);
  assert.equal(verdict(m, "8.8.8.8", "backend", 80), "allow");
  assert.equal(verdict(m, "db", "backend", 80), "allow");
  assert.equal(verdict(m, "db", "backend", 81), "deny");
  assert.equal(verdict(m, "db", "backend", 80, 17), "deny");
});

test("L3+L4, protocol ANY and port 0", () => {
  const m = cluster([
    rule({
      name: "l34",
      selector: sel({ role: "backend" }),
      ingress: [{ endpoints: [sel({ role: "frontend" })], ports: [port(80), port(53, "ANY"), port(0, "UDP")] }],
    }),
  ]);
  const c = compile(m, opts);
  const f = idOf(c, "frontend");
  assert.deepEqual(ep(c, "backend").entries.map(brief), [`ingress ${f} 6/53/16 allow`, `ingress ${f} 6/80/16 allow`, `ingress ${f} 17/0/0 allow`, `ingress ${f} 17/53/16 allow`, `ingress ${f} 132/53/16 allow`]);
  assert.equal(verdict(m, "frontend", "backend", 9999, 17), "allow");
  assert.equal(verdict(m, "frontend", "backend", 53, 132), "allow");
  assert.equal(verdict(m, "frontend", "backend", 0, 1), "deny", "ANY does not include ICMP");
});

test("port ranges become LPM blocks, and explain agrees at every edge", () => {
  const m = cluster([rule({ name: "range", selector: sel({ role: "backend" }), ingress: [{ endpoints: [sel({ role: "frontend" })], ports: [port(8080, "TCP", 8090)] }] })]);
  const c = compile(m, opts);
  assert.deepEqual(ep(c, "backend").entries.map((e) => `${e.port}-${e.endPort}/${e.portPrefixLen}`), ["8080-8087/13", "8088-8089/15", "8090-8090/16"]);
  for (const p of [8079, 8080, 8087, 8088, 8090, 8091]) agreeIngress(m, c, "frontend", "backend", p);
  assert.equal(verdict(m, "frontend", "backend", 8090), "allow");
  assert.equal(verdict(m, "frontend", "backend", 8091), "deny");
});

test("entities: world, host, remote-node, cluster, all", () => {
  const m = cluster([
    rule({ name: "world", selector: sel({ role: "frontend" }), ingress: [{ entities: ["world"], ports: [port(443)] }] }),
    rule({ name: "host", selector: sel({ role: "backend" }), ingress: [{ entities: ["host", "remote-node"] }] }),
    rule({ name: "cluster", selector: sel({ role: "db" }), ingress: [{ entities: ["cluster"] }], egress: [{ entities: ["all"], ports: [port(53, "UDP")] }] }),
  ]);
  const c = compile(m, opts);
  assert.deepEqual(ep(c, "frontend").entries.map((e) => e.identity), [2, 9, 10]);
  assert.deepEqual(ep(c, "backend").entries.map((e) => e.identity), [1, 6]);
  const clusterIds = ep(c, "db").entries.filter((e) => e.direction === "ingress").map((e) => e.identity);
  for (const id of [1, 3, 4, 5, 6, 7, 8, idOf(c, "frontend"), idOf(c, "backend"), idOf(c, "db")]) assert.ok(clusterIds.includes(id), `cluster has ${id}`);
  assert.ok(!clusterIds.includes(2) && !clusterIds.includes(9), "cluster excludes world");
  assert.deepEqual(ep(c, "db").entries.filter((e) => e.direction === "egress").map(brief), ["egress 0 17/53/16 allow"]);
  assert.equal(verdict(m, "8.8.8.8", "frontend", 443), "allow");
  assert.equal(verdict(m, "2001:db8::1", "frontend", 443), "allow");
  assert.equal(verdict(m, "backend", "frontend", 443), "deny");
  assert.equal(verdict(m, "192.168.0.1", "backend", 22), "allow", "host address → host");
  assert.equal(verdict(m, "192.168.0.2", "backend", 22), "allow", "other node → remote-node");
  assert.equal(verdict(m, "other", "db", 5432), "allow", "remote endpoint is in the cluster");
  assert.equal(verdict(m, "8.8.8.8", "db", 5432), "deny");
  assert.equal(verdict(m, "db", "8.8.8.8", 53, 17), "allow");
  assert.equal(verdict(m, "db", "8.8.8.8", 80), "deny");
  for (const f of ["8.8.8.8", "192.168.0.1", "192.168.0.2", "other", "frontend"]) {
    agreeIngress(m, c, f, "db", 5432);
    agreeIngress(m, c, f, "backend", 22);
    agreeIngress(m, c, f, "frontend", 443);
  }
});

test("CIDR with except: except prefixes get identities that are not allowed; /0 is world", () => {
  const m = cluster([
    rule({
      name: "cidr",
      selector: sel({ role: "backend" }),
      egress: [{ cidrs: [{ cidr: "10.0.0.0/8", except: ["10.96.0.0/12"] }, "20.1.1.1/32"] }],
    }),
    rule({ name: "other-cidr", selector: sel({ role: "db" }), egress: [{ cidrs: ["10.96.1.0/24", { cidr: "0.0.0.0/0", except: ["10.0.0.0/8"] }] }] }),
  ]);
  const c = compile(m, opts);
  const cid = (p: string) => [...c.identities.values()].find((i) => i.cidr === p)!.id;
  const backendEgress = ep(c, "backend").entries.map((e) => e.identity);
  assert.deepEqual(backendEgress, [cid("10.0.0.0/8"), cid("20.1.1.1/32")].sort((a, b) => a - b));
  assert.ok(!backendEgress.includes(cid("10.96.0.0/12")) && !backendEgress.includes(cid("10.96.1.0/24")), "sub-prefix inside except stays out");
  const dbEgress = ep(c, "db").entries.map((e) => e.identity);
  assert.ok(dbEgress.includes(2) && dbEgress.includes(9) && dbEgress.includes(cid("20.1.1.1/32")) && dbEgress.includes(cid("10.96.1.0/24")));
  assert.ok(!dbEgress.includes(cid("10.0.0.0/8")));
  const ipc = Object.fromEntries(c.ipcache.map((e) => [e.prefix, e.identity]));
  assert.equal(ipc["10.96.0.0/12"], cid("10.96.0.0/12"));
  assert.equal(ipc["0.0.0.0/0"], 9);
  assert.equal(ipc["::/0"], 10);
  assert.equal(verdict(m, "backend", "10.1.2.3", 80), "allow");
  assert.equal(verdict(m, "backend", "10.96.0.5", 80), "deny");
  assert.equal(verdict(m, "backend", "10.96.1.5", 80), "deny");
  assert.equal(verdict(m, "backend", "20.1.1.1", 80), "allow");
  assert.equal(verdict(m, "backend", "20.1.1.2", 80), "deny");
  assert.equal(verdict(m, "backend", "db", 80), "deny", "CIDR rules do not select endpoints");
  assert.equal(verdict(m, "db", "8.8.8.8", 80), "allow");
  assert.equal(verdict(m, "db", "10.96.1.9", 80), "allow");
  assert.equal(verdict(m, "db", "10.5.0.1", 80), "deny");
});

test("deny over allow, and allows shadowed by a covering deny of the same identity are removed", () => {
  const m = cluster([
    rule({ name: "allow-all", selector: sel({ role: "backend" }), ingress: [{ entities: ["all"] }, { endpoints: [sel({ role: "frontend" })], ports: [port(80)] }, { endpoints: [sel({ role: "db" })] }] }),
    rule({ name: "deny-fe", selector: sel({ role: "backend" }), ingressDeny: [{ endpoints: [sel({ role: "frontend" })] }, { endpoints: [sel({ role: "db" })], ports: [port(22)] }] }),
  ]);
  const c = compile(m, opts);
  const f = idOf(c, "frontend");
  const d = idOf(c, "db");
  assert.deepEqual(
    ep(c, "backend").entries.map(brief),
    ["ingress 0 0/0/0 allow", `ingress ${f} 0/0/0 deny`, `ingress ${d} 0/0/0 allow`, `ingress ${d} 6/22/16 deny`].sort((a, b) => {
      const ia = Number(a.split(" ")[1]);
      const ib = Number(b.split(" ")[1]);
      return ia - ib;
    }),
  );
  assert.equal(verdict(m, "frontend", "backend", 80), "deny");
  assert.match(explain(m, opts, { from: "frontend", to: "backend", port: 80, protocol: 6 }).reason, /^denied by rule deny-fe \(deny-fe\.yaml:1\) at backend ingress$/);
  assert.equal(verdict(m, "db", "backend", 22), "deny");
  assert.equal(verdict(m, "db", "backend", 23), "allow");
  assert.equal(verdict(m, "8.8.8.8", "backend", 22), "allow");
  for (const [f2, p] of [["frontend", 80], ["db", 22], ["db", 23], ["8.8.8.8", 22]] as const) agreeIngress(m, c, f2, "backend", p);
});

test("same key from allow and deny: deny wins and keeps only the denying rules; same key from two rules merges", () => {
  const m = cluster([
    rule({ name: "a1", file: "a.yaml", line: 3, selector: sel({ role: "backend" }), ingress: [{ endpoints: [sel({ role: "frontend" })], ports: [port(80)] }] }),
    rule({ name: "a2", file: "b.yaml", line: 9, selector: sel({ role: "backend" }), ingress: [{ endpoints: [sel({ role: "frontend" })], ports: [port(80), port(81)] }] }),
    rule({ name: "d1", file: "c.yaml", line: 1, selector: sel({ role: "backend" }), ingressDeny: [{ endpoints: [sel({ role: "frontend" })], ports: [port(81)] }] }),
  ]);
  const c = compile(m, opts);
  const [e80, e81] = ep(c, "backend").entries;
  assert.equal(e80!.decision, "allow");
  assert.deepEqual(e80!.rules, [{ file: "a.yaml", line: 3, name: "a1" }, { file: "b.yaml", line: 9, name: "a2" }]);
  assert.equal(e81!.decision, "deny");
  assert.deepEqual(e81!.rules, [{ file: "c.yaml", line: 1, name: "d1" }]);
  const x = explain(m, opts, { from: "frontend", to: "backend", port: 80, protocol: 6 });
  assert.equal(x.reason, "allowed by a1 (a.yaml:3), a2 (b.yaml:9)");
});

test("egress default deny: an egress section enforces egress only", () => {
  const m = cluster([rule({ name: "eg", selector: sel({ role: "frontend" }), egress: [{ endpoints: [sel({ role: "backend" })], ports: [port(8080)] }] })]);
  const c = compile(m, opts);
  assert.deepEqual(ep(c, "frontend").enforce, { ingress: false, egress: true });
  assert.equal(verdict(m, "frontend", "backend", 8080), "allow");
  assert.equal(verdict(m, "frontend", "db", 8080), "deny");
  assert.match(explain(m, opts, { from: "frontend", to: "db", port: 8080, protocol: 6 }).reason, /^default deny: frontend is selected by rule eg\.yaml:1 and none allows egress to identity \d+ \(db\) on 8080\/TCP$/);
  assert.equal(verdict(m, "db", "frontend", 1), "allow");
  // an empty ingress rule `ingress: [{}]` is Cilium's default-deny idiom: enforced, allows nothing
  const m2 = cluster([rule({ name: "deny-all", selector: sel({}), ingress: [{}] })]);
  const c2 = compile(m2, opts);
  for (const e of c2.endpoints) {
    assert.deepEqual(e.enforce, { ingress: true, egress: false });
    assert.deepEqual(e.entries, []);
  }
  assert.equal(verdict(m2, "frontend", "backend", 80), "deny");
});

test("enableDefaultDeny false: allows add, no default deny, denies still apply", () => {
  const soft = rule({ name: "soft", selector: sel({ role: "backend" }), ingress: [{ endpoints: [sel({ role: "frontend" })], ports: [port(80)] }], enableDefaultDeny: { ingress: false } });
  const m = cluster([soft, rule({ name: "deny-db", selector: sel({ role: "backend" }), ingressDeny: [{ endpoints: [sel({ role: "db" })] }], enableDefaultDeny: { ingress: false } })]);
  const c = compile(m, opts);
  const b = ep(c, "backend");
  assert.deepEqual(b.enforce, { ingress: true, egress: false });
  assert.ok(b.entries.some((e) => e.identity === 0 && e.protocol === 0 && e.decision === "allow"), "allow-all entry");
  assert.equal(verdict(m, "8.8.8.8", "backend", 22), "allow");
  assert.equal(verdict(m, "frontend", "backend", 80), "allow");
  assert.equal(verdict(m, "db", "backend", 80), "deny");
  for (const f of ["8.8.8.8", "frontend", "db"]) agreeIngress(m, c, f, "backend", 80);
  // one default-deny rule selecting the same endpoint restores default deny
  const m2 = cluster([soft, rule({ name: "hard", selector: sel({ env: "prod" }), ingress: [{ entities: ["host"] }] })]);
  const c2 = compile(m2, opts);
  assert.ok(!ep(c2, "backend").entries.some((e) => e.identity === 0));
  assert.equal(verdict(m2, "8.8.8.8", "backend", 22), "deny");
  assert.equal(verdict(m2, "frontend", "backend", 80), "allow");
  assert.deepEqual(ep(c2, "backend").enforcedBy.ingress.map((r) => r.name), ["hard"]);
});

test("matchExpressions select endpoints and peers", () => {
  const m = cluster([
    rule({
      name: "expr",
      selector: sel({}, [["env", "In", ["prod", "staging"]], ["role", "NotIn", ["frontend"]]]),
      ingress: [{ endpoints: [sel({}, [["env", "Exists"], ["role", "NotIn", ["backend"]]])] }],
    }),
  ]);
  const c = compile(m, opts);
  assert.deepEqual(c.endpoints.filter((e) => e.enforce.ingress).map((e) => e.endpoint), ["backend"]);
  const peers = ep(c, "backend").entries.map((e) => e.identity);
  assert.deepEqual(peers, [idOf(c, "frontend"), idOf(c, "db")].sort((a, b) => a - b));
  assert.equal(verdict(m, "db", "backend", 1), "allow");
  assert.equal(verdict(m, "other", "backend", 1), "deny", "other has no env label");
});

test("{} in a raw rule selects every identity (wildcard 0); in a namespaced CNP only that namespace", () => {
  const raw = cluster([rule({ name: "all-eps", selector: sel({ role: "backend" }), ingress: [{ endpoints: [sel({})] }] })]);
  const c = compile(raw, opts);
  assert.deepEqual(ep(c, "backend").entries.map(brief), ["ingress 0 0/0/0 allow"]);
  assert.equal(verdict(raw, "8.8.8.8", "backend", 1), "allow");

  const ns = model({
    endpoints: [
      endpoint("a", { app: "a", "io.kubernetes.pod.namespace": "team" }, { ipv4: "10.1.0.1" }),
      endpoint("b", { app: "b", "io.kubernetes.pod.namespace": "team" }, { ipv4: "10.1.0.2" }),
      endpoint("c", { app: "a", "io.kubernetes.pod.namespace": "elsewhere" }, { ipv4: "10.1.0.3" }),
    ],
    rules: [rule({ name: "cnp", origin: "CiliumNetworkPolicy", namespace: "team", selector: sel({ app: "a" }), ingress: [{ endpoints: [sel({})] }] })],
  });
  const cn = compile(ns, opts);
  assert.deepEqual(cn.endpoints.filter((e) => e.enforce.ingress).map((e) => e.endpoint), ["a"], "subject scoped to the namespace");
  assert.deepEqual(ep(cn, "a").entries.map((e) => e.identity).sort(), [idOf(cn, "a"), idOf(cn, "b")].sort());
  assert.equal(explain(ns, opts, { from: "c", to: "a", port: 1, protocol: 6 }).verdict, "deny");
  assert.equal(explain(ns, opts, { from: "b", to: "a", port: 1, protocol: 6 }).verdict, "allow");
  assert.equal(explain(ns, opts, { from: "9.9.9.9", to: "a", port: 1, protocol: 6 }).verdict, "deny");
});

test("ipcache: local and remote endpoints, nodes, host addresses", () => {
  const m = cluster([]);
  const c = compile(m, opts);
  const by = Object.fromEntries(c.ipcache.map((e) => [e.prefix, e]));
  assert.deepEqual(by["10.0.2.1/32"], { prefix: "10.0.2.1/32", identity: idOf(compile(m, { ...opts, node: "n2" }), "other"), origin: "remote-endpoint", tunnelEndpoint: "192.168.0.2", ref: "Endpoint/other" });
  assert.equal(by["f00d::1/128"]!.identity, idOf(c, "frontend"));
  assert.deepEqual(by["192.168.0.2/32"], { prefix: "192.168.0.2/32", identity: 6, origin: "node", ref: "Node/n2" });
  assert.equal(by["192.168.0.1/32"]!.identity, 1);
  assert.deepEqual(c.endpoints.map((e) => e.endpoint), ["backend", "db", "frontend"], "only local endpoints get a policy");
});

test("warnings: selectors that match nothing name their file:line", () => {
  const m = cluster([rule({ name: "w", selector: sel({ role: "nobody" }, [], "w.yaml", 4), ingress: [{ endpoints: [sel({ role: "ghost" }, [], "w.yaml", 7), sel({ "reserved:host": "" })] }] })]);
  const c = compile(m, opts);
  assert.deepEqual(
    c.warnings.map((w) => `${w.file}:${w.line}: ${w.object}: ${w.message} (${w.severity})`),
    [
      "w.yaml:4: Rule/w: endpointSelector {any:role=nobody} matches no endpoint and no Identity (warning)",
      "w.yaml:7: Rule/w: fromEndpoints {any:role=ghost} matches no endpoint and no Identity (warning)",
    ],
  );
});
