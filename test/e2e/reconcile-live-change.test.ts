// DESIGN §4 transitions under load: during a series of policy changes to one endpoint (app1), applied
// with `--once` while traffic runs, no allowed connection of the unchanged part of the policy (the
// seed rule: app2 → app1 TCP/80) loses a packet, and every change takes effect.
//
// Traffic: a python3 TCP echo server in app1 (ports 80 and the probe ports) and a client in app2 that
// sends a message every 20 ms over one long-lived connection and opens a new connection every
// 100 ms, counting every failure, reset and timeout. "No packet lost" is measured, not guessed: both
// ends read TCP_INFO.tcpi_total_retrans of every connection (a dropped segment is retransmitted), so
// a single dropped packet in either direction fails the test.
//
// The changes (one extra rule, live-change, in change.json; the seed rule l3-rule never changes):
//   S0 app2 → TCP/8080 allowed (initial)         S4 + L3-only allow from app3 (widens: in place)
//   S1 rule removed (narrows: in place)          S5 app3's L3 allow flipped to deny (an update of a
//   S2 deny app3 → TCP/8080 (narrows: in place)     key: the reconciler swaps the whole inner map)
//   S3 + app2 → TCP/9090-9099 (widens: in place) S6 back to S0 (mixed: swap)
import { test } from "node:test";
import assert from "node:assert/strict";
import { rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { spawn, type ChildProcess } from "node:child_process";
import {
  SEED_IPS,
  desiredMaps,
  innerPolicyMap,
  kernelPolicy,
  makeEnv,
  reconcileSrc,
  requireTools,
  show,
  sleep,
  spawnOwned,
  waitFor,
  type Env,
} from "./helpers/reconcile.js";

/** tcpi_total_retrans: byte offset 100 of struct tcp_info (8 bytes of u8 fields, then u32 #23). */
const TCP_INFO_PY = `
import socket, struct
def retrans(s):
    try:
        return struct.unpack_from("I", s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104), 100)[0]
    except OSError:
        return -1
`;

/** Echo server on ip:ports; one JSON line per closed connection with the server side's retransmits. */
const SERVER = `${TCP_INFO_PY}
import json, sys, threading
ip, ports = sys.argv[1], [int(p) for p in sys.argv[2].split(",")]
out = threading.Lock()  # one line per print: handler threads would interleave their writes
def emit(obj):
    with out:
        print(json.dumps(obj), flush=True)
def handle(c, addr, port):
    n, err = 0, None
    try:
        while True:
            d = c.recv(4096)
            if not d:
                break
            c.sendall(d)
            n += len(d)
    except OSError as e:
        err = str(e)
    r = retrans(c)
    c.close()
    emit({"event": "closed", "peer": addr[0], "port": port, "bytes": n, "retrans": r, "error": err})
def serve(l, port):
    while True:
        c, a = l.accept()
        threading.Thread(target=handle, args=(c, a, port), daemon=True).start()
for p in ports:
    l = socket.socket()
    l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind((ip, p))
    l.listen(256)
    threading.Thread(target=serve, args=(l, p), daemon=True).start()
emit({"event": "listening"})
threading.Event().wait()
`;

/** Continuous client: a message every 20 ms on one connection, a new connection every 100 ms, until
 *  the stop file exists; then one JSON summary line. */
const CLIENT = `${TCP_INFO_PY}
import json, os, sys, threading, time
ip, port, stop = sys.argv[1], int(sys.argv[2]), sys.argv[3]
st = {"messages": 0, "msgFailures": 0, "maxLatencyMs": 0.0, "connections": 0, "connFailures": 0,
      "connRetrans": 0, "longRetrans": 0, "reconnects": 0, "errors": []}
lock = threading.Lock()
def fail(kind, what):
    with lock:
        st[kind] += 1
        if len(st["errors"]) < 20:
            st["errors"].append("%s at %.3f: %s" % (kind, time.time(), what))
def recv_exact(s, n):
    got = b""
    while len(got) < n:
        d = s.recv(n - len(got))
        if not d:
            raise OSError("connection closed by the server")
        got += d
    return got
def dial():
    s = socket.create_connection((ip, port), timeout=2)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s
def longlived():
    s = dial()
    i, due, retr = 0, time.monotonic(), 0
    while not os.path.exists(stop):
        msg = ("m%014d\\n" % i).encode()
        i += 1
        t0 = time.monotonic()
        try:
            s.sendall(msg)
            if recv_exact(s, len(msg)) != msg:
                raise OSError("echo differs")
            lat = (time.monotonic() - t0) * 1000
            with lock:
                st["messages"] += 1
                st["maxLatencyMs"] = max(st["maxLatencyMs"], lat)
                if st["messages"] == 1:
                    print(json.dumps({"event": "ready"}), flush=True)
        except OSError as e:
            fail("msgFailures", repr(e))
            retr += max(retrans(s), 0)
            s.close()
            with lock:
                st["reconnects"] += 1
            try:
                s = dial()
            except OSError as e2:
                fail("msgFailures", "reconnect: " + repr(e2))
                time.sleep(0.2)
                continue
        due += 0.02
        time.sleep(max(0.0, due - time.monotonic()))
    retr += max(retrans(s), 0)
    s.close()
    with lock:
        st["longRetrans"] = retr
def churn():
    due = time.monotonic()
    while not os.path.exists(stop):
        try:
            c = dial()
            c.sendall(b"hello\\n")
            if recv_exact(c, 6) != b"hello\\n":
                raise OSError("echo differs")
            r = retrans(c)
            c.close()
            with lock:
                st["connections"] += 1
                st["connRetrans"] += max(r, 0)
            if r != 0:
                fail("connFailures", "connection retransmitted %d segments" % r)
        except OSError as e:
            fail("connFailures", repr(e))
        due += 0.1
        time.sleep(max(0.0, due - time.monotonic()))
ts = [threading.Thread(target=f) for f in (longlived, churn)]
for t in ts:
    t.start()
for t in ts:
    t.join()
print(json.dumps(dict(st, event="summary")), flush=True)
`;

/** One connection attempt: connect, send, read the echo. "ok", "timeout", "refused" or an error. */
const PROBE = `
import socket, sys
ip, port, t = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
try:
    s = socket.create_connection((ip, port), timeout=t)
    s.sendall(b"probe")
    print("ok" if s.recv(5) == b"probe" else "no-echo")
    s.close()
except socket.timeout:
    print("timeout")
except ConnectionRefusedError:
    print("refused")
except OSError as e:
    print("error " + str(e))
`;

interface Summary {
  messages: number;
  msgFailures: number;
  maxLatencyMs: number;
  connections: number;
  connFailures: number;
  connRetrans: number;
  longRetrans: number;
  reconnects: number;
  errors: string[];
}

/** Collects a child's stdout as JSON lines. */
function jsonLines(child: ChildProcess): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = [];
  let buf = "";
  child.stdout!.on("data", (d: Buffer) => {
    buf += d.toString();
    let nl: number;
    while ((nl = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      if (line) out.push(JSON.parse(line) as Record<string, unknown>);
    }
  });
  return out;
}

function probe(netns: string, port: number, timeoutS: number): Promise<string> {
  return new Promise((resolve) => {
    const child = spawn("ip", ["netns", "exec", netns, "python3", "-c", PROBE, SEED_IPS.app1, String(port), String(timeoutS)], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
    child.on("close", () => resolve(out.trim() || "no output"));
  });
}

const fromApp = (app: string) => ({ matchLabels: { "any:id": app } });
const tcpPorts = (port: number, endPort?: number) => [{ ports: [{ port: String(port), ...(endPort !== undefined ? { endPort } : {}), protocol: "TCP" }] }];
const allow8080 = { fromEndpoints: [fromApp("app2")], toPorts: tcpPorts(8080) };
const allow9090 = { fromEndpoints: [fromApp("app2")], toPorts: tcpPorts(9090, 9099) };
const denyApp3On8080 = { fromEndpoints: [fromApp("app3")], toPorts: tcpPorts(8080) };
const app3L3 = { fromEndpoints: [fromApp("app3")] };

const ROUNDS = 2;

interface Step {
  name: string;
  /** The live-change rule's ingress / ingressDeny, or undefined: no rule. */
  rule?: { ingress?: unknown[]; ingressDeny?: unknown[] };
  /** Probes that show the change took effect: [from, port, expected]. */
  probes: Array<["app2" | "app3", number, "ok" | "timeout"]>;
}

const STEPS: Step[] = [
  { name: "S1 remove the 8080 rule", probes: [["app2", 8080, "timeout"]] },
  { name: "S2 add a deny for app3 on 8080", rule: { ingressDeny: [denyApp3On8080] }, probes: [["app3", 8080, "timeout"], ["app2", 8080, "timeout"]] },
  {
    name: "S3 app2 gets 9090-9099 instead of 8080",
    rule: { ingress: [allow9090], ingressDeny: [denyApp3On8080] },
    probes: [["app2", 9095, "ok"], ["app2", 9100, "timeout"], ["app2", 8080, "timeout"]],
  },
  {
    name: "S4 add an L3-only allow from app3",
    rule: { ingress: [allow9090, app3L3], ingressDeny: [denyApp3On8080] },
    probes: [["app3", 80, "ok"], ["app3", 9100, "ok"], ["app3", 8080, "timeout"]],
  },
  {
    name: "S5 flip app3's L3 allow to a deny (swap-forcing)",
    rule: { ingress: [allow9090], ingressDeny: [denyApp3On8080, app3L3] },
    probes: [["app3", 80, "timeout"], ["app3", 9100, "timeout"], ["app2", 9095, "ok"]],
  },
  { name: "S6 revert to the initial policy", rule: { ingress: [allow8080] }, probes: [["app2", 8080, "ok"], ["app2", 9095, "timeout"], ["app3", 80, "timeout"]] },
];

function writeChange(env: Env, rule: Step["rule"]): void {
  const file = path.join(env.dir, "change.json");
  if (!rule) {
    rmSync(file, { force: true });
    return;
  }
  const doc = [{ endpointSelector: fromApp("app1"), ...rule, labels: [{ key: "name", value: "live-change", source: "" }] }];
  writeFileSync(file, JSON.stringify(doc, null, 2) + "\n");
}

test("live change: policy changes to app1 under continuous traffic drop no packet of the unchanged app2 → app1:80 flow, and each takes effect", async (t) => {
  requireTools("bpftool", "python3", "nsenter");
  const env = makeEnv(t, "live");
  writeChange(env, { ingress: [allow8080] });
  const first = await reconcileSrc(env, ["--once"]);
  assert.equal(first.code, 0, show(first));

  const server = spawnOwned(env, "ip", ["netns", "exec", env.netns.app1, "python3", "-c", SERVER, SEED_IPS.app1, "80,8080,9095,9100"]);
  const serverLines = jsonLines(server);
  await waitFor("echo server listening", () => {
    if (server.exitCode !== null) throw new Error(`echo server exited with ${server.exitCode}`);
    return serverLines.some((l) => l.event === "listening");
  }, 15_000, 50);
  assert.equal(await probe(env.netns.app2, 8080, 2), "ok", "initial policy: app2 → app1:8080 allowed");
  assert.equal(await probe(env.netns.app3, 80, 0.8), "timeout", "initial policy: app3 → app1:80 dropped");

  const stop = path.join(env.tmp, "stop-traffic");
  const client = spawnOwned(env, "ip", ["netns", "exec", env.netns.app2, "python3", "-c", CLIENT, SEED_IPS.app1, "80", stop]);
  const clientLines = jsonLines(client);
  let clientErr = "";
  client.stderr!.on("data", (d: Buffer) => (clientErr += d.toString()));
  await waitFor("continuous client ready", () => {
    if (client.exitCode !== null) throw new Error(`client exited with ${client.exitCode}: ${clientErr}`);
    return clientLines.some((l) => l.event === "ready");
  }, 15_000, 20);
  await sleep(500);

  const observed: string[] = [];
  let swaps = 0;
  let inPlace = 0;
  // The series is a cycle (S6 = S0): run it ROUNDS times for more transitions under traffic.
  for (const step of Array.from({ length: ROUNDS }, () => STEPS).flat()) {
    const before = innerPolicyMap(env, "app1");
    writeChange(env, step.rule);
    const run = await reconcileSrc(env, ["--once"]);
    assert.equal(run.code, 0, `${step.name}: ${show(run)}`);
    const afterId = innerPolicyMap(env, "app1");
    if (afterId !== before) swaps++;
    else inPlace++;
    // The kernel holds exactly the compiled policy of the new manifests.
    const want = (await desiredMaps(env)).policy;
    const got = kernelPolicy(env);
    assert.deepEqual(new Map([...got].filter(([k]) => k.startsWith("app1/"))), new Map([...want].filter(([k]) => k.startsWith("app1/"))), `${step.name}: app1's policy map`);
    const results = await Promise.all(step.probes.map(([from, port, expected]) => probe(env.netns[from], port, expected === "ok" ? 2 : 0.8)));
    step.probes.forEach(([from, port, expected], i) => assert.equal(results[i], expected, `${step.name}: ${from} → app1:${port}`));
    observed.push(`${step.name}: ${afterId !== before ? `swap (inner map ${before} → ${afterId})` : `in place (inner map ${before})`}, run ${run.ms} ms`);
    await sleep(300); // traffic between changes
  }

  writeFileSync(stop, "");
  const summary = (await waitFor("client summary", () => clientLines.find((l) => l.event === "summary"), 10_000, 20)) as unknown as Summary;
  // The server logs the long-lived connection once the client closed it.
  const fromApp2 = await waitFor(
    "server saw the long-lived connection close",
    () => {
      const closed = serverLines.filter((l) => l.event === "closed" && l.peer === SEED_IPS.app2 && l.port === 80);
      return closed.length >= summary.connections + 1 + summary.reconnects ? closed : undefined;
    },
    5_000,
    20,
  );
  const serverRetrans = fromApp2.reduce((n, l) => n + Math.max(0, Number(l.retrans)), 0);
  const serverErrors = fromApp2.filter((l) => l.error !== null).map((l) => String(l.error));

  for (const line of observed) t.diagnostic(line);
  t.diagnostic(
    `traffic during ${ROUNDS * STEPS.length} changes: ${summary.messages} messages on the long-lived connection (max latency ${summary.maxLatencyMs.toFixed(1)} ms), ` +
      `${summary.connections} new connections; ${swaps} inner-map swaps, ${inPlace} in-place writes`,
  );
  assert.deepEqual(
    { msgFailures: summary.msgFailures, connFailures: summary.connFailures, longRetrans: summary.longRetrans, connRetrans: summary.connRetrans, serverRetrans, serverErrors },
    { msgFailures: 0, connFailures: 0, longRetrans: 0, connRetrans: 0, serverRetrans: 0, serverErrors: [] },
    `the unchanged flow lost packets: ${summary.errors.join("; ")}`,
  );
  // The traffic really ran through the whole series (20 ms / 100 ms cadence, loosely).
  assert.ok(summary.messages > 100 && summary.connections > 20, `too little traffic: ${JSON.stringify(summary)}`);
});
