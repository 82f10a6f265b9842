// A bounded, deterministic fuzz of the manifest path: thousands of manifest sets mutated from
// examples/ (byte flips, truncation, alias bombs, deep nesting, huge numbers, NUL bytes, CRLF, bad
// UTF-8, duplicated keys, random YAML tokens) go through what `validate` runs after reading the
// source (load, validate, compile), and a few hundred trees on disk (with symlinks out of the tree
// and FIFOs) through the `validate` command itself. Every input must be accepted, or refused with
// problems of the form `file:LINE: ...` naming a file of the set and a line inside it; no other
// exception may escape; the heap must stay bounded. The loader's own limits (file size, documents,
// aliases, depth, expanded nodes) are what keeps each case short: nothing here is timed.
//
// A failure prints the case number and seed; FUZZ_SEED=N and FUZZ_CASES=N reproduce or widen a run.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import { after, test } from "node:test";
import { parseArgs } from "../../reconciler/cli/args.js";
import { runCommand } from "../../reconciler/cli/commands.js";
import { describeError } from "../../reconciler/cli/errors.js";
import { ManifestError, formatProblem } from "../../reconciler/manifest/load.js";
import { CapacityError, compileForNode } from "../../reconciler/plan/snapshot-to-desired.js";
import type { Snapshot, SnapshotFile } from "../../reconciler/source/snapshot.js";
import { prng, type Rng } from "./helpers/random-policy.js";

const SEED = Number(process.env.FUZZ_SEED ?? 0x5eed1);
const CASES = Number(process.env.FUZZ_CASES ?? 2000);
const DISK_CASES = Math.max(20, Math.round(CASES / 20));
/** Generous: the loader's limits keep a case to a few MB; a leak or an expansion would blow far past this. */
const HEAP_GROWTH_LIMIT = 512 * 1024 * 1024;

const EXAMPLES = path.resolve(path.dirname(new URL(import.meta.url).pathname), "../../examples");

/** Every example's manifest files, as snapshots. */
function exampleSets(): SnapshotFile[][] {
  return readdirSync(EXAMPLES, { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .map((d) =>
      readdirSync(path.join(EXAMPLES, d.name))
        .filter((f) => /\.(ya?ml|json)$/.test(f))
        .sort()
        .map((f) => ({ path: f, content: readFileSync(path.join(EXAMPLES, d.name, f), "utf8") })),
    )
    .filter((set) => set.length > 0);
}

const TOKENS = [": ", "- ", "&a ", "*a", "<<: *a", "!!binary ", "!!js/function ", "? ", "{", "}", "[", "]", "'", '"', "#", "|", ">", "%YAML 1.1\n", "---\n", "...\n", "\t", "null", "~", "true", "0x1F", "1e999", "-0", ".inf", ".nan", "2001-12-14", "\\u0000", "\u2028", "\ufeff", "kind: Endpoint", "apiVersion: cilium.io/v2", "\n  ", "\n"];

/** Mutations of one file's text; each returns the new text (possibly larger, never unbounded). */
const MUTATIONS: Record<string, (r: Rng, s: string) => string> = {
  "byte flip": (r, s) => {
    const b = Buffer.from(s, "utf8");
    for (let i = 1 + r.int(4); i > 0 && b.length; i--) b[r.int(b.length)]! ^= 1 << r.int(8);
    return b.toString("utf8"); // flipped high bits become U+FFFD, as the source decodes them
  },
  truncate: (r, s) => s.slice(0, r.int(s.length + 1)),
  "NUL bytes": (r, s) => {
    const at = r.int(s.length + 1);
    return `${s.slice(0, at)}\u0000${r.next() < 0.5 ? "\u0000".repeat(r.int(8)) : ""}${s.slice(at)}`;
  },
  CRLF: (_r, s) => s.replace(/\n/g, "\r\n"),
  "lone CR": (_r, s) => s.replace(/\n/g, "\r"),
  "huge number": (r, s) =>
    s.replace(/\b\d+\b/, () => r.pick(["9".repeat(400), "1e308", "-1", "4294967296", "18446744073709551617", "0.5", "1_000", "0o777", "NaN", "-0"])),
  "huge numbers everywhere": (r, s) => s.replace(/\b\d+\b/g, () => r.pick(["99999999999999999999", "1e400", "-65536", "65536", "16777216"])),
  "random token": (r, s) => {
    const at = r.int(s.length + 1);
    return s.slice(0, at) + r.pick(TOKENS) + s.slice(at);
  },
  "delete line": (r, s) => {
    const lines = s.split("\n");
    lines.splice(r.int(lines.length), 1);
    return lines.join("\n");
  },
  "duplicate line": (r, s) => {
    const lines = s.split("\n");
    const i = r.int(lines.length);
    lines.splice(i, 0, lines[i]!);
    return lines.join("\n");
  },
  "shift indent": (r, s) => {
    const lines = s.split("\n");
    const i = r.int(lines.length);
    lines[i] = r.next() < 0.5 ? ` ${lines[i]}` : lines[i]!.replace(/^ /, "");
    return lines.join("\n");
  },
  "swap values": (r, s) => {
    const vals = s.match(/: [^\n]+/g) ?? [];
    if (vals.length < 2) return s;
    return s.replace(r.pick(vals), r.pick(vals));
  },
  "bad UTF-8": (r, s) => {
    const b = Buffer.from(s, "utf8");
    const at = r.int(b.length + 1);
    return Buffer.concat([b.subarray(0, at), Buffer.from([0xc3, 0x28, 0xff, 0xfe]), b.subarray(at)]).toString("utf8");
  },
  "alias bomb": (r, _s) => {
    const depth = 6 + r.int(6);
    const lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"];
    for (let i = 1; i <= depth; i++) lines.push(`a${i}: &a${i} [${Array(10).fill(`*a${i - 1}`).join(", ")}]`);
    const body = lines.join("\n");
    return r.pick([
      `${body}\n`,
      `apiVersion: reconcile/v1\nkind: Endpoint\nmetadata:\n  name: bomb\n  labels: {}\nspec:\n  x:\n${body.replace(/^/gm, "    ")}\n`,
      `apiVersion: reconcile/v1\nkind: Rule\nmetadata: {name: bomb}\nspec:\n  endpointSelector: {}\n  ingress: &i\n  - fromEndpoints: [{}]\n  egress: [*i, *i, *i]\n${body.replace(/^a0/, "x0")}\n`,
    ]);
  },
  "merge-key bomb": (r, _s) => {
    const n = 20 + r.int(40);
    const lines = ["b0: &b0 {k0: v}"];
    for (let i = 1; i < n; i++) lines.push(`b${i}: &b${i}\n  <<: [*b${i - 1}, *b${i - 1}]\n  k${i}: v`);
    return `${lines.join("\n")}\n`;
  },
  "deep nesting": (r, _s) => {
    const depth = r.pick([70, 500, 5000, 50_000]);
    return r.pick([
      `${"[".repeat(depth)}${"]".repeat(depth)}\n`,
      `${"{a: ".repeat(depth)}1${"}".repeat(depth)}\n`,
      `spec:\n${Array.from({ length: Math.min(depth, 3000) }, (_, i) => `${" ".repeat(i + 1)}k${i}:`).join("\n")} 1\n`,
      `${"- ".repeat(Math.min(depth, 3000))}x\n`,
    ]);
  },
  // Mostly a few copies; now and then past the loader's 1000-document limit (copies of a small document).
  "many documents": (r, s) => (r.next() < 0.1 ? "a: 1\n---\n".repeat(990 + r.int(20)) : `${s.length > 8192 ? "a: 1\n" : s}\n---\n`.repeat(2 + r.int(30))),
  "long string": (r, s) => s.replace(/name: [\w-]+/, `name: ${"x".repeat(r.pick([16, 64, 254, 64 * 1024]))}`),
  "JSON garbage": (r, s) => r.pick([`${s},`, s.replace(/\[/, "{"), `[${s}]`, `{"a": ${"[".repeat(100)}`, "[]", "{}", "null", "[null]", '[{"labels": []}]', "[1, 2]", '"x"']),
  "empty file": () => "",
  "only comments": () => "# nothing\n---\n# more\n",
};
const MUTATION_NAMES = Object.keys(MUTATIONS);

/** A mutated copy of one example set: 1..3 mutations, sometimes a file renamed .yaml ↔ .json, dropped or added. */
function mutateSet(r: Rng, base: readonly SnapshotFile[]): { files: SnapshotFile[]; ops: string[] } {
  const files = base.map((f) => ({ ...f }));
  const ops: string[] = [];
  for (let k = 1 + r.int(3); k > 0; k--) {
    const f = r.pick(files);
    const name = r.pick(MUTATION_NAMES);
    f.content = MUTATIONS[name]!(r, f.content);
    ops.push(`${name} ${f.path}`);
  }
  const extra = r.next();
  if (extra < 0.05 && files.length > 1) ops.push(`drop ${files.splice(r.int(files.length), 1)[0]!.path}`);
  else if (extra < 0.1) {
    const f = r.pick(files);
    const renamed = f.path.endsWith(".json") ? f.path.replace(/\.json$/, ".yaml") : f.path.replace(/\.ya?ml$/, ".json");
    if (!files.some((g) => g.path === renamed)) {
      ops.push(`rename ${f.path} → ${renamed}`);
      f.path = renamed;
    }
  } else if (extra < 0.15) {
    const f = r.pick(files);
    files.push({ path: `copy-${f.path}`, content: f.content });
    ops.push(`copy ${f.path}`);
  }
  return { files, ops };
}

/** The problems' shape: `file:LINE: ...` naming a file of the set and a line inside it. */
function assertProblems(err: ManifestError, files: readonly SnapshotFile[], where: string): void {
  const errors = err.problems.filter((p) => p.severity === "error");
  assert.ok(errors.length > 0, `${where}: a ManifestError without errors`);
  const lineCounts = new Map(files.map((f) => [f.path, f.content.split(/\r\n|\r|\n/).length]));
  for (const p of err.problems) {
    const text = formatProblem(p);
    assert.match(text, /^[^\n:]+:\d+: \S/, `${where}: problem not of the form file:LINE: ...: ${JSON.stringify(text)}`);
    assert.ok(Number.isInteger(p.line) && p.line >= 1, `${where}: line ${p.line} in ${text}`);
    assert.equal(typeof p.message, "string");
    assert.ok(p.message.length > 0 && p.message.length < 2000, `${where}: message length ${p.message.length}`);
    const lines = lineCounts.get(p.file);
    if (lines === undefined) {
      assert.equal(p.file, "<snapshot>", `${where}: problem names a file not in the set: ${text}`);
      continue;
    }
    assert.ok(p.line <= lines + 1, `${where}: line ${p.line} past the end of ${p.file} (${lines} lines): ${text}`);
  }
}

const opts = (parseArgs(["validate", "--source", "unused"], {}, { node: "fuzz-node" }) as Extract<ReturnType<typeof parseArgs>, { name: "validate" }>).opts;

interface Tally {
  accepted: number;
  refused: number;
  byMutation: Map<string, number>;
}

test(`fuzz: ${CASES} mutated manifest sets through load, validate and compile (seed ${SEED})`, () => {
  const sets = exampleSets();
  assert.ok(sets.length >= 4, "the examples are there");
  const r = prng(SEED);
  const tally: Tally = { accepted: 0, refused: 0, byMutation: new Map() };
  const heap0 = process.memoryUsage().heapUsed;
  let heapPeak = 0;
  for (let i = 0; i < CASES; i++) {
    const { files, ops } = mutateSet(r, r.pick(sets));
    const where = `case ${i} (FUZZ_SEED=${SEED}): ${ops.join(", ")}`;
    const snapshot: Snapshot = { revision: `fuzz:${i}`, files };
    if (process.env.FUZZ_DUMP === String(i)) {
      const dump = mkdtempSync(path.join(tmpdir(), `fuzz-case-${i}-`));
      for (const f of files) writeFileSync(path.join(dump, f.path), f.content);
      process.stdout.write(`# case ${i} written to ${dump}\n`);
    }
    for (const op of ops) tally.byMutation.set(op.split(" ")[0]!, (tally.byMutation.get(op.split(" ")[0]!) ?? 0) + 1);
    const t0 = performance.now();
    try {
      compileForNode(snapshot, { node: opts.node!, enforcement: opts.enforcement, attachMode: opts.attachMode });
      tally.accepted++;
    } catch (err) {
      if (err instanceof ManifestError) {
        assertProblems(err, files, where);
        tally.refused++;
      } else if (err instanceof CapacityError) {
        tally.refused++;
      } else {
        assert.fail(`${where}: an exception escaped that is not ManifestError: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
      }
    }
    const ms = performance.now() - t0;
    if (process.env.FUZZ_PROFILE && ms > 50) process.stdout.write(`# slow ${ms.toFixed(0)} ms: ${where}\n`);
    if (i % 100 === 0) heapPeak = Math.max(heapPeak, process.memoryUsage().heapUsed - heap0);
  }
  heapPeak = Math.max(heapPeak, process.memoryUsage().heapUsed - heap0);
  assert.ok(heapPeak < HEAP_GROWTH_LIMIT, `heap grew by ${(heapPeak / 2 ** 20).toFixed(0)} MiB`);
  assert.ok(tally.refused > CASES / 4, `only ${tally.refused} of ${CASES} refused: the mutations do not bite`);
  assert.ok(tally.accepted > 0, "no mutated set was accepted: the fuzz only tests the error path");
  process.stdout.write(
    `# fuzz: ${CASES} cases, ${tally.accepted} accepted, ${tally.refused} refused; heap growth peak ${(heapPeak / 2 ** 20).toFixed(0)} MiB\n`,
  );
});

// ---- on disk, through the validate command -------------------------------------------------------

const scratch = mkdtempSync(path.join(tmpdir(), "fuzz-manifests-"));
after(() => rmSync(scratch, { recursive: true, force: true }));

function sink() {
  let text = "";
  return { stream: new Writable({ write: (c, _e, cb) => ((text += String(c)), cb()) }), text: () => text };
}

async function validateDir(dir: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = sink();
  const err = sink();
  let code: number;
  try {
    code = await runCommand(parseArgs(["validate", "--source", dir], {}, { node: "fuzz-node" }), { stdout: out.stream, stderr: err.stream, env: {} });
  } catch (e) {
    err.stream.write(describeError(e));
    code = 1;
  }
  return { code, stdout: out.text(), stderr: err.text() };
}

test(`fuzz: ${DISK_CASES} mutated trees on disk (symlinks out of the tree, FIFOs, nesting) through validate (seed ${SEED})`, async () => {
  const sets = exampleSets();
  const r = prng(SEED ^ 0xd15c);
  const outside = path.join(scratch, "outside");
  mkdirSync(outside);
  writeFileSync(path.join(outside, "secret.yaml"), "apiVersion: reconcile/v1\nkind: Identity\nmetadata: {name: s}\nspec: {id: 300, labels: {s: s}}\n");
  let accepted = 0;
  let refused = 0;
  for (let i = 0; i < DISK_CASES; i++) {
    const { files, ops } = mutateSet(r, r.pick(sets));
    const dir = path.join(scratch, `case-${i}`);
    mkdirSync(dir);
    const sub = r.next() < 0.3 ? "nested/deeper" : "";
    for (const f of files) {
      mkdirSync(path.join(dir, sub), { recursive: true });
      writeFileSync(path.join(dir, sub, f.path), f.content);
    }
    const fsOp = r.next();
    let escapes = false;
    if (fsOp < 0.2) {
      symlinkSync(path.join(outside, "secret.yaml"), path.join(dir, "escape.yaml"));
      ops.push("symlink out of the tree (file)");
      escapes = true;
    } else if (fsOp < 0.3) {
      symlinkSync(outside, path.join(dir, "escape-dir"));
      ops.push("symlink out of the tree (dir)");
      escapes = true;
    } else if (fsOp < 0.45) {
      execFileSync("mkfifo", [path.join(dir, "pipe.yaml")]);
      ops.push("FIFO named like a manifest");
    } else if (fsOp < 0.55) {
      symlinkSync("missing.yaml", path.join(dir, "dangling.yaml"));
      ops.push("dangling symlink");
    } else if (fsOp < 0.6) {
      symlinkSync(".", path.join(dir, "loop"));
      ops.push("symlink loop");
    }
    const where = `disk case ${i} (FUZZ_SEED=${SEED}): ${ops.join(", ")}`;
    const res = await validateDir(dir);
    assert.doesNotMatch(res.stderr, /internal error|this is a bug/, `${where}: ${res.stderr}`);
    if (res.code === 0) {
      assert.ok(!escapes, `${where}: a symlink out of the tree was followed: ${res.stdout}`);
      assert.match(res.stdout, /^valid: /);
      accepted++;
    } else {
      assert.equal(res.code, 1, where);
      // Either manifest problems, each `file:LINE: ...` with the summary line, or one source error.
      const lines = res.stderr.trimEnd().split("\n");
      const last = lines.at(-1)!;
      if (/error\(s\) in manifests; nothing was applied$/.test(last)) {
        for (const l of lines.slice(0, -1)) assert.match(l, /^[^\n:]+:\d+: \S/, `${where}: ${l}`);
      } else {
        assert.equal(lines.length, 1, `${where}: ${res.stderr}`);
        assert.match(last, /^reconcile: \S/, where);
        if (escapes) assert.match(last, /outside .*refusing to follow it/, where);
      }
      refused++;
    }
    rmSync(dir, { recursive: true, force: true });
  }
  assert.ok(accepted > 0 && refused > 0, `accepted ${accepted}, refused ${refused}`);
  process.stdout.write(`# fuzz on disk: ${DISK_CASES} trees, ${accepted} accepted, ${refused} refused\n`);
});
