// The seed scenario (DESIGN §9) through compile and explain.
import { test } from "node:test";
import assert from "node:assert/strict";
import { compile } from "../../reconciler/policy/compile.js";
import { explain, policyVerdict } from "../../reconciler/policy/explain.js";
import { Protocol } from "../../reconciler/policy/types.js";
import { seedModel } from "./helpers/policy-model.js";

const opts = { node: "n1", enforcement: "default" as const };
const l3 = { file: "examples/seed/l3-rule.json", line: 1, name: "l3-rule" };

test("seed: app1 ingress has exactly the TCP/80 allow from identity 36895", () => {
  const c = compile(seedModel(), opts);
  const app1 = c.endpoints.find((e) => e.endpoint === "app1")!;
  assert.deepEqual(app1.entries, [
    {
      endpoint: "app1",
      direction: "ingress",
      identity: 36895,
      protocol: 6,
      port: 80,
      endPort: 80,
      portPrefixLen: 16,
      decision: "allow",
      audit: false,
      rules: [l3],
    },
  ]);
  assert.deepEqual(app1.enforce, { ingress: true, egress: false });
  assert.deepEqual(app1.enforcedBy, { ingress: [l3], egress: [] });
  for (const name of ["app2", "app3"]) {
    const ep = c.endpoints.find((e) => e.endpoint === name)!;
    assert.deepEqual(ep.enforce, { ingress: false, egress: false }, name);
    assert.deepEqual(ep.entries, [], name);
  }
  assert.equal(c.endpoints.find((e) => e.endpoint === "app2")!.identity, 36895);
  assert.deepEqual(c.warnings, []);
});

test("seed: ipcache maps every endpoint address to its identity", () => {
  const c = compile(seedModel(), opts);
  const e = c.ipcache.find((x) => x.prefix === "10.11.90.17/32");
  assert.deepEqual(e, { prefix: "10.11.90.17/32", identity: 36895, origin: "endpoint", ref: "Endpoint/app2" });
  const app1 = c.endpoints.find((x) => x.endpoint === "app1")!;
  assert.equal(c.ipcache.find((x) => x.prefix === "10.11.255.104/32")!.identity, app1.identity);
  assert.ok(app1.identity >= 65536 && app1.identity < 1 << 24, `derived identity in range, got ${app1.identity}`);
});

test("seed: explain app2→app1 80/TCP allow, app3→app1 default deny, app2→app1 81/TCP deny", () => {
  const m = seedModel();
  const ok = explain(m, opts, { from: "app2", to: "app1", port: 80, protocol: Protocol.TCP });
  assert.equal(ok.verdict, "allow");
  assert.equal(ok.reason, "allowed by l3-rule (examples/seed/l3-rule.json:1)");
  assert.deepEqual(ok.rules, [l3]);
  assert.equal(ok.fromIdentity, 36895);

  const byIp = explain(m, opts, { from: "10.11.90.17", to: "10.11.255.104", port: 80, protocol: Protocol.TCP });
  assert.equal(byIp.verdict, "allow");

  const app3 = explain(m, opts, { from: "app3", to: "app1", port: 80, protocol: Protocol.TCP });
  assert.equal(app3.verdict, "deny");
  assert.match(app3.reason, /^default deny: app1 is selected by rule examples\/seed\/l3-rule\.json:1 and none allows ingress from identity \d+ \(app3\) on 80\/TCP$/);
  assert.deepEqual(app3.rules, [l3]);

  const p81 = explain(m, opts, { from: "app2", to: "app1", port: 81, protocol: Protocol.TCP });
  assert.equal(p81.verdict, "deny");
  assert.match(p81.reason, /default deny/);

  const udp = explain(m, opts, { from: "app2", to: "app1", port: 80, protocol: Protocol.UDP });
  assert.equal(udp.verdict, "deny");

  // Replies are conntrack's job; the reverse direction app1→app2 is simply not enforced.
  const rev = explain(m, opts, { from: "app1", to: "app2", port: 80, protocol: Protocol.TCP });
  assert.equal(rev.verdict, "allow");
  assert.deepEqual(rev.rules, []);
});

test("seed: compiled entries and explain agree through the datapath lookup rule", () => {
  const m = seedModel();
  const c = compile(m, opts);
  const app1 = c.endpoints.find((e) => e.endpoint === "app1")!;
  const app3id = c.endpoints.find((e) => e.endpoint === "app3")!.identity;
  assert.equal(policyVerdict(app1, "ingress", 36895, 6, 80).decision, "allow");
  assert.equal(policyVerdict(app1, "ingress", 36895, 6, 81).decision, "none");
  assert.equal(policyVerdict(app1, "ingress", app3id, 6, 80).decision, "none");
});

test("seed: enforcement always/never", () => {
  const always = compile(seedModel(), { ...opts, enforcement: "always" });
  for (const ep of always.endpoints) assert.deepEqual(ep.enforce, { ingress: true, egress: true });
  assert.equal(explain(seedModel(), { ...opts, enforcement: "always" }, { from: "app1", to: "app2", port: 80, protocol: 6 }).verdict, "deny");
  const never = compile(seedModel(), { ...opts, enforcement: "never" });
  for (const ep of never.endpoints) {
    assert.deepEqual(ep.enforce, { ingress: false, egress: false });
    assert.deepEqual(ep.enforcedBy, { ingress: [], egress: [] });
  }
  assert.equal(never.endpoints.find((e) => e.endpoint === "app1")!.entries.length, 1);
  assert.equal(explain(seedModel(), { ...opts, enforcement: "never" }, { from: "app3", to: "app1", port: 80, protocol: 6 }).verdict, "allow");
});
