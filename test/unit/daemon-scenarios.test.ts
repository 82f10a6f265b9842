// The daemon without a kernel: the reconcile service, the loop and the drift watches
// (daemon/run.ts createDaemonCore) driven against the in-memory targets with a manual clock and a
// scripted source. Each scenario is what an operator does or what happens to a host: a new commit,
// an invalid commit, drift behind reconcile's back, a failing object and its retries, the periodic
// resync, SIGHUP.

import { test } from "node:test";
import assert from "node:assert/strict";
import { Targets } from "../../reconciler/apply/executor.js";
import type { KernelPort, Suspension } from "../../reconciler/apply/port.js";
import { MemoryTarget } from "../../reconciler/apply/target.js";
import { RESOURCE_KINDS, type ResourceKind } from "../../reconciler/datapath/state.js";
import { Logger } from "../../reconciler/daemon/log.js";
import { createDaemonCore, type CoreOptions } from "../../reconciler/daemon/run.js";
import { RELEASE_IDLE_MS } from "../../reconciler/daemon/memory.js";
import type { Snapshot } from "../../reconciler/source/snapshot.js";
import type { ProgressSnapshot } from "../../reconciler/apply/progress.js";
import { FakeTimers } from "./helpers/fake-timers.js";
import { snapshotOfDir } from "./helpers/manifest-snapshot.js";


/** A kernel port over one in-memory target per kind, whose netlink watches the test fires. */
function memoryKernel(pins: { revision?: string; suspension?: Suspension } = {}) {
  const target = new Map(RESOURCE_KINDS.map((k) => [k, new MemoryTarget(k)]));
  const watchers = new Map<string, () => void>();
  const kernel: KernelPort = {
    targets: new Targets([...target.values()]),
    attachMode: "tcx",
    programTags: new Map(),
    host: () => ({ addresses: [], mtuByAddress: new Map() }),
    ownedNetns: () => [],
    watch: (netns, onEvent) => {
      watchers.set(netns, onEvent);
      return { close: () => watchers.delete(netns), stale: () => false };
    },
    policyStats: () => new Map(),
    drops: () => [],
    events: () => undefined,
    eventBudget: () => ({ suppressed: 0n, lost: 0n }),
    tcxChains: () => [],
    linkPin: (h) => `/pins/links/${h.device}/${h.hook}`,
    recordedRevision: () => pins.revision,
    recordRevision: (revision) => {
      pins.revision = revision;
    },
    recordedSuspension: () => pins.suspension,
    recordSuspension: (suspension) => {
      if (suspension) pins.suspension = suspension;
      else delete pins.suspension;
    },
    prune: () => {},
    close: () => {},
  };
  return { kernel, pins, target: (k: ResourceKind) => target.get(k)!, netlinkEvent: (netns = "") => watchers.get(netns)?.() };
}

function daemon(pins: { revision?: string; suspension?: Suspension } = {}, extra: { noProgress?: boolean } = {}, memory?: CoreOptions["memory"]) {
  const timers = new FakeTimers();
  const mem = memoryKernel(pins);
  const lines: string[] = [];
  const log = new Logger({ format: "logfmt", level: memory ? "debug" : "info", write: (l) => lines.push(l) });
  const core = createDaemonCore({ kernel: mem.kernel, opts: { node: "vm", enforcement: "default", attachMode: "tcx", resyncIntervalMs: 30_000, ...extra }, log, timers, ...(memory ? { memory } : {}) });
  core.watchNamespaces();
  return { ...core, ...mem, timers, lines };
}

const seed = (revision = "r1"): Snapshot => snapshotOfDir("examples/seed", revision);

/** The seed with one more file that is not valid YAML. */
function invalid(revision: string): Snapshot {
  const s = seed(revision);
  return { revision, files: [...s.files, { path: "broken.yaml", content: "kind: Rule\nspec: [unclosed\n" }] };
}

test("scenario: a new commit is applied, the daemon becomes ready, a second commit plans against what the first left", async () => {
  const d = daemon();
  d.loop.submit(seed("r1"));
  await d.loop.idle();
  let st = d.loop.status();
  assert.equal(st.appliedRevision, "r1");
  assert.equal(st.lastRun?.result, "ok");
  assert.ok(st.lastRun!.changes > 10, `the seed creates its datapath (${st.lastRun!.changes} changes)`);
  assert.equal(d.ready(), true);
  assert.ok(d.target("ipcache").objects.size > 0);
  assert.ok(d.lines.some((l) => l.includes('msg=change') && l.includes("resource=ipcache")));

  // The same content under a new revision: nothing to write.
  const writes = RESOURCE_KINDS.reduce((n, k) => n + d.target(k).writes, 0);
  d.loop.submit(seed("r2"));
  await d.loop.idle();
  st = d.loop.status();
  assert.equal(st.appliedRevision, "r2");
  assert.equal(st.lastRun?.changes, 0);
  assert.equal(RESOURCE_KINDS.reduce((n, k) => n + d.target(k).writes, 0), writes);
});

test("scenario: an invalid commit changes nothing and the revision in force stays", async () => {
  const d = daemon();
  d.loop.submit(seed("good"));
  await d.loop.idle();
  const before = new Map(d.target("ipcache").objects);
  d.loop.submit(invalid("bad"));
  await d.loop.idle();
  const st = d.loop.status();
  assert.equal(st.lastRun?.result, "invalid");
  assert.equal(st.appliedRevision, "good");
  assert.equal(st.attemptedRevision, "bad");
  assert.match(st.lastRun!.invalid.join("\n"), /broken\.yaml:\d+/);
  assert.deepEqual(d.target("ipcache").objects, before);
  assert.ok(d.lines.some((l) => l.includes("revision rejected")));
  assert.equal(st.nextRetryAt, null, "an invalid commit is not retried");
});

test("scenario: drift behind reconcile's back is corrected on the netlink event and counted as drift", async () => {
  const d = daemon();
  d.loop.submit(seed());
  await d.loop.idle();
  const ipcache = d.target("ipcache");
  const [id, entry] = [...ipcache.objects][0]!;
  ipcache.objects.set(id, { ...(entry as object), identity: 2 });
  ipcache.objects.set("10.99.0.1/32", { prefix: "10.99.0.1/32", identity: 5 });

  d.netlinkEvent(); // a change in the host's namespace
  assert.deepEqual(d.timers.pending()[0], 100, "debounced");
  d.timers.fireNext();
  await d.loop.idle();
  const st = d.loop.status();
  assert.equal(st.lastRun?.trigger, "resync");
  assert.equal(st.lastRun?.drift, 2);
  assert.equal(st.driftCorrections, 2);
  assert.deepEqual(ipcache.objects.get(id), entry);
  assert.equal(ipcache.objects.has("10.99.0.1/32"), false);
  assert.equal(d.lines.filter((l) => l.includes("drift corrected")).length, 2);
});

test("scenario: a failing object is retried with backoff until it applies; the others are applied at once", async () => {
  const d = daemon();
  const attachments = d.target("attachment");
  d.loop.submit(seed());
  // Fail the first attachment three times in a row.
  const fail = () => {
    for (const c of ["lxc-app1/egress"]) attachments.failNext.set(c, "attach tcx egress lxc-app1: bpf(BPF_LINK_CREATE): ENODEV");
  };
  fail();
  await d.loop.idle();
  let st = d.loop.status();
  assert.equal(st.lastRun?.result, "failed");
  assert.equal(st.appliedRevision, null);
  assert.deepEqual(st.lastRun?.errors, [{ object: "attachment/lxc-app1/egress", message: "attach tcx egress lxc-app1: bpf(BPF_LINK_CREATE): ENODEV" }]);
  assert.ok(d.target("ipcache").objects.size > 0, "the rest was applied");
  assert.deepEqual(d.status().objectsInError, [{ resource: "attachment", id: "lxc-app1/egress", state: "error", error: "attach tcx egress lxc-app1: bpf(BPF_LINK_CREATE): ENODEV", at: (d.status().objectsInError as Array<{ at: number }>)[0]!.at }]);
  assert.equal(d.ready(), false);

  const delays: number[] = [];
  for (let i = 0; i < 2; i++) {
    fail();
    delays.push(d.timers.pending()[0]!);
    d.timers.fireNext();
    await d.loop.idle();
    assert.equal(d.loop.status().lastRun?.trigger, "retry");
    assert.equal(d.loop.status().lastRun?.result, "failed");
  }
  delays.push(d.timers.pending()[0]!);
  assert.deepEqual(delays, [100, 200, 400], "exponential backoff");
  d.timers.fireNext();
  await d.loop.idle();
  st = d.loop.status();
  assert.equal(st.lastRun?.result, "ok");
  assert.equal(st.lastRun?.changes, 1, "only the failed object is planned again");
  assert.equal(st.appliedRevision, "r1");
  assert.equal(d.ready(), true);
  assert.deepEqual(d.status().objectsInError, []);
});

test("scenario: the periodic resync reads the kernel and writes nothing when nothing drifted; SIGHUP resyncs at once", async () => {
  const d = daemon();
  d.loop.submit(seed());
  await d.loop.idle();
  const writes = () => RESOURCE_KINDS.reduce((n, k) => n + d.target(k).writes, 0);
  const w0 = writes();
  assert.deepEqual(d.timers.pending(), [30_000]);
  d.timers.fireNext();
  await d.loop.idle();
  assert.equal(d.loop.status().lastRun?.trigger, "resync");
  assert.equal(d.loop.status().lastRun?.changes, 0);
  assert.equal(writes(), w0);

  d.target("policy").objects.clear(); // someone flushed the policy map
  d.loop.trigger("signal");
  await d.loop.idle();
  const st = d.loop.status();
  assert.equal(st.lastRun?.trigger, "signal");
  assert.ok(st.lastRun!.drift > 0);
  assert.ok(d.target("policy").objects.size > 0);
  assert.deepEqual(d.timers.pending(), [30_000], "the resync timer restarts after the run");
});

test("scenario: restarted while the source is invalid, the daemon reports the revision recorded with the pins and becomes ready", async () => {
  const pins: { revision?: string } = {};
  const first = daemon(pins);
  first.loop.submit(seed("good"));
  await first.loop.idle();
  assert.equal(pins.revision, "good", "a fully successful run records its revision with the pins");

  const restarted = daemon(pins);
  assert.equal(restarted.loop.status().appliedRevision, "good");
  assert.equal(restarted.loop.status().appliedFrom, "record");
  assert.equal(restarted.ready(), false);
  restarted.loop.submit(invalid("bad"));
  await restarted.loop.idle();
  const st = restarted.loop.status();
  assert.equal(st.lastRun?.result, "invalid");
  assert.equal(st.appliedRevision, "good");
  assert.equal(restarted.ready(), true);
  assert.equal(pins.revision, "good");
  assert.ok(restarted.lines.some((l) => l.includes("revision in force taken from the pins")));
});

test("scenario: suspended, a commit and drift are planned and reported, nothing is applied; resume applies at once; a restart stays suspended", async () => {
  const pins: { revision?: string; suspension?: Suspension } = {};
  const d = daemon(pins);
  d.loop.submit(seed("r1"));
  await d.loop.idle();
  const metric = async (name: string) => Number(new RegExp(`^${name} (\\S+)$`, "m").exec(await d.metrics.registry.metrics())?.[1]);
  assert.equal(await metric("reconcile_suspended"), 0);

  d.timers.t += 5_000;
  const answer = d.suspend("NIC firmware");
  assert.deepEqual(answer.suspended, { since: d.timers.now(), reason: "NIC firmware", pending: null });
  assert.deepEqual(pins.suspension, { since: d.timers.now(), reason: "NIC firmware" }, "recorded with the pins");
  await d.loop.idle();
  assert.equal(await metric("reconcile_suspended"), 1);

  // A commit that removes app3 (its ipcache entry among others), and drift behind reconcile's back.
  const ipcache = d.target("ipcache");
  const writes = () => RESOURCE_KINDS.reduce((n, k) => n + d.target(k).writes, 0);
  const before = writes();
  const withoutApp3 = seed("r2");
  withoutApp3.files = withoutApp3.files.map((f) => (f.path === "endpoints.yaml" ? { ...f, content: f.content.split("---").slice(0, 2).join("---") } : f));
  ipcache.objects.set("10.99.0.1/32", { prefix: "10.99.0.1/32", identity: 5 });
  d.loop.submit(withoutApp3);
  await d.loop.idle();
  assert.equal(writes(), before, "nothing written while suspended");
  assert.ok(ipcache.objects.has("10.11.33.3/32") && ipcache.objects.has("10.99.0.1/32"));
  let st = d.status() as { suspended: { reason: string; pending: { revision: string; changes: number; counts: Record<string, number> } }; appliedRevision: string; lastRun: { result: string } };
  assert.equal(st.lastRun.result, "suspended");
  assert.equal(st.appliedRevision, "r1", "the revision in force is still r1");
  assert.equal(st.suspended.pending.revision, "r2");
  assert.equal(st.suspended.pending.counts["ipcache.delete"], 2, "app3's entry and the foreign one are pending deletes");
  assert.equal(await metric("reconcile_pending_changes"), st.suspended.pending.changes);
  assert.ok(d.lines.some((l) => /level=warn msg="suspended: changes pending, nothing applied" revision=r2 pending=\d+/.test(l)), d.lines.join("\n"));
  assert.equal(d.ready(), true);

  // A restart (a new process over the same pins) stays suspended and applies nothing.
  const again = daemon(pins);
  const writesAgain = () => RESOURCE_KINDS.reduce((n, k) => n + again.target(k).writes, 0);
  again.loop.submit(withoutApp3);
  await again.loop.idle();
  assert.equal(again.loop.status().lastRun?.result, "suspended");
  assert.equal(writesAgain(), 0);
  assert.equal(again.ready(), true, "ready: the pins' datapath is in force and the daemon is doing its job");
  assert.ok(again.lines.some((l) => l.includes("suspended (recorded with the pins)")));

  // resume applies at once, without waiting for the resync.
  const resumed = d.resume();
  assert.equal(resumed.wasSuspended, true);
  assert.equal(pins.suspension, undefined);
  await d.loop.idle();
  st = d.status() as typeof st;
  assert.equal(st.suspended, null);
  assert.equal(st.appliedRevision, "r2");
  assert.equal(ipcache.objects.has("10.11.33.3/32") || ipcache.objects.has("10.99.0.1/32"), false);
  assert.equal(await metric("reconcile_suspended"), 0);
  assert.equal(d.resume().wasSuspended, false, "resume when not suspended is a no-op");
});

/** The status document each time the policy target is called (in the middle of a run). */
function statusDuringPolicy(d: ReturnType<typeof daemon>): Array<Record<string, unknown>> {
  const seen: Array<Record<string, unknown>> = [];
  const policy = d.target("policy");
  const apply = policy.apply.bind(policy);
  policy.apply = (...args) => {
    seen.push(d.status());
    return apply(...args);
  };
  return seen;
}

test("scenario: during the first run status shows its progress (phase, endpoints, entries, elapsed) and logs it; later runs do not", async () => {
  const d = daemon();
  const seen = statusDuringPolicy(d);
  assert.equal(d.status().progress, undefined, "no run yet");
  d.loop.submit(seed("r1"));
  await d.loop.idle();
  assert.equal(seen.length, 1);
  const p = seen[0]!.progress as ProgressSnapshot;
  assert.equal(p.phase, "apply");
  assert.deepEqual(p.endpoints, { done: 3, total: 3 }, "the endpoint records are written before the policy");
  assert.equal(p.entries.total, 6, "ipcache 5 and policy 1");
  assert.equal(p.entries.done, 5, "the ipcache entries are written, the policy not yet");
  assert.equal(typeof p.elapsedMs, "number");
  assert.equal(d.status().progress, undefined, "gone once the first run is over");
  const progress = d.lines.filter((l) => l.includes('msg="first run: progress"'));
  assert.deepEqual(progress.map((l) => /phase=(\w+)/.exec(l)![1]), ["compile", "observe", "apply", "observe", "apply"], "a line per phase (the clock does not move: no others)");
  assert.match(progress.at(-1)!, /endpoints=0\/3 entries=0\/6 other=\d+\/\d+ failed=0/);
  // The next commit: no progress lines, no status field.
  d.loop.submit(seed("r2"));
  await d.loop.idle();
  assert.equal(seen.length, 1, "r2 changes no policy");
  assert.equal(d.lines.filter((l) => l.includes("first run: progress")).length, progress.length);
  assert.equal(d.loop.status().appliedRevision, "r2");
});

test("scenario: --no-progress silences the first run's progress lines; status shows its progress all the same", async () => {
  const d = daemon({}, { noProgress: true });
  const seen = statusDuringPolicy(d);
  d.loop.submit(seed("r1"));
  await d.loop.idle();
  assert.equal((seen[0]!.progress as ProgressSnapshot).phase, "apply");
  assert.deepEqual(d.lines.filter((l) => l.includes("first run: progress")), []);
  assert.equal(d.loop.status().lastRun?.result, "ok");
});

test("scenario: a first run that throws (invalid manifests) ends its progress; the next run has none", async () => {
  const d = daemon();
  d.loop.submit(invalid("r1"));
  await d.loop.idle();
  assert.equal(d.status().progress, undefined);
  assert.equal(d.lines.filter((l) => l.includes("first run: progress")).length, 1, "compile only");
  d.loop.submit(seed("r2"));
  await d.loop.idle();
  assert.equal(d.loop.status().appliedRevision, "r2");
  assert.equal(d.lines.filter((l) => l.includes("first run: progress")).length, 1);
});

test("scenario: after a run that grew RSS the idle daemon gives memory back, before the next resync, and logs it", async () => {
  const MiB = 2 ** 20;
  let rss = 100 * MiB;
  let releases = 0;
  const d = daemon({}, {}, { rss: () => rss, release: () => { releases++; rss = 120 * MiB; } });
  rss = 300 * MiB; // what the first run left resident
  d.loop.submit(seed());
  await d.loop.idle();
  assert.equal(d.loop.status().appliedRevision, "r1");
  assert.deepEqual(d.timers.pending(), [RELEASE_IDLE_MS, 30_000], "the release, then the resync");
  d.timers.fireNext();
  assert.equal(releases, 1);
  assert.deepEqual(d.status().memory, { releases: 1, last: { rssBeforeMiB: 300, rssAfterMiB: 120, ms: 0 } });
  assert.ok(d.lines.some((l) => l.includes('msg="memory released"') && l.includes("rssBeforeMiB=300") && l.includes("rssAfterMiB=120")), d.lines.join("\n"));

  // The resync leaves RSS where the release left it: nothing more to give back.
  d.timers.fireNext();
  await d.loop.idle();
  assert.equal(d.loop.status().lastRun?.trigger, "resync");
  assert.deepEqual(d.timers.pending(), [30_000]);
  assert.equal(releases, 1);
});
