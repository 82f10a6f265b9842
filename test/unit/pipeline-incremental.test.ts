// The daemon's incremental pipeline (plan/snapshot-to-desired.ts IncrementalPipeline) and its parts: the load
// cache (manifest/load.ts), desired-state reuse (datapath/desired.ts) and the diff's skip of an
// endpoint whose policy map is the very same object (plan/diff.ts). Each result must equal what the
// non-incremental functions give for the same snapshot.
import { test } from "node:test";
import assert from "node:assert/strict";
import { buildDesiredState } from "../../reconciler/datapath/desired.js";
import { emptyState, PolicyEntrySet, type ActualState } from "../../reconciler/datapath/state.js";
import { LoadCache, loadSnapshot, ManifestError } from "../../reconciler/manifest/load.js";
import { diff } from "../../reconciler/plan/diff.js";
import { compileModel, IncrementalPipeline, loadModel, type PipelineOptions } from "../../reconciler/plan/snapshot-to-desired.js";
import { compile } from "../../reconciler/policy/compile.js";
import { compileIncremental } from "../../reconciler/policy/incremental.js";
import type { Snapshot } from "../../reconciler/source/snapshot.js";
import { snapshotOfDir } from "./helpers/manifest-snapshot.js";

const OPTS: PipelineOptions = { node: "local", enforcement: "default", attachMode: "tcx" };

/** A snapshot with one file's content replaced, added (content given) or removed (null). */
function withFile(s: Snapshot, path: string, content: string | null, revision: string): Snapshot {
  const files = s.files.filter((f) => f.path !== path);
  if (content !== null) files.push({ path, content });
  return { revision, files };
}

const EXTRA_RULE = `apiVersion: reconcile/v1
kind: Rule
metadata:
  name: app3-from-app1
spec:
  endpointSelector:
    matchLabels:
      id: app3
  ingress:
    - fromEndpoints:
        - matchLabels:
            id: app1
      toPorts:
        - ports:
            - port: "443"
              protocol: TCP
`;

test("IncrementalPipeline gives what loadModel + compileModel give, over a sequence of commits", () => {
  const seed = snapshotOfDir("examples/seed", "r0");
  const rule = seed.files.find((f) => f.path === "l3-rule.json")!.content;
  const endpoints = seed.files.find((f) => f.path === "endpoints.yaml")!.content;
  const commits: Snapshot[] = [seed];
  const push = (path: string, content: string | null): void => void commits.push(withFile(commits.at(-1)!, path, content, `r${commits.length}`));
  push("l3-rule.json", rule.replace('"80"', '"8080"')); // one rule's port
  push("extra.yaml", EXTRA_RULE); // a rule added
  push("extra.yaml", `# a comment moves the rule a line down\n${EXTRA_RULE}`); // moved
  push("endpoints.yaml", endpoints.replace("id: app3", "id: app3\n    tier: back")); // labels: full compile
  push("extra.yaml", null); // removed
  push("l3-rule.json", rule); // back to the seed

  const pipeline = new IncrementalPipeline();
  const notes: string[] = [];
  let previous: ReturnType<IncrementalPipeline["compileModel"]> | undefined;
  for (const snapshot of commits) {
    const loaded = pipeline.load(snapshot);
    const got = pipeline.compileModel(loaded.model, loaded.warnings, OPTS);
    notes.push(pipeline.describeLast());
    const plain = loadModel(snapshot);
    const want = compileModel(plain.model, plain.warnings, OPTS);
    assert.deepStrictEqual(got.model, want.model, `${snapshot.revision}: model`);
    assert.deepStrictEqual(got.policy, want.policy, `${snapshot.revision}: policy`);
    assert.deepStrictEqual(got.desired, want.desired, `${snapshot.revision}: desired state`);
    assert.deepStrictEqual(got.warnings, want.warnings, `${snapshot.revision}: warnings`);
    if (previous) {
      // Planned against the previous commit's desired state, both give the same changes.
      const key = (d: typeof want.desired) => diff(d, previous!.desired).changes.map((c) => `${c.op} ${c.resource} ${c.id}`).sort();
      assert.deepEqual(key(got.desired), key(want.desired), `${snapshot.revision}: plan`);
    }
    previous = got;
  }
  assert.deepEqual(notes, [
    "0 files reused, 3 parsed; full compile (no previous compile)",
    "2 files reused, 1 parsed; 2 rules changed, 1 endpoint policies recomputed, ipcache reused",
    "3 files reused, 1 parsed; 1 rules changed, 1 endpoint policies recomputed, ipcache reused",
    "3 files reused, 1 parsed; 2 rules changed, 1 endpoint policies recomputed, ipcache reused",
    "3 files reused, 1 parsed; full compile (endpoints changed)",
    "3 files reused, 0 parsed; 1 rules changed, 1 endpoint policies recomputed, ipcache reused",
    "2 files reused, 1 parsed; 2 rules changed, 1 endpoint policies recomputed, ipcache reused",
  ]);
});

test("IncrementalPipeline rejects an invalid commit and continues from the last good one", () => {
  const seed = snapshotOfDir("examples/seed", "r0");
  const pipeline = new IncrementalPipeline();
  const first = pipeline.compileModel(pipeline.load(seed).model, [], OPTS);
  const broken = withFile(seed, "extra.yaml", EXTRA_RULE.replace('"443"', '"-http"'), "r1");
  assert.throws(() => pipeline.load(broken), (err: unknown) => err instanceof ManifestError && /Unable to parse port/.test(err.message));
  // The same broken file again: reused from the cache, still reported.
  assert.throws(() => pipeline.load({ ...broken, revision: "r2" }), ManifestError);
  const fixed = withFile(seed, "extra.yaml", EXTRA_RULE, "r3");
  const loaded = pipeline.load(fixed);
  const next = pipeline.compileModel(loaded.model, loaded.warnings, OPTS);
  assert.match(pipeline.describeLast(), /1 rules changed, 1 endpoint policies recomputed/);
  assert.deepStrictEqual(next.desired, compileModel(loadModel(fixed).model, [], OPTS).desired);
  assert.equal(next.desired.policy.get("app1"), first.desired.policy.get("app1"), "app1's policy map is the previous object");
});

test("LoadCache: unchanged files give the same objects without parsing; changed and removed files do not", () => {
  const seed = snapshotOfDir("examples/cilium-crd", "r0");
  const cache = new LoadCache();
  const a = loadSnapshot(seed, undefined, cache).model!;
  assert.deepEqual(cache.last, { reused: 0, restored: 0, parsed: seed.files.filter((f) => /\.(ya?ml|json)$/.test(f.path)).length });
  const policies = seed.files.find((f) => f.path === "policies.yaml")!;
  const edited = withFile(seed, "policies.yaml", policies.content.replace('port: "80"', 'port: "81"'), "r1");
  const b = loadSnapshot(edited, undefined, cache).model!;
  assert.deepEqual(cache.last, { reused: 2, restored: 0, parsed: 1 });
  assert.deepStrictEqual(b, loadSnapshot(edited).model, "same model as without the cache");
  assert.equal(b.endpoints[0], a.endpoints[0], "endpoints of an unchanged file are the same objects");
  assert.notEqual(b.rules[0], a.rules[0], "rules of the edited file are new objects");
  // Same content under a new string: still reused (content compared, not object identity).
  const copy = { revision: "r2", files: edited.files.map((f) => ({ path: f.path, content: (" " + f.content).slice(1) })) };
  const c = loadSnapshot(copy, undefined, cache).model!;
  assert.equal(cache.last.parsed, 0);
  assert.equal(c.rules[0], b.rules[0]);
  // A removed file leaves the model and the cache.
  const fewer = withFile(copy, "policies.yaml", null, "r3");
  assert.equal(loadSnapshot(fewer, undefined, cache).model!.rules.length, 0);
  assert.equal(loadSnapshot(copy, undefined, cache).model!.rules.length, b.rules.length);
  assert.equal(cache.last.parsed, 1, "the removed file was forgotten and is parsed again");
});

test("LoadCache: cross-object problems between a cached and a new file are still found", () => {
  const seed = snapshotOfDir("examples/seed", "r0");
  const cache = new LoadCache();
  assert.ok(loadSnapshot(seed, undefined, cache).model);
  const dup = `apiVersion: reconcile/v1\nkind: Endpoint\nmetadata:\n  name: app1\n  labels:\n    id: dup\nspec:\n  ipv4: 10.99.0.1\n  interface:\n    name: lxc-dup\n`;
  const withDup = withFile(seed, "dup.yaml", dup, "r1");
  const r = loadSnapshot(withDup, undefined, cache);
  assert.equal(r.model, undefined);
  assert.deepEqual(
    r.problems.filter((p) => p.severity === "error").map((p) => `${p.file}:${p.line}: ${p.message}`),
    ["endpoints.yaml:7: duplicate Endpoint name (first used by Endpoint/app1 at dup.yaml:1)"],
  );
  assert.deepStrictEqual(r.problems, loadSnapshot(withDup).problems);

  // A cached endpoint on a node that a newly added Node manifest does not name: the warning points
  // at its spec.node line, as without the cache.
  const remote = `apiVersion: reconcile/v1\nkind: Endpoint\nmetadata:\n  name: far\n  labels:\n    id: far\nspec:\n  node: n2\n  ipv4: 10.99.0.2\n  interface:\n    name: lxc-far\n`;
  const withRemote = withFile(seed, "remote.yaml", remote, "r2");
  assert.ok(loadSnapshot(withRemote, undefined, cache).model);
  const node = `apiVersion: reconcile/v1\nkind: Node\nmetadata:\n  name: n1\nspec:\n  address: 192.168.0.1\n`;
  const withNode = withFile(withRemote, "nodes.yaml", node, "r3");
  const w = loadSnapshot(withNode, undefined, cache);
  assert.equal(cache.last.parsed, 1);
  assert.deepEqual(
    w.problems.map((p) => `${p.file}:${p.line}: ${p.path}: ${p.severity}`),
    ["remote.yaml:8: spec.node: warning"],
  );
  assert.deepStrictEqual(w.problems, loadSnapshot(withNode).problems);
});

test("buildDesiredState: a reused EndpointPolicy brings its entry set, the same ipcache array the previous ipcache Map", () => {
  const seed = loadModel(snapshotOfDir("examples/seed", "r0")).model;
  const opts = { node: "local", enforcement: "default" as const };
  const first = compileIncremental(seed, opts, undefined);
  const firstDesired = buildDesiredState(seed, first.policy, { attachMode: "tcx" });
  // The seed rule with port 8080: app1 recompiled, app2 and app3 reused.
  const edited = { ...seed, revision: "r1", rules: seed.rules.map((r) => structuredClone(r)) };
  edited.rules[0]!.rule.ingress[0]!.ports![0] = { port: 8080, endPort: 8080, protocol: "TCP" };
  const next = compileIncremental(edited, opts, first.memo);
  const second = buildDesiredState(edited, next.policy, { attachMode: "tcx" }, { compiled: first.policy, desired: firstDesired });
  assert.deepStrictEqual(second, buildDesiredState(edited, compile(edited, opts), { attachMode: "tcx" }));
  assert.equal(second.policy.get("app2"), firstDesired.policy.get("app2"));
  assert.notEqual(second.policy.get("app1"), firstDesired.policy.get("app1"));
  assert.equal(second.ipcache, firstDesired.ipcache, "the same ipcache array gives the same Map");
  const third = buildDesiredState(edited, { ...next.policy, ipcache: [...next.policy.ipcache] }, { attachMode: "tcx" }, { compiled: next.policy, desired: second });
  assert.notEqual(third.ipcache, second.ipcache);
  assert.deepStrictEqual(third.ipcache, second.ipcache);
});

test("diff: an endpoint whose policy set is the known state's own object plans nothing; others are compared", () => {
  const seed = loadModel(snapshotOfDir("examples/seed", "r0")).model;
  const desired = buildDesiredState(seed, compile(seed, { node: "local", enforcement: "default" }), { attachMode: "tcx" });
  assert.ok(desired.policy.get("app1")!.size > 0);
  // Known state: app1's set shared; app2 holds a stale entry that must be deleted.
  const stale = PolicyEntrySet.fromEntries([{ direction: "ingress", identity: 36895, protocol: 6, port: 9, portPrefixLen: 16, decision: "allow" }]);
  const known: ActualState = { ...emptyState(), ...desired, policy: new Map([...desired.policy].map(([k, v]) => [k, k === "app2" ? stale : v])) };
  const plan = diff(desired, known);
  assert.deepEqual(
    plan.changes.map((c) => `${c.op} ${c.id}`),
    ["delete app2/ingress/36895/6/9/16"],
  );
});
