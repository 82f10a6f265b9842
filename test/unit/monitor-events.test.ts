// reconcile monitor, above the ring buffer: records as the programs write them → decode → names
// and rule provenance from the compiled revision → the text line / JSON object → the filters.

import { test } from "node:test";
import assert from "node:assert/strict";
import { decodeEvent, DropReason } from "../../reconciler/datapath/layouts.js";
import { namingContext, nameEvent, type MonitorEvent } from "../../reconciler/monitor/event.js";
import { sampleClock } from "../../reconciler/monitor/clock.js";
import { formatJson, formatText } from "../../reconciler/monitor/format.js";
import { FilterError, matchesFilter, parseSide, parseVerdicts, type EventFilter } from "../../reconciler/monitor/filter.js";
import { readEvents } from "../../reconciler/monitor/reader.js";
import { compileForNode, loadModel } from "../../reconciler/plan/snapshot-to-desired.js";
import { explain } from "../../reconciler/policy/explain.js";
import { encodeRecord, FakeEventStream, type RecordFields } from "./helpers/event-records.js";
import { snapshotOfDir } from "./helpers/manifest-snapshot.js";

const compile = (dir: string) => compileForNode(snapshotOfDir(dir, "r1"), { node: "vm", enforcement: "default", attachMode: "tcx" });
const seed = compile("examples/seed");
const denyEgress = compile("examples/deny-egress");
const epId = (c: typeof seed, name: string) => [...c.desired.endpoints.values()].find((e) => e.endpoint === name)!.endpointId;
const identity = (c: typeof seed, name: string) => [...c.desired.endpoints.values()].find((e) => e.endpoint === name)!.identity;

// Monotonic 1 s ↔ 2026-12-05T12:00:00.000Z.
const clock = sampleClock(() => Date.parse("2026-12-05T12:00:00.000Z"), () => 1_000_000_000n);

function named(c: typeof seed | undefined, f: RecordFields): MonitorEvent {
  return nameEvent(decodeEvent(encodeRecord(f), 0), c && namingContext(c), clock);
}

/** app2 → app1:81/TCP, which the seed's l3-rule does not allow (it allows TCP/80 only). */
const seedDenied = (): RecordFields => ({
  timeNs: 1_123_000_000n,
  type: "drop",
  epId: epId(seed, "app1"),
  peerIdentity: identity(seed, "app2"),
  direction: "ingress",
  reason: DropReason.NO_POLICY,
  verdict: "deny",
  protocol: 6,
  saddr: "10.11.90.17",
  daddr: "10.11.255.104",
  sport: 43512,
  dport: 81,
});

test("a default-deny drop names the endpoint, the peer, the reason and the rule that put ingress into default deny", () => {
  const e = named(seed, seedDenied());
  assert.equal(
    formatText(e),
    "12:00:00.123 DROP    app1 ingress reason Policy denied by default deny 10.11.90.17:43512 -> 10.11.255.104:81 TCP from app2 (identity 36895): " +
      "no rule allows {k8s:id=app2} on TCP/81 (default deny by l3-rule, l3-rule.json:2)",
  );
  assert.deepEqual(e.rules, [{ file: "l3-rule.json", line: 2, name: "l3-rule" }]);
  assert.equal(e.match, null);
  assert.equal(e.time, "2026-12-05T12:00:00.123Z");
});

test("default deny: the rules monitor names are those explain names for the same flow", () => {
  const { model } = loadModel(snapshotOfDir("examples/seed", "r1"));
  const answer = explain(model, { node: "vm", enforcement: "default" }, { from: "app2", to: "app1", port: 81, protocol: 6 });
  assert.equal(answer.verdict, "deny");
  assert.deepEqual(named(seed, seedDenied()).rules, answer.rules);
});

test("an allowed flow's verdict event names the rule that produced the matching entry", () => {
  const e = named(seed, { ...seedDenied(), type: "verdict", verdict: "allow", reason: 0, dport: 80, match: { identity: identity(seed, "app2"), direction: "ingress", protocol: 6, port: 80, portPrefixLen: 16 } });
  assert.match(formatText(e), /^12:00:00\.123 ALLOW   app1 ingress 10\.11\.90\.17:43512 -> 10\.11\.255\.104:80 TCP from app2 \(identity 36895\): allowed by l3-rule, l3-rule\.json:2$/);
  assert.deepEqual(e.match, { identity: 36895, protocol: 6, port: 80, endPort: 80 });
  assert.deepEqual(e.rules, [{ file: "l3-rule.json", line: 2, name: "l3-rule" }]);
});

test("a deny entry (egressDeny) is named with its rule; a port block's entry with its range", () => {
  const client = epId(denyEgress, "client");
  const deny = named(denyEgress, {
    type: "drop", epId: client, peerIdentity: identity(denyEgress, "secret"), direction: "egress", reason: DropReason.POLICY_DENIED, verdict: "deny",
    match: { identity: identity(denyEgress, "secret"), direction: "egress", protocol: 0, port: 0, portPrefixLen: 0 },
    protocol: 6, saddr: "10.11.2.10", daddr: "10.11.2.30", sport: 5000, dport: 443,
  });
  assert.match(formatText(deny), / DROP    client egress reason Policy denied 10\.11\.2\.10:5000 -> 10\.11\.2\.30:443 TCP to secret \(identity 4019600\): denied by client-egress, rules\.yaml:4$/);
  assert.deepEqual(deny.match, { identity: 4019600, protocol: 0, port: 0, endPort: 65535 });
  // TCP 8064-8095 is one aligned block (/11): the event carries the masked port and prefix.
  const allow = named(denyEgress, {
    type: "verdict", epId: client, peerIdentity: identity(denyEgress, "server"), direction: "egress", verdict: "allow",
    match: { identity: identity(denyEgress, "server"), direction: "egress", protocol: 6, port: 8064, portPrefixLen: 11 },
    protocol: 6, saddr: "10.11.2.10", daddr: "10.11.2.20", sport: 5000, dport: 8080,
  });
  assert.deepEqual(allow.match, { identity: 14771350, protocol: 6, port: 8064, endPort: 8095 });
  assert.equal(allow.provenance, "allowed by client-egress, rules.yaml:4");
});

test("an audit event says what would have decided; a malformed drop has no provenance", () => {
  const audit = named(seed, { ...seedDenied(), type: "audit" });
  assert.match(formatText(audit), /^12:00:00\.123 AUDIT   app1 ingress reason Policy denied by default deny .*: would be denied: no rule allows \{k8s:id=app2\} on TCP\/81 \(default deny by l3-rule, l3-rule\.json:2\)$/);
  const bad = named(seed, { ...seedDenied(), reason: DropReason.MALFORMED, peerIdentity: 0, epId: 0 });
  assert.equal(bad.provenance, "");
  assert.deepEqual(bad.rules, []);
  assert.match(formatText(bad), / DROP    endpoint 0 ingress reason Malformed 10\.11\.90\.17:43512 -> 10\.11\.255\.104:81 TCP from any peer \(identity 0\)$/);
});

test("an entry the revision does not have, and no revision at all, are said as such", () => {
  const stale = named(seed, { ...seedDenied(), type: "verdict", verdict: "allow", reason: 0, match: { identity: 36895, direction: "ingress", protocol: 6, port: 443, portPrefixLen: 16 } });
  assert.equal(stale.provenance, "allowed by the entry TCP/443 from identity 36895, which revision r1 does not have");
  const bare = named(undefined, seedDenied());
  assert.equal(bare.endpoint, "");
  assert.equal(bare.revision, null);
  assert.equal(bare.provenance, "no rule allows identity 36895 on TCP/81 (default deny)");
  assert.match(formatText(bare), / DROP    endpoint 63572 ingress .* from identity 36895: no rule allows/);
});

test("ICMP and IPv6: the type instead of ports, brackets around IPv6 addresses only where a port follows", () => {
  const icmp = named(seed, { ...seedDenied(), protocol: 1, sport: 0, dport: 8 });
  assert.match(formatText(icmp), / 10\.11\.90\.17 -> 10\.11\.255\.104 ICMP type 8 from app2 .*on ICMP type 8 /);
  const v6 = named(undefined, { ...seedDenied(), saddr: "f00d::1", daddr: "f00d::2" });
  assert.match(formatText(v6), / \[f00d::1\]:43512 -> \[f00d::2\]:81 TCP /);
});

test("JSON: one object a line with the documented fields, in their order", () => {
  const line = formatJson(named(seed, seedDenied()));
  assert.ok(!line.includes("\n"));
  const o = JSON.parse(line) as Record<string, unknown>;
  assert.deepEqual(Object.keys(o), ["time", "type", "endpoint", "epId", "direction", "verdict", "reason", "reasonName", "peer", "match", "rules", "provenance", "src", "dst", "sport", "dport", "protocol", "protocolName", "length", "revision"]);
  assert.deepEqual(o.peer, { identity: 36895, kind: "endpoint", names: ["app2"], labels: "{k8s:id=app2}" });
  assert.equal(o.reasonName, "Policy denied by default deny");
  assert.equal(o.protocolName, "TCP");
  assert.equal(o.length, 60);
});

test("filters: endpoint, verdict lists, --from/--to by name, address or prefix, --port with and without protocol", () => {
  const drop = named(seed, seedDenied());
  const allow = named(seed, { ...seedDenied(), type: "verdict", verdict: "allow", reason: 0, dport: 80, match: { identity: 36895, direction: "ingress", protocol: 6, port: 80, portPrefixLen: 16 } });
  const audit = named(seed, { ...seedDenied(), type: "audit" });
  const pass = (f: EventFilter) => [drop, allow, audit].map((e) => matchesFilter(f, e));
  assert.deepEqual(pass({}), [true, true, true]);
  assert.deepEqual(pass({ endpoint: "app1" }), [true, true, true]);
  assert.deepEqual(pass({ endpoint: "app2" }), [false, false, false]);
  assert.deepEqual(pass({ verdicts: parseVerdicts("drop") }), [true, false, false]);
  assert.deepEqual(pass({ verdicts: parseVerdicts("allow,audit") }), [false, true, true]);
  // ingress at app1: the source is the peer (app2), the destination app1 itself
  assert.deepEqual(pass({ from: parseSide("app2") }), [true, true, true]);
  assert.deepEqual(pass({ from: parseSide("app1") }), [false, false, false]);
  assert.deepEqual(pass({ to: parseSide("app1") }), [true, true, true]);
  assert.deepEqual(pass({ from: parseSide("10.11.90.17") }), [true, true, true]);
  assert.deepEqual(pass({ from: parseSide("10.11.0.0/16"), to: parseSide("10.11.255.0/24") }), [true, true, true]);
  assert.deepEqual(pass({ to: parseSide("10.12.0.0/16") }), [false, false, false]);
  assert.deepEqual(pass({ port: { port: 80, protocol: 6 } }), [false, true, false]);
  assert.deepEqual(pass({ port: { port: 81, protocol: 17 } }), [false, false, false]);
  assert.deepEqual(pass({ port: { port: 81, protocol: 0 } }), [true, false, true]);
  assert.throws(() => parseVerdicts("dropped"), (e: unknown) => e instanceof FilterError && /expected one or more of drop, allow, deny, audit .*got "dropped"/.test(e.message));
});

test("the reader decodes every record, counts the ones that do not decode, and stops when aborted", async () => {
  const stream = new FakeEventStream();
  const bad = encodeRecord(seedDenied());
  bad[20] = 9; // no such event type
  stream.push(encodeRecord(seedDenied()), bad, encodeRecord({ ...seedDenied(), dport: 82 }));
  const seen: number[] = [];
  const stop = new AbortController();
  const done = readEvents(stream, (ev) => {
    seen.push(ev.dport);
    if (seen.length === 3) stop.abort();
  }, { signal: stop.signal, batch: 2, waitMs: 20, onMalformed: () => {} });
  setTimeout(() => stream.push(encodeRecord({ ...seedDenied(), dport: 83 })), 30);
  const totals = await done;
  assert.deepEqual(seen, [81, 82, 83]);
  assert.deepEqual(totals, { read: 3, malformed: 1 });
});

test("the wall clock follows the monotonic clock from the sample", () => {
  const c = sampleClock(() => 1_000_000, () => 5_000_000_000n);
  assert.equal(c.wallMs(5_000_000_000n), 1_000_000);
  assert.equal(c.wallMs(5_250_500_000n), 1_000_250.5);
  assert.equal(c.wallMs(4_000_000_000n), 999_000);
});
