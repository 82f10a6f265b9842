// Proves reconciler/datapath/layouts.ts against the C headers as compiled: struct sizes and member
// offsets from the BTF of bpf/build/endpoint.o, map definitions against datapath/maps.ts, #define
// constants against the exported constants, and codec round trips.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { isIPv6 } from "node:net";
import * as L from "../../reconciler/datapath/layouts.js";
import { MAP_SPECS } from "../../reconciler/datapath/maps.js";
import { Btf } from "./helpers/layouts-btf.js";

const root = fileURLToPath(new URL("../../", import.meta.url));
const btf = Btf.fromObjectFile(`${root}bpf/build/endpoint.o`);
const structs = btf.structs();

test("every layout matches its C struct in the object's BTF (size, member names, offsets)", () => {
  for (const layout of L.STRUCT_LAYOUTS) {
    const s = structs.get(layout.name);
    assert.ok(s, `struct ${layout.name} missing from BTF`);
    assert.equal(layout.size, s.size, `sizeof(struct ${layout.name})`);
    const btfOffsets = Object.fromEntries(s.members.map((m) => [m.name, m.offset]));
    assert.deepEqual({ ...layout.offsets }, btfOffsets, `members of struct ${layout.name}`);
  }
  assert.equal(L.STRUCT_LAYOUTS.length, 16);
});

test("policy_stats_key embeds a policy_key; per-CPU counters are 8-aligned", () => {
  const s = structs.get("policy_stats_key")!;
  const key = s.members.find((m) => m.name === "key")!;
  assert.equal(btf.sizeOf(key.type), L.POLICY_KEY.size);
  assert.equal(L.POLICY_STATS.size % 8, 0);
  assert.equal(L.DROP_STATS.size % 8, 0);
});

const MAP_TYPE_NUMBERS: Record<string, number> = { hash: 1, array: 2, percpu_hash: 5, lru_hash: 9, lpm_trie: 11, hash_of_maps: 13, ringbuf: 27 };

test("the object's map definitions equal datapath/maps.ts MAP_SPECS, and are pinned by name", () => {
  const defs = new Map(btf.maps().map((d) => [d.name, d]));
  assert.deepEqual([...defs.keys()].sort(), MAP_SPECS.map((m) => m.name).sort());
  for (const spec of MAP_SPECS) {
    const d = defs.get(spec.name)!;
    assert.equal(d.fields.type, MAP_TYPE_NUMBERS[spec.type], `${spec.name} type`);
    assert.equal(d.fields.max_entries, spec.maxEntries, `${spec.name} max_entries`);
    assert.equal(d.fields.map_flags ?? 0, spec.flags, `${spec.name} map_flags`);
    assert.equal(d.fields.pinning, 1, `${spec.name} pinning (LIBBPF_PIN_BY_NAME)`);
    // A ring buffer definition has no key or value at all (the kernel wants sizes 0).
    assert.equal(d.fields.key_size ?? (spec.type === "ringbuf" ? 0 : undefined), spec.keySize, `${spec.name} key size`);
    if (spec.type !== "hash_of_maps") {
      assert.equal(d.fields.value_size ?? (spec.type === "ringbuf" ? 0 : undefined), spec.valueSize, `${spec.name} value size`);
    }
  }
  const inner = defs.get("policy")!.innerFields!;
  assert.deepEqual(inner, { type: 11, map_flags: 1, max_entries: 16384, key_size: L.POLICY_KEY.size, value_size: L.POLICY_VALUE.size });
});

test("#define constants in bpf/include equal the TypeScript constants", () => {
  const defines = new Map<string, number>();
  for (const h of ["common.h", "endpoints.h", "policy.h", "conntrack.h", "drops.h", "events.h", "policy_rev.h"]) {
    for (const m of readFileSync(`${root}bpf/include/${h}`, "utf8").matchAll(/^#define\s+(\w+)\s+(\d+)\b/gm)) defines.set(m[1], Number(m[2]));
  }
  const expected: Record<string, number> = {
    FAMILY_IPV4: L.FAMILY_IPV4, FAMILY_IPV6: L.FAMILY_IPV6, DIR_INGRESS: L.DIR_INGRESS, DIR_EGRESS: L.DIR_EGRESS,
    IDENTITY_WORLD: L.IDENTITY_WORLD, IDENTITY_HOST: L.IDENTITY_HOST, EP_ENFORCE_INGRESS: L.EP_ENFORCE_INGRESS, EP_ENFORCE_EGRESS: L.EP_ENFORCE_EGRESS,
    POLICY_DENY: L.POLICY_DENY, POLICY_PREFIX_L3: L.POLICY_PREFIX_L3, POLICY_PREFIX_PROTO: L.POLICY_PREFIX_PROTO,
    POLICY_PREFIX_FULL: L.POLICY_PREFIX_FULL, CT_F_INGRESS: L.CT_F_INGRESS, CT_F_EGRESS: L.CT_F_EGRESS, CT_F_REPLY: L.CT_F_REPLY,
    DROP_POLICY_DENIED: L.DropReason.POLICY_DENIED, DROP_NO_POLICY: L.DropReason.NO_POLICY, DROP_CT_INVALID: L.DropReason.CT_INVALID,
    DROP_MALFORMED: L.DropReason.MALFORMED, DROP_UNSUPPORTED_L3: L.DropReason.UNSUPPORTED_L3,
    POLICY_MAX_ENTRIES: 16384,
    EP_AUDIT_INGRESS: L.EP_AUDIT_INGRESS, EP_AUDIT_EGRESS: L.EP_AUDIT_EGRESS, EP_VERDICT_ALLOW: L.EP_VERDICT_ALLOW, EP_VERDICT_DENY: L.EP_VERDICT_DENY,
    POLICY_AUDIT: L.POLICY_AUDIT, DEFAULT_EVENT_RATE: L.DEFAULT_EVENT_RATE,
    EVENT_DROP: L.EventType.DROP, EVENT_VERDICT: L.EventType.VERDICT, EVENT_AUDIT: L.EventType.AUDIT,
    VERDICT_ALLOW: L.Verdict.ALLOW, VERDICT_DENY: L.Verdict.DENY,
    EP_HOST_POLICY: L.EP_HOST_POLICY, POLICY_REV_MAX_ENTRIES: 1,
  };
  for (const [name, value] of Object.entries(expected)) assert.equal(defines.get(name), value, name);
});

test("addresses: IPv4 and IPv6 text round-trip to 16 bytes and canonical text", () => {
  const buf = Buffer.alloc(16, 0xaa);
  assert.equal(L.encodeAddress("10.11.255.104", buf, 0), 4);
  assert.deepEqual([...buf], [10, 11, 255, 104, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  const v6 = ["f00d::1", "::", "::1", "1::", "2001:db8::8:800:200c:417a", "fe80::1:0:0:1", "1:0:0:2::3", "1:2:3:4:5:6:7:8", "::ffff:102:304"];
  for (const a of v6) {
    buf.fill(0xaa);
    assert.equal(L.encodeAddress(a, buf, 0), 6, a);
    const expected = new URL(`http://[${a}]/`).hostname.slice(1, -1); // WHATWG canonical form
    assert.equal(L.decodeAddress(buf, 0, 6), expected, a);
  }
  L.encodeAddress("2001:DB8:0:0:0:0:0:1", buf, 0);
  assert.equal(L.decodeAddress(buf, 0, 6), "2001:db8::1");
  L.encodeAddress("::ffff:1.2.3.4", buf, 0);
  assert.equal(buf.readUInt32BE(12), 0x01020304);
  assert.equal(buf.readUInt16BE(10), 0xffff);
  for (const bad of ["", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.1.1.1", "1..2.3", "a.b.c.d", ":::", "1:::2", "1::2::3", "1:2:3:4:5:6:7:8:9", "12345::", "1:2:3:4:5:6:7::8", "g::1", "1:", ":1"]) {
    assert.throws(() => L.encodeAddress(bad, buf, 0), L.LayoutError, bad);
    if (bad.includes(":")) assert.equal(isIPv6(bad), false, `node agrees ${bad} is invalid`);
  }
});

test("ipcache key: prefixlen is 32 + prefix, host bits zeroed, batch-encoded at offsets", () => {
  const prefixes = ["10.11.90.17/32", "10.0.0.0/8", "0.0.0.0/0", "f00d::1/128", "2001:db8::/32", "10.11.90.17"];
  const buf = Buffer.alloc(prefixes.length * L.IPCACHE_KEY.size, 0xee);
  prefixes.forEach((p, i) => L.encodeIpcacheKey(p, buf, i * L.IPCACHE_KEY.size));
  const decoded = prefixes.map((_, i) => L.decodeIpcacheKey(buf, i * L.IPCACHE_KEY.size).prefix);
  assert.deepEqual(decoded, ["10.11.90.17/32", "10.0.0.0/8", "0.0.0.0/0", "f00d::1/128", "2001:db8::/32", "10.11.90.17/32"]);
  assert.equal(buf.readUInt32LE(0), 64);
  assert.equal(buf.readUInt32LE(L.IPCACHE_KEY.size), 40);
  assert.equal(buf.readUInt32LE(3 * L.IPCACHE_KEY.size), 160);
  assert.equal(buf[4], 4);
  assert.deepEqual([...buf.subarray(5, 8)], [0, 0, 0], "pad zero");
  const k = Buffer.alloc(24);
  L.encodeIpcacheKey("10.11.90.17/16", k, 0);
  assert.deepEqual([...k.subarray(8, 12)], [10, 11, 0, 0], "host bits masked");
  L.encodeIpcacheKey("2001:db8:ffff::/33", k, 0);
  assert.equal(L.decodeIpcacheKey(k, 0).prefix, "2001:db8:8000::/33");
  for (const bad of ["10.0.0.0/33", "f00d::/129", "10.0.0.0/", "10.0.0.0/x", "10.0.0.0/0008"]) assert.throws(() => L.encodeIpcacheKey(bad, k, 0), L.LayoutError, bad);

  const v = Buffer.alloc(12, 0xff);
  L.encodeIpcacheValue({ identity: 36895 }, v, 0);
  assert.deepEqual(L.decodeIpcacheValue(v, 0), { identity: 36895 });
  assert.deepEqual([...v.subarray(4)], [0, 0, 0, 0, 0, 0, 0, 0]);
  L.encodeIpcacheValue({ identity: 16777217, tunnelEndpoint: "192.168.1.2" }, v, 0);
  assert.deepEqual([...v.subarray(4, 8)], [192, 168, 1, 2], "tunnel endpoint is network order");
  assert.deepEqual(L.decodeIpcacheValue(v, 0), { identity: 16777217, tunnelEndpoint: "192.168.1.2" });
});

test("endpoint key and info round-trip; flags bits", () => {
  const k = Buffer.alloc(20, 0xff);
  assert.equal(L.encodeEndpointKey("10.11.255.104", k, 0), 4);
  assert.equal(k[16], 4);
  assert.deepEqual([...k.subarray(4, 16)], Array(12).fill(0));
  assert.deepEqual([...k.subarray(17)], [0, 0, 0]);
  assert.equal(L.decodeEndpointKey(k, 0), "10.11.255.104");
  L.encodeEndpointKey("f00d::a", k, 0);
  assert.equal(L.decodeEndpointKey(k, 0), "f00d::a");
  const v = Buffer.alloc(L.ENDPOINT_INFO.size, 0xff);
  const info = { ifindex: 7, epId: 3, identity: 36895, enforceIngress: true, enforceEgress: false };
  L.encodeEndpointInfo(info, v, 0);
  assert.equal(v.readUInt32LE(12), L.EP_ENFORCE_INGRESS);
  assert.equal(v.readUInt32LE(16), L.DEFAULT_EVENT_RATE, "event rate defaults");
  assert.equal(v.readUInt32LE(20), 0, "pad zero");
  const defaults = { auditIngress: false, auditEgress: false, verdictAllow: false, verdictDeny: false, hostPolicy: false, eventRate: L.DEFAULT_EVENT_RATE };
  assert.deepEqual(L.decodeEndpointInfo(v, 0), { ...info, ...defaults });
  L.encodeEndpointInfo({ ...info, enforceEgress: true }, v, 0);
  assert.equal(v.readUInt32LE(12), 3);
  const all = { ...info, auditIngress: true, auditEgress: true, verdictAllow: true, verdictDeny: true, hostPolicy: true, eventRate: 5 };
  L.encodeEndpointInfo(all, v, 0);
  assert.equal(v.readUInt32LE(12), L.EP_ENFORCE_INGRESS | L.EP_AUDIT_INGRESS | L.EP_AUDIT_EGRESS | L.EP_VERDICT_ALLOW | L.EP_VERDICT_DENY | L.EP_HOST_POLICY);
  assert.equal(L.EP_HOST_POLICY, 64, "the bit after EP_VERDICT_DENY");
  assert.deepEqual(L.decodeEndpointInfo(v, 0), all);
  assert.throws(() => L.encodeEndpointInfo({ ...info, epId: -1 }, v, 0), L.LayoutError);
});

test("policy key: LPM prefixlen rules (40 / 48 + port bits), network-order port, validation", () => {
  const k = Buffer.alloc(12, 0xff);
  assert.equal(L.encodePolicyKey({ identity: 36895, direction: "ingress", protocol: 0, port: 0, portPrefixLen: 0 }, k, 0), 40);
  assert.equal(L.encodePolicyKey({ identity: 0, direction: "egress", protocol: 17, port: 0, portPrefixLen: 0 }, k, 0), 48);
  assert.equal(L.encodePolicyKey({ identity: 0, direction: "ingress", protocol: 6, port: 1024, portPrefixLen: 6 }, k, 0), 54);
  assert.equal(L.encodePolicyKey({ identity: 36895, direction: "ingress", protocol: 6, port: 80, portPrefixLen: 16 }, k, 0), 64);
  assert.deepEqual([...k], [64, 0, 0, 0, 0x1f, 0x90, 0, 0, 0, 6, 0, 80]);
  assert.deepEqual(L.decodePolicyKey(k, 0), { prefixlen: 64, identity: 36895, direction: "ingress", protocol: 6, port: 80, portPrefixLen: 16 });
  L.encodePolicyKey({ identity: 5, direction: "egress", protocol: 0, port: 0, portPrefixLen: 0 }, k, 0);
  assert.deepEqual(L.decodePolicyKey(k, 0), { prefixlen: 40, identity: 5, direction: "egress", protocol: 0, port: 0, portPrefixLen: 0 });
  assert.equal(k[8], L.DIR_EGRESS);
  assert.throws(() => L.encodePolicyKey({ identity: 1, direction: "ingress", protocol: 6, port: 1025, portPrefixLen: 6 }, k, 0), L.LayoutError, "unaligned block");
  assert.throws(() => L.encodePolicyKey({ identity: 1, direction: "ingress", protocol: 0, port: 80, portPrefixLen: 16 }, k, 0), L.LayoutError, "port without protocol");
  assert.throws(() => L.encodePolicyKey({ identity: 1, direction: "ingress", protocol: 6, port: 70000, portPrefixLen: 16 }, k, 0), L.LayoutError);

  const v = Buffer.alloc(8, 0xff);
  L.encodePolicyValue("deny", 54, v, 0);
  assert.deepEqual([...v], [L.POLICY_DENY, 54, 0, 0, 0, 0, 0, 0]);
  assert.deepEqual(L.decodePolicyValue(v, 0), { decision: "deny", prefixlen: 54, audit: false });
  L.encodePolicyValue("deny", 54, v, 0, true);
  assert.equal(v[0], L.POLICY_DENY | L.POLICY_AUDIT);
  assert.deepEqual(L.decodePolicyValue(v, 0), { decision: "deny", prefixlen: 54, audit: true });
  L.encodePolicyValue("allow", 64, v, 0, true);
  assert.equal(v[0], 0, "audit only marks a deny");
  assert.deepEqual(L.decodePolicyValue(v, 0), { decision: "allow", prefixlen: 64, audit: false });

  const s = Buffer.alloc(16);
  L.encodePolicyStatsKey(3, { identity: 36895, direction: "ingress", protocol: 6, port: 80, portPrefixLen: 16 }, s, 0);
  assert.deepEqual(L.decodePolicyStatsKey(s, 0), { epId: 3, key: { prefixlen: 64, identity: 36895, direction: "ingress", protocol: 6, port: 80, portPrefixLen: 16 } });
});

test("conntrack key/value, drop key and per-CPU counters round-trip", () => {
  const k = Buffer.alloc(80, 0xff);
  const a = { saddr: "10.11.90.17", daddr: "10.11.255.104", sport: 40000, dport: 80, protocol: 6 };
  const b = { saddr: "f00d::2", daddr: "f00d::1", sport: 7, dport: 0, protocol: 58 };
  L.encodeCtKey(a, k, 0);
  L.encodeCtKey(b, k, 40);
  assert.deepEqual(L.decodeCtKey(k, 0), { ...a, family: 4 });
  assert.deepEqual(L.decodeCtKey(k, 40), { ...b, family: 6 });
  assert.deepEqual([...k.subarray(32, 36)], [0x9c, 0x40, 0, 80], "ports big endian");
  assert.throws(() => L.encodeCtKey({ ...a, daddr: "f00d::1" }, k, 0), L.LayoutError, "mixed families");
  const v = Buffer.alloc(L.CT_VALUE.size, 0xff);
  assert.equal(L.CT_VALUE.size, 56, "32 bytes + two 12-byte cached verdicts");
  const none = { rev: 0, identity: 0, prefixlen: 0 };
  const cv = { lastSeenNs: 123456789012345n, packets: 3n, bytes: 180n, flags: L.CT_F_INGRESS | L.CT_F_REPLY };
  L.encodeCtValue(cv, v, 0);
  assert.deepEqual(L.decodeCtValue(v, 0), { ...cv, verdict: { ingress: none, egress: none } }, "no verdict: zeros");
  assert.equal(v.readUInt32LE(28), 0);
  const cached = { ...cv, verdict: { ingress: { rev: 7, identity: 36895, prefixlen: 64 }, egress: { rev: 0xffffffff, identity: 0, prefixlen: 40 } } };
  L.encodeCtValue(cached, v, 0);
  assert.deepEqual(L.decodeCtValue(v, 0), cached);
  assert.deepEqual([v.readUInt32LE(32), v.readUInt32LE(36), v[40], v[41], v.readUInt32LE(44)], [7, 36895, 64, 0, 0xffffffff], "ingress at 32, egress at 44");
  assert.equal(L.nextPolicyRevision(1), 2);
  assert.equal(L.nextPolicyRevision(0xffffffff), 1, "never 0");

  const d = Buffer.alloc(8, 0xff);
  L.encodeDropKey({ epId: 9, reason: L.DropReason.NO_POLICY, direction: "egress" }, d, 0);
  assert.deepEqual([...d], [9, 0, 0, 0, 2, 1, 0, 0]);
  assert.deepEqual(L.decodeDropKey(d, 0), { epId: 9, reason: 2, direction: "egress" });

  const pc = Buffer.alloc(32);
  pc.writeBigUInt64LE(2n, 0); pc.writeBigUInt64LE(100n, 8); pc.writeBigUInt64LE(3n, 16); pc.writeBigUInt64LE(50n, 24);
  assert.deepEqual(L.decodePerCpuCounters(pc, 0, 2), { packets: 5n, bytes: 150n });
});
