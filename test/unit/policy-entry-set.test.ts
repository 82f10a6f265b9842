// The packed per-endpoint policy sets: exact keys, rule provenance kept through sorting, and the
// plan's merge walk agreeing with a plain per-key comparison over random sets.
import { test } from "node:test";
import assert from "node:assert/strict";
import { emptyDesired, emptyState, policyEntryId, type PolicyMapEntry } from "../../reconciler/datapath/state.js";
import { PolicyEntrySet, type PolicyEntryFields } from "../../reconciler/policy/entry-set.js";
import { decodePolicyEntryKey, packEntry, policyEntryKey } from "../../reconciler/policy/key.js";
import { diff } from "../../reconciler/plan/diff.js";
import type { RuleRef } from "../../reconciler/policy/types.js";
import { prng, type Rng } from "./helpers/random-policy.js";

const PROTOCOLS = [0, 1, 6, 17, 58, 132];

function randomEntry(r: Rng, rules: RuleRef[][]): PolicyEntryFields {
  const protocol = PROTOCOLS[Math.floor(r.next() * PROTOCOLS.length)]!;
  const portPrefixLen = protocol === 0 ? 0 : Math.floor(r.next() * 17);
  const port = protocol === 0 ? 0 : (Math.floor(r.next() * 65536) >>> (16 - portPrefixLen)) << (16 - portPrefixLen) & 0xffff;
  const identity = r.next() < 0.2 ? (1 << 24) | Math.floor(r.next() * 5000) : Math.floor(r.next() * 70000);
  return {
    direction: r.next() < 0.5 ? "ingress" : "egress",
    identity,
    protocol,
    port,
    portPrefixLen,
    decision: r.next() < 0.2 ? "deny" : "allow",
    rules: rules[Math.floor(r.next() * rules.length)]!,
  };
}

/** Random entries with unique keys. */
function randomEntries(r: Rng, n: number, rules: RuleRef[][]): PolicyEntryFields[] {
  const byKey = new Map<number, PolicyEntryFields>();
  while (byKey.size < n) {
    const e = randomEntry(r, rules);
    byKey.set(policyEntryKey(e), e);
  }
  return [...byKey.values()];
}

const RULES: RuleRef[][] = [[{ file: "a.yaml", line: 1, name: "a" }], [{ file: "b.yaml", line: 7, name: "b" }], [{ file: "a.yaml", line: 1, name: "a" }, { file: "b.yaml", line: 7, name: "b" }]];

test("policyEntryKey is exact and decodes back to the same fields, in (direction, identity, protocol, port prefix) order", () => {
  const r = prng(1);
  for (let i = 0; i < 20_000; i++) {
    const e = randomEntry(r, RULES);
    const key = policyEntryKey(e);
    assert.ok(Number.isSafeInteger(key) && Number.isSafeInteger(packEntry(key, "deny")), `key ${key} exact`);
    const { direction, identity, protocol, port, portPrefixLen } = e;
    assert.deepEqual(decodePolicyEntryKey(key), { direction, identity, protocol, port, portPrefixLen });
  }
  const ingressHigh = policyEntryKey({ direction: "ingress", identity: 2 ** 25 - 1, protocol: 255, port: 65535, portPrefixLen: 16 });
  const egressLow = policyEntryKey({ direction: "egress", identity: 0, protocol: 0, port: 0, portPrefixLen: 0 });
  assert.ok(ingressHigh < egressLow, "every ingress key sorts before every egress key");
  assert.ok(
    policyEntryKey({ direction: "ingress", identity: 5, protocol: 255, port: 65535, portPrefixLen: 16 }) <
      policyEntryKey({ direction: "ingress", identity: 6, protocol: 0, port: 0, portPrefixLen: 0 }),
    "identity before protocol and port",
  );
});

test("a set sorts its entries and keeps each entry's rules and decision with it", () => {
  const r = prng(2);
  const entries = randomEntries(r, 500, RULES);
  const set = PolicyEntrySet.fromEntries(entries);
  assert.equal(set.size, 500);
  for (let i = 1; i < set.size; i++) assert.ok(set.key(i - 1) < set.key(i), "ascending keys");
  for (const e of entries) {
    const i = set.indexOf(policyEntryKey(e));
    assert.ok(i >= 0, "every entry is found");
    const back = set.entry(i, "ep");
    assert.equal(back.decision, e.decision);
    assert.equal(back.rules, e.rules, "the very rule list it was built with");
    assert.equal(back.endPort, e.port + 2 ** (16 - e.portPrefixLen) - 1);
  }
  assert.equal(set.indexOf(policyEntryKey({ direction: "egress", identity: 2 ** 25 - 1, protocol: 255, port: 0, portPrefixLen: 0 })), -1);
  assert.equal(PolicyEntrySet.EMPTY.indexOf(0), -1);
});

test("sameEntries compares keys and decisions, not provenance", () => {
  const r = prng(3);
  const entries = randomEntries(r, 50, RULES);
  const a = PolicyEntrySet.fromEntries(entries);
  const kernel = PolicyEntrySet.fromPacked(Float64Array.from(entries.reverse(), (e) => packEntry(policyEntryKey(e), e.decision)));
  assert.ok(a.sameEntries(kernel) && kernel.sameEntries(a));
  const flipped = entries.map((e, i) => (i === 7 ? { ...e, decision: e.decision === "allow" ? ("deny" as const) : ("allow" as const) } : e));
  assert.ok(!a.sameEntries(PolicyEntrySet.fromEntries(flipped)));
  assert.ok(!a.sameEntries(PolicyEntrySet.fromEntries(entries.slice(1))));
});

test("the plan's merge walk equals a per-key comparison over random desired and observed sets", () => {
  for (let seed = 10; seed < 60; seed++) {
    const r = prng(seed);
    const desired = emptyDesired("r", "n");
    const actual = emptyState();
    const expected: string[] = [];
    for (const ep of ["ep1", "ep2", "ep3"]) {
      const pool = randomEntries(r, 120, RULES);
      // One endpoint in five is no longer desired: everything observed of it is deleted.
      const desiredEndpoint = r.next() < 0.8;
      // Each pool entry: only desired, only observed, in both with the same or the other decision.
      const want: PolicyEntryFields[] = [];
      const have: PolicyEntryFields[] = [];
      for (const e of pool) {
        const x = r.next();
        const id = policyEntryId({ endpoint: ep, ...e });
        if (x < 0.25) {
          want.push(e);
          if (desiredEndpoint) expected.push(`create ${id}`);
        } else if (x < 0.5) {
          have.push(e);
          expected.push(`delete ${id}`);
        } else if (x < 0.6) {
          want.push(e);
          have.push({ ...e, decision: e.decision === "allow" ? "deny" : "allow" });
          expected.push(`${desiredEndpoint ? "update" : "delete"} ${id}`);
        } else {
          want.push(e);
          have.push(e);
          if (!desiredEndpoint) expected.push(`delete ${id}`);
        }
      }
      if (desiredEndpoint) desired.policy.set(ep, PolicyEntrySet.fromEntries(want));
      actual.policy.set(ep, PolicyEntrySet.fromPacked(Float64Array.from(have, (e) => packEntry(policyEntryKey(e), e.decision))));
    }
    const planned = diff(desired, actual).changes.map((c) => `${c.op} ${c.id}`);
    assert.deepEqual([...planned].sort(), [...expected].sort(), `seed ${seed}`);
  }
});

test("a policy change shows its entry with provenance on the desired side only", () => {
  const desired = emptyDesired("r", "n");
  const actual = emptyState();
  const e: PolicyEntryFields = { direction: "ingress", identity: 36895, protocol: 6, port: 80, portPrefixLen: 16, decision: "deny", rules: RULES[0]! };
  desired.policy.set("app1", PolicyEntrySet.fromEntries([e]));
  actual.policy.set("app1", PolicyEntrySet.fromPacked(Float64Array.of(packEntry(policyEntryKey(e), "allow"))));
  const [change] = diff(desired, actual).changes;
  assert.equal(change!.op, "update");
  assert.equal(change!.id, "app1/ingress/36895/6/80/16");
  assert.equal(change!.reason, "decision allow → deny");
  assert.deepEqual(change!.after, { endpoint: "app1", direction: "ingress", identity: 36895, protocol: 6, port: 80, endPort: 80, portPrefixLen: 16, decision: "deny", audit: false, rules: RULES[0] });
  assert.deepEqual((change!.before as PolicyMapEntry & { rules?: RuleRef[] }).rules, []);
  assert.equal((change!.before as { decision: string }).decision, "allow");
});

test("an audited deny is its own packed value: enforce ↔ audit is an update of that entry alone, and the kernel set round-trips it", () => {
  const e: PolicyEntryFields = { direction: "ingress", identity: 36895, protocol: 6, port: 80, portPrefixLen: 16, decision: "deny", rules: RULES[0]! };
  const other: PolicyEntryFields = { ...e, port: 443, decision: "deny" };
  const audited = PolicyEntrySet.fromEntries([{ ...e, audit: true }, other]);
  const enforced = PolicyEntrySet.fromEntries([e, other]);
  assert.equal(audited.audit(audited.indexOf(policyEntryKey(e))), true);
  assert.equal(audited.audit(audited.indexOf(policyEntryKey(other))), false);
  assert.equal(audited.sameEntries(enforced), false);
  // An allow is never audited, whatever the caller says.
  assert.equal(PolicyEntrySet.fromEntries([{ ...e, decision: "allow", audit: true }]).audit(0), false);
  const desired = emptyDesired("r", "n");
  const actual = emptyState();
  desired.policy.set("app1", audited);
  actual.policy.set("app1", PolicyEntrySet.fromPacked(Float64Array.from(enforced.packed)));
  const changes = diff(desired, actual).changes;
  assert.deepEqual(changes.map((c) => [c.op, c.id, c.reason]), [["update", "app1/ingress/36895/6/80/16", "decision deny → deny (audit)"]]);
  assert.equal((changes[0]!.after as { audit: boolean }).audit, true);
  assert.equal((changes[0]!.before as { audit: boolean }).audit, false);
  // And back.
  desired.policy.set("app1", enforced);
  actual.policy.set("app1", PolicyEntrySet.fromPacked(Float64Array.from(audited.packed)));
  assert.deepEqual(diff(desired, actual).changes.map((c) => c.reason), ["decision deny (audit) → deny"]);
});

test("a kernel map with entries no key names is rebuilt as a whole, also when it otherwise matches", () => {
  const desired = emptyDesired("r", "n");
  const actual = emptyState();
  const e: PolicyEntryFields = { direction: "ingress", identity: 36895, protocol: 6, port: 80, portPrefixLen: 16, decision: "allow", rules: RULES[0]! };
  desired.policy.set("app1", PolicyEntrySet.fromEntries([e]));
  const kernel = PolicyEntrySet.fromPacked(Float64Array.of(packEntry(policyEntryKey(e), "allow")), 1);
  assert.equal(kernel.sameEntries(desired.policy.get("app1")!), false);
  actual.policy.set("app1", kernel);
  const plan = diff(desired, actual);
  assert.deepEqual(plan.changes.map((c) => `${c.op} ${c.id}`), ["update app1/*"]);
  assert.match(plan.changes[0]!.reason, /1 entries no policy key names/);
});
