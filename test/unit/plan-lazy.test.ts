import assert from "node:assert/strict";
import { test } from "node:test";
import { emptyDesired, emptyState, PolicyEntrySet, type DesiredPolicyEntry } from "../../reconciler/datapath/state.js";
import { batches } from "../../reconciler/apply/executor.js";
import { diff, entryChanges, PolicyFill, weightOf, type Change } from "../../reconciler/plan/diff.js";

// A plan keeps each endpoint's policy changes as a run and makes their objects while it is
// iterated: every way of reading it must give the same changes, in the same order.

const rule = { file: "web.yaml", line: 3, name: "web" };
const entry = (endpoint: string, port: number, decision: "allow" | "deny", identity = 36895): DesiredPolicyEntry => ({
  endpoint, direction: "ingress", identity, protocol: 6, port, portPrefixLen: 16, endPort: port, decision, rules: [rule],
});
const ports = (endpoint: string, list: number[], decision: "allow" | "deny" = "allow") => list.map((p) => entry(endpoint, p, decision));

function plan(have: Record<string, DesiredPolicyEntry[]>, want: Record<string, DesiredPolicyEntry[]>) {
  const d = emptyDesired("r2", "n1");
  for (const [ep, list] of Object.entries(want)) d.policy.set(ep, PolicyEntrySet.fromEntries(list));
  d.ipcache.set("10.0.0.1/32", { prefix: "10.0.0.1/32", identity: 36895 } as never);
  const actual = emptyState();
  for (const [ep, list] of Object.entries(have)) actual.policy.set(ep, PolicyEntrySet.fromEntries(list));
  return diff(d, actual);
}

const rows = (changes: Iterable<Change>) => Array.from(changes, (c) => `${c.op} ${c.id}${c.resource === "policy" && c.swap ? " swap" : ""}`);

// cold: a new map; grows: in place; narrows: deletes in place; mixed: a swap; gone: no longer desired.
const mixed = plan(
  { grows: ports("grows", [80]), narrows: ports("narrows", [80, 81, 82]), mixed: [entry("mixed", 80, "allow"), entry("mixed", 90, "deny")], gone: ports("gone", [1, 2]) },
  { cold: ports("cold", [5, 6, 7]), grows: ports("grows", [80, 443]), narrows: ports("narrows", [81]), mixed: [entry("mixed", 80, "deny"), entry("mixed", 100, "allow")] },
);

test("lazy plan: iterating, iterating again and .changes give the same changes in plan order", () => {
  const once = rows(mixed);
  assert.deepEqual(rows(mixed), once, "a second iteration makes the same changes");
  assert.deepEqual(rows(mixed.changes), once);
  assert.deepEqual(rows(mixed), once, "after .changes, iteration reads the kept changes");
  assert.deepEqual(once, [
    "create 10.0.0.1/32",
    "create cold/ingress/36895/6/5/16",
    "create cold/ingress/36895/6/6/16",
    "create cold/ingress/36895/6/7/16",
    "create grows/ingress/36895/6/443/16",
    "update mixed/ingress/36895/6/80/16 swap",
    "create mixed/ingress/36895/6/100/16 swap",
    "delete mixed/ingress/36895/6/90/16 swap",
    // the delete phase runs in reverse plan order, an endpoint's entries too
    "delete gone/ingress/36895/6/2/16",
    "delete gone/ingress/36895/6/1/16",
    "delete narrows/ingress/36895/6/82/16",
    "delete narrows/ingress/36895/6/80/16",
  ]);
});

test("lazy plan: counts without making the changes agree with the changes", () => {
  const fresh = plan({ gone: ports("gone", [1, 2]) }, { cold: ports("cold", [5, 6, 7]), keep: ports("keep", [9]) });
  const changes = [...fresh];
  assert.equal(fresh.size, changes.length);
  assert.deepEqual(fresh.summary, { create: 5, update: 0, delete: 2 });
  assert.deepEqual(fresh.tally(), { "ipcache.create": 1, "policy.create": 4, "policy.delete": 2 });
  assert.deepEqual(fresh.countsByKind(), { ipcache: 1, policy: 6 });
  assert.ok(fresh.touches("policy") && !fresh.touches("attachment"));
  assert.deepEqual(rows(fresh.of(["ipcache"])), ["create 10.0.0.1/32"]);
  assert.deepEqual(rows(fresh.of(["policy"])), rows(changes.filter((c) => c.resource === "policy")));
  assert.deepEqual(mixed.summary, { create: 6, update: 1, delete: 5 });
});

test("lazy plan: after() puts the first round's changes ahead and counts them", () => {
  const first = [...plan({}, {}).of(["ipcache"])];
  const joined = mixed.after(first);
  assert.deepEqual(rows(joined), [...rows(first), ...rows(mixed)]);
  assert.equal(joined.summary.create, mixed.summary.create + 1);
});

test("batches: policy changes split only at an endpoint boundary once a batch holds policyBatch", () => {
  const big = plan({}, { a: ports("a", [1, 2, 3]), b: ports("b", [1, 2]), c: ports("c", [1]) });
  const sizes = (n: number) => [...batches(big, n)].map((b) => `${b[0]!.resource}:${[...new Set(b.map((c) => (c.resource === "policy" ? c.endpoint : c.id)))].join("+")}`);
  assert.deepEqual(sizes(2), ["ipcache:10.0.0.1/32", "policy:a", "policy:b", "policy:c"]);
  assert.deepEqual(sizes(4), ["ipcache:10.0.0.1/32", "policy:a+b", "policy:c"]);
  assert.deepEqual(sizes(100), ["ipcache:10.0.0.1/32", "policy:a+b+c"]);
});

const applyRows = (p: ReturnType<typeof plan>) =>
  Array.from(p.forApply(), (c) => (c instanceof PolicyFill ? `fill ${c.op} ${c.endpoint} ×${c.weight}${c.swap ? " swap" : ""}` : `${c.op} ${c.id}`));

test("forApply: a new map, a swap and an endpoint with no entries left each come as one PolicyFill; in-place runs entry by entry", () => {
  assert.deepEqual(applyRows(mixed), [
    "create 10.0.0.1/32",
    "fill create cold ×3",
    "create grows/ingress/36895/6/443/16",
    "fill create mixed ×2 swap",
    "fill delete mixed ×1 swap",
    "fill delete gone ×2",
    "delete narrows/ingress/36895/6/82/16",
    "delete narrows/ingress/36895/6/80/16",
  ]);
  // The fills stand for exactly the changes the plan shows, in the same order.
  const applied = [...mixed.forApply()];
  assert.deepEqual(rows(entryChanges(applied)), rows(mixed));
  assert.equal(weightOf(applied), mixed.size);
});

test("batches: a PolicyFill counts the entries it stands for, not one", () => {
  const big = plan({}, { a: ports("a", [1, 2, 3]), b: ports("b", [1, 2]), c: ports("c", [1]) });
  const sizes = (n: number) => [...batches(big.forApply(), n)].map((b) => `${b[0]!.resource}:${b.map((c) => (c.resource === "policy" ? `${c.endpoint}×${c.weight}` : c.id)).join("+")}`);
  assert.deepEqual(sizes(4), ["ipcache:10.0.0.1/32", "policy:a×3+b×2", "policy:c×1"]);
  assert.deepEqual(sizes(100), ["ipcache:10.0.0.1/32", "policy:a×3+b×2+c×1"]);
});
