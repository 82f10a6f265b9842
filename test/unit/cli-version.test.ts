// `reconcile version` from source (the binary's variant is covered by test/e2e/binary.test.ts).

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { renderVersion, versionInfo, type VersionInfo } from "../../reconciler/cli/version.js";

const repo = fileURLToPath(new URL("../../", import.meta.url));

test("from source: package version, checkout commit, the BPF objects in bpf/build and their programs", async () => {
  const info = await versionInfo({ probeKernel: false });
  const pkg = JSON.parse(readFileSync(`${repo}/package.json`, "utf8")) as { version: string };
  assert.equal(info.version, pkg.version);
  assert.match(info.commit, /^[0-9a-f]{40}$/);
  execFileSync("git", ["merge-base", "--is-ancestor", info.commit, "HEAD"], { cwd: repo });
  assert.equal(info.singleExecutable, false);
  assert.deepEqual(info.native, []);
  assert.equal(info.features, undefined, "kernel not probed");
  assert.deepEqual(info.objects, readdirSync(`${repo}/bpf/build`).filter((f) => f.endsWith(".o")).sort());
  assert.equal(info.objectErrors, undefined);
  for (const p of info.programs) assert.ok(info.objects.includes(p.object) && p.name && p.section, JSON.stringify(p));
});

test("renderVersion: text names version, commit, programs, native modules and kernel features; json round-trips", () => {
  const info: VersionInfo = {
    version: "1.2.3",
    commit: "0123456789abcdef0123456789abcdef01234567",
    node: "v24.22.3",
    platform: "linux-x64",
    singleExecutable: true,
    execArgv: ["--max-semi-space-size=16"],
    objects: ["endpoint.o"],
    programs: [{ name: "to_endpoint", object: "endpoint.o", section: "tc", tag: "0c16ac578f204efc", tagSha1: "69dbb9d7123371cd" }],
    native: [{ module: "koffi.node", path: "/run/reconcile/native/koffi-ab.node", sha256: "ab", action: "reused" }],
    features: { tcx: true, batchOps: false, kernel: "6.18.0" },
  };
  assert.equal(
    renderVersion(info, "text"),
    [
      "reconcile 1.2.3 (commit 0123456789abcdef0123456789abcdef01234567)",
      "  runtime: node v24.22.3 linux-x64, single executable",
      "  node flags: --max-semi-space-size=16",
      "  objects: endpoint.o",
      "  programs: to_endpoint (endpoint.o, tc, tag 0c16ac578f204efc)",
      "  native: koffi.node at /run/reconcile/native/koffi-ab.node (reused)",
      "  kernel: 6.18.0, tcx yes, batch ops no",
      "",
    ].join("\n"),
  );
  assert.deepEqual(JSON.parse(renderVersion(info, "json")), info);
  const { features: _, ...noFeatures } = info;
  assert.match(renderVersion({ ...noFeatures, featuresError: "bpf(BPF_MAP_CREATE): EPERM" }, "text"), /kernel: not probed \(bpf\(BPF_MAP_CREATE\): EPERM\)/);
});
