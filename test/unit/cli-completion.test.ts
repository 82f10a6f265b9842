import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, test } from "node:test";
import { completionScript } from "../../reconciler/cli/completion.js";
import { SHELLS } from "../../reconciler/cli/flags.js";

const repo = resolve(import.meta.dirname, "../..");
const seed = join(repo, "examples/seed");
const work = mkdtempSync(join(tmpdir(), "reconcile-completion-"));
after(() => rmSync(work, { recursive: true, force: true }));

// `reconcile` on PATH for the scripts' endpoint look-up: the CLI from source.
writeFileSync(join(work, "reconcile"), `#!/bin/sh\nexec "${process.execPath}" --import tsx "${join(repo, "reconciler/cli/main.ts")}" "$@"\n`);
chmodSync(join(work, "reconcile"), 0o755);
const env = { ...process.env, PATH: `${work}:${process.env.PATH}` };

const has = (shell: string) => spawnSync("sh", ["-c", `command -v ${shell}`]).status === 0;

for (const shell of SHELLS) {
  test(`the ${shell} script parses (${shell} -n)`, { skip: has(shell) ? false : `${shell} is not installed` }, () => {
    const file = join(work, `reconcile.${shell}`);
    writeFileSync(file, completionScript(shell));
    const r = spawnSync(shell, ["-n", file], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
  });
}

/** What bash offers for the line `words` (the last word is the one being completed). */
function bashComplete(words: string[]): string[] {
  const file = join(work, "complete.bash");
  writeFileSync(file, completionScript("bash"));
  const script = `source ${JSON.stringify(file)}; COMP_WORDS=(${words.map((w) => `'${w}'`).join(" ")}); COMP_CWORD=${words.length - 1}; _reconcile; printf '%s\\n' "\${COMPREPLY[@]}"`;
  return execFileSync("bash", ["-c", script], { encoding: "utf8", env, cwd: repo }).split("\n").filter(Boolean);
}

test("bash completes commands, flags, fixed values and the endpoint names of a directory --source", () => {
  assert.deepEqual(bashComplete(["reconcile", ""]), ["validate", "explain", "diff", "inspect", "monitor", "status", "suspend", "resume", "teardown", "version", "completion", "help"]);
  assert.deepEqual(bashComplete(["reconcile", "ex"]), ["explain"]);
  assert.deepEqual(bashComplete(["reconcile", "--dry"]), ["--dry-run"]);
  assert.deepEqual(bashComplete(["reconcile", "explain", "--f"]), ["--from"]);
  assert.deepEqual(bashComplete(["reconcile", "status", "--"]), ["--output", "--socket", "--help"]);
  assert.deepEqual(bashComplete(["reconcile", "--output", ""]), ["text", "json", "markdown"]);
  assert.deepEqual(bashComplete(["reconcile", "--attach-mode", "t"]), ["tcx", "tc"]);
  assert.deepEqual(bashComplete(["reconcile", "inspect", ""]), ["endpoints", "ipcache", "policy", "devices", "links", "drops"]);
  assert.deepEqual(bashComplete(["reconcile", "completion", ""]), ["bash", "zsh", "fish"]);
  assert.deepEqual(bashComplete(["reconcile", "explain", "--source", seed, "--from", ""]), ["host", "app1", "app2", "app3"]);
  assert.deepEqual(bashComplete(["reconcile", "inspect", "--source", seed, "policy", "app"]), ["app1", "app2", "app3"]);
  // No directory source: nothing to offer beyond host.
  assert.deepEqual(bashComplete(["reconcile", "explain", "--to", ""]), ["host"]);
  assert.deepEqual(bashComplete(["reconcile", "explain", "--source", join(work, "missing"), "--to", ""]), ["host"]);
});

test("fish completes the same (complete -C)", { skip: has("fish") ? false : "fish is not installed" }, () => {
  const file = join(work, "complete.fish");
  writeFileSync(file, completionScript("fish"));
  const fish = (line: string) =>
    execFileSync("fish", ["--no-config", "-c", `source ${JSON.stringify(file)}; complete -C ${JSON.stringify(line)}`], { encoding: "utf8", env, cwd: repo })
      .split("\n")
      .filter(Boolean)
      .map((l) => l.split("\t")[0]);
  assert.ok(fish("reconcile ex").includes("explain"));
  assert.deepEqual(fish("reconcile --output "), ["json", "markdown", "text"]);
  assert.deepEqual(fish(`reconcile inspect --source ${seed} policy `).sort(), ["app1", "app2", "app3"]);
  assert.deepEqual(fish(`reconcile explain --source ${seed} --from `).sort(), ["app1", "app2", "app3", "host"]);
});
