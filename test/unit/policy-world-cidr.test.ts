// toEntities: [world] must keep selecting an outside address after an unrelated rule gives that
// address's prefix a CIDR identity of its own (Cilium labels CIDR identities with the world label).

import assert from "node:assert/strict";
import { test } from "node:test";
import type { Model } from "../../reconciler/manifest/model.js";
import { compile } from "../../reconciler/policy/compile.js";
import { explain, policyVerdict } from "../../reconciler/policy/explain.js";
import { endpoint, port, rule, sel } from "./helpers/policy-model.js";

const opts = { node: "n1", enforcement: "default" as const };

function model(withUnrelatedCidrRule: boolean, entity: "world" | "world-ipv4" | "world-ipv6"): Model {
  const rules = [rule({ name: "to-world", selector: sel({ app: "web" }), egress: [{ entities: [entity] }] })];
  if (withUnrelatedCidrRule) {
    rules.push(rule({ name: "other", selector: sel({ app: "db" }), egress: [{ cidrs: ["20.0.0.0/8", "2001:db8::/32"], ports: [port(443)] }] }));
  }
  return {
    revision: "r",
    endpoints: [endpoint("web", { app: "web" }, { ipv4: "10.0.0.1", ipv6: "fd00::1" }), endpoint("db", { app: "db" }, { ipv4: "10.0.0.2" })],
    identities: [],
    rules,
    nodes: [],
  };
}

for (const [entity, address, selected] of [
  ["world", "20.1.2.3", true],
  ["world", "2001:db8::5", true],
  ["world-ipv4", "20.1.2.3", true],
  ["world-ipv4", "2001:db8::5", false],
  ["world-ipv6", "2001:db8::5", true],
  ["world-ipv6", "20.1.2.3", false],
] as const) {
  test(`egress to ${entity} ${selected ? "allows" : "does not allow"} ${address} whether or not another rule makes its prefix a CIDR identity`, () => {
    for (const unrelated of [false, true]) {
      const m = model(unrelated, entity);
      const answer = explain(m, opts, { from: "web", to: address, port: 443, protocol: 6 });
      assert.equal(answer.verdict, selected ? "allow" : "deny", `${unrelated ? "with" : "without"} the CIDR rule: ${answer.reason}`);
      // The compiled entries (what the datapath looks up) agree with explain.
      const compiled = compile(m, opts);
      const web = compiled.endpoints.find((e) => e.endpoint === "web")!;
      const verdict = policyVerdict(web, "egress", answer.toIdentity, 6, 443);
      assert.equal(verdict.decision === "allow", selected, `compiled entries for identity ${answer.toIdentity}`);
    }
  });
}
