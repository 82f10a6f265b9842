// `reconcile monitor` without a kernel: its arguments; the ring path over a fake event stream
// (filters, --count, the summary, numbers only without --source); the daemon path over a real unix
// socket serving GET /events as the daemon does (hello, events, stats), its errors and the fallback.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import type { EventBudget, KernelPort } from "../../reconciler/apply/port.js";
import { parseArgs, UsageError } from "../../reconciler/cli/args.js";
import { monitor } from "../../reconciler/cli/monitor.js";
import { DropReason } from "../../reconciler/datapath/layouts.js";
import { parsePrefix } from "../../reconciler/manifest/ip.js";
import { encodeRecord, FakeEventStream } from "./helpers/event-records.js";

const parse = (...argv: string[]) => parseArgs(argv, {}, { node: "vm" });
type MonitorCommand = Extract<ReturnType<typeof parse>, { name: "monitor" }>;

test("monitor's arguments: the daemon with --socket, the ring with --bpffs-root, else either; filters and --count checked", () => {
  const m = (...argv: string[]) => parse("monitor", ...argv) as MonitorCommand;
  assert.equal(m().via, "auto");
  assert.equal(m("--socket", "/run/x.sock").via, "daemon");
  assert.equal(m("--bpffs-root", "/sys/fs/bpf/t").via, "ring");
  assert.equal((parseArgs(["monitor"], { RECONCILE_SOCKET: "/run/x.sock" }, { node: "vm" }) as MonitorCommand).via, "daemon");
  const f = m("--endpoint", "app1", "--verdict", "drop,audit", "--from", "10.0.0.0/8", "--to", "app1", "--port", "80/TCP", "--count", "5");
  assert.deepEqual(f.filter, { endpoint: "app1", verdicts: ["drop", "audit"], from: { prefix: parsePrefix("10.0.0.0/8") }, to: { name: "app1" }, port: { port: 80, protocol: 6 } });
  assert.equal(f.count, 5);
  assert.throws(() => m("--verdict", "dropped"), (e: Error) => e instanceof UsageError && /--verdict: expected one or more of drop, allow, deny, audit/.test(e.message));
  assert.throws(() => m("--count", "0"), /--count: expected a whole number of events, 1 or more, got 0/);
  assert.throws(() => m("--port", "http"), /--port: expected PORT\/PROTOCOL/);
  assert.throws(() => parse("inspect", "links", "--sort", "hits"), /--sort orders the entries of inspect policy/);
  assert.equal((parse("inspect", "policy", "app1", "--sort", "hits") as Extract<ReturnType<typeof parse>, { name: "inspect" }>).sort, "hits");
});

function io() {
  const out = new PassThrough();
  const err = new PassThrough();
  let stdout = "";
  let stderr = "";
  out.on("data", (d: Buffer) => (stdout += d.toString()));
  err.on("data", (d: Buffer) => (stderr += d.toString()));
  return { io: { stdout: out, stderr: err, env: {} }, text: () => ({ stdout, stderr }) };
}

function fakeKernel(stream: FakeEventStream | undefined, budget: EventBudget): KernelPort {
  return { events: () => stream, eventBudget: () => budget, close: () => {} } as unknown as KernelPort;
}

const DROP = { type: "drop", epId: 7, peerIdentity: 300, direction: "ingress", reason: DropReason.NO_POLICY, verdict: "deny", protocol: 6, saddr: "10.0.0.3", daddr: "10.0.0.1", sport: 40000, dport: 80 } as const;

test("monitor on the ring: the filter picks the drops, --count ends it, numbers only without --source, the summary counts what the datapath suppressed", async () => {
  const stream = new FakeEventStream();
  const budget: EventBudget = { suppressed: 5n, lost: 1n };
  const cmd = parse("monitor", "--bpffs-root", "/sys/fs/bpf/t", "--verdict", "drop", "--count", "2", "--output", "json") as MonitorCommand;
  const { io: streams, text } = io();
  let compiled = 0;
  const done = monitor(cmd, streams, {
    signal: new AbortController().signal,
    openKernel: async () => fakeKernel(stream, budget),
    compile: async () => {
      compiled++;
      throw new Error("not asked for");
    },
  });
  await new Promise((r) => setTimeout(r, 20));
  budget.suppressed = 12n;
  stream.push(encodeRecord({ ...DROP, type: "verdict", verdict: "allow", reason: 0 }), encodeRecord(DROP), encodeRecord({ ...DROP, sport: 40001 }), encodeRecord({ ...DROP, sport: 40002 }));
  assert.equal(await done, 0);
  const { stdout, stderr } = text();
  const lines = stdout.trim().split("\n").map((l) => JSON.parse(l) as { type: string; sport: number; endpoint: string; revision: string | null; epId: number });
  assert.deepEqual(lines.map((l) => [l.type, l.sport]), [["drop", 40000], ["drop", 40001]]);
  assert.deepEqual([lines[0]!.endpoint, lines[0]!.epId, lines[0]!.revision], ["", 7, null]);
  assert.equal(compiled, 0);
  assert.match(stderr, /^monitor: reading the ring buffer at \/sys\/fs\/bpf\/t\/events \(numbers only: give --source for names\)\n/);
  // One drain took all four records: the one after --count was read, not shown.
  assert.match(stderr, /monitor: 2 events shown, 4 read; the datapath suppressed 7 \(rate limit\) and lost 0 \(ring full\)\n$/);
});

test("monitor on the ring: no ring under the pin root is an error that says where it looked", async () => {
  const cmd = parse("monitor", "--bpffs-root", "/sys/fs/bpf/t") as MonitorCommand;
  await assert.rejects(monitor(cmd, io().io, { signal: new AbortController().signal, openKernel: async () => fakeKernel(undefined, { suppressed: 0n, lost: 0n }), compile: async () => assert.fail() }), /no event ring buffer at \/sys\/fs\/bpf\/t\/events/);
});

async function listen(server: Server, path: string): Promise<void> {
  await new Promise<void>((resolve) => server.listen(path, resolve));
}

test("monitor through the daemon: the hello's revision, the events it streams (filtered, text), the stats in the summary; Ctrl-C ends it with 0", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "monitor-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const socket = join(dir, "d.sock");
  const event = { time: "2026-12-05T12:00:01.123Z", type: "drop", endpoint: "app1", epId: 7, direction: "ingress", verdict: "deny", reason: DropReason.NO_POLICY, reasonName: "Policy denied by default deny", peer: { identity: 300, kind: "endpoint", names: ["app3"], labels: "{any:id=app3}" }, match: null, rules: [], provenance: "no rule allows {any:id=app3} on TCP/80 (default deny by l3-rule, l3-rule.json:2)", src: "10.0.0.3", dst: "10.0.0.1", sport: 40000, dport: 80, protocol: 6, protocolName: "TCP", length: 60, revision: "dir:abc" };
  const server = createServer((req, res) => {
    assert.equal(req.url, "/events");
    res.writeHead(200, { "content-type": "application/x-ndjson" });
    res.write(`${JSON.stringify({ type: "hello", revision: "dir:abc", node: "vm" })}\n`);
    res.write(`${JSON.stringify({ type: "stats", read: 0, malformed: 0, suppressed: 4, lost: 0, skipped: 0 })}\n`);
    res.write(`${JSON.stringify(event)}\n${JSON.stringify({ ...event, endpoint: "app2", epId: 8 })}\n`);
    res.write(`${JSON.stringify({ type: "stats", read: 2, malformed: 0, suppressed: 9, lost: 2, skipped: 1 })}\n`);
  });
  await listen(server, socket);
  t.after(() => server.close());
  server.on("connection", (c) => t.after(() => c.destroy()));
  const stop = new AbortController();
  const { io: streams, text } = io();
  const cmd = parse("monitor", "--socket", socket, "--endpoint", "app1") as MonitorCommand;
  const done = monitor(cmd, streams, { signal: stop.signal, openKernel: async () => assert.fail("the daemon serves the events"), compile: async () => assert.fail() });
  await new Promise((r) => setTimeout(r, 100));
  stop.abort();
  assert.equal(await done, 0);
  const { stdout, stderr } = text();
  assert.equal(stdout, "12:00:01.123 DROP    app1 ingress reason Policy denied by default deny 10.0.0.3:40000 -> 10.0.0.1:80 TCP from app3 (identity 300): no rule allows {any:id=app3} on TCP/80 (default deny by l3-rule, l3-rule.json:2)\n");
  assert.equal(stderr, `monitor: reading events from the daemon at ${socket} (revision dir:abc)\nmonitor: 1 events shown, 2 read; the datapath suppressed 5 (rate limit) and lost 2 (ring full); the daemon skipped 1 for this reader (it fell behind)\n`);
});

test("monitor through the daemon: a daemon without events is an error; with --socket an absent daemon is one too, without it monitor reads the ring", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "monitor-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const socket = join(dir, "d.sock");
  const server = createServer((_req, res) => res.writeHead(503, { "content-type": "application/json" }).end(`${JSON.stringify({ error: "the daemon does not read the event ring buffer" })}\n`));
  await listen(server, socket);
  const deps = { signal: new AbortController().signal, openKernel: async () => fakeKernel(undefined, { suppressed: 0n, lost: 0n }), compile: async () => assert.fail() };
  await assert.rejects(monitor(parse("monitor", "--socket", socket) as MonitorCommand, io().io, deps), /the daemon at .*d\.sock serves no events \(HTTP 503: the daemon does not read the event ring buffer\)/);
  await new Promise((r) => server.close(r));
  await assert.rejects(monitor(parse("monitor", "--socket", socket) as MonitorCommand, io().io, deps), /cannot reach the daemon at .*d\.sock \(is it running\?\)/);
  // The same absent socket as the default: monitor goes to the ring (here: none there, said so).
  const auto = { ...(parse("monitor") as MonitorCommand), via: "auto" as const };
  auto.opts.socket = socket;
  await assert.rejects(monitor(auto, io().io, deps), /no event ring buffer at \/sys\/fs\/bpf\/reconcile\/events/);
});

test("monitor through the daemon: a line that is not JSON is an error of the command, not an uncaught exception", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "monitor-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const socket = join(dir, "d.sock");
  const server = createServer((_req, res) => {
    res.writeHead(200, { "content-type": "application/x-ndjson" });
    res.write(`${JSON.stringify({ type: "hello", revision: "dir:abc", node: "vm" })}\nnot json\n`);
  });
  await listen(server, socket);
  t.after(() => server.close());
  server.on("connection", (c) => t.after(() => c.destroy()));
  const deps = { signal: new AbortController().signal, openKernel: async () => assert.fail("the daemon serves the events"), compile: async () => assert.fail() };
  await assert.rejects(monitor(parse("monitor", "--socket", socket) as MonitorCommand, io().io, deps), /the daemon at .*d\.sock sent a line that is not JSON: not json/);
});
