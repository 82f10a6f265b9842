// Property: for random small models and random flows, explain (evaluated from the rules) gives the
// same verdict as the compiled entries under the datapath's lookup rule, with source and
// destination identities resolved from the compiled ipcache by longest prefix. Seeded, deterministic.
import { test } from "node:test";
import assert from "node:assert/strict";
import { compile } from "../../reconciler/policy/compile.js";
import { explain, policyVerdict } from "../../reconciler/policy/explain.js";
import { parseAddress, parsePrefix, prefixContainsAddress } from "../../reconciler/manifest/ip.js";
import type { CompiledPolicy, CompileOptions, Direction } from "../../reconciler/policy/types.js";
import { prng, randomModel, type RandomPolicyOptions } from "./helpers/random-policy.js";

/** Host policies stay out: this property judges only the endpoints' own policies from the compiled entries. */
const GENERATOR: RandomPolicyOptions = { endpoints: [3, 6], rules: [1, 5], hostRules: 0 };

function ipcacheLookup(c: CompiledPolicy, ip: string): number {
  const { family, addr } = parseAddress(ip);
  let best = -1;
  let id = -1;
  for (const e of c.ipcache) {
    const p = parsePrefix(e.prefix);
    if (prefixContainsAddress(p, family, addr) && p.len > best) {
      best = p.len;
      id = e.identity;
    }
  }
  return id;
}

test("property: explain verdict equals the compiled entries' datapath verdict", (t) => {
  const r = prng(20240611);
  const OTHER_IPS = ["20.1.2.3", "20.1.9.9", "20.7.0.1", "30.0.0.1", "8.8.8.8", "192.168.0.1", "192.168.0.2", "10.0.0.200"];
  let cases = 0;
  let allows = 0;
  for (let mi = 0; mi < 400; mi++) {
    const m = randomModel(r, GENERATOR);
    const enforcement = r.pick(["default", "default", "default", "always", "never"] as const);
    const opts: Record<string, CompileOptions> = {
      n1: { node: "n1", enforcement, hostAddresses: ["192.168.0.1"] },
      n2: { node: "n2", enforcement, hostAddresses: ["192.168.0.2"] },
    };
    const compiled = { n1: compile(m, opts.n1!), n2: compile(m, opts.n2!) };
    const names = m.endpoints.map((e) => e.name);
    for (let fi = 0; fi < 20; fi++) {
      const from = r.chance(0.7) ? r.pick(names) : r.pick(OTHER_IPS);
      const to = r.chance(0.8) ? r.pick(names) : r.pick(OTHER_IPS);
      const protocol = r.pick([6, 6, 17, 132, 1, 1, 58]);
      const p = protocol === 1 ? r.pick([0, 8, 13]) : protocol === 58 ? r.pick([128, 129]) : r.pick([79, 80, 81, 82, 83, 84, 53, 8000, 8100, 90, 443, 1500, 1]);
      // Judge on the node hosting each endpoint side; the flow's identities come from the
      // ipcache of n1 (identities are cluster-wide, so any node's ipcache gives the same numbers).
      const c1 = compiled.n1;
      const ipOf = (x: string) => m.endpoints.find((e) => e.name === x)?.ipv4 ?? x;
      const fromId = ipcacheLookup(c1, ipOf(from));
      const toId = ipcacheLookup(c1, ipOf(to));
      const side = (name: string, dir: Direction, peer: number): boolean => {
        const ep = m.endpoints.find((e) => e.name === name);
        if (!ep) return true;
        const c = compiled[(ep.node ?? "n1") as "n1" | "n2"];
        const pol = c.endpoints.find((e) => e.endpoint === name)!;
        if (!pol.enforce[dir]) return true;
        return policyVerdict(pol, dir, peer, protocol, p).decision === "allow";
      };
      const compiledVerdict = side(from, "egress", toId) && side(to, "ingress", fromId) ? "allow" : "deny";
      const x = explain(m, opts.n1!, { from, to, port: p, protocol });
      const ctx = () => JSON.stringify({ mi, from, to, p, protocol, enforcement, reason: x.reason, model: m.rules.map((q) => q.rule) }, null, 0).slice(0, 4000);
      assert.equal(x.fromIdentity, fromId, `from identity ${ctx()}`);
      assert.equal(x.toIdentity, toId, `to identity ${ctx()}`);
      assert.equal(x.verdict, compiledVerdict, ctx());
      cases++;
      if (compiledVerdict === "allow") allows++;
    }
  }
  t.diagnostic(`${cases} flows, ${allows} allowed`);
  assert.equal(cases, 8000);
  // both outcomes must be well represented, or the property says little
  assert.ok(allows > 1500 && allows < 6500, `allow count ${allows} of ${cases}`);
});
