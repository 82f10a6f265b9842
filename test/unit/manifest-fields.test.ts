// Address, prefix, MAC and label-key parsing used by every manifest schema.

import { test } from "node:test";
import assert from "node:assert/strict";
import { isIfName, parseCIDR, parseLabelKey, parseMac } from "../../reconciler/manifest/fields.js";
import { canonicalIP, prefixContains, type Prefix } from "../../reconciler/manifest/ip.js";

test("IPv6 addresses are canonicalized (RFC 5952)", () => {
  const cases: [string, string][] = [
    ["FD00:0011:0000:0000:0000:0000:0000:0001", "fd00:11::1"],
    ["fd00:11:0:0:1:0:0:1", "fd00:11::1:0:0:1"],
    ["2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"],
    ["::", "::"],
    ["::1", "::1"],
    ["fe80::", "fe80::"],
    ["::ffff:192.0.2.1", "::ffff:c000:201"],
    ["f00d::a0f:0:0:2fd8", "f00d::a0f:0:0:2fd8"],
  ];
  for (const [input, want] of cases) assert.equal(canonicalIP(input), want, input);
});

test("invalid addresses are rejected", () => {
  for (const bad of ["10.0.0.256", "10.0.0", "010.0.0.1", "1.2.3.4.5", "fd00::1::2", "fd00:12345::1", "fe80::1%eth0", "1:2:3:4:5:6:7:8:9", "", "::g"]) {
    assert.equal(canonicalIP(bad), undefined, bad);
  }
});

test("CIDRs: canonical text, bare addresses are host prefixes, host bits set is an error", () => {
  assert.equal((parseCIDR("10.11.0.0/16") as Prefix).text, "10.11.0.0/16");
  assert.equal((parseCIDR("192.0.2.7") as Prefix).text, "192.0.2.7/32");
  assert.equal((parseCIDR("FD00:11:0::/64") as Prefix).text, "fd00:11::/64");
  assert.equal((parseCIDR("0.0.0.0/0") as Prefix).text, "0.0.0.0/0");
  assert.equal(parseCIDR("10.11.0.1/16"), 'host bits set (expected a network address, got "10.11.0.1/16"; did you mean 10.11.0.0/16?)');
  assert.equal(parseCIDR("10.0.0.0/33"), 'invalid prefix length (expected 0..32, got "10.0.0.0/33")');
  assert.equal(parseCIDR("fd00::/129"), 'invalid prefix length (expected 0..128, got "fd00::/129")');
  assert.match(parseCIDR("nope/8") as string, /^invalid CIDR/);
});

test("prefixContains", () => {
  const p = (s: string): Prefix => parseCIDR(s) as Prefix;
  assert.ok(prefixContains(p("10.0.0.0/8"), p("10.1.0.0/16")));
  assert.ok(prefixContains(p("10.0.0.0/8"), p("10.0.0.0/8")));
  assert.ok(!prefixContains(p("10.0.0.0/8"), p("11.0.0.0/16")));
  assert.ok(!prefixContains(p("10.1.0.0/16"), p("10.0.0.0/8")));
  assert.ok(!prefixContains(p("10.0.0.0/8"), p("fd00::/64")));
  assert.ok(prefixContains(p("fd00:11::/64"), p("fd00:11::5/128")));
});

test("MAC addresses: lower-cased, unicast only", () => {
  assert.equal(parseMac("6E:B0:7D:4E:6B:E5"), "6e:b0:7d:4e:6b:e5");
  assert.equal(parseMac("01:00:5e:00:00:01"), undefined, "multicast");
  assert.equal(parseMac("00:00:00:00:00:00"), undefined);
  assert.equal(parseMac("6e-b0-7d-4e-6b-e5"), undefined);
});

test("interface names follow the kernel's rules", () => {
  assert.ok(isIfName("lxc-app1"));
  assert.ok(isIfName("a".repeat(15)));
  assert.ok(!isIfName("a".repeat(16)));
  for (const bad of ["", ".", "..", "a/b", "a:b", "a b"]) assert.ok(!isIfName(bad), bad);
});

test("label keys: optional source prefix, Kubernetes key syntax", () => {
  assert.deepEqual(parseLabelKey("app", "k8s"), { source: "k8s", key: "app" });
  assert.deepEqual(parseLabelKey("any:id", "k8s"), { source: "any", key: "id" });
  assert.deepEqual(parseLabelKey("k8s:io.kubernetes.pod.namespace", "any"), { source: "k8s", key: "io.kubernetes.pod.namespace" });
  assert.deepEqual(parseLabelKey("app.example.com/tier", "k8s"), { source: "k8s", key: "app.example.com/tier" });
  assert.equal(typeof parseLabelKey("a:b:c", "k8s"), "string");
  assert.equal(typeof parseLabelKey("Bad Source:x", "k8s"), "string");
  assert.equal(typeof parseLabelKey("-app", "k8s"), "string");
});
