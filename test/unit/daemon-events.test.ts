// The daemon's event reader without a kernel: the service applies the seed to in-memory targets, a
// fake ring buffer feeds encoded records, and the metrics, the --log-drops lines and the GET /events
// stream on the status socket are what an operator would see.

import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Targets } from "../../reconciler/apply/executor.js";
import type { EventBudget, KernelPort } from "../../reconciler/apply/port.js";
import { MemoryTarget } from "../../reconciler/apply/target.js";
import { DropReason } from "../../reconciler/datapath/layouts.js";
import { RESOURCE_KINDS } from "../../reconciler/datapath/state.js";
import { LOG_DROPS_PER_SECOND } from "../../reconciler/daemon/events.js";
import { Logger } from "../../reconciler/daemon/log.js";
import { createDaemonCore } from "../../reconciler/daemon/run.js";
import { startStatusServer } from "../../reconciler/daemon/status.js";
import { encodeRecord, FakeEventStream, type RecordFields } from "./helpers/event-records.js";
import { FakeTimers } from "./helpers/fake-timers.js";
import { snapshotOfDir } from "./helpers/manifest-snapshot.js";

function kernelWithEvents(stream: FakeEventStream | undefined, budget: EventBudget): KernelPort {
  return {
    targets: new Targets(RESOURCE_KINDS.map((k) => new MemoryTarget(k))),
    attachMode: "tcx",
    programTags: new Map(),
    host: () => ({ addresses: [], mtuByAddress: new Map() }),
    ownedNetns: () => [],
    watch: () => ({ close: () => {}, stale: () => false }),
    policyStats: () => new Map(),
    drops: () => [],
    events: () => stream,
    eventBudget: () => budget,
    tcxChains: () => [],
    linkPin: (h) => `/pins/links/${h.device}/${h.hook}`,
    recordedRevision: () => undefined,
    recordRevision: () => {},
    recordedSuspension: () => undefined,
    recordSuspension: () => {},
    prune: () => {},
    close: () => {},
  };
}

async function daemon(opts: { logDrops?: boolean; stream?: FakeEventStream | null } = {}) {
  const stream = opts.stream === null ? undefined : (opts.stream ?? new FakeEventStream());
  const budget: EventBudget = { suppressed: 0n, lost: 0n };
  const timers = new FakeTimers();
  const lines: string[] = [];
  const log = new Logger({ format: "logfmt", level: "info", write: (l) => lines.push(l), journald: false, now: () => timers.now() });
  const core = createDaemonCore({
    kernel: kernelWithEvents(stream, budget),
    opts: { node: "vm", enforcement: "default", attachMode: "tcx", resyncIntervalMs: 30_000, logDrops: opts.logDrops ?? false },
    log,
    timers,
  });
  core.loop.submit(snapshotOfDir("examples/seed", "r1"));
  await core.loop.idle();
  return { ...core, stream, budget, timers, lines };
}

/** app2 → app1:81/TCP: default deny at app1's ingress (the seed allows TCP/80 only). */
const denied = (dport = 81): RecordFields => ({
  type: "drop", epId: 63572, peerIdentity: 36895, direction: "ingress", reason: DropReason.NO_POLICY, verdict: "deny",
  protocol: 6, saddr: "10.11.90.17", daddr: "10.11.255.104", sport: 43512, dport,
});
const allowed = (): RecordFields => ({
  ...denied(80), type: "verdict", verdict: "allow", reason: 0, match: { identity: 36895, direction: "ingress", protocol: 6, port: 80, portPrefixLen: 16 },
});

async function until(what: string, cond: () => boolean | Promise<boolean>): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 5));
  }
  assert.fail(`timed out waiting for ${what}`);
}

const metric = async (d: { metrics: { registry: { metrics(): Promise<string> } } }, line: string) => (await d.metrics.registry.metrics()).split("\n").find((l) => l.startsWith(line));

test("the daemon counts drops by endpoint name, reason and direction, and policy verdicts by endpoint", async () => {
  const d = await daemon();
  assert.equal(d.events.start(), true);
  d.stream!.push(encodeRecord(denied()), encodeRecord(denied(82)), encodeRecord(allowed()), encodeRecord({ ...denied(), type: "audit" }), encodeRecord({ ...denied(), reason: DropReason.MALFORMED, epId: 0 }));
  await until("5 events read", () => d.events.totals().read === 5);
  assert.equal(await metric(d, 'reconcile_drops_total{endpoint="app1",reason="Policy denied by default deny",direction="ingress"}'), 'reconcile_drops_total{endpoint="app1",reason="Policy denied by default deny",direction="ingress"} 2');
  assert.equal(await metric(d, 'reconcile_drops_total{endpoint="endpoint 0",reason="Malformed"'), 'reconcile_drops_total{endpoint="endpoint 0",reason="Malformed",direction="ingress"} 1');
  assert.equal(await metric(d, 'reconcile_policy_verdicts_total{endpoint="app1",verdict="deny"}'), 'reconcile_policy_verdicts_total{endpoint="app1",verdict="deny"} 2');
  assert.equal(await metric(d, 'reconcile_policy_verdicts_total{endpoint="app1",verdict="allow"}'), 'reconcile_policy_verdicts_total{endpoint="app1",verdict="allow"} 1');
  assert.equal(await metric(d, 'reconcile_policy_verdicts_total{endpoint="app1",verdict="audit"}'), 'reconcile_policy_verdicts_total{endpoint="app1",verdict="audit"} 1');
  assert.deepEqual(d.status().events, { read: 5, malformed: 0, suppressed: 0, lost: 0 });
  await d.events.close();
  assert.equal(d.stream!.closed, true, "the ring buffer is closed with the reader");
});

test("suppressed and lost come from event_budget every second, as counters that only grow", async () => {
  const d = await daemon();
  d.events.start();
  try {
    d.budget.suppressed = 40n;
    d.budget.lost = 3n;
    d.timers.fireNext(); // the budget poll
    assert.equal(await metric(d, "reconcile_events_suppressed_total"), "reconcile_events_suppressed_total 40");
    assert.equal(await metric(d, "reconcile_events_lost_total"), "reconcile_events_lost_total 3");
    d.budget.suppressed = 50n;
    d.timers.fireNext();
    assert.equal(await metric(d, "reconcile_events_suppressed_total"), "reconcile_events_suppressed_total 50");
    assert.equal(await metric(d, "reconcile_events_lost_total"), "reconcile_events_lost_total 3");
  } finally {
    await d.events.close();
  }
});

test("--log-drops: one structured line per drop with its provenance, at most LOG_DROPS_PER_SECOND a second, the rest folded into a count", async () => {
  const d = await daemon({ logDrops: true });
  d.events.start();
  d.lines.length = 0;
  for (let i = 0; i < LOG_DROPS_PER_SECOND + 5; i++) d.stream!.push(encodeRecord(denied()));
  d.stream!.push(encodeRecord(allowed())); // not a drop: not logged
  await until("all read", () => d.events.totals().read === LOG_DROPS_PER_SECOND + 6);
  const drops = d.lines.filter((l) => l.includes("msg=drop "));
  assert.equal(drops.length, LOG_DROPS_PER_SECOND);
  assert.match(drops[0]!, /endpoint=app1 direction=ingress reason="Policy denied by default deny" src=10\.11\.90\.17 dst=10\.11\.255\.104 sport=43512 dport=81 protocol=TCP peer=app2 identity=36895 decision="no rule allows \{k8s:id=app2\} on TCP\/81 \(default deny by l3-rule, l3-rule\.json:2\)" rules=l3-rule\.json:2/);
  d.timers.t += 1000;
  d.stream!.push(encodeRecord(denied()));
  await until("the next second's drop", () => d.lines.filter((l) => l.includes("msg=drop ")).length === LOG_DROPS_PER_SECOND + 1);
  assert.ok(d.lines.some((l) => /msg="drops not logged \(rate limit\)" folded=5 limit=10\/s/.test(l)), d.lines.join("\n"));
  await d.events.close();
});

test("without a ring buffer under the pins the daemon says so and GET /events answers 503", async () => {
  const d = await daemon({ stream: null });
  assert.equal(d.events.start(), false);
  assert.ok(d.lines.some((l) => l.includes("no event ring buffer under the pin root")));
  const dir = mkdtempSync(join(tmpdir(), "reconcile-events-"));
  const server = await startStatusServer({ socketPath: join(dir, "s.sock"), getStatus: () => ({}), routes: { "/events": (q, r) => d.events.serve(q, r) } });
  try {
    const code = await new Promise<number>((resolve, reject) => request({ socketPath: join(dir, "s.sock"), path: "/events" }, (res) => { res.resume(); resolve(res.statusCode!); }).on("error", reject).end());
    assert.equal(code, 503);
  } finally {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("GET /events streams hello, then the named events as monitor prints them in JSON, then stats", async () => {
  const d = await daemon();
  d.events.start();
  const dir = mkdtempSync(join(tmpdir(), "reconcile-events-"));
  const socketPath = join(dir, "s.sock");
  const server = await startStatusServer({ socketPath, getStatus: () => ({}), routes: { "/events": (q, r) => d.events.serve(q, r) } });
  try {
    const got: Array<Record<string, unknown>> = [];
    const req = request({ socketPath, path: "/events" }, (res) => {
      let rest = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        const parts = (rest + chunk).split("\n");
        rest = parts.pop()!;
        for (const p of parts) got.push(JSON.parse(p) as Record<string, unknown>);
      });
    });
    req.end();
    await until("hello", () => got.length === 1);
    assert.deepEqual(got[0], { type: "hello", revision: "r1", node: "vm" });
    d.stream!.push(encodeRecord(denied()));
    await until("the event", () => got.length === 2);
    assert.equal(got[1]!.type, "drop");
    assert.equal(got[1]!.endpoint, "app1");
    assert.deepEqual(got[1]!.rules, [{ file: "l3-rule.json", line: 2, name: "l3-rule" }]);
    assert.equal(got[1]!.revision, "r1");
    d.budget.lost = 7n;
    d.timers.fireNext();
    await until("stats", () => got.length === 3);
    assert.deepEqual(got[2], { type: "stats", read: 1, malformed: 0, suppressed: 0, lost: 7, skipped: 0 });
    req.destroy();
  } finally {
    await d.events.close();
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
