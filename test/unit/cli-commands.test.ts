// The CLI's commands end to end, without a kernel: validate, explain, and --dry-run planned against
// an empty pin root. Streams are captured; exit codes are asserted as DESIGN §6 specifies.

import assert from "node:assert/strict";
import { cpSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { Writable } from "node:stream";
import { parseArgs } from "../../reconciler/cli/args.js";
import { runCommand } from "../../reconciler/cli/commands.js";
import { describeError } from "../../reconciler/cli/errors.js";

const scratch = mkdtempSync(join(tmpdir(), "cli-commands-"));
after(() => rmSync(scratch, { recursive: true, force: true }));

function sink() {
  let text = "";
  const stream = new Writable({ write: (chunk, _enc, cb) => ((text += String(chunk)), cb()) });
  return { stream, text: () => text };
}

/** Runs argv through the same path as main(): parse, run, and the error boundary. */
async function run(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = sink();
  const err = sink();
  let code: number;
  try {
    const command = parseArgs(argv, {}, { node: "test-node" });
    code = await runCommand(command, { stdout: out.stream, stderr: err.stream, env: {} });
  } catch (e) {
    err.stream.write(describeError(e));
    code = 1;
  }
  return { code, stdout: out.text(), stderr: err.text() };
}

// A pin root that does not exist: the kernel holds nothing of ours there.
const pins = ["--bpffs-root", join("/sys/fs/bpf", `cli-unit-${process.pid}`)];

test("validate: the seed is valid (exit 0) and says what it found", async () => {
  const r = await run(["validate", "--source", "examples/seed"]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^valid: 3 files, 3 endpoints, 1 identities, 1 rules, 0 nodes; 3 local endpoints/);
});

test("validate: a broken copy lists every error with file:line and exits 1", async () => {
  const dir = join(scratch, "broken");
  cpSync("examples/seed", dir, { recursive: true });
  writeFileSync(
    join(dir, "extra.yaml"),
    [
      "apiVersion: reconcile/v1",
      "kind: Endpoint",
      "metadata:",
      "  name: bad",
      "spec:",
      "  ipv4: 10.11.300.1",
      "  interface:",
      "    name: this-name-is-far-too-long",
      "---",
      "apiVersion: reconcile/v1",
      "kind: Identity",
      "metadata: {name: low}",
      "spec: {id: 12, labels: {id: low}}",
      "",
    ].join("\n"),
  );
  const r = await run(["validate", "--source", dir]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^extra\.yaml:6: Endpoint\/bad: spec\.ipv4: .*10\.11\.300\.1/m);
  assert.match(r.stderr, /^extra\.yaml:8: Endpoint\/bad: spec\.interface\.name: /m);
  assert.match(r.stderr, /^extra\.yaml:13: Identity\/low: spec\.id: .*12/m);
  assert.match(r.stderr, /3 error\(s\) in manifests; nothing was applied/);
});

test("explain: app2 → app1 80/TCP is allowed by l3-rule with its file:line; app3 is denied with the reason", async () => {
  const allow = await run(["explain", "--source", "examples/seed", "--from", "app2", "--to", "app1", "--port", "80/TCP", "--output", "json"]);
  assert.equal(allow.code, 0, allow.stderr);
  const a = JSON.parse(allow.stdout) as { verdict: string; rules: Array<{ file: string; line: number; name: string }> };
  assert.equal(a.verdict, "allow");
  assert.deepEqual(a.rules, [{ file: "l3-rule.json", line: 2, name: "l3-rule" }]);

  const deny = await run(["explain", "--source", "examples/seed", "--from", "app3", "--to", "app1", "--port", "80/TCP"]);
  assert.equal(deny.code, 0, deny.stderr);
  assert.match(deny.stdout, /^DENY: app3 → app1 80\/TCP\n {2}default deny: app1 is selected by rule l3-rule\.json:2 and none allows ingress/);
});

test("--dry-run --output json exits 2 and lists the seed's policy entry and ipcache entry", async () => {
  const r = await run(["--dry-run", "--source", "examples/seed", "--output", "json", ...pins]);
  assert.equal(r.code, 2, r.stderr);
  const doc = JSON.parse(r.stdout) as {
    summary: { create: number; update: number; delete: number };
    changes: Array<{ op: string; resource: string; id: string; after: Record<string, unknown> | null }>;
  };
  const policy = doc.changes.filter((c) => c.resource === "policy");
  assert.deepEqual(policy.map((c) => [c.op, c.after]), [
    [
      "create",
      {
        endpoint: "app1",
        direction: "ingress",
        identity: 36895,
        protocol: 6,
        port: 80,
        endPort: 80,
        decision: "allow",
        audit: false,
        rule: { file: "l3-rule.json", line: 2, name: "l3-rule" },
        rules: [{ file: "l3-rule.json", line: 2, name: "l3-rule" }],
        protocolName: "TCP",
        peer: { kind: "endpoint", names: ["app2"] },
      },
    ],
  ]);
  const ipcache = doc.changes.find((c) => c.resource === "ipcache" && c.id === "10.11.90.17/32");
  assert.deepEqual(ipcache?.after, { prefix: "10.11.90.17/32", identity: 36895 });
  // Nothing of reconcile's exists under this pin root, so nothing is deleted (host sysctls may update).
  assert.equal(doc.summary.delete, 0);
  assert.equal(doc.summary.create + doc.summary.update, doc.changes.length);
});

test("usage and source errors exit 1 with a message, never a stack trace", async () => {
  const r = await run(["--dry-run", "--source", join(scratch, "missing")]);
  assert.equal(r.code, 1);
  assert.doesNotMatch(r.stderr, /this is a bug/);
  const u = await run(["--once"]);
  assert.equal(u.code, 1);
  assert.match(u.stderr, /needs --source/);
});

test("validate --path is confined to the source: climbing out, absolute paths and escaping links are refused", async () => {
  const base = join(scratch, "confined");
  cpSync("examples/seed", join(base, "src/env"), { recursive: true });
  cpSync("examples/seed", join(base, "outside"), { recursive: true });
  symlinkSync(join(base, "outside"), join(base, "src/escape"));
  const src = join(base, "src");
  const ok = await run(["validate", "--source", src, "--path", "env"]);
  assert.equal(ok.code, 0, ok.stderr);
  for (const p of ["../outside", "env/../../outside", join(base, "outside")]) {
    const r = await run(["validate", "--source", src, "--path", p]);
    assert.equal(r.code, 1, `--path ${p} was read: ${r.stdout}`);
    assert.match(r.stderr, /^reconcile: --path "[^"]+": must be a subdirectory inside the source/m, p);
    assert.equal(r.stdout, "");
  }
  const link = await run(["validate", "--source", src, "--path", "escape"]);
  assert.equal(link.code, 1, link.stdout);
  assert.match(link.stderr, /^reconcile: --path escape: resolves to .*outside, outside .*src; refusing to follow it/m);
  const missing = await run(["validate", "--source", src, "--path", "nope"]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /--path "nope": no such directory in the source/);
  assert.doesNotMatch(link.stderr + missing.stderr, /this is a bug/);
});

test("an empty snapshot is refused when the kernel holds endpoints of ours, unless --allow-empty", async () => {
  const { refuseEmpty } = await import("../../reconciler/plan/snapshot-to-desired.js");
  const { loadModel } = await import("../../reconciler/plan/snapshot-to-desired.js");
  const empty = { revision: "sha256:e", files: [] };
  const compiled = { ...loadModel(empty), snapshot: empty };
  assert.throws(() => refuseEmpty(false, compiled, 3), (err: unknown) => {
    assert.ok(err instanceof Error && err.name === "EmptySnapshotError");
    assert.match(err.message, /^revision sha256:e holds no manifests, but the datapath in force has 3 endpoint\(s\): refusing to remove them .*--allow-empty/);
    assert.match(describeError(err), /^reconcile: revision sha256:e holds no manifests/, "a domain error: exit 1 with the message, not a bug report");
    return true;
  });
  refuseEmpty(true, compiled, 3);
  refuseEmpty(false, compiled, 0); // nothing in force: an empty datapath stays empty
  const seed = { revision: "sha256:s", files: [{ path: "i.yaml", content: "apiVersion: reconcile/v1\nkind: Identity\nmetadata: {name: a}\nspec: {id: 300, labels: {id: a}}\n" }] };
  refuseEmpty(false, { ...loadModel(seed), snapshot: seed }, 3); // not empty
  // An empty directory validates (nothing to refuse without a datapath).
  const dir = join(scratch, "empty");
  mkdirSync(dir);
  const r = await run(["validate", "--source", dir]);
  assert.equal(r.code, 0, r.stderr);
});
