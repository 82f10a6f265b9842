// Progress of long runs (apply/progress.ts, cli/progress.ts): the fold of the executor's events into
// counts, the terminal's single updating line, the plain lines for a pipe or the journal with their
// throttle, the choice between them, and the executor's events on the seed, a cold start and a
// teardown against the in-memory targets. The daemon's status field is in daemon-scenarios.test.ts.

import assert from "node:assert/strict";
import { test } from "node:test";
import { reconcileOnce, Targets, YIELD_MS } from "../../reconciler/apply/executor.js";
import { formatElapsed, PLAIN_INTERVAL_MS, ProgressTracker, type ProgressEvent } from "../../reconciler/apply/progress.js";
import { MemoryTarget, type ObjectResult, type StepProgress, type Target } from "../../reconciler/apply/target.js";
import { parseArgs } from "../../reconciler/cli/args.js";
import { PlainProgress, progressFor, REDRAW_MS, TerminalProgress } from "../../reconciler/cli/progress.js";
import type { Io } from "../../reconciler/cli/io.js";
import { emptyDesired, RESOURCE_KINDS, type DesiredState } from "../../reconciler/datapath/state.js";
import { compileForNode } from "../../reconciler/plan/snapshot-to-desired.js";
import type { Change } from "../../reconciler/plan/diff.js";
import { snapshotOfDir } from "./helpers/manifest-snapshot.js";

class Clock {
  t = 5_000;
  now = () => this.t;
}

const ESC = "\x1b";

function seedDesired(): DesiredState {
  return compileForNode(snapshotOfDir("examples/seed", "r1"), { node: "vm", enforcement: "default", attachMode: "tcx" }).desired;
}

function memoryTargets() {
  const byKind = new Map(RESOURCE_KINDS.map((k) => [k, new MemoryTarget(k)]));
  return { byKind, targets: new Targets([...byKind.values()]) };
}

test("tracker: phases, per-kind and endpoint/entry counts, a step in flight, failures and elapsed on a fake clock", () => {
  const clock = new Clock();
  const p = new ProgressTracker(clock.now);
  assert.equal(p.started, false);
  assert.equal(p.on({ type: "phase", phase: "compile" }), true);
  assert.equal(p.on({ type: "phase", phase: "compile" }), false, "the same phase again is no change");
  clock.t += 40;
  assert.equal(p.on({ type: "phase", phase: "apply", planned: { device: 4, endpoint: 3, ipcache: 5, policy: 100, attachment: 6, route: 0 } }), true);
  let s = p.snapshot();
  assert.equal(s.phase, "apply");
  assert.equal(s.elapsedMs, 40);
  assert.deepEqual(s.kinds.map((k) => k.resource), ["device", "endpoint", "ipcache", "policy", "attachment"], "kinds in apply order, none for 0 planned");
  assert.deepEqual([s.endpoints, s.entries, s.other], [{ done: 0, total: 3 }, { done: 0, total: 105 }, { done: 0, total: 10 }]);
  p.on({ type: "batch", resource: "device", changes: 4, failed: 1 });
  p.on({ type: "batch", resource: "endpoint", changes: 3, failed: 0 });
  p.on({ type: "batch", resource: "ipcache", changes: 5, failed: 0 });
  p.on({ type: "step", resource: "policy", done: 60, of: 100 });
  clock.t += 1_260;
  s = p.snapshot();
  assert.deepEqual([s.endpoints, s.entries, s.other], [{ done: 3, total: 3 }, { done: 65, total: 105 }, { done: 4, total: 10 }], "the step counts until its batch reports");
  assert.equal(s.elapsedMs, 1_300);
  assert.deepEqual([s.done, s.total, s.failed], [72, 118, 1]);
  p.on({ type: "batch", resource: "policy", changes: 100, failed: 2 });
  s = p.snapshot();
  assert.deepEqual(s.entries, { done: 105, total: 105 }, "the batch replaces the step count, not added to it");
  assert.equal(s.failed, 3);
  // A cold start plans the entries in a second apply phase: the totals grow.
  p.on({ type: "phase", phase: "observe" });
  p.on({ type: "phase", phase: "apply", planned: { policy: 20 } });
  s = p.snapshot();
  assert.deepEqual(s.entries, { done: 105, total: 125 });
  assert.equal(formatElapsed(999.7), "999ms");
  assert.equal(formatElapsed(12_345), "12.3s");
  assert.equal(formatElapsed(62_000), "1m02s");
});

test("terminal: one line redrawn in place at most every REDRAW_MS, then the summary line; an error clears it", () => {
  const clock = new Clock();
  const out: string[] = [];
  const t = new TerminalProgress((x) => out.push(x), { now: clock.now }, () => 200);
  t.sink({ type: "phase", phase: "compile" });
  t.sink({ type: "phase", phase: "apply", planned: { endpoint: 3, policy: 1000 } });
  for (let i = 1; i <= 50; i++) {
    clock.t += 10; // 500 ms of steps, one every 10 ms
    t.sink({ type: "step", resource: "policy", done: i * 20, of: 1000 });
  }
  assert.ok(out.length >= 2 + 4 && out.length <= 2 + 6, `phase lines and about one redraw per ${REDRAW_MS} ms: ${out.length} writes`);
  for (const w of out) {
    assert.ok(w.startsWith("\r") && w.endsWith(`${ESC}[K`) && !w.includes("\n"), `a redraw of the one line: ${JSON.stringify(w)}`);
  }
  assert.match(out[1]!, /^\rreconcile: applying 0ms · endpoints 0\/3 · entries 0\/1,000\x1b\[K$/);
  assert.match(out.at(-1)!, /^\rreconcile: applying 500ms · endpoints 0\/3 · entries 1,000\/1,000\x1b\[K$|entries 9\d0\/1,000/);
  t.sink({ type: "batch", resource: "endpoint", changes: 3, failed: 0 });
  t.sink({ type: "batch", resource: "policy", changes: 1000, failed: 0 });
  clock.t += 1_000;
  out.length = 0;
  t.finish(true);
  assert.deepEqual(out, [`\r${ESC}[Kreconcile: done in 1.5s (1,003 changes)\n`]);

  const failed: string[] = [];
  const f = new TerminalProgress((x) => failed.push(x), { now: clock.now }, () => 200);
  f.finish(false);
  assert.deepEqual(failed, [], "nothing drawn, nothing to clear");
  f.sink({ type: "phase", phase: "compile" });
  f.finish(false);
  assert.equal(failed.at(-1), `\r${ESC}[K`, "a run that threw leaves an empty line for its error");
});

test("terminal: a line wider than the terminal is cut to its width less one, read at every redraw", () => {
  const clock = new Clock();
  const out: string[] = [];
  let columns = 30;
  const t = new TerminalProgress((x) => out.push(x), { now: clock.now }, () => columns);
  t.sink({ type: "phase", phase: "apply", planned: { endpoint: 3000, policy: 1_000_000, device: 6000 } });
  const visible = (w: string) => w.replace(/^\r/, "").replace(`${ESC}[K`, "");
  assert.equal(visible(out[0]!), "reconcile: applying 0ms · end");
  assert.equal(visible(out[0]!).length, 29);
  columns = 200;
  clock.t += REDRAW_MS;
  t.sink({ type: "batch", resource: "device", changes: 6000, failed: 0 });
  assert.equal(visible(out[1]!), "reconcile: applying 100ms · endpoints 0/3,000 · entries 0/1,000,000 · other changes 6,000/6,000");
});

test("terminal: the timer redraws while nothing reports, and finish stops it", () => {
  const clock = new Clock();
  const out: string[] = [];
  let tick: (() => void) | undefined;
  let stopped = false;
  const every = (ms: number, fn: () => void) => {
    assert.equal(ms, REDRAW_MS * 2);
    tick = fn;
    return () => void (stopped = true);
  };
  const t = new TerminalProgress((x) => out.push(x), { now: clock.now, every }, () => 80);
  tick!();
  assert.deepEqual(out, [], "no line before the first phase");
  t.sink({ type: "phase", phase: "observe" });
  clock.t += 2_500;
  tick!();
  assert.equal(out.at(-1), `\rreconcile: reading the kernel 2.5s${ESC}[K`);
  t.finish(true);
  assert.equal(stopped, true);
});

test("plain: a line per phase, at most one per PLAIN_INTERVAL_MS between them, the summary, no escape codes", () => {
  const clock = new Clock();
  const out: string[] = [];
  const p = new PlainProgress((x) => out.push(x), clock.now);
  p.sink({ type: "phase", phase: "compile" });
  clock.t += 30;
  p.sink({ type: "phase", phase: "observe" });
  clock.t += 20;
  p.sink({ type: "phase", phase: "apply", planned: { endpoint: 3, policy: 1_000_000 } });
  // 20 s of steps, one every 100 ms: a line at 5 s, 10 s, 15 s and 20 s after the phase line.
  for (let i = 1; i <= 200; i++) {
    clock.t += 100;
    p.sink({ type: "step", resource: "policy", done: i * 5000, of: 1_000_000 });
  }
  p.sink({ type: "batch", resource: "policy", changes: 1_000_000, failed: 2 });
  p.finish(true);
  assert.deepEqual(out, [
    "reconcile: compiling (0ms)\n",
    "reconcile: reading the kernel (30ms)\n",
    "reconcile: applying (50ms): endpoints 0/3, entries 0/1,000,000\n",
    "reconcile: applying (5.0s): endpoints 0/3, entries 250,000/1,000,000\n",
    "reconcile: applying (10.0s): endpoints 0/3, entries 500,000/1,000,000\n",
    "reconcile: applying (15.0s): endpoints 0/3, entries 750,000/1,000,000\n",
    "reconcile: applying (20.0s): endpoints 0/3, entries 1,000,000/1,000,000\n",
    "reconcile: done in 20.0s (1,000,003 changes)\n",
  ]);
  assert.equal(PLAIN_INTERVAL_MS, 5000);
  assert.ok(!out.join("").includes(ESC));
  const threw: string[] = [];
  const q = new PlainProgress((x) => threw.push(x), clock.now);
  q.sink({ type: "phase", phase: "compile" });
  q.finish(false);
  assert.deepEqual(threw, ["reconcile: compiling (0ms)\n"], "no summary for a run that threw: its error follows");
});

test("progressFor: --no-progress and its variable turn it off; json only on a terminal; TERM=dumb is plain; NO_COLOR keeps the colourless line", () => {
  const mk = (tty: boolean, env: Record<string, string> = {}): Io => ({ stdout: process.stdout, stderr: { write: () => true, isTTY: tty, columns: 100 } as unknown as Io["stderr"], env });
  const opts = (argv: string[], env: Record<string, string> = {}) => {
    const c = parseArgs(argv, env, { node: "n1" });
    assert.ok(c.name === "run" || c.name === "teardown");
    return c.opts;
  };
  const run = ["--once", "--source", "examples/seed"];
  assert.equal(opts(run).noProgress, false);
  assert.equal(opts([...run, "--no-progress"]).noProgress, true);
  assert.equal(opts(run, { RECONCILE_NO_PROGRESS: "1" }).noProgress, true);
  assert.equal(opts(run, { RECONCILE_NO_PROGRESS: "false" }).noProgress, false);
  assert.equal(opts(["teardown", "--no-progress"]).noProgress, true);
  assert.throws(() => opts(run, { RECONCILE_NO_PROGRESS: "maybe" }), /--no-progress \(RECONCILE_NO_PROGRESS\): expected true or false/);

  const clock = { now: () => 0 };
  assert.equal(progressFor(mk(true), opts([...run, "--no-progress"]), clock), undefined);
  assert.equal(progressFor(mk(false), opts([...run, "--no-progress"]), clock), undefined);
  assert.ok(progressFor(mk(true), opts(run), clock) instanceof TerminalProgress);
  assert.ok(progressFor(mk(false), opts(run), clock) instanceof PlainProgress);
  assert.equal(progressFor(mk(false), opts([...run, "--output", "json"]), clock), undefined, "a script reading the JSON gets a quiet stderr");
  assert.ok(progressFor(mk(true), opts([...run, "--output", "json"]), clock) instanceof TerminalProgress);
  assert.ok(progressFor(mk(true, { TERM: "dumb" }), opts(run), clock) instanceof PlainProgress);
  assert.ok(progressFor(mk(true, { NO_COLOR: "1" }), opts(run), clock) instanceof TerminalProgress);
});

/** Every event of a run, for the assertions below. */
function recorder() {
  const events: ProgressEvent[] = [];
  return { events, sink: (e: ProgressEvent) => void events.push(e), phases: () => events.filter((e) => e.type === "phase").map((e) => e.phase) };
}

test("executor: a cold start of the seed reports observe, apply, observe, apply, and the counts end at the plan; the result is the same without progress", async () => {
  const withIt = memoryTargets();
  const without = memoryTargets();
  // A policy entry fails; a device fails before the maps exist and is planned (and made) again after.
  for (const k of [withIt, without]) {
    k.byKind.get("policy")!.failNext.set("app1/ingress/36895/6/80/16", "boom");
    k.byKind.get("device")!.failNext.set("lxc-app1", "busy");
  }
  const rec = recorder();
  const clock = new Clock();
  const tracker = new ProgressTracker(clock.now);
  const a = await reconcileOnce(withIt.targets, seedDesired(), undefined, (e) => (rec.sink(e), tracker.on(e)));
  const b = await reconcileOnce(without.targets, seedDesired());
  assert.deepEqual(a, b, "plan, applied count and failures (in order) are the same");
  for (const k of RESOURCE_KINDS) assert.deepEqual(withIt.byKind.get(k)!.objects, without.byKind.get(k)!.objects, k);
  assert.deepEqual(rec.phases(), ["observe", "apply", "observe", "apply"]);
  const s = tracker.snapshot();
  assert.equal(s.total, a.plan.changes.length);
  assert.equal(s.done, a.plan.changes.length);
  assert.deepEqual(a.failed, [{ resource: "policy", id: "app1/ingress/36895/6/80/16", error: "boom" }]);
  assert.equal(s.failed, 2, "the device's first try counts as a failure in the progress, not in the report");
  assert.equal(s.endpoints.total, a.plan.changes.filter((c) => c.resource === "endpoint").length);
  assert.ok(s.endpoints.total >= 3 && s.entries.total > 0 && s.other.total > 0, JSON.stringify(s));
  // Per-object targets count inside their batch.
  assert.ok(rec.events.some((e) => e.type === "step" && e.resource === "device"));
});

test("executor: a known state plans without observing: the only phase is apply; no changes, no counts", async () => {
  const k = memoryTargets();
  await reconcileOnce(k.targets, seedDesired());
  const rec = recorder();
  const again = await reconcileOnce(k.targets, seedDesired(), undefined, rec.sink);
  assert.equal(again.plan.changes.length, 0);
  assert.deepEqual(rec.phases(), ["observe", "apply"]);
  assert.deepEqual(rec.events.at(-1), { type: "phase", phase: "apply", planned: {} });
});

test("teardown's progress: reading the kernel, applying every delete, and the summary", async () => {
  const k = memoryTargets();
  const applied = await reconcileOnce(k.targets, seedDesired());
  const clock = new Clock();
  const out: string[] = [];
  const p = new PlainProgress((x) => out.push(x), clock.now);
  const report = await reconcileOnce(k.targets, emptyDesired("teardown", "vm"), undefined, p.sink);
  p.finish(true);
  assert.equal(report.plan.summary.delete, applied.plan.changes.length);
  const endpoints = applied.plan.changes.filter((c) => c.resource === "endpoint").length;
  assert.equal(out[0], "reconcile: reading the kernel (0ms)\n");
  assert.match(out[1]!, new RegExp(`^reconcile: applying \\(0ms\\): endpoints 0/${endpoints}, entries 0/\\d+, other changes 0/\\d+\\n$`));
  assert.equal(out.at(-1), `reconcile: done in 0ms (${report.plan.changes.length} changes)\n`);
  assert.equal(out.length, 3);
});

test(`executor: with progress, a long batch lets the event loop run every ${YIELD_MS} ms; without, it runs the batch through`, async () => {
  /** A target whose every change takes 2 ms of CPU (a syscall), awaiting the step as targets must. */
  class Slow implements Target<"device"> {
    readonly kind = "device" as const;
    async observe() {
      return new Map();
    }
    async apply(changes: readonly Change<"device">[], _d: DesiredState, progress?: StepProgress): Promise<ObjectResult[]> {
      for (let i = 0; i < changes.length; i++) {
        const until = performance.now() + 2;
        while (performance.now() < until);
        const pause = progress?.(i + 1);
        if (pause) await pause;
      }
      return [];
    }
  }
  const d = emptyDesired("r1", "vm");
  for (let i = 0; i < 100; i++) d.devices.set(`dev${i}`, { name: `dev${i}`, kind: "dummy", owned: true });
  const turns = async (progress: boolean) => {
    let n = 0;
    const timer = setInterval(() => n++, 1);
    await reconcileOnce(new Targets([new Slow()]), d, undefined, progress ? () => {} : undefined);
    clearInterval(timer);
    return n;
  };
  assert.equal(await turns(false), 0, "no progress, no pause: the batch of 200 ms runs through");
  const n = await turns(true);
  assert.ok(n >= 3, `the event loop ran during the 200 ms batch (${n} timer turns)`);
});
