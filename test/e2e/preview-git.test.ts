// Previewing commits through the built binary, from a real git repository (bare, file:// URL):
// - a repository of three commits (add a rule, narrow its port range, remove an endpoint): the
//   dry-run of each ref names its commit; `diff` lists exactly the verdict changes, checked
//   against explain on both revisions for every (endpoint, peer, port) of a grid, in text, json
//   and markdown, with exit codes 2 and 0;
// - a three-node repository: `diff --all-nodes` gives each node its own plan;
// - saved plans against the kernel: a plan is refused after a manual map edit and after a new
//   commit (nothing written), and a fresh one applies, after which a dry-run exits 0;
// - the CI example (examples/ci/preview.sh) on a clone with a pull request's commit.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { loadModel } from "../../reconciler/plan/snapshot-to-desired.js";
import { explain } from "../../reconciler/policy/explain.js";
import { readSourceOnce } from "../../reconciler/source/open.js";
import { git } from "./helpers/git.js";
import {
  REPO,
  app1Allows,
  cliCommand,
  cliEnv,
  kernelIpcache,
  makeEnv,
  mapDelete,
  mapDump,
  pinPath,
  reconcile,
  requireTools,
  seedRuleWithPort,
  show,
  type Env,
} from "./helpers/reconcile.js";

/**
 * A bare repository and a work clone pushing to it; `commit` writes files (null deletes), commits
 * (with `config`, git -c settings, e.g. to sign) and pushes.
 */
function repo(env: Env, name: string, files: Record<string, string>) {
  const bare = path.join(env.tmp, `${name}.git`);
  const work = path.join(env.tmp, `${name}-work`);
  git(env.tmp, "init", "-q", "--bare", "-b", "main", bare);
  git(env.tmp, "init", "-q", "-b", "main", work);
  git(work, "remote", "add", "origin", bare);
  const commit = (change: Record<string, string | null>, message: string, config: string[] = []): string => {
    for (const [f, text] of Object.entries(change)) {
      if (text === null) rmSync(path.join(work, f));
      else writeFileSync(path.join(work, f), text);
    }
    git(work, "add", "-A");
    git(work, ...config, "commit", "-q", "-m", message);
    git(work, "push", "-q", "origin", "main");
    return git(work, "rev-parse", "HEAD");
  };
  const first = commit(files, "first");
  return { url: `file://${bare}`, work, first, commit };
}

function seedFiles(env: Env): Record<string, string> {
  return Object.fromEntries(["endpoints.yaml", "identities.yaml", "l3-rule.json"].map((f) => [f, readFileSync(path.join(env.dir, f), "utf8")]));
}

/** A Rule letting app1 reach app3 on TCP from..to. */
function webRule(from: number, to: number): string {
  return [
    "apiVersion: reconcile/v1",
    "kind: Rule",
    "metadata:",
    "  name: web",
    "spec:",
    "  endpointSelector:",
    "    matchLabels:",
    "      id: app3",
    "  ingress:",
    "    - fromEndpoints:",
    "        - matchLabels:",
    "            id: app1",
    "      toPorts:",
    "        - ports:",
    `            - port: "${from}"`,
    `              endPort: ${to}`,
    "              protocol: TCP",
    "",
  ].join("\n");
}

/** endpoints.yaml without the app2 document. */
function withoutApp2(endpoints: string): string {
  return endpoints
    .split(/^---$/m)
    .filter((doc) => !/name: app2\n/.test(doc))
    .join("---");
}

interface ImpactLineJson {
  endpoint: string;
  direction: string;
  verdict: string;
  peers: Array<{ labels?: string; others?: true; except?: string[] }>;
  protocol: number | null;
  protocolsExcept: number[];
  ports: Array<[number, number]>;
  text: string;
}
interface DiffJson {
  base: { revision: string };
  ref: { revision: string };
  summary: { nodes: number; changes: number; newlyAllowed: number; newlyDenied: number };
  nodes: Array<{ node: string; summary: { create: number; update: number; delete: number }; changes: Array<{ op: string; resource: string; id: string }>; policyImpact: { newlyAllowed: ImpactLineJson[]; newlyDenied: ImpactLineJson[]; endpointsAdded: string[]; endpointsRemoved: string[] } }>;
}

test("preview from git: dry-run per ref, diff against explain on a grid, text/json/markdown, exit codes, --all-nodes", async (t) => {
  requireTools("git", "nsenter");
  const env = makeEnv(t, "pgit");
  const r = repo(env, "repo", seedFiles(env));
  const c0 = r.first;
  const c1 = r.commit({ "web.yaml": webRule(8000, 8100) }, "add a rule");
  const c2 = r.commit({ "web.yaml": webRule(8000, 8080) }, "narrow a port");
  const endpoints = readFileSync(path.join(env.dir, "endpoints.yaml"), "utf8");
  const c3 = r.commit({ "endpoints.yaml": withoutApp2(endpoints) }, "remove an endpoint");

  // The dry-run of each ref names its commit (the pin root is empty: everything is to create).
  const stateDir = path.join(env.tmp, "state");
  for (const sha of [c0, c1, c2, c3]) {
    const run = await reconcile(env, ["--dry-run", "--source", r.url, "--ref", sha, "--output", "json", "--state-dir", stateDir]);
    assert.equal(run.code, 2, show(run));
    assert.equal(JSON.parse(run.stdout).revision, `git:${sha}`);
    const text = await reconcile(env, ["--dry-run", "--source", r.url, "--ref", sha, "--state-dir", stateDir]);
    assert.match(text.stdout, new RegExp(`revision git:${sha}`));
  }
  // The private checkouts are gone again.
  assert.deepEqual(readdirSync(stateDir), []);
  const v = await reconcile(env, ["validate", "--source", r.url, "--ref", "main"]);
  assert.equal(v.code, 0, show(v));
  assert.match(v.stdout, new RegExp(`revision git:${c3}`));
  const ex = await reconcile(env, ["explain", "--source", r.url, "--ref", c1, "--from", "app1", "--to", "app3", "--port", "8050/TCP"]);
  assert.match(ex.stdout, /^ALLOW: app1 → app3 8050\/TCP/, show(ex));

  // Each step: diff json lists exactly the flows explain judges differently on the two sides.
  const models = new Map<string, ReturnType<typeof loadModel>["model"]>();
  for (const sha of [c0, c1, c2, c3]) models.set(sha, loadModel(await readSourceOnce({ source: r.url, ref: sha })).model);
  for (const [base, ref] of [[c0, c1], [c1, c2], [c2, c3]] as const) {
    const run = await reconcile(env, ["diff", "--source", r.url, "--base", base, "--ref", ref, "--output", "json"]);
    assert.equal(run.code, 2, show(run));
    const doc = JSON.parse(run.stdout) as DiffJson;
    assert.equal(doc.base.revision, `git:${base}`);
    assert.equal(doc.ref.revision, `git:${ref}`);
    checkGrid(doc, models.get(base)!, models.get(ref)!, env.node);
  }
  const step3 = JSON.parse((await reconcile(env, ["diff", "--source", r.url, "--base", c2, "--ref", c3, "--output", "json"])).stdout) as DiffJson;
  assert.deepEqual(step3.nodes[0]!.policyImpact.endpointsRemoved, ["app2"]);

  // Text and markdown name the changed ports and the rule; no change → exit 0.
  const text = await reconcile(env, ["diff", "--source", r.url, "--base", c1, "--ref", c2]);
  assert.equal(text.code, 2);
  assert.match(text.stdout, /app3 ingress: newly DENIED from \{id=app1\} TCP\/8081-8100 \(rule web, web\.yaml:1 no longer allows it\)/, show(text));
  const md = await reconcile(env, ["diff", "--source", r.url, "--base", c1, "--ref", c2, "--output", "markdown"]);
  assert.equal(md.code, 2);
  assert.match(md.stdout, /^### reconcile diff: `[0-9a-f]{40}` → `[0-9a-f]{40}`/);
  assert.match(md.stdout, /^- app3 ingress: \*\*newly DENIED\*\* from \{id=app1\} TCP\/8081-8100/m);
  assert.match(md.stdout, /<details><summary>Plan: /);
  const branch = await reconcile(env, ["diff", "--source", r.url, "--base", c2, "--ref", "main"]);
  assert.equal(branch.code, 2, "main is c3: a change from c2");
  const none = await reconcile(env, ["diff", "--source", r.url, "--base", c3, "--ref", "main"]);
  assert.equal(none.code, 0, show(none));
  // A side may be a directory: the env's manifests are the seed, as c0.
  const dir = await reconcile(env, ["diff", "--source", r.url, "--base", env.dir, "--ref", c0, "--output", "json"]);
  assert.equal(dir.code, 0, show(dir));
  const bad = await reconcile(env, ["diff", "--source", r.url, "--base", "no-such-branch", "--ref", c0]);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /couldn't find remote ref no-such-branch/);

  // Three nodes: each gets its own plan.
  const nodes = ["n1", "n2", "n3"];
  const nodeYaml = nodes.map((n, i) => `apiVersion: reconcile/v1\nkind: Node\nmetadata:\n  name: ${n}\nspec:\n  address: 192.0.2.${11 + i}\n  tunnel:\n    type: vxlan\n  podCIDRs:\n    - 10.${20 + i}.0.0/24\n`).join("---\n");
  const ep = (name: string, node: string, ip: string) => `apiVersion: reconcile/v1\nkind: Endpoint\nmetadata:\n  name: ${name}\n  labels:\n    id: ${name}\nspec:\n  node: ${node}\n  ipv4: ${ip}\n  interface:\n    name: lxc-${name}\n    create:\n      kind: veth\n      netns: rc-${name}\n      ifname: eth0\n`;
  const eps = [ep("app1", "n1", "10.20.0.5"), ep("app2", "n2", "10.21.0.5"), ep("app3", "n3", "10.22.0.5")];
  const multi = repo(env, "multi", { "nodes.yaml": nodeYaml, "endpoints.yaml": eps.join("---\n"), "web.yaml": webRule(80, 80) });
  const m1 = multi.commit({ "endpoints.yaml": [...eps, ep("app4", "n2", "10.21.0.6")].join("---\n"), "web.yaml": webRule(80, 81) }, "app4 on n2, web on 80-81");
  const all = await reconcile(env, ["diff", "--source", multi.url, "--base", multi.first, "--ref", m1, "--all-nodes", "--output", "json"]);
  assert.equal(all.code, 2, show(all));
  const doc = JSON.parse(all.stdout) as DiffJson;
  assert.deepEqual(doc.nodes.map((n) => n.node), nodes);
  const ids = (node: string) => doc.nodes.find((n) => n.node === node)!.changes.map((c) => `${c.op} ${c.resource} ${c.id}`);
  // n3 hosts app3 (web's subject): TCP/80-81 (one /15 port block) replaces TCP/80 there; app4's
  // address enters its ipcache.
  assert.ok(ids("n3").some((c) => /^create policy app3\/ingress\/\d+\/6\/80\/15$/.test(c)), ids("n3").join("\n"));
  assert.ok(ids("n3").includes("create ipcache 10.21.0.6/32"), ids("n3").join("\n"));
  // n2 hosts app4: its device is created there and nowhere else.
  assert.ok(ids("n2").includes("create device lxc-app4"), ids("n2").join("\n"));
  assert.ok(!ids("n1").includes("create device lxc-app4") && !ids("n3").includes("create device lxc-app4"));
  assert.ok(ids("n1").includes("create ipcache 10.21.0.6/32") && !ids("n1").some((c) => c.includes("policy")));
  assert.equal(doc.nodes.find((n) => n.node === "n3")!.policyImpact.newlyAllowed.length, 1);
  const mdAll = await reconcile(env, ["diff", "--source", multi.url, "--base", multi.first, "--ref", m1, "--all-nodes", "--output", "markdown"]);
  for (const n of nodes) assert.match(mdAll.stdout, new RegExp(`^\\| ${n} \\|`, "m"));
});

/**
 * Every (endpoint, peer, TCP port) of a grid: in a line of the diff exactly when explain's verdict
 * differs between the revisions (only ingress is enforced in these manifests, so explain's verdict
 * is the destination's).
 */
function checkGrid(doc: DiffJson, base: ReturnType<typeof loadModel>["model"], ref: ReturnType<typeof loadModel>["model"], node: string): void {
  const lines = [...doc.nodes[0]!.policyImpact.newlyAllowed, ...doc.nodes[0]!.policyImpact.newlyDenied];
  const names = (m: typeof base) => new Set(m.endpoints.map((e) => e.name));
  const both = [...names(base)].filter((n) => names(ref).has(n));
  const peerLabels = (peer: string) => `k8s:id=${peer}`;
  let changed = 0;
  for (const to of both) {
    for (const from of both) {
      if (from === to) continue;
      for (const p of [79, 80, 81, 7999, 8000, 8050, 8080, 8081, 8100, 8101]) {
        const q = { from, to, port: p, protocol: 6 };
        const before = explain(base, { node, enforcement: "default" }, q).verdict;
        const after = explain(ref, { node, enforcement: "default" }, q).verdict;
        const covering = lines.filter(
          (l) =>
            l.endpoint === to &&
            l.direction === "ingress" &&
            (l.protocol === null ? !l.protocolsExcept.includes(6) : l.protocol === 6 && l.ports.some(([lo, hi]) => lo <= p && p <= hi)) &&
            l.peers.some((x) => (x.others ? !x.except!.includes(peerLabels(from)) : x.labels === peerLabels(from))),
        );
        const what = `${from} → ${to}:${p}: ${before} → ${after}; lines ${covering.map((l) => l.text).join(" | ")}`;
        if (before === after) assert.equal(covering.length, 0, what);
        else {
          changed++;
          assert.equal(covering.length, 1, what);
          assert.equal(covering[0]!.verdict, after, what);
        }
      }
    }
  }
  if (doc.summary.newlyAllowed + doc.summary.newlyDenied > 0) assert.ok(changed > 0, "the grid meets the changed verdicts");
}

test("a local directory with --ref: a repository's commit for --dry-run, validate, explain and diff; a plain directory is refused", async (t) => {
  requireTools("git", "nsenter");
  const env = makeEnv(t, "plocal");
  const r = repo(env, "repo", seedFiles(env));
  // The work clone's tree moves the rule to 8080 without committing it: --ref reads the commit.
  writeFileSync(path.join(r.work, "l3-rule.json"), seedRuleWithPort(8080));
  const dry = await reconcile(env, ["--dry-run", "--source", r.work, "--ref", "main", "--output", "json"]);
  assert.equal(dry.code, 2, show(dry));
  const plan = JSON.parse(dry.stdout) as { revision: string; changes: Array<{ id: string }> };
  assert.equal(plan.revision, `git:${r.first}`);
  assert.ok(plan.changes.some((c) => c.id === "app1/ingress/36895/6/80/16"), "the committed port 80, not the tree's 8080");
  const tree = await reconcile(env, ["--dry-run", "--source", r.work, "--output", "json"]);
  assert.match((JSON.parse(tree.stdout) as { revision: string }).revision, /^sha256:/);
  assert.ok((JSON.parse(tree.stdout) as { changes: Array<{ id: string }> }).changes.some((c) => c.id === "app1/ingress/36895/6/8080/16"));
  const v = await reconcile(env, ["validate", "--source", r.work, "--ref", r.first]);
  assert.equal(v.code, 0, show(v));
  assert.match(v.stdout, new RegExp(`revision git:${r.first}`));
  const ex = await reconcile(env, ["explain", "--source", r.work, "--ref", "main", "--from", "app2", "--to", "app1", "--port", "80/TCP"]);
  assert.match(ex.stdout, /^ALLOW: app2 → app1 80\/TCP/, show(ex));
  const d = await reconcile(env, ["diff", "--source", r.work, "--base", "main", "--ref", r.work, "--output", "json"]);
  assert.equal(d.code, 2, show(d));
  assert.equal((JSON.parse(d.stdout) as DiffJson).base.revision, `git:${r.first}`);

  // env.dir is no git repository: every one-shot command refuses the ref, exit 1, nothing on stdout.
  for (const args of [["--dry-run"], ["validate"], ["explain", "--from", "app2", "--to", "app1", "--port", "80"]]) {
    const run = await reconcile(env, [...args, "--source", env.dir, "--ref", "main"]);
    assert.equal(run.code, 1, show(run));
    assert.equal(run.stdout, "");
    assert.match(run.stderr, /^reconcile: --ref main: --source \S+ is a directory that is not a git repository, so it has no commit main to read/, show(run));
  }
  const bad = await reconcile(env, ["diff", "--source", env.dir, "--base", "main", "--ref", env.dir]);
  assert.equal(bad.code, 1, show(bad));
  assert.match(bad.stderr, /^reconcile: --base main: --source \S+ is a directory that is not a git repository/, show(bad));
  assert.ok(!existsSync(env.pinRoot), "nothing was pinned");
});

test("--verify-signatures in one-shot commands: an unsigned commit is refused with exit 1 and nothing else happens; a signed one is read", async (t) => {
  requireTools("git", "nsenter", "ssh-keygen");
  const env = makeEnv(t, "psig");
  const r = repo(env, "repo", seedFiles(env));
  const key = path.join(env.tmp, "signer");
  spawnSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "signer", "-f", key], { stdio: "ignore" });
  const allowed = path.join(env.tmp, "allowed_signers");
  writeFileSync(allowed, `test@example.com namespaces="git" ${readFileSync(`${key}.pub`, "utf8").trim()}\n`);
  const signed = r.commit({ "l3-rule.json": seedRuleWithPort(8080) }, "signed", ["-c", "gpg.format=ssh", "-c", `user.signingkey=${key}`, "-c", "commit.gpgsign=true"]);
  const unsigned = r.commit({ "l3-rule.json": seedRuleWithPort(8081) }, "unsigned");
  const stateDir = path.join(env.tmp, "state");
  const verify = ["--verify-signatures", allowed, "--state-dir", stateDir];

  const ok = await reconcile(env, ["validate", "--source", r.url, "--ref", signed, ...verify]);
  assert.equal(ok.code, 0, show(ok));
  assert.match(ok.stdout, new RegExp(`revision git:${signed}`));
  const refusal = new RegExp(`^reconcile: commit ${unsigned}: signature verification failed \\(expected a good signature from an allowed signer\\)`);
  for (const args of [
    ["validate", "--source", r.url, "--ref", "main"],
    ["--dry-run", "--source", r.url, "--ref", "main"],
    ["explain", "--source", r.url, "--ref", unsigned, "--from", "app2", "--to", "app1", "--port", "8081"],
    ["diff", "--source", r.url, "--base", signed, "--ref", "main"],
  ]) {
    const run = await reconcile(env, [...args, ...verify]);
    assert.equal(run.code, 1, `${args.join(" ")}: ${show(run)}`);
    assert.match(run.stderr, refusal, `${args.join(" ")}: ${show(run)}`);
    assert.equal(run.stderr.split("\n").filter(Boolean).length, 1, `one line: ${show(run)}`);
    assert.equal(run.stdout, "", `${args.join(" ")}: nothing printed`);
  }
  // Nothing else: no checkout left behind, nothing pinned. Without the check the same ref reads.
  assert.deepEqual(readdirSync(stateDir), []);
  assert.ok(!existsSync(env.pinRoot), "nothing was pinned");
  const unchecked = await reconcile(env, ["validate", "--source", r.url, "--ref", "main"]);
  assert.equal(unchecked.code, 0, show(unchecked));
  assert.match(unchecked.stdout, new RegExp(`revision git:${unsigned}`));
});

test("saved plans: refused after a manual map edit and after a new commit, nothing written; a fresh one applies", async (t) => {
  requireTools("git", "nsenter", "bpftool");
  const env = makeEnv(t, "splan");
  const r = repo(env, "repo", seedFiles(env));
  const src = ["--source", r.url, "--ref", "main"];
  const applied = await reconcile(env, ["--once", ...src]);
  assert.equal(applied.code, 0, show(applied));
  r.commit({ "l3-rule.json": seedRuleWithPort(8080) }, "port 8080");
  const plan1 = path.join(env.tmp, "plan1.json");
  const dry = await reconcile(env, ["--dry-run", ...src, "--out", plan1]);
  assert.equal(dry.code, 2, show(dry));
  assert.match(dry.stderr, /Saved the plan to /);
  const saved = JSON.parse(readFileSync(plan1, "utf8"));
  assert.equal(saved.format, "reconcile-plan/v1");
  assert.match(saved.revision, /^git:[0-9a-f]{40}$/);
  assert.deepEqual(saved.plan.changes.map((c: { op: string; id: string }) => `${c.op} ${c.id}`).sort(), ["create app1/ingress/36895/6/8080/16", "delete app1/ingress/36895/6/80/16"]);

  // A manual edit of the ipcache: the plan was made against another datapath.
  const ipcache = pinPath(env, "ipcache");
  const victim = mapDump(ipcache)[0]!;
  mapDelete(ipcache, victim.key);
  const ipcacheAfterEdit = kernelIpcache(env);
  const stale = await reconcile(env, ["--once", ...src, "--plan", plan1]);
  assert.equal(stale.code, 1, show(stale));
  assert.match(stale.stderr, /saved plan .*plan1\.json is stale: the datapath changed since the plan was made/);
  assert.deepEqual(kernelIpcache(env), ipcacheAfterEdit, "nothing written");
  assert.ok(app1Allows(env, 80) && !app1Allows(env, 8080));

  // A plan made now (it repairs the entry too), then a new commit lands before it is applied.
  const plan2 = path.join(env.tmp, "plan2.json");
  assert.equal((await reconcile(env, ["--dry-run", ...src, "--out", plan2])).code, 2);
  r.commit({ "l3-rule.json": seedRuleWithPort(8081) }, "port 8081");
  const moved = await reconcile(env, ["--once", ...src, "--plan", plan2]);
  assert.equal(moved.code, 1, show(moved));
  assert.match(moved.stderr, /is stale: the source is at revision git:[0-9a-f]{40}, the plan was made for git:/);
  assert.deepEqual(kernelIpcache(env), ipcacheAfterEdit, "nothing written");
  assert.ok(app1Allows(env, 80) && !app1Allows(env, 8081));

  // A fresh plan applies exactly, and afterwards there is nothing left to do.
  const plan3 = path.join(env.tmp, "plan3.json");
  assert.equal((await reconcile(env, ["--dry-run", ...src, "--out", plan3])).code, 2);
  const ok = await reconcile(env, ["--once", ...src, "--plan", plan3, "--output", "json"]);
  assert.equal(ok.code, 0, show(ok));
  const report = JSON.parse(ok.stdout) as { changes: Array<{ op: string; id: string }>; applied: number };
  const wanted = (JSON.parse(readFileSync(plan3, "utf8")) as { plan: { changes: Array<{ op: string; id: string }> } }).plan.changes;
  assert.deepEqual(report.changes.map((c) => `${c.op} ${c.id}`), wanted.map((c) => `${c.op} ${c.id}`), "the saved plan's changes, applied");
  assert.ok(app1Allows(env, 8081) && !app1Allows(env, 80));
  assert.ok(kernelIpcache(env).size === ipcacheAfterEdit.size + 1, "the edited entry is back");
  const after = await reconcile(env, ["--dry-run", ...src]);
  assert.equal(after.code, 0, show(after));
  // A file that is no plan is refused as such.
  writeFileSync(path.join(env.tmp, "junk.json"), "{}");
  const junk = await reconcile(env, ["--once", ...src, "--plan", path.join(env.tmp, "junk.json")]);
  assert.equal(junk.code, 1);
  assert.match(junk.stderr, /not a saved plan/);
  assert.ok(existsSync(env.pinRoot));
});

test("examples/ci/preview.sh: validates the checkout and writes the pull request's preview as markdown", async (t) => {
  requireTools("git");
  const env = makeEnv(t, "pci");
  const r = repo(env, "repo", seedFiles(env));
  // The CI checkout: a clone (origin/main is the target branch) with the pull request's commit.
  const checkout = path.join(env.tmp, "checkout");
  git(env.tmp, "clone", "-q", r.url, checkout);
  writeFileSync(path.join(checkout, "l3-rule.json"), seedRuleWithPort(8080));
  git(checkout, "commit", "-qam", "serve on 8080");
  const reconcileCmd = cliCommand().map((a) => (a === "tsx" ? import.meta.resolve("tsx") : a)).join(" ");
  const script = path.join(REPO, "examples", "ci", "preview.sh");
  const out = path.join(env.tmp, "preview.md");
  const run = (cwd: string) => spawnSync(script, [], { cwd, encoding: "utf8", env: { ...cliEnv(env), RECONCILE: reconcileCmd, OUT: out } });
  const ok = run(checkout);
  assert.equal(ok.status, 0, `${ok.stdout}\n${ok.stderr}`);
  assert.match(ok.stdout, /^valid: 3 files/m);
  assert.match(ok.stdout, /HEAD changes the datapath/);
  const md = readFileSync(out, "utf8");
  assert.match(md, /^### reconcile diff: `origin\/main` → `HEAD`/);
  assert.match(md, /- app1 ingress: \*\*newly DENIED\*\* from \{id=app2\} TCP\/80 \(rule l3-rule, l3-rule\.json:2 no longer allows it\)/);
  assert.match(md, /- app1 ingress: \*\*newly ALLOWED\*\* from \{id=app2\} TCP\/8080/);
  // An invalid branch fails the job at validate, with file:line.
  writeFileSync(path.join(checkout, "broken.yaml"), "apiVersion: reconcile/v1\nkind: Endpoint\nmetadata:\n  name: bad\nspec:\n  ipv4: 10.11.300.1\n");
  const bad = run(checkout);
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /broken\.yaml:\d+: Endpoint\/bad/);
});
