// The daemon's per-change log lines: one line per change for ordinary runs, one summary line (and
// the per-change lines at debug only) for runs as large as a cold start at DESIGN scale.
import { test } from "node:test";
import assert from "node:assert/strict";
import { CHANGE_LINES_MAX, logChanges } from "../../reconciler/daemon/service.js";
import { Logger } from "../../reconciler/daemon/log.js";
import { Plan, type Change } from "../../reconciler/plan/diff.js";

const changes = (n: number): Change[] =>
  Array.from({ length: n }, (_, i) => ({ op: i % 3 === 0 ? "delete" : "create", resource: "policy", id: `ep${i}/ingress/1/6/80/16`, reason: "missing" }) as Change);

function lines(level: "info" | "debug", cs: Change[], drift: boolean): string[] {
  const out: string[] = [];
  logChanges(new Logger({ write: (l) => out.push(l), journald: false, level, now: () => 0 }), new Plan("r1", "n1", cs), drift);
  return out;
}

test("change log: one line per change up to CHANGE_LINES_MAX", () => {
  const out = lines("info", changes(CHANGE_LINES_MAX), false);
  assert.equal(out.length, CHANGE_LINES_MAX);
  assert.match(out[1]!, /level=info msg=change op=create resource=policy id=ep1\/ingress\/1\/6\/80\/16 reason=missing$/);
  const drift = lines("info", changes(2), true);
  assert.equal(drift.length, 2);
  assert.match(drift[0]!, /level=warn msg="drift corrected" op=delete .* found=null restored=null$/);
});

test("change log: past CHANGE_LINES_MAX one summary line with counts per resource and op", () => {
  const n = CHANGE_LINES_MAX + 2; // 1002: 334 deletes, 668 creates
  const out = lines("info", changes(n), false);
  assert.deepEqual(out, [
    `ts=1970-01-01T00:00:00.000Z level=info msg="changes (summary)" total=${n} policy.delete=334 policy.create=668 detail="one line per change at --log-level debug"`,
  ]);
  const drift = lines("info", changes(n), true);
  assert.equal(drift.length, 1);
  assert.match(drift[0]!, /level=warn msg="drift corrected \(summary\)" total=1002 /);
  const debug = lines("debug", changes(n), false);
  assert.equal(debug.length, n + 1, "every change at debug, then the summary");
  assert.match(debug[0]!, /level=debug msg=change op=delete/);
});

test("change log: a policy change's line says what the entry means (entry=), the drift line too", () => {
  const entry = { endpoint: "app1", direction: "ingress", identity: 36895, protocol: 6, port: 80, portPrefixLen: 16, decision: "allow" };
  const c = { op: "create", resource: "policy", id: "app1/ingress/36895/6/80/16", reason: "missing", after: entry } as unknown as Change;
  const out: string[] = [];
  const peers = (id: number) => (id === 36895 ? { kind: "endpoint" as const, names: ["app2"] } : { kind: "unknown" as const, names: [] });
  logChanges(new Logger({ write: (l) => out.push(l), journald: false, level: "info", now: () => 0 }), new Plan("r1", "n1", [c]), true, peers);
  assert.match(out[0]!, /level=warn msg="drift corrected" op=create resource=policy id=app1\/ingress\/36895\/6\/80\/16 entry="app1 ingress allow TCP\/80 from app2 \(identity 36895\)" reason=missing/);
});
