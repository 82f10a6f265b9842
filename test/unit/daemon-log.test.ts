import { test } from "node:test";
import assert from "node:assert/strict";
import { Logger } from "../../reconciler/daemon/log.js";

const at = () => Date.UTC(2024, 0, 2, 3, 4, 5);

test("log: logfmt lines with quoting, one line per event", () => {
  const lines: string[] = [];
  const log = new Logger({ write: (l) => lines.push(l), journald: false, now: at });
  log.info("applied", { revision: "abc", changes: 3, note: 'has "quotes" and\nnewline', empty: "" });
  assert.deepEqual(lines, [
    'ts=2024-01-02T03:04:05.000Z level=info msg=applied revision=abc changes=3 note="has \\"quotes\\" and\\nnewline" empty=""',
  ]);
  log.debug("hidden");
  assert.equal(lines.length, 1, "below the level");
});

test("log: JSON format, journald priority prefixes, error causes", () => {
  const lines: string[] = [];
  const log = new Logger({ format: "json", write: (l) => lines.push(l), journald: true, level: "debug" });
  log.error("fetch failed", { err: new Error("git fetch", { cause: new Error("connection refused") }) });
  log.warn("w");
  log.debug("d");
  assert.equal(lines[0], '<3>{"level":"error","msg":"fetch failed","err":"git fetch: connection refused"}');
  assert.match(lines[1]!, /^<4>\{/);
  assert.match(lines[2]!, /^<7>\{/);
});

test("log: secrets are redacted by value and by key, children share the list", () => {
  const lines: string[] = [];
  const log = new Logger({ write: (l) => lines.push(l), journald: true, redact: ["tok-123456"] });
  const child = log.child({ source: "git" });
  log.addSecret("hook-secret-value");
  child.info("url https://x/tok-123456/y", { header: "Bearer tok-123456", token: "anything", other: { k: "hook-secret-value" } });
  assert.equal(lines.length, 1);
  assert.ok(!lines[0]!.includes("tok-123456") && !lines[0]!.includes("hook-secret-value") && !lines[0]!.includes("anything"), lines[0]);
  assert.match(lines[0]!, /^<6>level=info msg="url https:\/\/x\/\[REDACTED\]\/y" source=git header="Bearer \[REDACTED\]" token=\[REDACTED\]/);
});
