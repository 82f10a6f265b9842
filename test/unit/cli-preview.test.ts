// The preview commands' command line: `diff` (directory sides here; git sides in the e2e test),
// --out and --plan, and where markdown output is accepted.

import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
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
