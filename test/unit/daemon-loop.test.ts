import { test } from "node:test";
import assert from "node:assert/strict";
import { ReconcileLoop, backoffDelay, type ReconcileOutcome, type Trigger } from "../../reconciler/daemon/loop.js";
import { FakeTimers } from "./helpers/fake-timers.js";
import type { Snapshot } from "../../reconciler/source/snapshot.js";

/** A reconcile function the test controls: each call waits for the test to resolve it. */
function scriptedReconcile() {
  const calls: { snapshot: Snapshot; trigger: Trigger; resolve: (o: ReconcileOutcome) => void }[] = [];
  let notify: (() => void) | undefined;
  const fn = (snapshot: Snapshot, trigger: Trigger) =>
    new Promise<ReconcileOutcome>((resolve) => {
      calls.push({ snapshot, trigger, resolve });
      notify?.();
    });
  return {
    calls,
    fn,
    async waitCalls(n: number): Promise<void> {
      for (let i = 0; i < 100 && calls.length < n; i++) await new Promise<void>((r) => setImmediate(r));
      assert.equal(calls.length, n, `expected ${n} reconcile calls`);
    },
  };
}

const snap = (revision: string): Snapshot => ({ revision, files: [{ path: "a.yaml", content: revision }] });
const ok = (changes = 0, drift = 0): ReconcileOutcome => ({ ok: true, changes, errors: [], drift });
const failed = (): ReconcileOutcome => ({ ok: false, changes: 1, errors: [{ object: "endpoint/app1", message: "EBUSY" }] });
const invalid = (): ReconcileOutcome => ({ ok: false, changes: 0, errors: [], invalid: ["a.yaml:3: Rule/x: spec: bad"] });
const flush = async () => {
  for (let i = 0; i < 10; i++) await new Promise<void>((r) => setImmediate(r));
};

test("backoffDelay doubles from 100 ms and caps at 60 s", () => {
  assert.deepEqual(
    [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 50].map((n) => backoffDelay(n)),
    [100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 51200, 60000, 60000, 60000],
  );
});

test("runs are serialized and triggers during a run coalesce into one run with the newest snapshot", async () => {
  const timers = new FakeTimers();
  const r = scriptedReconcile();
  const loop = new ReconcileLoop({ reconcile: r.fn, timers });
  loop.submit(snap("r1"));
  await r.waitCalls(1);
  assert.equal(loop.status().running, true);
  // Three triggers while r1 runs.
  loop.submit(snap("r2"));
  loop.trigger("signal");
  loop.submit(snap("r3"));
  await flush();
  assert.equal(r.calls.length, 1, "never two runs at once");
  r.calls[0]!.resolve(ok(5));
  await r.waitCalls(2);
  assert.equal(r.calls[1]!.snapshot.revision, "r3");
  assert.equal(r.calls[1]!.trigger, "source");
  r.calls[1]!.resolve(ok(1));
  await loop.idle();
  await flush();
  assert.equal(r.calls.length, 2, "coalesced into exactly one follow-up run");
  const st = loop.status();
  assert.equal(st.appliedRevision, "r3");
  assert.equal(st.runs, 2);
  assert.equal(st.nextResyncAt, timers.now() + 30_000);
});

test("failed runs retry with exponential backoff; success resets it", async () => {
  const timers = new FakeTimers();
  const r = scriptedReconcile();
  const loop = new ReconcileLoop({ reconcile: r.fn, timers, resyncIntervalMs: 0 });
  loop.submit(snap("r1"));
  const delays: number[] = [];
  for (let i = 1; i <= 12; i++) {
    await r.waitCalls(i);
    assert.equal(r.calls[i - 1]!.trigger, i === 1 ? "source" : "retry");
    r.calls[i - 1]!.resolve(failed());
    await loop.idle();
    assert.equal(loop.status().consecutiveFailures, i);
    assert.equal(loop.status().appliedRevision, null);
    delays.push(timers.fireNext());
  }
  assert.deepEqual(delays, [100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 51200, 60000, 60000]);
  await r.waitCalls(13);
  r.calls[12]!.resolve(ok(3));
  await loop.idle();
  const st = loop.status();
  assert.equal(st.consecutiveFailures, 0);
  assert.equal(st.appliedRevision, "r1");
  assert.equal(st.nextRetryAt, null);
  assert.deepEqual(timers.pending(), [], "no retry pending after success");
});

test("a thrown error counts as a failed run", async () => {
  const timers = new FakeTimers();
  const loop = new ReconcileLoop({
    reconcile: async () => {
      throw new Error("netlink: EPERM");
    },
    timers,
  });
  loop.submit(snap("r1"));
  await loop.idle();
  const st = loop.status();
  assert.equal(st.lastRun?.result, "failed");
  assert.deepEqual(st.lastRun?.errors, [{ object: "reconcile", message: "netlink: EPERM" }]);
  assert.equal(st.nextRetryAt, timers.now() + 100);
});

test("an invalid snapshot keeps the last good revision applied; resync re-applies the good one", async () => {
  const timers = new FakeTimers();
  const r = scriptedReconcile();
  const loop = new ReconcileLoop({ reconcile: r.fn, timers, resyncIntervalMs: 30_000 });
  loop.submit(snap("good"));
  await r.waitCalls(1);
  r.calls[0]!.resolve(ok(10));
  await loop.idle();

  loop.submit(snap("bad"));
  await r.waitCalls(2);
  r.calls[1]!.resolve(invalid());
  await loop.idle();
  let st = loop.status();
  assert.equal(st.appliedRevision, "good");
  assert.equal(st.attemptedRevision, "bad");
  assert.equal(st.latestRevision, "bad");
  assert.equal(st.lastRun?.result, "invalid");
  assert.deepEqual(st.lastRun?.invalid, ["a.yaml:3: Rule/x: spec: bad"]);
  assert.equal(st.nextRetryAt, null, "an invalid snapshot is not retried");

  // The same invalid revision again does nothing.
  loop.submit(snap("bad"));
  await flush();
  assert.equal(r.calls.length, 2);

  // Resync uses the last good snapshot and counts drift corrections.
  assert.equal(timers.fireNext(), 30_000);
  await r.waitCalls(3);
  assert.equal(r.calls[2]!.snapshot.revision, "good");
  assert.equal(r.calls[2]!.trigger, "resync");
  r.calls[2]!.resolve(ok(2, 2));
  await loop.idle();
  st = loop.status();
  assert.equal(st.driftCorrections, 2);
  assert.equal(st.appliedRevision, "good");
  assert.equal(st.attemptedRevision, "bad", "re-applying the revision in force is not a new attempt");

  // A fixed commit applies.
  loop.submit(snap("fixed"));
  await r.waitCalls(4);
  r.calls[3]!.resolve(ok(1));
  await loop.idle();
  assert.equal(loop.status().appliedRevision, "fixed");
});

test("SIGHUP-equivalent trigger runs now with the current snapshot and restarts the resync timer", async () => {
  const timers = new FakeTimers();
  const r = scriptedReconcile();
  const loop = new ReconcileLoop({ reconcile: r.fn, timers, resyncIntervalMs: 30_000 });
  loop.trigger("signal"); // nothing received yet: no run
  await flush();
  assert.equal(r.calls.length, 0);
  loop.submit(snap("r1"));
  await r.waitCalls(1);
  r.calls[0]!.resolve(ok());
  await loop.idle();
  timers.t += 10_000;
  loop.trigger("signal");
  await r.waitCalls(2);
  assert.equal(r.calls[1]!.trigger, "signal");
  assert.equal(r.calls[1]!.snapshot.revision, "r1");
  r.calls[1]!.resolve(ok());
  await loop.idle();
  assert.deepEqual(timers.pending(), [30_000]);
  assert.equal(loop.status().nextResyncAt, timers.now() + 30_000);
});

test("stop waits for the running run and schedules nothing more; source errors show in status", async () => {
  const timers = new FakeTimers();
  const r = scriptedReconcile();
  const runs: string[] = [];
  const loop = new ReconcileLoop({ reconcile: r.fn, timers, onRun: (run) => runs.push(`${run.revision}:${run.result}`) });
  loop.submit(snap("r1"));
  await r.waitCalls(1);
  loop.reportSourceError(new Error("git fetch: unreachable"));
  assert.equal(loop.status().sourceError?.message, "git fetch: unreachable");
  let stopped = false;
  const stopping = loop.stop().then(() => (stopped = true));
  await flush();
  assert.equal(stopped, false);
  r.calls[0]!.resolve(failed());
  await stopping;
  assert.deepEqual(timers.pending(), []);
  assert.deepEqual(runs, ["r1:failed"]);
  loop.submit(snap("r2"));
  await flush();
  assert.equal(r.calls.length, 1);
});

test("a revision recorded with the pins is the applied one until a run applies one; an invalid first snapshot leaves it in force", async () => {
  const timers = new FakeTimers();
  const r = scriptedReconcile();
  const runs: string[] = [];
  const loop = new ReconcileLoop({ reconcile: r.fn, timers, resyncIntervalMs: 30_000, recordedRevision: "pinned", onRun: (run, st) => runs.push(`${run.result} ${st.appliedRevision} ${st.appliedFrom}`) });
  assert.equal(loop.status().appliedRevision, "pinned");
  assert.equal(loop.status().appliedFrom, "record");
  loop.submit(snap("bad"));
  await r.waitCalls(1);
  r.calls[0]!.resolve(invalid());
  await loop.idle();
  const st = loop.status();
  assert.equal(st.appliedRevision, "pinned");
  assert.equal(st.attemptedRevision, "bad");
  assert.equal(st.lastRun?.result, "invalid");
  // No snapshot of the recorded revision is at hand: a resync has nothing to run.
  timers.fireNext();
  await loop.idle();
  assert.equal(r.calls.length, 1);

  loop.submit(snap("good"));
  await r.waitCalls(2);
  r.calls[1]!.resolve(ok(0));
  await loop.idle();
  assert.deepEqual(runs, ["invalid pinned record", "ok good run"]);

  const fresh = new ReconcileLoop({ reconcile: r.fn, timers });
  assert.deepEqual([fresh.status().appliedRevision, fresh.status().appliedFrom], [null, null]);
});
