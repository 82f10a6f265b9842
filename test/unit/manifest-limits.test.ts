// Hostile input: each limit is reported as a clear problem, quickly, without exhausting memory.

import { test } from "node:test";
import assert from "node:assert/strict";
import { formatProblem, loadSnapshot, DEFAULT_LOAD_LIMITS } from "../../reconciler/manifest/load.js";

function loadOne(content: string, path = "bomb.yaml"): { out: string[]; ms: number } {
  const t0 = performance.now();
  const r = loadSnapshot({ revision: "r", files: [{ path, content }] });
  const ms = performance.now() - t0;
  assert.equal(r.model, undefined);
  return { out: r.problems.map(formatProblem), ms };
}

test("billion laughs (81 aliases, 9^10 nodes expanded) is refused by the expansion limit", () => {
  let s = 'a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n';
  for (let i = 1; i < 10; i++) s += `a${i}: &a${i} [${Array(9).fill(`*a${i - 1}`).join(",")}]\n`;
  const { out, ms } = loadOne(s);
  assert.deepEqual(out, ["bomb.yaml:1: document expands to too many nodes through aliases (expected at most 100000, got more)"]);
  assert.ok(ms < 2000, `took ${ms} ms`);
});

test("more than 100 aliases in a document is refused at the 101st alias", () => {
  let s = "a0: &a0 [x]\n";
  for (let i = 1; i <= 150; i++) s += `a${i}: *a0\n`;
  const { out } = loadOne(s);
  assert.deepEqual(out, ["bomb.yaml:102: too many aliases in one document (expected at most 100, got more)"]);
});

test("nesting deeper than 64 is refused with the parser's line", () => {
  const { out, ms } = loadOne("[".repeat(100_000) + "]".repeat(100_000));
  assert.deepEqual(out, ["bomb.yaml:1: invalid YAML: nesting exceeded maxDepth (64)"]);
  assert.ok(ms < 2000, `took ${ms} ms`);
});

test("a file over 1 MiB is refused before parsing", () => {
  const { out, ms } = loadOne("a: " + "x".repeat(2 * 1024 * 1024) + "\n");
  assert.deepEqual(out, ["bomb.yaml:1: file too large (expected at most 1048576 bytes, got 2097156)"]);
  assert.ok(ms < 500, `took ${ms} ms`);
});

test("more than 1000 documents in a file is refused at the 1001st", () => {
  const { out } = loadOne("---\na: 1\n".repeat(1500));
  assert.deepEqual(out, ["bomb.yaml:2003: too many documents (expected at most 1000, got more)"]);
});

test("a snapshot over the total size limit is refused at the file that crosses it", () => {
  const files = Array.from({ length: 4 }, (_, i) => ({ path: `f${i}.yaml`, content: `# ${"x".repeat(1000)}\n` }));
  const r = loadSnapshot({ revision: "r", files }, { ...DEFAULT_LOAD_LIMITS, maxTotalBytes: 2500 });
  assert.equal(r.model, undefined);
  assert.deepEqual(r.problems.map(formatProblem), [
    "f2.yaml:1: snapshot too large (expected at most 2500 bytes of manifests in total, got more than that by this file)",
  ]);
});

test("the default total limit is 64 MiB", () => {
  assert.equal(DEFAULT_LOAD_LIMITS.maxTotalBytes, 64 * 1024 * 1024);
  assert.equal(DEFAULT_LOAD_LIMITS.maxFileBytes, 1024 * 1024);
});

test("unparseable JSON reports the parser's line", () => {
  const { out } = loadOne('[\n  {"endpointSelector": {},\n   "ingress": [}\n]\n', "r.json");
  assert.equal(out.length, 1);
  assert.match(out[0]!, /^r\.json:3: invalid YAML: /);
});
