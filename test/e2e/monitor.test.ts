// reconcile monitor with real traffic (the built binary, a private host namespace): through the
// running daemon, a denied connect is shown as DROP events, one per dropped packet (as the drops
// counters count them), naming the endpoint, the peer and the rule that put app1 into default
// deny, and how long after the packet the line arrived; an allowed connection gives one VERDICT
// event, not one per packet; an Endpoint annotated for audit lets the denied connect through and
// reports AUDIT for its packets. Without the daemon, monitor reads the pinned ring itself, with names from --source.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import type { ChildProcess } from "node:child_process";
import {
  SEED_IPS,
  connect,
  daemonStatus,
  killAndWait,
  makeEnv,
  reconcile,
  requireTools,
  show,
  spawnReconcile,
  startServer,
  waitFor,
  type Env,
  type RunResult,
} from "./helpers/reconcile.js";

/** The fields of monitor's JSON line this test reads (docs/monitor.md has them all). */
interface MonitorEvent {
  time: string;
  type: "drop" | "verdict" | "audit";
  endpoint: string;
  direction: "ingress" | "egress";
  verdict: "allow" | "deny";
  reasonName: string;
  peer: { identity: number; names: string[]; labels: string | null };
  rules: Array<{ name: string; file: string; line: number }>;
  provenance: string;
  src: string;
  dst: string;
  sport: number;
  dport: number;
  protocolName: string;
  revision: string | null;
}

interface Monitor {
  child: ChildProcess;
  done: Promise<RunResult>;
  /** The stderr line monitor writes once it reads events. */
  ready: Promise<string>;
  /** stdout lines as they came, each with the time it arrived here. */
  lines: Array<{ text: string; at: number }>;
}

function startMonitor(env: Env, args: string[]): Monitor {
  const { child, done } = spawnReconcile(env, ["monitor", ...args], { timeoutMs: 120_000 });
  env.defer(() => killAndWait(child));
  const lines: Monitor["lines"] = [];
  let partial = "";
  child.stdout!.on("data", (d: Buffer) => {
    const at = Date.now();
    const parts = (partial + d.toString()).split("\n");
    partial = parts.pop()!;
    for (const text of parts) lines.push({ text, at });
  });
  let err = "";
  const ready = new Promise<string>((resolve, reject) => {
    child.stderr!.on("data", (d: Buffer) => {
      err += d.toString();
      const line = err.split("\n").find((l) => l.startsWith("monitor: reading"));
      if (line) resolve(line);
    });
    child.on("close", (code) => reject(new Error(`monitor exited ${code} before it was ready: ${err}`)));
  });
  ready.catch(() => undefined); // awaited by the test; a late rejection after success is not an error
  return { child, done, ready, lines };
}

function events(m: Monitor): Array<MonitorEvent & { at: number }> {
  return m.lines.map((l) => ({ ...(JSON.parse(l.text) as MonitorEvent), at: l.at }));
}

/** Stops monitor as a user does (Ctrl-C) and returns its run. */
async function interrupt(m: Monitor): Promise<RunResult> {
  m.child.kill("SIGINT");
  return m.done;
}

/** Packets app1 dropped at ingress for want of a policy, as `inspect policy` counts them. */
async function app1NoPolicyDrops(env: Env): Promise<number> {
  const r = await reconcile(env, ["inspect", "policy", "app1", "--source", env.dir, "--output", "json"]);
  assert.equal(r.code, 0, show(r));
  const rows = JSON.parse(r.stdout) as Array<Record<string, unknown>>;
  return rows.filter((x) => x.drops === "NO_POLICY" && x.direction === "ingress").reduce((n, x) => n + (x.packets as number), 0);
}

const FROM_APP3 = (e: MonitorEvent) => e.endpoint === "app1" && e.direction === "ingress" && e.src === SEED_IPS.app3 && e.dport === 80;

test("monitor through the daemon: a denied connect's drops with provenance, one verdict per allowed flow, audit lets it through", async (t) => {
  requireTools("bpftool", "python3", "nsenter");
  const env = makeEnv(t, "monitor");
  const socket = path.join(env.tmp, "reconcile.sock");
  const daemon = spawnReconcile(env, ["--source", env.dir, "--socket", socket, "--resync-interval", "1s", "--monitor-verdicts", "allow", "--log-drops"], { timeoutMs: 170_000 });
  env.defer(() => killAndWait(daemon.child));
  let log = "";
  daemon.child.stderr!.on("data", (d: Buffer) => (log += d.toString()));
  const status = () => daemonStatus<{ appliedRevision: string | null; events?: { read: number } }>(socket);
  const applied = await waitFor("the daemon to apply the seed", async () => {
    if (daemon.child.exitCode !== null) throw new Error(`daemon exited ${daemon.child.exitCode}: ${log}`);
    const s = await status().catch(() => undefined);
    return s?.appliedRevision ?? undefined;
  }, 30_000, 50);
  await startServer(env, env.netns.app1, SEED_IPS.app1, 80);

  const json = startMonitor(env, ["--socket", socket, "--output", "json"]);
  const text = startMonitor(env, ["--socket", socket, "--verdict", "drop", "--endpoint", "app1"]);
  assert.match(await json.ready, new RegExp(`^monitor: reading events from the daemon at ${socket.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")} \\(revision ${applied}\\)`));
  await text.ready;

  // Denied: app3 → app1:80 (only app2 may). Every dropped packet is one DROP event.
  const dropsBefore = await app1NoPolicyDrops(env);
  assert.equal(await connect(env.netns.app3, SEED_IPS.app1, 80, 1.5), "timeout");
  const dropsAfter = await app1NoPolicyDrops(env);
  const dropped = dropsAfter - dropsBefore;
  assert.ok(dropped >= 1, `app1 counted ${dropped} drops`);
  const denied = await waitFor("one DROP event per dropped packet", () => {
    const evs = events(json).filter((e) => e.type === "drop" && FROM_APP3(e));
    return evs.length >= dropped ? evs : undefined;
  }, 5000);
  await new Promise((r) => setTimeout(r, 300)); // and no more than that
  assert.equal(events(json).filter((e) => e.type === "drop" && FROM_APP3(e)).length, dropped, "one event per dropped packet");
  const first = denied[0]!;
  assert.equal(first.verdict, "deny");
  assert.equal(first.reasonName, "Policy denied by default deny");
  assert.deepEqual(first.peer.names, ["app3"]);
  assert.equal(first.protocolName, "TCP");
  assert.equal(first.revision, applied);
  assert.deepEqual(first.rules.map((r) => `${r.name} ${r.file}`), ["l3-rule l3-rule.json"]);
  assert.match(first.provenance, /^no rule allows \{[^}]*id=app3[^}]*\} on TCP\/80 \(default deny by l3-rule, l3-rule\.json:\d+\)$/);
  const latencies = denied.map((e) => e.at - Date.parse(e.time)).sort((a, b) => a - b);
  t.diagnostic(`${dropped} dropped SYNs → ${denied.length} DROP events; packet → monitor line: ${latencies.join(", ")} ms`);

  // --log-drops: the daemon logged them as structured lines, with the rule's file:line.
  await waitFor("a drop log line", () => (log.split("\n").find((l) => /\bdrop\b/.test(l) && l.includes("endpoint=app1") && l.includes(SEED_IPS.app3) && /rules=l3-rule\.json:\d+/.test(l)) ? true : undefined), 5000);

  // The same drops as text lines, as `cilium monitor` prints them, with the provenance at the end.
  await waitFor("the text line", () => text.lines.some((l) => l.text.includes(`${SEED_IPS.app3}:`)), 5000);
  const line = text.lines.find((l) => l.text.includes(`${SEED_IPS.app3}:`))!.text;
  assert.match(line, new RegExp(`^\\d\\d:\\d\\d:\\d\\d\\.\\d{3} DROP +app1 ingress reason Policy denied by default deny ${SEED_IPS.app3.replaceAll(".", "\\.")}:\\d+ -> ${SEED_IPS.app1.replaceAll(".", "\\.")}:80 TCP from app3 \\(identity \\d+\\): no rule allows `));
  assert.ok(text.lines.every((l) => / DROP +app1 /.test(l.text)), `text monitor filtered to app1's drops:\n${text.lines.map((l) => l.text).join("\n")}`);

  // Allowed: app2 → app1:80 with allow verdicts on. One VERDICT for the connection, whatever its packets.
  assert.equal(await connect(env.netns.app2, SEED_IPS.app1, 80), "ok");
  const allowed = await waitFor("the allow verdict", () => events(json).filter((e) => e.type === "verdict" && e.endpoint === "app1" && e.direction === "ingress" && e.src === SEED_IPS.app2 && e.dport === 80), 5000).then(async (evs) => {
    if (evs.length === 0) throw new Error("no allow verdict");
    await new Promise((r) => setTimeout(r, 300));
    return events(json).filter((e) => e.type === "verdict" && e.endpoint === "app1" && e.direction === "ingress" && e.src === SEED_IPS.app2 && e.dport === 80);
  });
  assert.equal(allowed.length, 1, JSON.stringify(allowed));
  assert.equal(allowed[0]!.verdict, "allow");
  assert.equal(allowed[0]!.endpoint, "app1");
  assert.match(allowed[0]!.provenance, /^allowed by l3-rule, l3-rule\.json:\d+$/);

  // Audit on the Endpoint app1: the denied connect now goes through and is reported as AUDIT.
  const endpoints = path.join(env.dir, "endpoints.yaml");
  const annotated = readFileSync(endpoints, "utf8").replace(/name: app1\n/, "name: app1\n  annotations:\n    reconcile.io/enforcement: audit\n");
  assert.notEqual(annotated, readFileSync(endpoints, "utf8"));
  writeFileSync(endpoints, annotated);
  await waitFor("the audit revision to be applied", async () => ((await status()).appliedRevision !== applied ? true : undefined), 15_000, 50);
  assert.equal(await connect(env.netns.app3, SEED_IPS.app1, 80), "ok");
  const audit = await waitFor("an AUDIT event", () => events(json).find((e) => e.type === "audit" && FROM_APP3(e)), 5000);
  assert.equal(audit.verdict, "deny");
  assert.match(audit.provenance, /^would be denied: no rule allows \{[^}]*id=app3[^}]*\} on TCP\/80 \(default deny by l3-rule, l3-rule\.json:\d+\)$/);
  // An audited flow makes no conntrack entry (turning audit off must drop it): each of its packets
  // app1 receives is an AUDIT (bpf/endpoint.bpf.c), and none is a DROP.
  const flow = (e: MonitorEvent) => FROM_APP3(e) && e.sport === audit.sport;
  assert.ok(events(json).filter((e) => e.type === "audit" && flow(e)).length >= 1);
  assert.equal(events(json).filter((e) => e.type === "drop" && flow(e)).length, 0, "the audited flow is not dropped");

  // inspect drops: the same counters for every endpoint; inspect policy --sort hits: busiest entry first.
  const dropTable = await reconcile(env, ["inspect", "drops", "--source", env.dir, "--output", "json"]);
  assert.equal(dropTable.code, 0, show(dropTable));
  const app1Drops = (JSON.parse(dropTable.stdout) as Array<{ endpoint: string; direction: string; reason: string; packets: number }>).find((r) => r.endpoint === "app1" && r.direction === "ingress" && r.reason === "NO_POLICY");
  assert.ok(app1Drops && app1Drops.packets >= dropsAfter, dropTable.stdout);
  const sorted = await reconcile(env, ["inspect", "policy", "app1", "--source", env.dir, "--sort", "hits", "--output", "json"]);
  assert.equal(sorted.code, 0, show(sorted));
  const hits = (JSON.parse(sorted.stdout) as Array<{ identity?: number; packets: number }>).filter((r) => r.identity !== undefined).map((r) => r.packets);
  assert.ok(hits.length >= 1 && hits[0]! >= 1, sorted.stdout);
  assert.deepEqual(hits, [...hits].sort((a, b) => b - a));

  const s = await status();
  assert.ok((s.events?.read ?? 0) >= dropped + 2, JSON.stringify(s.events));
  for (const m of [json, text]) {
    const r = await interrupt(m);
    assert.equal(r.code, 0, show(r));
  }
});

test("monitor without the daemon: reads the pinned ring, names from --source, stops after --count", async (t) => {
  requireTools("bpftool", "python3", "nsenter");
  const env = makeEnv(t, "monitor-ring");
  const once = await reconcile(env, ["--once", "--source", env.dir]);
  assert.equal(once.code, 0, show(once));
  const m = startMonitor(env, ["--source", env.dir, "--output", "json", "--verdict", "drop", "--count", "1"]);
  assert.match(await m.ready, new RegExp(`^monitor: reading the ring buffer at ${env.pinRoot}/events \\(revision \\S+\\)`));
  const started = Date.now();
  assert.equal(await connect(env.netns.app3, SEED_IPS.app1, 80, 0.5), "timeout");
  const r = await m.done;
  assert.equal(r.code, 0, show(r));
  const lines = r.stdout.trim().split("\n");
  assert.equal(lines.length, 1, r.stdout);
  const ev = JSON.parse(lines[0]!) as MonitorEvent;
  assert.equal(ev.type, "drop");
  assert.equal(ev.endpoint, "app1");
  assert.deepEqual(ev.peer.names, ["app3"]);
  assert.match(ev.provenance, /default deny by l3-rule, l3-rule\.json:\d+/);
  t.diagnostic(`--count 1: exited ${Date.now() - started} ms after the connect began`);

  // Without --source there are no names: numbers, said once on stderr.
  const bare = startMonitor(env, ["--output", "json", "--count", "1"]);
  assert.match(await bare.ready, /numbers only/);
  assert.equal(await connect(env.netns.app3, SEED_IPS.app1, 80, 0.5), "timeout");
  const rb = await bare.done;
  assert.equal(rb.code, 0, show(rb));
  const nameless = JSON.parse(rb.stdout.trim()) as MonitorEvent;
  assert.equal(nameless.endpoint, "");
  assert.equal(nameless.revision, null);
  assert.equal(nameless.dst, SEED_IPS.app1);
});
