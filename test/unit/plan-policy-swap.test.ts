import assert from "node:assert/strict";
import { test } from "node:test";
import { emptyDesired, emptyState, PolicyEntrySet, type DesiredPolicyEntry } from "../../reconciler/datapath/state.js";
import { batches } from "../../reconciler/apply/executor.js";
import { diff, type Change } from "../../reconciler/plan/diff.js";
import { planDocument, renderPlanText } from "../../reconciler/plan/render.js";

// How an endpoint's policy map is written is a plan decision: in place when the change only widens
// or only narrows the policy, a swap of the whole map otherwise, with all of its changes in one batch.

const rule = { file: "web.yaml", line: 3, name: "web" };
const entry = (endpoint: string, port: number, decision: "allow" | "deny", identity = 36895): DesiredPolicyEntry => ({
  endpoint, direction: "ingress", identity, protocol: 6, port, portPrefixLen: 16, endPort: port, decision, rules: [rule],
});

function plan(have: Record<string, DesiredPolicyEntry[]>, want: Record<string, DesiredPolicyEntry[]>) {
  const d = emptyDesired("r2", "n1");
  for (const [ep, list] of Object.entries(want)) d.policy.set(ep, PolicyEntrySet.fromEntries(list));
  const actual = emptyState();
  for (const [ep, list] of Object.entries(have)) actual.policy.set(ep, PolicyEntrySet.fromEntries(list));
  return diff(d, actual);
}

const swapOf = (changes: readonly Change[]) => changes.map((c) => `${c.op} ${c.id} swap=${c.resource === "policy" && c.swap}`);

test("policy swap: creates that widen and narrow an existing map make one swap, its deletes planned with it", () => {
  // app1: allow 443 and deny 22 come (widens and narrows), allow 80 goes; app2: only a new allow.
  const p = plan(
    { app1: [entry("app1", 80, "allow")], app2: [entry("app2", 80, "allow")] },
    { app1: [entry("app1", 22, "deny"), entry("app1", 443, "allow")], app2: [entry("app2", 80, "allow"), entry("app2", 8080, "allow")] },
  );
  assert.deepEqual(swapOf(p.changes), [
    "create app1/ingress/36895/6/22/16 swap=true",
    "create app1/ingress/36895/6/443/16 swap=true",
    "delete app1/ingress/36895/6/80/16 swap=true",
    "create app2/ingress/36895/6/8080/16 swap=false",
  ]);
  assert.deepEqual(p.summary, { create: 3, update: 0, delete: 1 });
  // The executor hands the swapped endpoint's creates and delete to the target in one call.
  assert.deepEqual([...batches(p.changes)].map((b) => b.length), [4]);
  const doc = planDocument(p, { notes: [] });
  assert.deepEqual(doc.changes.map((c) => c.swap ?? false), [true, true, true, false]);
  assert.match(renderPlanText(p, { notes: [] }, { colour: false }), /^Policy written as a new map and swapped in whole \(the change both widens and narrows it\): app1\.$/m);
});

test("policy swap: a decision flip or mixed deletes swap; phases that each widen or narrow are written in place", () => {
  const flip = plan({ app1: [entry("app1", 80, "allow")] }, { app1: [entry("app1", 80, "deny")] });
  assert.deepEqual(swapOf(flip.changes), ["update app1/ingress/36895/6/80/16 swap=true"]);

  // Removing an allow and a deny, the endpoint keeping a third entry: the delete phase would mix.
  const deletes = plan({ app1: [entry("app1", 22, "deny"), entry("app1", 80, "allow"), entry("app1", 443, "allow")] }, { app1: [entry("app1", 443, "allow")] });
  assert.deepEqual(swapOf(deletes.changes), ["delete app1/ingress/36895/6/22/16 swap=true", "delete app1/ingress/36895/6/80/16 swap=true"]);
  assert.deepEqual([...batches(deletes.changes)].map((b) => b.length), [2]);

  // A port moves (allow added, then allow removed): each phase is monotonic, in place in two batches.
  const move = plan({ app1: [entry("app1", 80, "allow")] }, { app1: [entry("app1", 443, "allow")] });
  assert.deepEqual(swapOf(move.changes), ["create app1/ingress/36895/6/443/16 swap=false", "delete app1/ingress/36895/6/80/16 swap=false"]);
  assert.deepEqual([...batches(move.changes)].map((b) => b.length), [1, 1]);

  // No map yet: a new one is filled whatever the entries are (nothing to swap out).
  const fresh = plan({}, { app1: [entry("app1", 80, "allow"), entry("app1", 22, "deny")] });
  assert.ok(fresh.changes.every((c) => c.resource === "policy" && !c.swap));

  // An endpoint that is gone loses its map in the delete phase, allows and denies alike.
  const gone = plan({ app1: [entry("app1", 80, "allow"), entry("app1", 22, "deny")] }, {});
  assert.deepEqual(gone.changes.map((c) => `${c.op} ${c.resource === "policy" && c.swap}`), ["delete false", "delete false"]);
  assert.doesNotMatch(renderPlanText(gone, { notes: [] }, { colour: false }), /swapped in whole/);
});
