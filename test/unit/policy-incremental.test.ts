// Incremental compile (policy/incremental.ts): over many random edit sequences, compileIncremental
// from the previous memo gives exactly compile() of the new model (deep equal), reuses the
// EndpointPolicy objects of endpoints no changed rule selects, and falls back to a full compile
// whenever the identity universe changed. Seeded, deterministic.
import { test } from "node:test";
import assert from "node:assert/strict";
import { compile } from "../../reconciler/policy/compile.js";
import { compileIncremental } from "../../reconciler/policy/incremental.js";
import type { CompileMemo } from "../../reconciler/policy/compile.js";
import type { CompileOptions } from "../../reconciler/policy/types.js";
import type { Model } from "../../reconciler/manifest/model.js";
import { endpoint, identity, labels, model, port, rule, sel } from "./helpers/policy-model.js";
import { APPS, ENVS, ROLES, prng, randomModel, randomRule, randomSelector, type RandomPolicyOptions, type Rng } from "./helpers/random-policy.js";

/** CIDR groups stay out: `cidrsOf` reads the prefixes of the rules only. A fifth of the rules are host policies. */
const GENERATOR: RandomPolicyOptions = { endpoints: [6, 11], rules: [2, 7], cidrGroups: false, hostRules: 0.2, deny: 0.2, provenance: true };
/** Edits add no CIDR: a new CIDR changes the identity universe, which only the edits that say so may do. */
const EDIT: RandomPolicyOptions = { ...GENERATOR, cidrs: false };

let ruleSerial = 0;

/** The CIDR prefixes the rules name (each gets a CIDR identity; /0 is the world), as one string. */
function cidrsOf(m: Model): string {
  const out = new Set<string>();
  for (const r of m.rules) {
    for (const s of [r.rule.ingress, r.rule.egress, r.rule.ingressDeny, r.rule.egressDeny]) {
      for (const p of s) for (const c of p.cidrs ?? []) for (const x of [c.cidr, ...c.except]) if (x !== undefined && !x.endsWith("/0")) out.add(x);
    }
  }
  return [...out].sort().join(",");
}

/** One random edit; unchanged objects stay the same objects (as the load cache hands them out). */
function edit(r: Rng, m: Model, rev: number): { model: Model; universe: boolean; what: string } {
  const rules = [...m.rules];
  const next = (parts: Partial<Model>, universe: boolean, what: string) => ({ model: { ...m, revision: `rev${rev}`, rules, ...parts }, universe, what });
  const i = rules.length > 0 ? r.int(rules.length) : -1;
  switch (r.int(13)) {
    case 0: // new content, same name and place
      if (i < 0) break;
      rules[i] = randomRule(r, { name: rules[i]!.name, file: rules[i]!.at.file, line: rules[i]!.at.line }, EDIT);
      return next({}, false, "modify");
    case 1:
      rules.splice(r.int(rules.length + 1), 0, randomRule(r, { name: `a${ruleSerial++}` }, EDIT));
      return next({}, false, "add");
    case 2:
      if (i < 0) break;
      rules.splice(i, 1);
      return next({}, false, "remove");
    case 3: // moved down a line, content unchanged
      if (i < 0) break;
      rules[i] = { ...rules[i]!, at: { ...rules[i]!.at, line: rules[i]!.at.line + 1 } };
      return next({}, false, "move");
    case 4:
      if (i < 0) break;
      rules[i] = { ...rules[i]!, name: `${rules[i]!.name}x` };
      return next({}, false, "rename");
    case 5: // the same rule parsed again: equal, but not the same object
      if (i < 0) break;
      rules[i] = structuredClone(rules[i]!);
      return next({}, false, "reparse");
    case 6:
      rules.reverse();
      return next({}, false, "reorder");
    case 7: {
      const endpoints = [...m.endpoints];
      const j = r.int(endpoints.length);
      endpoints[j] = { ...endpoints[j]!, labels: endpoint("x", { app: r.pick(APPS), env: r.pick(ENVS), v: `${rev}` }).labels };
      return next({ endpoints }, true, "relabel endpoint");
    }
    case 8:
      return next({ endpoints: [...m.endpoints, endpoint(`n${rev}`, { app: r.pick(APPS) }, { ipv4: `10.0.1.${rev % 250}` })] }, true, "add endpoint");
    case 9: // a rule with a CIDR: a new CIDR identity unless another rule names it already
      rules.push(rule({ name: `c${ruleSerial++}`, selector: randomSelector(r), egress: [{ cidrs: [r.pick(["40.0.0.0/8", "20.1.0.0/16"])] }] }));
      return next({}, false, "cidr rule");
    case 10:
      return next({ identities: [identity("pin2", 2000 + rev, { app: r.pick(APPS) })] }, true, "pin identity");
    case 11: {
      // The local node's labels: host policies select it or not.
      const nodes = [{ ...m.nodes[0]!, labels: labels({ role: r.pick(ROLES), v: `${rev}` }) }, ...m.nodes.slice(1)];
      return next({ nodes }, true, "relabel node");
    }
    default:
      return next({}, false, "no-op");
  }
  return next({}, false, "no-op");
}

test("property: incremental compile equals a full compile over random edit sequences", (t) => {
  const r = prng(7);
  let incremental = 0;
  let fallbacks = 0;
  let reusedEndpoints = 0;
  let hostPolicies = 0;
  for (let mi = 0; mi < 150; mi++) {
    let m = randomModel(r, GENERATOR);
    const opts: CompileOptions = { node: "n1", enforcement: r.pick(["default", "default", "always", "never"] as const), hostAddresses: ["192.168.0.1"] };
    let { policy, memo } = compileIncremental(m, opts, undefined);
    assert.deepStrictEqual(policy, compile(m, opts));
    for (let step = 0; step < 12; step++) {
      const e = edit(r, m, step);
      const prevMemo: CompileMemo = memo;
      const out = compileIncremental(e.model, opts, prevMemo);
      const full = compile(e.model, opts);
      assert.deepStrictEqual(out.policy, full, `model ${mi} step ${step} (${e.what}): incremental differs from full`);
      if (out.policy.endpoints.some((p) => p.endpoint === "reserved:host" && p.entrySet.size > 0)) hostPolicies++;
      if (out.report.full) fallbacks++;
      else {
        incremental++;
        // Endpoints not recomputed are the previous objects.
        const before = new Map(prevMemo.policy.endpoints.map((p) => [p.endpoint, p]));
        const same = out.policy.endpoints.filter((p) => before.get(p.endpoint) === p).length;
        assert.equal(same, out.policy.endpoints.length - out.report.recomputedEndpoints, `${e.what}: reused count`);
        reusedEndpoints += same;
      }
      // A change of the identity universe (endpoints, Identity manifests, CIDR prefixes) must fall
      // back; any other rule edit must not.
      const universe = e.universe || cidrsOf(e.model) !== cidrsOf(m);
      assert.equal(out.report.full, universe, `${e.what}: full compile ${out.report.full} (${out.report.reason ?? "-"})`);
      m = e.model;
      ({ policy, memo } = out);
    }
  }
  t.diagnostic(`${incremental} incremental, ${fallbacks} full, ${reusedEndpoints} endpoints reused, ${hostPolicies} host policies with entries`);
  assert.ok(incremental > 800, `incremental path taken ${incremental} times`);
  assert.ok(fallbacks > 100, `fallback taken ${fallbacks} times`);
  assert.ok(reusedEndpoints > 1000, `endpoints reused ${reusedEndpoints} times`);
  assert.ok(hostPolicies > 200, `a host endpoint with entries in ${hostPolicies} compiles`);
});

test("a one-rule change recomputes only the endpoints that rule selects and keeps the ipcache", () => {
  const eps = [
    endpoint("web1", { app: "web" }, { ipv4: "10.0.0.1" }),
    endpoint("web2", { app: "web" }, { ipv4: "10.0.0.2" }),
    endpoint("db1", { app: "db" }, { ipv4: "10.0.0.3" }),
  ];
  const webRule = rule({ name: "web", file: "rules.yaml", line: 1, selector: sel({ app: "web" }), ingress: [{ endpoints: [sel({ app: "db" })], ports: [port(80)] }] });
  const dbRule = rule({ name: "db", file: "rules.yaml", line: 20, selector: sel({ app: "db" }), ingress: [{ endpoints: [sel({ app: "web" })], ports: [port(5432)] }] });
  const m0 = model({ endpoints: eps, rules: [webRule, dbRule] });
  const opts: CompileOptions = { node: "n1", enforcement: "default" };
  const first = compileIncremental(m0, opts, undefined);
  assert.equal(first.report.full, true);

  const webRule2 = rule({ name: "web", file: "rules.yaml", line: 1, selector: sel({ app: "web" }), ingress: [{ endpoints: [sel({ app: "db" })], ports: [port(8080)] }] });
  const m1 = model({ revision: "r1", endpoints: eps, rules: [webRule2, dbRule] });
  const next = compileIncremental(m1, opts, first.memo);
  assert.deepStrictEqual(next.policy, compile(m1, opts));
  assert.deepEqual(
    { full: next.report.full, changedRules: next.report.changedRules, recomputedEndpoints: next.report.recomputedEndpoints, ipcacheReused: next.report.ipcacheReused },
    { full: false, changedRules: 2, recomputedEndpoints: 2, ipcacheReused: true },
  );
  const byName = (c: typeof first.policy, n: string) => c.endpoints.find((p) => p.endpoint === n)!;
  assert.equal(byName(next.policy, "db1"), byName(first.policy, "db1"), "db1 keeps its EndpointPolicy object");
  assert.notEqual(byName(next.policy, "web1"), byName(first.policy, "web1"));
  assert.equal(next.policy.ipcache, first.policy.ipcache);
  assert.equal(byName(next.policy, "web1").entries[0]!.port, 8080);

  // The same rule moved one line down: changed (its entries name the line).
  const moved = { ...dbRule, at: { ...dbRule.at, line: 21 } };
  const m2 = model({ revision: "r2", endpoints: eps, rules: [webRule2, moved] });
  const third = compileIncremental(m2, opts, next.memo);
  assert.deepStrictEqual(third.policy, compile(m2, opts));
  assert.equal(third.report.recomputedEndpoints, 1);
  assert.equal(byName(third.policy, "db1").entries[0]!.rules[0]!.line, 21);
  assert.equal(byName(third.policy, "web1"), byName(next.policy, "web1"));
});

test("an endpoint change falls back to a full compile and says why", () => {
  const m0 = model({ endpoints: [endpoint("a", { app: "a" }, { ipv4: "10.0.0.1" })], rules: [rule({ name: "x", selector: sel({ app: "a" }), ingress: [{ ports: [port(80)] }] })] });
  const opts: CompileOptions = { node: "n1", enforcement: "default" };
  const first = compileIncremental(m0, opts, undefined);
  const m1 = { ...m0, endpoints: [endpoint("a", { app: "a" }, { ipv4: "10.0.0.9" })] };
  const next = compileIncremental(m1, opts, first.memo);
  assert.equal(next.report.full, true);
  assert.equal(next.report.reason, "endpoints changed");
  assert.deepStrictEqual(next.policy, compile(m1, opts));
  const other = compileIncremental(m1, { ...opts, enforcement: "always" }, next.memo);
  assert.equal(other.report.reason, "options changed");
  // The same rule object twice: compile() evaluates both copies; so does the fallback.
  const twice = { ...m1, rules: [m1.rules[0]!, m1.rules[0]!] };
  const again = compileIncremental(twice, opts, next.memo);
  assert.deepStrictEqual(again.policy, compile(twice, opts));
  assert.equal(again.report.reason, "a rule object appears twice");
});
