// Every verdict path of bpf/build/endpoint.o (to_endpoint / from_endpoint) through BPF_PROG_RUN,
// with maps filled through reconciler/datapath/layouts.ts in a private pin dir.
//
// Cast: app1 (10.11.255.104, f00d::104; ep 1; identity 1001) enforces ingress AND egress, with no
// egress allows, so anything app1 sends passes only as a conntrack reply. app2 (10.11.90.17,
// f00d::17) = identity 36895; app3 (10.11.7.7; ep 3) = 40000, enforces nothing; 10.11.40.1 =
// 40001 (L3-only allowed); 10.11.50.5 = 40005 (L3-only allowed, TCP/22 denied); unknown = world.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import * as L from "../../reconciler/datapath/layouts.js";
import { Datapath, HOP_BY_HOP, TC_ACT_OK, TC_ACT_SHOT, arp, ether, fragmentHeader, icmpEcho, icmpError, ipv4, ipv6, tcp, udp, v4, v6 } from "./helpers/datapath.js";

const APP1 = "10.11.255.104";
const APP1_6 = "f00d::104";
const APP2 = "10.11.90.17";
const APP2_6 = "f00d::17";
const APP3 = "10.11.7.7";
const L3PEER = "10.11.40.1";
const MIXED = "10.11.50.5";
const WORLD = "192.0.2.9";
const TCP = 6;
const UDP = 17;
const ICMP = 1;
const ICMPV6 = 58;

let dp: Datapath;
const ingress = "ingress" as const;

before(() => {
  dp = new Datapath();
  dp.addEndpoint({ addresses: [APP1, APP1_6], epId: 1, identity: 1001, enforceIngress: true, enforceEgress: true });
  dp.addEndpoint({ addresses: [APP3], epId: 3, identity: 40000, enforceIngress: false, enforceEgress: false });
  dp.addIpcache(`${APP1}/32`, 1001);
  dp.addIpcache(`${APP2}/32`, 36895);
  dp.addIpcache(`${APP2_6}/128`, 36895);
  dp.addIpcache(`${APP3}/32`, 40000);
  dp.addIpcache(`${L3PEER}/32`, 40001);
  dp.addIpcache(`${MIXED}/32`, 40005);
  dp.addRules(1, [
    { direction: ingress, identity: 36895, protocol: TCP, port: 80, portPrefixLen: 16, decision: "allow" }, // seed rule
    { direction: ingress, identity: 36895, protocol: TCP, port: 8080, portPrefixLen: 13, decision: "allow" }, // 8080-8087
    // ICMP keys carry the type in the port's place (as Cilium's): echo requests 8 and 128.
    { direction: ingress, identity: 36895, protocol: ICMP, port: 8, portPrefixLen: 16, decision: "allow" },
    { direction: ingress, identity: 36895, protocol: ICMPV6, port: 128, portPrefixLen: 16, decision: "allow" },
    { direction: ingress, identity: 40001, protocol: 0, port: 0, portPrefixLen: 0, decision: "allow" }, // L3-only
    { direction: ingress, identity: 0, protocol: UDP, port: 53, portPrefixLen: 16, decision: "allow" }, // L4-only
    { direction: ingress, identity: 0, protocol: TCP, port: 25, portPrefixLen: 16, decision: "deny" }, // deny for all
    { direction: ingress, identity: 40005, protocol: 0, port: 0, portPrefixLen: 0, decision: "allow" },
    { direction: ingress, identity: 40005, protocol: TCP, port: 22, portPrefixLen: 16, decision: "deny" },
  ]);
});
after(() => dp?.close());

const toApp1Tcp = (src: string, sport: number, dport: number, flags = 0x02) => v4({ src, dst: APP1, proto: TCP }, tcp(sport, dport, flags));

test("allow exact port: app2 -> app1 TCP/80; policy_stats counts on the exact entry", () => {
  const key = { identity: 36895, direction: ingress, protocol: TCP, port: 80, portPrefixLen: 16 };
  const before = dp.policyStats(1, key)?.packets ?? 0n;
  assert.equal(dp.run("to_endpoint", toApp1Tcp(APP2, 40000, 80)), TC_ACT_OK);
  assert.equal(dp.run("to_endpoint", toApp1Tcp(APP2, 40000, 80, 0x10)), TC_ACT_OK);
  const s = dp.policyStats(1, key)!;
  assert.equal(s.packets, before + 2n);
  assert.equal(s.bytes, (before + 2n) * 54n, "bytes = frame length (14 + 20 + 20)");
});

test("default deny: app2 -> app1 TCP/81 and world -> app1 TCP/80 dropped as NO_POLICY (counter increments)", () => {
  const before = dp.drops(1, L.DropReason.NO_POLICY, ingress);
  assert.equal(dp.run("to_endpoint", toApp1Tcp(APP2, 40001, 81)), TC_ACT_SHOT);
  assert.equal(dp.run("to_endpoint", toApp1Tcp(WORLD, 40001, 80)), TC_ACT_SHOT);
  assert.equal(dp.run("to_endpoint", toApp1Tcp(APP3, 40001, 80)), TC_ACT_SHOT);
  assert.equal(dp.drops(1, L.DropReason.NO_POLICY, ingress), before + 3n);
});

test("allow L3-only: identity 40001 reaches any protocol and port", () => {
  assert.equal(dp.run("to_endpoint", toApp1Tcp(L3PEER, 1, 12345)), TC_ACT_OK);
  assert.equal(dp.run("to_endpoint", v4({ src: L3PEER, dst: APP1, proto: UDP }, udp(5, 9999))), TC_ACT_OK);
  assert.equal(dp.run("to_endpoint", v4({ src: L3PEER, dst: APP1, proto: 47 }, Buffer.alloc(8))), TC_ACT_OK, "GRE, port 0");
  assert.equal(dp.policyStats(1, { identity: 40001, direction: ingress, protocol: 0, port: 0, portPrefixLen: 0 })!.packets, 3n);
});

test("allow L4-only (identity 0): UDP/53 from anyone, also world; UDP/54 not", () => {
  assert.equal(dp.run("to_endpoint", v4({ src: WORLD, dst: APP1, proto: UDP }, udp(3333, 53))), TC_ACT_OK);
  assert.equal(dp.run("to_endpoint", v4({ src: APP2, dst: APP1, proto: UDP }, udp(3333, 53))), TC_ACT_OK);
  assert.equal(dp.run("to_endpoint", v4({ src: WORLD, dst: APP1, proto: UDP }, udp(3333, 54))), TC_ACT_SHOT);
  assert.equal(dp.policyStats(1, { identity: 0, direction: ingress, protocol: UDP, port: 53, portPrefixLen: 16 })!.packets, 2n);
});

test("port range via prefix: 8080-8087 allowed, 8079 and 8088 not; stats keyed by the /13 entry", () => {
  for (const p of [8080, 8083, 8087]) assert.equal(dp.run("to_endpoint", toApp1Tcp(APP2, 41000, p)), TC_ACT_OK, `port ${p}`);
  for (const p of [8079, 8088]) assert.equal(dp.run("to_endpoint", toApp1Tcp(APP2, 41000, p)), TC_ACT_SHOT, `port ${p}`);
  assert.equal(dp.policyStats(1, { identity: 36895, direction: ingress, protocol: TCP, port: 8080, portPrefixLen: 13 })!.packets, 3n);
});

test("deny wins over allow: same identity (TCP/22 under an L3 allow) and identity-0 deny (TCP/25)", () => {
  const before = dp.drops(1, L.DropReason.POLICY_DENIED, ingress);
  assert.equal(dp.run("to_endpoint", toApp1Tcp(MIXED, 1000, 23)), TC_ACT_OK, "L3 allow still works elsewhere");
  assert.equal(dp.run("to_endpoint", toApp1Tcp(MIXED, 1000, 22)), TC_ACT_SHOT);
  assert.equal(dp.run("to_endpoint", toApp1Tcp(L3PEER, 1000, 25)), TC_ACT_SHOT, "identity-0 deny beats the L3 allow");
  assert.equal(dp.run("to_endpoint", toApp1Tcp(L3PEER, 1000, 26)), TC_ACT_OK);
  assert.equal(dp.drops(1, L.DropReason.POLICY_DENIED, ingress), before + 2n);
});

test("no enforcement or not an endpoint: pass", () => {
  assert.equal(dp.run("to_endpoint", v4({ src: WORLD, dst: APP3, proto: TCP }, tcp(1, 9))), TC_ACT_OK, "app3 ingress not enforced");
  assert.equal(dp.run("from_endpoint", v4({ src: APP3, dst: WORLD, proto: UDP }, udp(1, 9))), TC_ACT_OK, "app3 egress not enforced");
  assert.equal(dp.run("to_endpoint", v4({ src: WORLD, dst: "10.99.0.1", proto: TCP }, tcp(1, 9))), TC_ACT_OK, "unknown destination");
  assert.equal(dp.run("from_endpoint", v4({ src: "10.99.0.1", dst: APP1, proto: TCP }, tcp(1, 9))), TC_ACT_OK, "unknown source");
});

test("conntrack: a reply passes app1's enforced egress only after the allowed forward packet", () => {
  dp.clearConntrack();
  const reply = v4({ src: APP1, dst: APP2, proto: TCP }, tcp(80, 45000, 0x12));
  const egressDrops = dp.drops(1, L.DropReason.NO_POLICY, "egress");
  assert.equal(dp.run("from_endpoint", reply), TC_ACT_SHOT, "no flow yet: app1 egress is default deny");
  assert.equal(dp.drops(1, L.DropReason.NO_POLICY, "egress"), egressDrops + 1n);
  assert.equal(dp.run("to_endpoint", toApp1Tcp(APP2, 45000, 80)), TC_ACT_OK);
  assert.equal(dp.run("from_endpoint", reply), TC_ACT_OK);
  const ct = dp.ct({ saddr: APP2, daddr: APP1, sport: 45000, dport: 80, protocol: TCP })!;
  assert.ok(ct, "forward tuple recorded");
  assert.equal(ct.flags, L.CT_F_INGRESS | L.CT_F_REPLY);
  assert.equal(ct.packets, 2n);
  assert.ok(ct.lastSeenNs > 0n);
});

test("conntrack: a flow app1's ingress dropped does not open a reply path through app1's egress", () => {
  dp.clearConntrack();
  // app3 (egress not enforced) sends to app1:46000; its own point records the flow, app1 drops it.
  assert.equal(dp.run("from_endpoint", v4({ src: APP3, dst: APP1, proto: TCP }, tcp(80, 46000))), TC_ACT_OK);
  assert.equal(dp.run("to_endpoint", v4({ src: APP3, dst: APP1, proto: TCP }, tcp(80, 46000))), TC_ACT_SHOT);
  assert.equal(dp.ct({ saddr: APP3, daddr: APP1, sport: 80, dport: 46000, protocol: TCP })!.flags, L.CT_F_EGRESS);
  // app1 -> app3 on the "reverse" tuple is a new forward flow for app1's egress: denied.
  assert.equal(dp.run("from_endpoint", v4({ src: APP1, dst: APP3, proto: TCP }, tcp(46000, 80))), TC_ACT_SHOT);
});

test("removing the rule cuts the existing flow's forward packets (replies keep their CT entry)", () => {
  dp.clearConntrack();
  const rule = { direction: ingress, identity: 36895, protocol: TCP, port: 80, portPrefixLen: 16 };
  assert.equal(dp.run("to_endpoint", toApp1Tcp(APP2, 47000, 80)), TC_ACT_OK);
  assert.equal(dp.removeRule(1, rule), true);
  try {
    assert.equal(dp.run("to_endpoint", toApp1Tcp(APP2, 47000, 80, 0x10)), TC_ACT_SHOT);
  } finally {
    dp.addRules(1, [{ ...rule, decision: "allow" }]);
  }
  assert.equal(dp.run("to_endpoint", toApp1Tcp(APP2, 47000, 80, 0x10)), TC_ACT_OK, "rule back: flow passes again");
});

test("IPv4 header options (IHL 6) are skipped to find the ports", () => {
  const f = v4({ src: APP2, dst: APP1, proto: TCP, options: Buffer.from([1, 1, 1, 0]) }, tcp(40000, 80));
  assert.equal(dp.run("to_endpoint", f), TC_ACT_OK);
  const g = v4({ src: APP2, dst: APP1, proto: TCP, options: Buffer.from([1, 1, 1, 0]) }, tcp(40000, 81));
  assert.equal(dp.run("to_endpoint", g), TC_ACT_SHOT);
});

test("IPv6 TCP: allowed from app2, denied from world, extension header skipped, reply via conntrack", () => {
  dp.clearConntrack();
  assert.equal(dp.run("to_endpoint", v6({ src: APP2_6, dst: APP1_6, proto: TCP }, tcp(50000, 80))), TC_ACT_OK);
  assert.equal(dp.run("to_endpoint", v6({ src: "2001:db8::1", dst: APP1_6, proto: TCP }, tcp(50000, 80))), TC_ACT_SHOT);
  assert.equal(dp.run("to_endpoint", v6({ src: APP2_6, dst: APP1_6, proto: TCP }, tcp(50000, 81))), TC_ACT_SHOT);
  assert.equal(dp.run("to_endpoint", v6({ src: APP2_6, dst: APP1_6, proto: TCP, ext: [HOP_BY_HOP] }, tcp(50001, 80))), TC_ACT_OK);
  assert.equal(dp.run("to_endpoint", v6({ src: APP2_6, dst: APP1_6, proto: TCP, ext: [HOP_BY_HOP] }, tcp(50001, 81))), TC_ACT_SHOT);
  assert.equal(dp.run("from_endpoint", v6({ src: APP1_6, dst: APP2_6, proto: TCP }, tcp(80, 50000, 0x12))), TC_ACT_OK);
  assert.equal(dp.run("from_endpoint", v6({ src: APP1_6, dst: APP2_6, proto: TCP }, tcp(80, 50002, 0x12))), TC_ACT_SHOT);
});

test("ICMP echo: request allowed from app2, reply passes app1's egress via conntrack; request from app3 dropped", () => {
  dp.clearConntrack();
  assert.equal(dp.run("from_endpoint", v4({ src: APP1, dst: APP2, proto: ICMP }, icmpEcho(0, 77))), TC_ACT_SHOT, "reply before request");
  assert.equal(dp.run("to_endpoint", v4({ src: APP2, dst: APP1, proto: ICMP }, icmpEcho(8, 77))), TC_ACT_OK);
  assert.ok(dp.ct({ saddr: APP2, daddr: APP1, sport: 77, dport: 0, protocol: ICMP }), "echo id is the CT sport");
  assert.equal(dp.run("from_endpoint", v4({ src: APP1, dst: APP2, proto: ICMP }, icmpEcho(0, 77))), TC_ACT_OK);
  assert.equal(dp.run("from_endpoint", v4({ src: APP1, dst: APP2, proto: ICMP }, icmpEcho(0, 78))), TC_ACT_SHOT, "other echo id");
  assert.equal(dp.run("to_endpoint", v4({ src: APP3, dst: APP1, proto: ICMP }, icmpEcho(8, 77))), TC_ACT_SHOT);
  // Only the allowed type: a timestamp request (13) from app2 is dropped.
  assert.equal(dp.run("to_endpoint", v4({ src: APP2, dst: APP1, proto: ICMP }, icmpEcho(13, 79))), TC_ACT_SHOT);
  // ICMPv6 echo, same shape.
  assert.equal(dp.run("to_endpoint", v6({ src: APP2_6, dst: APP1_6, proto: ICMPV6 }, icmpEcho(128, 5))), TC_ACT_OK);
  assert.equal(dp.run("from_endpoint", v6({ src: APP1_6, dst: APP2_6, proto: ICMPV6 }, icmpEcho(129, 5))), TC_ACT_OK);
  assert.equal(dp.run("from_endpoint", v6({ src: APP1_6, dst: APP2_6, proto: ICMPV6 }, icmpEcho(129, 6))), TC_ACT_SHOT);
});

test("ICMP errors about a tracked flow pass (IPv4 and IPv6); unrelated ones are judged by policy", () => {
  dp.clearConntrack();
  assert.equal(dp.run("to_endpoint", toApp1Tcp(APP2, 48000, 80)), TC_ACT_OK);
  // A router (world, no ICMP allow) reports that app1's reply app1:80 -> app2:48000 was undeliverable.
  const quoted = ipv4({ src: APP1, dst: APP2, proto: TCP }, tcp(80, 48000, 0x12).subarray(0, 8));
  assert.equal(dp.run("to_endpoint", v4({ src: WORLD, dst: APP1, proto: ICMP }, icmpError(3, 1, quoted))), TC_ACT_OK);
  // Time exceeded quoting the forward direction also matches.
  const quotedFwd = ipv4({ src: APP2, dst: APP1, proto: TCP }, tcp(48000, 80).subarray(0, 8));
  assert.equal(dp.run("to_endpoint", v4({ src: WORLD, dst: APP1, proto: ICMP }, icmpError(11, 0, quotedFwd))), TC_ACT_OK);
  const unrelated = ipv4({ src: APP1, dst: APP2, proto: TCP }, tcp(80, 48001).subarray(0, 8));
  assert.equal(dp.run("to_endpoint", v4({ src: WORLD, dst: APP1, proto: ICMP }, icmpError(3, 1, unrelated))), TC_ACT_SHOT);
  // IPv6: packet too big about a tracked flow.
  assert.equal(dp.run("to_endpoint", v6({ src: APP2_6, dst: APP1_6, proto: TCP }, tcp(51000, 80))), TC_ACT_OK);
  const q6 = ipv6({ src: APP1_6, dst: APP2_6, proto: TCP }, tcp(80, 51000).subarray(0, 8));
  assert.equal(dp.run("to_endpoint", v6({ src: "2001:db8::1", dst: APP1_6, proto: ICMPV6 }, icmpError(2, 0, q6))), TC_ACT_OK);
  const q6x = ipv6({ src: APP1_6, dst: APP2_6, proto: TCP }, tcp(80, 51001).subarray(0, 8));
  assert.equal(dp.run("to_endpoint", v6({ src: "2001:db8::1", dst: APP1_6, proto: ICMPV6 }, icmpError(2, 0, q6x))), TC_ACT_SHOT);
});

test("truncated headers are dropped as MALFORMED without reading out of bounds", () => {
  const before = dp.drops(1, L.DropReason.MALFORMED, ingress);
  const full = toApp1Tcp(APP2, 40000, 80);
  assert.equal(dp.run("to_endpoint", full.subarray(0, 14 + 20 + 10)), TC_ACT_SHOT, "TCP header cut at 10 bytes");
  assert.equal(dp.run("to_endpoint", v4({ src: APP2, dst: APP1, proto: UDP }, Buffer.alloc(4))), TC_ACT_SHOT, "UDP header of 4 bytes");
  assert.equal(dp.run("to_endpoint", v6({ src: APP2_6, dst: APP1_6, proto: TCP }, Buffer.alloc(6))), TC_ACT_SHOT, "IPv6 TCP cut");
  assert.equal(dp.drops(1, L.DropReason.MALFORMED, ingress), before + 3n);
  const unknownBefore = dp.drops(0, L.DropReason.MALFORMED, ingress);
  // (BPF_PROG_TEST_RUN itself refuses IPv4 frames shorter than a full IP header, so header-level
  // damage is tested with inconsistent fields instead.)
  const badIhl = Buffer.from(full);
  badIhl[14] = 0x43;
  assert.equal(dp.run("to_endpoint", badIhl), TC_ACT_SHOT, "IHL < 5");
  const badVersion = Buffer.from(full);
  badVersion[14] = 0x65;
  assert.equal(dp.run("to_endpoint", badVersion), TC_ACT_SHOT, "version 6 in an IPv4 frame");
  const badLen = Buffer.from(full);
  badLen.writeUInt16BE(16, 16);
  assert.equal(dp.run("to_endpoint", badLen), TC_ACT_SHOT, "total length shorter than the header");
  assert.equal(dp.drops(0, L.DropReason.MALFORMED, ingress), unknownBefore + 3n, "counted under ep_id 0: addresses not trusted");
  const longIhl = Buffer.from(full);
  longIhl[14] = 0x4f; // 60-byte header claimed, 40 bytes follow
  assert.equal(dp.run("to_endpoint", longIhl.subarray(0, 14 + 40)), TC_ACT_SHOT, "options run past the packet");
});

test("non-first fragments are judged as port 0: pass only where the peer is allowed on every port", () => {
  const frag = (src: string) => v4({ src, dst: APP1, proto: UDP, fragOffset: 185 }, Buffer.alloc(64));
  assert.equal(dp.run("to_endpoint", frag(L3PEER)), TC_ACT_OK, "L3-only allowed peer");
  assert.equal(dp.run("to_endpoint", frag(APP2)), TC_ACT_SHOT, "app2 is only allowed TCP ports");
  // A first fragment carries the header and is judged normally.
  assert.equal(dp.run("to_endpoint", v4({ src: APP2, dst: APP1, proto: TCP, moreFragments: true }, tcp(40000, 80))), TC_ACT_OK);
  // IPv6 non-first fragment: same verdicts.
  const f6 = (src: string) => v6({ src, dst: APP1_6, proto: TCP, ext: [fragmentHeader(100, true)] }, Buffer.alloc(32));
  assert.equal(dp.run("to_endpoint", f6(APP2_6)), TC_ACT_SHOT);
  dp.addIpcache("f00d::4001/128", 40001);
  assert.equal(dp.run("to_endpoint", f6("f00d::4001")), TC_ACT_OK);
  // IPv6 first fragment: the header after the fragment header is parsed.
  assert.equal(dp.run("to_endpoint", v6({ src: APP2_6, dst: APP1_6, proto: TCP, ext: [fragmentHeader(0, true)] }, tcp(50000, 80))), TC_ACT_OK);
});

test("non-IP frames pass: ARP, and a frame shorter than an Ethernet header's payload", () => {
  assert.equal(dp.run("to_endpoint", arp()), TC_ACT_OK);
  assert.equal(dp.run("from_endpoint", arp()), TC_ACT_OK);
  assert.equal(dp.run("to_endpoint", ether(0x88cc, Buffer.alloc(46))), TC_ACT_OK, "LLDP");
});

test("ICMPv6 neighbour discovery from an enforced endpoint passes", () => {
  const ns = Buffer.alloc(24);
  ns[0] = 135;
  assert.equal(dp.run("from_endpoint", v6({ src: APP1_6, dst: APP2_6, proto: ICMPV6 }, ns)), TC_ACT_OK);
  const echo = icmpEcho(128, 9);
  assert.equal(dp.run("from_endpoint", v6({ src: APP1_6, dst: APP2_6, proto: ICMPV6 }, echo)), TC_ACT_SHOT, "but not other ICMPv6");
});

test("cross-check: libbpf (bpftool) loads both programs too, in a private bpffs of its own mount namespace", () => {
  const obj = fileURLToPath(new URL("../../bpf/build/endpoint.o", import.meta.url));
  // unshare -m: libbpf pins "by name" maps under its default /sys/fs/bpf; a private bpffs mounted
  // there in a throwaway mount namespace keeps the real one untouched and vanishes with it.
  const script = 'mount --make-rprivate / && mount -t bpf bpf /sys/fs/bpf && mkdir /sys/fs/bpf/p && bpftool prog loadall "$1" /sys/fs/bpf/p type classifier && bpftool -j prog show pinned /sys/fs/bpf/p/to_endpoint && bpftool -j prog show pinned /sys/fs/bpf/p/from_endpoint';
  const out = execFileSync("unshare", ["-m", "sh", "-c", script, "sh", obj], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  const names = out.trim().split("\n").map((l) => (JSON.parse(l) as { name: string; type: string }));
  assert.deepEqual(names.map((p) => [p.name, p.type]), [["to_endpoint", "sched_cls"], ["from_endpoint", "sched_cls"]]);
});
