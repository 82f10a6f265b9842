// Identity allocation: reserved, pinned, derived (deterministic, stable), CIDR (local scope),
// and the documented collision rule.
import { test } from "node:test";
import assert from "node:assert/strict";
import { allocateIdentities, assignHashed, defaultHash } from "../../reconciler/policy/identity.js";
import { labelSetKey } from "../../reconciler/policy/labels.js";
import { compile } from "../../reconciler/policy/compile.js";
import { LOCAL_IDENTITY_SCOPE } from "../../reconciler/policy/types.js";
import { endpoint, identity, labels, model, rule, sel } from "./helpers/policy-model.js";

function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

test("reserved identities carry reserved: labels", () => {
  const a = allocateIdentities({ labelSets: [], pinned: [], cidrs: [] });
  assert.deepEqual(a.identities.get(1)!.labels, [{ source: "reserved", key: "host", value: "" }]);
  assert.deepEqual(a.identities.get(6)!.labels, [{ source: "reserved", key: "remote-node", value: "" }]);
  assert.equal(a.identities.get(10)!.origin, "reserved");
  assert.equal(a.identities.size, 10);
});

test("pinned identities need an exact canonical label set match", () => {
  const a = allocateIdentities({
    labelSets: [labels({ id: "app2" }), labels({ id: "app2", extra: "x" })],
    pinned: [identity("app2", 36895, { id: "app2" })],
    cidrs: [],
  });
  assert.equal(a.byLabels.get(labelSetKey(labels({ id: "app2" }))), 36895);
  const other = a.byLabels.get(labelSetKey(labels({ id: "app2", extra: "x" })))!;
  assert.notEqual(other, 36895);
  assert.equal(a.identities.get(other)!.origin, "derived");
});

test("conflicting pinned identities: first by file:line wins, the other is a warning", () => {
  const a = allocateIdentities({
    labelSets: [],
    pinned: [identity("b", 300, { id: "x" }, "b.yaml", 1), identity("a", 301, { id: "x" }, "a.yaml", 1), identity("c", 301, { id: "y" }, "c.yaml", 1)],
    cidrs: [],
  });
  assert.equal(a.byLabels.get(labelSetKey(labels({ id: "x" }))), 301);
  assert.equal(a.problems.length, 2);
  assert.deepEqual(a.problems.map((p) => p.object), ["Identity/b", "Identity/c"]);
});

test("derived identities: deterministic under shuffling, stable when label sets are added", () => {
  const sets = Array.from({ length: 300 }, (_, i) => labels({ app: `a${i}`, tier: String(i % 7) }));
  const base = allocateIdentities({ labelSets: sets, pinned: [], cidrs: ["10.0.0.0/8", "192.168.1.0/24"] });
  const rnd = prng(7);
  for (let round = 0; round < 5; round++) {
    const shuffled = [...sets].sort(() => rnd() - 0.5);
    const again = allocateIdentities({ labelSets: shuffled, pinned: [], cidrs: ["192.168.1.0/24", "10.0.0.0/8"] });
    assert.deepEqual([...again.byLabels].sort(), [...base.byLabels].sort());
    assert.deepEqual([...again.byCidr].sort(), [...base.byCidr].sort());
  }
  const more = allocateIdentities({
    labelSets: [...sets, ...Array.from({ length: 100 }, (_, i) => labels({ other: `o${i}` }))],
    pinned: [],
    cidrs: ["10.0.0.0/8", "192.168.1.0/24", "172.16.0.0/12"],
  });
  for (const [k, id] of base.byLabels) assert.equal(more.byLabels.get(k), id, "adding label sets renumbers nothing");
  for (const [k, id] of base.byCidr) assert.equal(more.byCidr.get(k), id);
  for (const id of base.byLabels.values()) assert.ok(id >= 65536 && id < 1 << 24);
  for (const id of base.byCidr.values()) {
    assert.ok(id > LOCAL_IDENTITY_SCOPE && id < 2 * LOCAL_IDENTITY_SCOPE);
    assert.deepEqual(base.identities.get(id)!.labels.map((l) => l.source), ["cidr"]);
  }
  // number = min + hash(canonical string) mod range: documented formula
  const k = labelSetKey(labels({ app: "a0", tier: "0" }));
  assert.equal(base.byLabels.get(k), 65536 + (defaultHash(k) % ((1 << 24) - 65536)));
});

test("collision: canonical order decides; the later set probes to the next free number", () => {
  const hash = (key: string) => (key.startsWith("k8s:app=") ? 5 : 9);
  const range = { min: 100, max: 110 };
  const r = assignHashed(["k8s:app=zeta", "k8s:app=alpha", "other"], range, hash);
  assert.equal(r.get("k8s:app=alpha"), 105, "canonically first keeps its home");
  assert.equal(r.get("k8s:app=zeta"), 106, "later one probes upward");
  assert.equal(r.get("other"), 109);
  // a loser never takes another key's home slot, and probing wraps around the range
  const r2 = assignHashed(["a", "b", "c"], range, (k) => (k === "c" ? 6 : 5));
  assert.deepEqual([r2.get("a"), r2.get("b"), r2.get("c")], [105, 107, 106]);
  const r3 = assignHashed(["a", "b"], range, () => 9);
  assert.deepEqual([r3.get("a"), r3.get("b")], [109, 100]);
  assert.throws(() => assignHashed(["a", "b", "c"], { min: 0, max: 2 }, () => 0), /exhausted/);
});

test("compile accepts an injected hash: forced collision through the whole pipeline", () => {
  const m = model({
    endpoints: [endpoint("x", { app: "x" }, { ipv4: "10.0.0.1" }), endpoint("y", { app: "y" }, { ipv4: "10.0.0.2" })],
    rules: [rule({ name: "r", selector: sel({ app: "x" }), ingress: [{ endpoints: [sel({ app: "y" })] }] })],
  });
  const c = compile(m, { node: "n1", enforcement: "default" }, { hash: () => 42 });
  const ids = Object.fromEntries(c.endpoints.map((e) => [e.endpoint, e.identity]));
  assert.equal(ids.x, 65536 + 42);
  assert.equal(ids.y, 65536 + 43);
  assert.equal(c.endpoints.find((e) => e.endpoint === "x")!.entries[0]!.identity, 65536 + 43);
});
