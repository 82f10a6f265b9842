// The preview commands' command line: `diff` (directory sides here; git sides in the e2e test),
// --out and --plan, and where markdown output is accepted.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { Writable } from "node:stream";
import { parseArgs, UsageError } from "../../reconciler/cli/args.js";
import { runCommand } from "../../reconciler/cli/commands.js";
import { describeError } from "../../reconciler/cli/errors.js";

const scratch = mkdtempSync(join(tmpdir(), "cli-preview-"));
after(() => rmSync(scratch, { recursive: true, force: true }));

const parse = (argv: string[]) => parseArgs(argv, {}, { node: "n" });

async function run(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let out = "";
  let err = "";
  const stdout = new Writable({ write: (c, _e, cb) => ((out += String(c)), cb()) });
  const stderr = new Writable({ write: (c, _e, cb) => ((err += String(c)), cb()) });
  let code: number;
  try {
    code = await runCommand(parse(argv), { stdout, stderr, env: {} });
  } catch (e) {
    err += describeError(e);
    code = 1;
  }
  return { code, stdout: out, stderr: err };
}

test("args: diff needs --base and --ref; markdown is diff's only; --out goes with --dry-run, --plan with --once", () => {
  assert.deepEqual(
    (({ name, base, ref, allNodes, format }) => ({ name, base, ref, allNodes, format }))(parse(["diff", "--source", "file:///r", "--base", "main", "--ref", "HEAD", "--all-nodes", "--output", "markdown"]) as Extract<ReturnType<typeof parse>, { name: "diff" }>),
    { name: "diff", base: "main", ref: "HEAD", allNodes: true, format: "markdown" },
  );
  assert.throws(() => parse(["diff", "--ref", "HEAD"]), /diff needs --base/);
  assert.throws(() => parse(["diff", "--base", "main"]), /diff needs --ref/);
  assert.throws(() => parse(["validate", "--source", "x", "--output", "markdown"]), UsageError);
  assert.throws(() => parse(["--once", "--source", "x", "--out", "p.json"]), /--out PLAN-FILE saves the plan of a --dry-run/);
  assert.throws(() => parse(["--dry-run", "--source", "x", "--plan", "p.json"]), /--plan PLAN-FILE is applied by --once/);
  const dry = parse(["--dry-run", "--source", "x", "--out", "p.json"]);
  assert.deepEqual(dry.name === "run" && dry.plan, { out: "p.json" });
  const once = parse(["--once", "--source", "x", "--plan", "p.json"]);
  assert.deepEqual(once.name === "run" && once.plan, { apply: "p.json" });
  // --state-dir given or not: one-shot git checkouts go under it only when given.
  assert.equal(parse(["validate", "--source", "x"]).name === "validate" && (parse(["validate", "--source", "x"]) as { opts: { stateDirGiven?: boolean } }).opts.stateDirGiven, false);
  assert.equal((parse(["validate", "--source", "x", "--state-dir", "/s"]) as { opts: { stateDirGiven?: boolean } }).opts.stateDirGiven, true);
});

test("diff: two directories; exit 0 for no change, 2 with the impact in text, json and markdown", async () => {
  const base = join(scratch, "base");
  const ref = join(scratch, "ref");
  cpSync("examples/seed", base, { recursive: true });
  cpSync("examples/seed", ref, { recursive: true });
  const same = await run(["diff", "--base", base, "--ref", ref, "--node", "n1"]);
  assert.equal(same.code, 0, same.stderr);
  assert.match(same.stdout, /Node n1: no changes\./);
  const rule = join(ref, "l3-rule.json");
  writeFileSync(rule, readFileSync(rule, "utf8").replace('"port": "80"', '"port": "8080"'));
  const text = await run(["diff", "--base", base, "--ref", ref, "--node", "n1"]);
  assert.equal(text.code, 2, text.stderr);
  assert.match(text.stdout, /app1 ingress: newly DENIED from \{id=app2\} TCP\/80 \(rule l3-rule, l3-rule\.json:2 no longer allows it\)/);
  assert.match(text.stdout, /app1 ingress: newly ALLOWED from \{id=app2\} TCP\/8080 \(rule l3-rule, l3-rule\.json:2\)/);
  assert.match(text.stdout, /\+ policy app1 ingress allow TCP\/8080 from app2 \(identity 36895\)/);
  const json = await run(["diff", "--base", base, "--ref", ref, "--node", "n1", "--output", "json"]);
  assert.equal(json.code, 2);
  const doc = JSON.parse(json.stdout);
  assert.deepEqual(doc.summary, { nodes: 1, changes: 2, newlyAllowed: 1, newlyDenied: 1 });
  assert.deepEqual(doc.nodes[0].policyImpact.newlyDenied[0].ports, [[80, 80]]);
  assert.match(doc.base.revision, /^sha256:/);
  const md = await run(["diff", "--base", base, "--ref", ref, "--node", "n1", "--output", "markdown"]);
  assert.equal(md.code, 2);
  assert.match(md.stdout, /^### reconcile diff/);
  assert.match(md.stdout, /\| n1 \| 1 \| 0 \| 1 \| 1 \| 1 \|/);
  assert.match(md.stdout, /\*\*newly DENIED\*\*/);
  // --all-nodes without any node named: the one node there is (--node).
  const all = await run(["diff", "--base", base, "--ref", ref, "--all-nodes", "--output", "json"]);
  assert.equal(all.code, 2, all.stderr);
  assert.deepEqual(JSON.parse(all.stdout).nodes.map((n: { node: string }) => n.node), ["n"]);
  // A side that is neither a directory nor, without --source, a git ref.
  const bad = await run(["diff", "--base", "no-such-dir", "--ref", ref]);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /--base no-such-dir: not a directory, and no --source/);
});

/** Runs git in `cwd` with a fixed identity and no system or user configuration. */
function git(cwd: string, ...args: string[]): string {
  const env = { ...process.env, GIT_AUTHOR_NAME: "T", GIT_AUTHOR_EMAIL: "t@example.com", GIT_COMMITTER_NAME: "T", GIT_COMMITTER_EMAIL: "t@example.com", GIT_CONFIG_NOSYSTEM: "1", GIT_CONFIG_GLOBAL: "/dev/null" };
  return execFileSync("git", args, { cwd, env, encoding: "utf8" }).trim();
}

test("a local directory with --ref: a git repository is read at that commit (git:<sha>) by validate, explain and diff alike; any other directory is refused", async () => {
  // A repository whose commit allows app2 → app1 TCP/80 and whose working tree (uncommitted) moved it to 8080.
  const repo = join(scratch, "repo");
  cpSync("examples/seed", repo, { recursive: true });
  git(repo, "init", "-q", "-b", "main");
  git(repo, "add", "-A");
  git(repo, "commit", "-qm", "seed");
  const sha = git(repo, "rev-parse", "HEAD");
  const rule = join(repo, "l3-rule.json");
  writeFileSync(rule, readFileSync(rule, "utf8").replace('"port": "80"', '"port": "8080"'));

  const atRef = await run(["validate", "--source", repo, "--ref", "main", "--output", "json"]);
  assert.equal(atRef.code, 0, atRef.stderr);
  assert.equal(JSON.parse(atRef.stdout).revision, `git:${sha}`);
  const tree = await run(["validate", "--source", repo, "--output", "json"]);
  assert.match(JSON.parse(tree.stdout).revision, /^sha256:/, "without --ref: the directory as it is");
  const flow = ["--from", "app2", "--to", "app1", "--port", "80/TCP", "--node", "n"];
  const explainAt = await run(["explain", "--source", repo, "--ref", sha, ...flow]);
  assert.match(explainAt.stdout, /^ALLOW: app2 → app1 80\/TCP/, "the commit, not the working tree");
  assert.match((await run(["explain", "--source", repo, ...flow])).stdout, /^DENY: app2 → app1 80\/TCP/);
  // diff reads a ref of the same --source the same way: the commit against the working tree.
  const d = await run(["diff", "--source", repo, "--base", "main", "--ref", repo, "--node", "n", "--output", "json"]);
  assert.equal(d.code, 2, d.stderr);
  const doc = JSON.parse(d.stdout);
  assert.equal(doc.base.revision, `git:${sha}`);
  assert.deepEqual(doc.summary, { nodes: 1, changes: 2, newlyAllowed: 1, newlyDenied: 1 });
  assert.equal((await run(["diff", "--source", repo, "--base", "main", "--ref", sha, "--node", "n"])).code, 0);

  // Not a git repository: refused, naming the flag and why; nothing printed on stdout.
  const plain = join(scratch, "plain");
  cpSync("examples/seed", plain, { recursive: true });
  for (const argv of [
    ["validate", "--source", plain, "--ref", "main"],
    ["explain", "--source", plain, "--ref", "main", ...flow],
    ["diff", "--source", plain, "--base", "main", "--ref", plain],
  ]) {
    const r = await run(argv);
    assert.equal(r.code, 1, argv.join(" "));
    assert.equal(r.stdout, "");
    assert.match(r.stderr, /^reconcile: --(ref|base) main: --source \S+plain is a directory that is not a git repository, so it has no commit main to read/, argv.join(" "));
  }
  // A directory inside a repository, not its top: refused, with the --path that reads it.
  mkdirSync(join(repo, "sub"));
  const inside = await run(["validate", "--source", join(repo, "sub"), "--ref", "main"]);
  assert.equal(inside.code, 1);
  assert.match(inside.stderr, /--ref main: --source \S+repo\/sub is inside the git repository \S+repo, not its top, .*--source \S+repo --path sub --ref main/);
});

test("README's diff samples (text and markdown) are what diff prints for the seed with l3-rule moved to 8080", async () => {
  const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");
  const base = join(scratch, "readme-base");
  const ref = join(scratch, "readme-ref");
  cpSync("examples/seed", base, { recursive: true });
  cpSync("examples/seed", ref, { recursive: true });
  const rule = join(ref, "l3-rule.json");
  writeFileSync(rule, readFileSync(rule, "utf8").replace('"port": "80"', '"port": "8080"'));
  // From the first line after the revisions (they differ: git there, directories here) to the end.
  const sample = (command: string, from: string, to: string): string => {
    const at = readme.indexOf(`$ ${command}\n`);
    assert.ok(at >= 0, `README shows ${command}`);
    const text = readme.slice(at);
    return text.slice(text.indexOf(from), text.indexOf(to));
  };
  const text = await run(["diff", "--base", base, "--ref", ref, "--node", "vm"]);
  assert.equal(text.code, 2, text.stderr);
  const shown = sample("reconcile diff --source . --base main --ref my-branch --node vm", "Node vm:", "$ echo $?");
  assert.equal(text.stdout.slice(text.stdout.indexOf("Node vm:")), shown);
  const md = await run(["diff", "--base", base, "--ref", ref, "--all-nodes", "--node", "vm", "--output", "markdown"]);
  const shownMd = sample("reconcile diff --source . --base origin/main --ref HEAD --all-nodes --node vm --output markdown", "| Node |", "````");
  assert.equal(md.stdout.slice(md.stdout.indexOf("| Node |")), shownMd);
});
