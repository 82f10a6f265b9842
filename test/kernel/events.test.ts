// SPDX-License-Identifier: Apache-2.0
// The events bpf/build/endpoint.o writes to its "events" ring buffer (DROP, VERDICT, AUDIT), read
// with ebpf-loader's RingBuffer, through BPF_PROG_RUN with crafted frames; and the per-CPU rate
// limit (event_budget: suppressed, lost). Each test has its own Datapath (fresh maps and budgets).
// Also reports BPF_PROG_RUN ns/packet for the main paths (reported, not asserted).

import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import * as L from "../../reconciler/datapath/layouts.js";
import { Datapath, TC_ACT_OK, TC_ACT_SHOT, readEvents, tcp, v4, type EndpointDef } from "./helpers/datapath.js";
import type { RingBuffer } from "../../reconciler/ebpf-loader/index.js";

const APP = "10.11.255.104"; // ep 1, identity 1001
const PEER = "10.11.90.17"; // identity 36895
const WORLD = "192.0.2.9"; // no ipcache entry: world (2)
const HOST = "10.11.0.1"; // the host endpoint, ep 9
const TCP = 6;
const ingress = "ingress" as const;
const egress = "egress" as const;
const SYN = 0x02;
const ACK = 0x10;
const SYNACK = 0x12;

function setup(t: TestContext, app: Partial<EndpointDef> = {}): { dp: Datapath; rb: RingBuffer } {
  const dp = new Datapath();
  t.after(() => dp.close());
  dp.addEndpoint({ addresses: [APP], epId: 1, identity: 1001, enforceIngress: true, enforceEgress: false, ...app });
  dp.addIpcache(`${APP}/32`, 1001);
  dp.addIpcache(`${PEER}/32`, 36895);
  dp.addRules(1, [
    { direction: ingress, identity: 36895, protocol: TCP, port: 80, portPrefixLen: 16, decision: "allow" },
    { direction: ingress, identity: 36895, protocol: TCP, port: 8080, portPrefixLen: 13, decision: "allow" },
    { direction: ingress, identity: 0, protocol: TCP, port: 25, portPrefixLen: 16, decision: "deny" },
    { direction: ingress, identity: 36895, protocol: TCP, port: 22, portPrefixLen: 16, decision: "deny", audit: true },
    { direction: ingress, identity: 36895, protocol: TCP, port: 23, portPrefixLen: 16, decision: "deny", audit: true },
    { direction: ingress, identity: 0, protocol: TCP, port: 23, portPrefixLen: 16, decision: "deny" },
  ]);
  const rb = dp.openEvents();
  t.after(() => rb.close());
  return { dp, rb };
}

const toApp = (src: string, sport: number, dport: number, flags = SYN) => v4({ src, dst: APP, proto: TCP }, tcp(sport, dport, flags));
const fromApp = (dst: string, sport: number, dport: number, flags = SYNACK) => v4({ src: APP, dst, proto: TCP }, tcp(sport, dport, flags));

const entry = (identity: number, direction: "ingress" | "egress", port: number, portPrefixLen: number) => ({
  prefixlen: 48 + portPrefixLen,
  identity,
  direction,
  protocol: TCP,
  port,
  portPrefixLen,
});

test("a packet denied by an entry: one DROP event with endpoint, direction, reason, peer, 5-tuple and the entry's key", (t) => {
  const { dp, rb } = setup(t);
  const frame = toApp(PEER, 40001, 25);
  assert.equal(dp.run("to_endpoint", frame), TC_ACT_SHOT);
  const events = readEvents(rb);
  assert.equal(events.length, 1);
  const e = events[0]!;
  assert.equal(e.kind, "drop");
  assert.equal(e.epId, 1);
  assert.equal(e.direction, "ingress");
  assert.equal(e.reason, L.DropReason.POLICY_DENIED);
  assert.equal(e.verdict, "deny");
  assert.equal(e.peerIdentity, 36895);
  assert.deepEqual(e.match, entry(0, ingress, 25, 16), "the identity-0 deny entry decided");
  assert.deepEqual([e.family, e.protocol, e.saddr, e.sport, e.daddr, e.dport], [4, TCP, PEER, 40001, APP, 25]);
  assert.equal(e.length, frame.length);
  assert.ok(e.timeNs > 0n);
});

test("default deny: DROP NO_POLICY with no matched entry; VERDICT deny besides it only with EP_VERDICT_DENY", (t) => {
  const { dp, rb } = setup(t);
  assert.equal(dp.run("to_endpoint", toApp(WORLD, 40002, 443)), TC_ACT_SHOT);
  const [e, ...rest] = readEvents(rb);
  assert.equal(rest.length, 0);
  assert.equal(e!.kind, "drop");
  assert.equal(e!.reason, L.DropReason.NO_POLICY);
  assert.equal(e!.peerIdentity, L.IDENTITY_WORLD);
  assert.equal(e!.match, undefined, "prefixlen 0: no entry decided");

  const v = setup(t, { verdictDeny: true });
  assert.equal(v.dp.run("to_endpoint", toApp(WORLD, 40002, 443)), TC_ACT_SHOT);
  assert.deepEqual(readEvents(v.rb).map((x) => [x.kind, x.verdict, x.reason]), [
    ["verdict", "deny", L.DropReason.NO_POLICY],
    ["drop", "deny", L.DropReason.NO_POLICY],
  ]);
});

test("malformed packets: DROP MALFORMED, ep_id 0 when the endpoint is unknown", (t) => {
  const { dp, rb } = setup(t);
  const badLen = Buffer.from(toApp(PEER, 40000, 80));
  badLen.writeUInt16BE(16, 16); // IPv4 total length shorter than its header: addresses not trusted
  assert.equal(dp.run("to_endpoint", badLen), TC_ACT_SHOT);
  assert.equal(dp.run("to_endpoint", v4({ src: PEER, dst: APP, proto: TCP }, Buffer.alloc(4))), TC_ACT_SHOT);
  const events = readEvents(rb);
  assert.deepEqual(events.map((e) => [e.kind, e.epId, e.reason, e.peerIdentity]), [
    ["drop", 0, L.DropReason.MALFORMED, 0],
    ["drop", 1, L.DropReason.MALFORMED, 0],
  ]);
  assert.ok(dp.eventBudget(0), "ep_id 0 has its own budget");
});

test("an allowed flow: exactly one VERDICT allow (first packet) with EP_VERDICT_ALLOW, none without; replies none", (t) => {
  const { dp, rb } = setup(t, { verdictAllow: true });
  assert.equal(dp.run("to_endpoint", toApp(PEER, 40003, 8083)), TC_ACT_OK);
  for (let i = 0; i < 5; i++) assert.equal(dp.run("to_endpoint", toApp(PEER, 40003, 8083, ACK)), TC_ACT_OK);
  assert.equal(dp.run("from_endpoint", fromApp(PEER, 8083, 40003)), TC_ACT_OK);
  const events = readEvents(rb);
  assert.equal(events.length, 1, "one per flow, not per packet");
  const e = events[0]!;
  assert.deepEqual([e.kind, e.verdict, e.reason, e.epId, e.direction, e.peerIdentity], ["verdict", "allow", 0, 1, "ingress", 36895]);
  assert.deepEqual(e.match, entry(36895, ingress, 8080, 13), "the 8080-8087 entry, masked to its prefix");
  assert.equal(e.dport, 8083);

  // A second flow is a second event.
  dp.run("to_endpoint", toApp(PEER, 40004, 80));
  assert.deepEqual(readEvents(rb).map((x) => x.match), [entry(36895, ingress, 80, 16)]);

  const off = setup(t);
  assert.equal(off.dp.run("to_endpoint", toApp(PEER, 40003, 80)), TC_ACT_OK);
  assert.equal(readEvents(off.rb).length, 0, "no verdict events without the flag");
});

test("EP_AUDIT_INGRESS: a default-denied packet passes with an AUDIT event; its flow is recorded, so replies pass", (t) => {
  const { dp, rb } = setup(t, { auditIngress: true, enforceEgress: true, verdictAllow: true });
  assert.equal(dp.run("to_endpoint", toApp(WORLD, 40005, 443)), TC_ACT_OK);
  assert.equal(dp.run("from_endpoint", fromApp(WORLD, 443, 40005)), TC_ACT_OK, "reply through enforced egress");
  const events = readEvents(rb);
  assert.equal(events.length, 1, "AUDIT only: no VERDICT allow for an audited flow, nothing for the reply");
  const e = events[0]!;
  assert.deepEqual([e.kind, e.verdict, e.reason, e.match], ["audit", "deny", L.DropReason.NO_POLICY, undefined]);
  assert.equal(dp.drops(1, L.DropReason.NO_POLICY, ingress), 0n, "not counted as a drop");
  // An entry's deny is not audited by the endpoint's default-deny audit.
  assert.equal(dp.run("to_endpoint", toApp(PEER, 40006, 25)), TC_ACT_SHOT);
  assert.deepEqual(readEvents(rb).map((x) => x.kind), ["drop"]);
});

test("a POLICY_AUDIT deny entry: the packet passes with AUDIT naming the entry; a deny that is not audited still wins", (t) => {
  const { dp, rb } = setup(t);
  assert.equal(dp.run("to_endpoint", toApp(PEER, 40007, 22)), TC_ACT_OK);
  const [e, ...rest] = readEvents(rb);
  assert.equal(rest.length, 0);
  assert.deepEqual([e!.kind, e!.verdict, e!.reason], ["audit", "deny", L.DropReason.POLICY_DENIED]);
  assert.deepEqual(e!.match, entry(36895, ingress, 22, 16));
  assert.ok(dp.ct({ saddr: PEER, daddr: APP, sport: 40007, dport: 22, protocol: TCP }), "flow recorded as allowed");

  assert.equal(dp.run("to_endpoint", toApp(PEER, 40008, 23)), TC_ACT_SHOT);
  const [d] = readEvents(rb);
  assert.equal(d!.kind, "drop");
  assert.deepEqual(d!.match, entry(0, ingress, 23, 16), "the identity-0 deny, not the audited one");
});

test("host policy checks report as the host endpoint", (t) => {
  const { dp, rb } = setup(t, { hostPolicy: true });
  dp.addEndpoint({ addresses: [HOST], epId: 9, identity: L.IDENTITY_HOST, enforceIngress: false, enforceEgress: true });
  assert.equal(dp.run("to_endpoint", toApp(HOST, 40009, 80)), TC_ACT_SHOT);
  const [e, ...rest] = readEvents(rb);
  assert.equal(rest.length, 0);
  assert.deepEqual([e!.kind, e!.epId, e!.direction, e!.reason, e!.peerIdentity], ["drop", 9, egress, L.DropReason.NO_POLICY, 1001]);
});

test("rate limit: a flood of denied packets on one CPU yields at most rate x elapsed + rate events; the rest are suppressed", (t) => {
  const rate = 200;
  const { dp, rb } = setup(t, { eventRate: rate });
  const frame = toApp(PEER, 40010, 25);
  const started = process.hrtime.bigint();
  // One BPF_PROG_RUN call runs every repetition on the same CPU.
  dp.coll.programs.get("to_endpoint")!.testRun({ data: frame, repeat: 200_000 });
  const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
  const events = readEvents(rb);
  const budget = dp.eventBudget(1)!;
  t.diagnostic(`rate ${rate}/s: ${events.length} events, ${budget.suppressed} suppressed in ${elapsed.toFixed(3)} s`);
  assert.ok(events.length >= rate, `the first second's worth is reported (${events.length})`);
  assert.ok(events.length <= rate * elapsed + rate, `${events.length} events <= ${rate} x ${elapsed.toFixed(3)} s + ${rate}`);
  assert.equal(BigInt(events.length) + budget.suppressed, 200_000n, "every drop is either reported or counted suppressed");
  assert.equal(budget.lost, 0n);

  const none = setup(t, { eventRate: 0 });
  none.dp.run("to_endpoint", frame);
  assert.equal(readEvents(none.rb).length, 0, "event_rate 0: nothing reported");
  assert.equal(none.dp.eventBudget(1)!.suppressed, 1n);
});

test("a full ring with the consumer not reading: lost counts what did not fit", (t) => {
  const { dp, rb } = setup(t, { eventRate: 4_000_000_000 });
  const n = 40_000; // 88 bytes a record: a 2 MiB ring holds ~23,800
  dp.coll.programs.get("to_endpoint")!.testRun({ data: toApp(PEER, 40011, 25), repeat: n });
  const budget = dp.eventBudget(1)!;
  assert.ok(budget.lost > 0n, `lost ${budget.lost}`);
  assert.equal(budget.suppressed, 0n);
  const read = readEvents(rb).length;
  assert.equal(BigInt(read) + budget.lost, BigInt(n), "every drop was either written or counted lost");
  assert.equal(read, Math.floor((2 * 1024 * 1024) / (L.EVENT.size + 8)));
  // Room again once read.
  dp.run("to_endpoint", toApp(PEER, 40011, 25));
  assert.equal(readEvents(rb).length, 1);
});

test("ns/packet (BPF_PROG_RUN, reported only)", (t) => {
  const repeat = 100_000;
  const ns = (dp: Datapath, frame: Buffer) => dp.coll.programs.get("to_endpoint")!.testRun({ data: frame, repeat }).durationNs;
  const quiet = setup(t);
  const loud = setup(t, { verdictAllow: true, verdictDeny: true, eventRate: 4_000_000_000 });
  const rows: Array<[string, number]> = [];
  for (const [name, dp] of [["no verdict flags", quiet.dp], ["all verdicts on", loud.dp]] as const) {
    dp.run("to_endpoint", toApp(PEER, 41000, 80));
    rows.push([`${name}: allowed, established flow`, ns(dp, toApp(PEER, 41000, 80, ACK))]);
    // A repeated run is one flow after its first packet: new flows are measured one run each, each
    // with a fresh source port (durationNs of a single run is coarse).
    let total = 0;
    for (let p = 0; p < 2000; p++) total += dp.coll.programs.get("to_endpoint")!.testRun({ data: toApp(PEER, 42000 + p, 80) }).durationNs;
    rows.push([`${name}: new flow (1 run each, timer-granular)`, total / 2000]);
    rows.push([`${name}: denied (DROP event${name === "all verdicts on" ? " + VERDICT deny" : ""})`, ns(dp, toApp(PEER, 41001, 25))]);
    const drained = dp === loud.dp ? loud.rb : quiet.rb;
    readEvents(drained);
  }
  for (const [name, v] of rows) t.diagnostic(`${name}: ${v.toFixed(0)} ns/packet`);
  assert.ok(rows.every(([, v]) => v >= 0));
});
