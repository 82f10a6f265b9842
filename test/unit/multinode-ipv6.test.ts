// IPv6 across the vxlan overlay: dual-stack endpoints on two nodes over an IPv4 underlay (IPv6 pod
// CIDRs via the remote rc-vxlan's EUI-64 link-local, resolved by a permanent NDP entry), and the
// same model over an IPv6 underlay (every pod CIDR via that link-local, IPv4 ones with RTA_VIA).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import * as C from "../../reconciler/netlink/constants.js";
import { buildRoute, decodeRoute } from "../../reconciler/netlink/route.js";
import { bytesToIp, parseAttrs } from "../../reconciler/netlink/message.js";
import { eui64LinkLocal, vxlanMac, VXLAN_DEVICE } from "../../reconciler/datapath/desired.js";
import { emptyState } from "../../reconciler/datapath/state.js";
import { diff } from "../../reconciler/plan/diff.js";
import { compileSnapshot } from "../../reconciler/plan/snapshot-to-desired.js";
import type { Snapshot } from "../../reconciler/source/snapshot.js";
import { REPO_ROOT } from "./helpers/manifest-snapshot.js";

interface NodeDef {
  name: string;
  address: string;
  podCIDRs: string[];
}
const V4 = { n1: "192.0.2.11", n2: "192.0.2.12" };
const V6 = { n1: "2001:db8::11", n2: "2001:db8::12" };
const POD4 = { n1: "10.11.255.0/24", n2: "10.11.90.0/24" };
const POD6 = { n1: "fd00:a:1::/64", n2: "fd00:a:2::/64" };

function nodeYaml(n: NodeDef): string {
  return `apiVersion: reconcile/v1\nkind: Node\nmetadata:\n  name: ${n.name}\nspec:\n  address: ${n.address}\n  tunnel:\n    type: vxlan\n    vni: 7\n  podCIDRs:\n${n.podCIDRs.map((c) => `    - ${c}\n`).join("")}`;
}

function endpointYaml(name: string, node: string, ipv4: string, ipv6: string): string {
  return `apiVersion: reconcile/v1\nkind: Endpoint\nmetadata:\n  name: ${name}\n  labels:\n    id: ${name}\nspec:\n  node: ${node}\n  ipv4: ${ipv4}\n  ipv6: ${ipv6}\n  interface:\n    name: lxc-${name}\n    create:\n      kind: veth\n      netns: rc-${name}\n      ifname: eth0\n`;
}

/** The seed's policy on two dual-stack nodes: app1 on n1; app2 (allowed to app1:80) and app3 on n2. */
function snapshot(underlay: "v4" | "v6", pods: "dual" | "v4" = "dual"): Snapshot {
  const addr = underlay === "v4" ? V4 : V6;
  const cidrs = (n: "n1" | "n2") => (pods === "dual" ? [POD4[n], POD6[n]] : [POD4[n]]);
  const seed = join(REPO_ROOT, "examples/seed");
  return {
    revision: `ipv6-${underlay}-${pods}`,
    files: [
      { path: "nodes.yaml", content: [nodeYaml({ name: "n1", address: addr.n1, podCIDRs: cidrs("n1") }), nodeYaml({ name: "n2", address: addr.n2, podCIDRs: cidrs("n2") })].join("---\n") },
      {
        path: "endpoints.yaml",
        content: [
          endpointYaml("app1", "n1", "10.11.255.104", "fd00:a:1::104"),
          endpointYaml("app2", "n2", "10.11.90.17", "fd00:a:2::17"),
          endpointYaml("app3", "n2", "10.11.90.33", "fd00:a:2::33"),
        ].join("---\n"),
      },
      { path: "identities.yaml", content: readFileSync(join(seed, "identities.yaml"), "utf8") },
      { path: "l3-rule.json", content: readFileSync(join(seed, "l3-rule.json"), "utf8") },
    ],
  };
}

const compileFor = (node: string, underlay: "v4" | "v6", pods: "dual" | "v4" = "dual") =>
  compileSnapshot(snapshot(underlay, pods), { node, enforcement: "default", attachMode: "tcx", underlayMtu: 1500 });

const overlayRoutes = (d: ReturnType<typeof compileFor>["desired"]) => [...d.routes.values()].filter((r) => r.device === VXLAN_DEVICE);

test("eui64LinkLocal: the address the kernel gives a device with that MAC, in the canonical form netlink prints", () => {
  // Seen on this kernel: a vxlan device with MAC 02:11:22:33:44:55 gets fe80::11:22ff:fe33:4455.
  assert.equal(eui64LinkLocal("02:11:22:33:44:55"), "fe80::11:22ff:fe33:4455");
  assert.equal(eui64LinkLocal("52:54:00:12:34:56"), "fe80::5054:ff:fe12:3456");
  // 02:00:... flips to a zero first group, which joins the run of zeros.
  assert.equal(eui64LinkLocal("02:00:00:33:44:00"), "fe80::ff:fe33:4400");
  for (const name of ["n1", "n2", "node-a", "worker-17"]) {
    const m = vxlanMac(name).split(":").map((x) => parseInt(x, 16));
    const bytes = Buffer.from([0xfe, 0x80, 0, 0, 0, 0, 0, 0, m[0]! ^ 2, m[1]!, m[2]!, 0xff, 0xfe, m[3]!, m[4]!, m[5]!]);
    assert.equal(eui64LinkLocal(vxlanMac(name)), bytesToIp(bytes), name);
  }
  assert.throws(() => eui64LinkLocal("02:11:22"), /expected aa:bb:cc:dd:ee:ff, got 02:11:22/);
});

test("IPv4 underlay, dual-stack pods: IPv6 pod CIDRs via n2's link-local with an NDP entry, IPv4 ones as before, no warnings", () => {
  const { desired, warnings } = compileFor("n1", "v4");
  assert.deepEqual(warnings.filter((w) => w.object?.startsWith("Node/")), []);
  const ll2 = eui64LinkLocal(vxlanMac("n2"));
  assert.deepEqual(overlayRoutes(desired), [
    { destination: POD4.n2, device: "rc-vxlan", gateway: V4.n2, onlink: true, scope: "universe" },
    { destination: POD6.n2, device: "rc-vxlan", gateway: ll2, scope: "universe" },
  ]);
  // The ARP entry carries the FDB entry; the NDP entry names the same MAC and leaves the FDB alone.
  assert.deepEqual([...desired.neighbours.values()], [
    { device: "rc-vxlan", address: V4.n2, mac: vxlanMac("n2"), fdbDst: V4.n2 },
    { device: "rc-vxlan", address: ll2, mac: vxlanMac("n2") },
  ]);
  assert.ok(desired.neighbours.has(`rc-vxlan/${ll2}`));
  assert.deepEqual(
    [...desired.sysctls.values()].map((s) => `${s.key}=${s.value}`).sort(),
    ["net/ipv4/ip_forward=1", "net/ipv6/conf/all/forwarding=1", "net/ipv6/conf/rc-vxlan/addr_gen_mode=0", "net/ipv6/conf/rc-vxlan/disable_ipv6=0"],
  );
  assert.equal(desired.devices.get(VXLAN_DEVICE)!.mtu, 1450);
  // Remote IPv6 endpoints are in the ipcache with their node's (IPv4) tunnel endpoint.
  const app2 = desired.ipcache.get("fd00:a:2::17/128")!;
  assert.equal(app2.tunnelEndpoint, V4.n2);
  assert.equal(app2.identity, 36895);
  // Mirror image on n2: the NDP entry it writes for n1 is the link-local of the MAC n1 gives rc-vxlan.
  const n2 = compileFor("n2", "v4").desired;
  assert.deepEqual(overlayRoutes(n2).map((r) => `${r.destination} via ${r.gateway}`), [`${POD4.n1} via ${V4.n1}`, `${POD6.n1} via ${eui64LinkLocal(desired.devices.get(VXLAN_DEVICE)!.mac!)}`]);
});

test("IPv4 underlay, IPv4 pods only: nothing IPv6 on the overlay (no NDP entry, no IPv6 sysctls)", () => {
  const { desired } = compileFor("n1", "v4", "v4");
  assert.deepEqual([...desired.neighbours.keys()], [`rc-vxlan/${V4.n2}`]);
  // app1 has an IPv6 address on a local veth, which alone asks for IPv6 forwarding.
  assert.deepEqual([...desired.sysctls.keys()].sort(), ["net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding"]);
});

test("IPv6 underlay: vxlan local IPv6 at underlay MTU - 70, every pod CIDR via n2's link-local, one NDP entry with an IPv6 FDB destination", () => {
  const { desired, warnings } = compileFor("n1", "v6");
  assert.deepEqual(warnings.filter((w) => w.object?.startsWith("Node/")), []);
  assert.deepEqual(desired.devices.get(VXLAN_DEVICE), {
    name: "rc-vxlan",
    kind: "vxlan",
    mac: vxlanMac("n1"),
    mtu: 1430,
    vxlan: { vni: 7, port: 8472, local: V6.n1, learning: false },
    owned: true,
    up: true,
  });
  assert.equal(desired.devices.get("lxc-app1")!.mtu, 1430, "endpoint veths take the overlay MTU");
  const ll2 = eui64LinkLocal(vxlanMac("n2"));
  assert.deepEqual(overlayRoutes(desired), [
    { destination: POD4.n2, device: "rc-vxlan", gateway: ll2, scope: "universe" },
    { destination: POD6.n2, device: "rc-vxlan", gateway: ll2, scope: "universe" },
  ]);
  assert.deepEqual([...desired.neighbours.values()], [{ device: "rc-vxlan", address: ll2, mac: vxlanMac("n2"), fdbDst: V6.n2 }]);
  // The ipcache's tunnel endpoint field is IPv4 only: left empty for an IPv6 underlay.
  assert.deepEqual(desired.ipcache.get("10.11.90.17/32"), { prefix: "10.11.90.17/32", identity: 36895 });
  assert.deepEqual(desired.ipcache.get("fd00:a:2::17/128"), { prefix: "fd00:a:2::17/128", identity: 36895 });
  assert.equal(desired.ipcache.get(`${V6.n2}/128`)!.identity, 6, "other node address: remote-node");
  assert.equal(desired.ipcache.get(`${V6.n1}/128`)!.identity, 1, "own node address: host");
});

test("IPv6 underlay, IPv4 pods only: IPv6 on rc-vxlan for the next hop, IPv4 forwarding, no IPv6 forwarding for the overlay", () => {
  const model = snapshot("v6", "v4");
  // Without IPv6 endpoint addresses, nothing else asks for IPv6 forwarding.
  for (const f of model.files) if (f.path === "endpoints.yaml") f.content = f.content.replace(/ {2}ipv6: .*\n/g, "");
  const { desired } = compileSnapshot(model, { node: "n1", enforcement: "default", attachMode: "tcx" });
  assert.deepEqual(overlayRoutes(desired).map((r) => `${r.destination} via ${r.gateway}`), [`${POD4.n2} via ${eui64LinkLocal(vxlanMac("n2"))}`]);
  assert.deepEqual([...desired.sysctls.keys()].sort(), ["net/ipv4/ip_forward", "net/ipv6/conf/rc-vxlan/addr_gen_mode", "net/ipv6/conf/rc-vxlan/disable_ipv6"]);
});

test("a remote node whose underlay family differs from the local node's gets a warning and no overlay route", () => {
  const s = snapshot("v4");
  for (const f of s.files) if (f.path === "nodes.yaml") f.content = f.content.replace(`address: ${V4.n2}`, `address: ${V6.n2}`);
  const { desired, warnings } = compileSnapshot(s, { node: "n1", enforcement: "default", attachMode: "tcx" });
  assert.equal(overlayRoutes(desired).length, 0);
  assert.equal(desired.neighbours.size, 0);
  const w = warnings.find((p) => p.object === "Node/n2");
  assert.equal(w?.path, "spec.address");
  assert.match(w!.message, /expected an IPv4 underlay address like node n1 \(192\.0\.2\.11\), got 2001:db8::12/);
});

test("plan from nothing (IPv6 underlay): device, routes via the link-local, the NDP+FDB entry, then the rc-vxlan sysctls", () => {
  const want = compileFor("n1", "v6").desired;
  const ll2 = eui64LinkLocal(vxlanMac("n2"));
  const order = diff(want, emptyState()).changes.map((c) => `${c.op} ${c.resource} ${c.id}`);
  const overlay = order.filter((s) => /rc-vxlan|fd00:a:2::|10\.11\.90\.0/.test(s) && !s.includes(" ipcache "));
  assert.deepEqual(overlay, [
    "create device rc-vxlan",
    `create route ${POD4.n2}`,
    `create route ${POD6.n2}`,
    `create neighbour rc-vxlan/${ll2}`,
    "create sysctl net/ipv6/conf/rc-vxlan/disable_ipv6",
    "create sysctl net/ipv6/conf/rc-vxlan/addr_gen_mode",
  ]);
  // Applied and observed as desired: nothing to do. A route that lost its link-local gateway (or
  // an NDP entry that lost its FDB destination) is an update.
  assert.deepEqual(diff(want, want).changes, []);
  const drift = compileFor("n1", "v6").desired;
  drift.routes.set(POD4.n2, { ...drift.routes.get(POD4.n2)!, gateway: V6.n2 });
  drift.neighbours.set(`rc-vxlan/${ll2}`, { device: "rc-vxlan", address: ll2, mac: vxlanMac("n2") });
  assert.deepEqual(diff(want, drift).changes.map((c) => `${c.op} ${c.resource} ${c.id}: ${c.reason}`), [
    `update route ${POD4.n2}: gateway ${V6.n2} → ${ll2}`,
    `update neighbour rc-vxlan/${ll2}: fdbDst undefined → ${V6.n2}`,
  ]);
  // Moving the underlay from IPv4 to IPv6 recreates the device and swaps the next hops.
  const v4 = compileFor("n1", "v4").desired;
  const ops = diff(want, v4).changes.map((c) => `${c.op} ${c.resource} ${c.id}`);
  assert.ok(ops.includes("update device rc-vxlan") && ops.includes(`delete neighbour rc-vxlan/${V4.n2}`), ops.join("\n"));
  assert.ok(ops.includes(`update neighbour rc-vxlan/${ll2}`) && ops.includes(`update route ${POD4.n2}`), ops.join("\n"));
});

test("route request: an IPv4 route via an IPv6 gateway carries RTA_VIA (family, address) and decodes back", () => {
  const req = buildRoute(C.RTM_NEWROUTE, C.NLM_F_CREATE | C.NLM_F_REPLACE, { dst: "10.11.90.0/24", gateway: "fe80::1:2ff:fe03:405", scope: "universe" }, 7);
  const a = parseAttrs(Buffer.concat(req.attrs!));
  assert.equal(a.has(C.RTA_GATEWAY), false);
  const via = a.get(C.RTA_VIA)!;
  assert.equal(C.RTA_VIA, 18);
  assert.equal(via.length, 18);
  assert.equal(via.readUInt16LE(0), C.AF_INET6);
  assert.equal(bytesToIp(via.subarray(2)), "fe80::1:2ff:fe03:405");
  assert.equal(req.header![0], C.AF_INET, "the route itself stays IPv4");
  const back = decodeRoute({ type: C.RTM_NEWROUTE, flags: 0, seq: 0, pid: 0, payload: Buffer.concat([req.header!, ...req.attrs!]) });
  assert.deepEqual([back.family, back.dst, back.gateway, back.oif], [C.AF_INET, "10.11.90.0/24", "fe80::1:2ff:fe03:405", 7]);
  // An IPv6 gateway on an IPv6 route is a plain RTA_GATEWAY.
  const six = parseAttrs(Buffer.concat(buildRoute(C.RTM_NEWROUTE, 0, { dst: "fd00:a:2::/64", gateway: "fe80::1" }, 7).attrs!));
  assert.equal(six.get(C.RTA_GATEWAY)!.length, 16);
  assert.equal(six.has(C.RTA_VIA), false);
});
