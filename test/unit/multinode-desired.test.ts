// The desired state of each node of a two-node model: the vxlan overlay (device, routes to the other
// node's pod CIDRs, ARP + FDB entries), endpoint veths at the overlay MTU, remote endpoints only in
// the ipcache with their tunnel endpoint, and identities that agree across nodes.
import { test } from "node:test";
import assert from "node:assert/strict";
import { neighbourId, vxlanMac, VXLAN_DEVICE } from "../../reconciler/datapath/desired.js";
import { compileSnapshot } from "../../reconciler/plan/snapshot-to-desired.js";
import { multinodeSnapshot, N1, N2, nodeYaml } from "./helpers/multinode-model.js";

const compileFor = (node: string, extra: { underlayMtu?: number; hostAddresses?: string[] } = {}, app3On?: "n1" | "n2") =>
  compileSnapshot(multinodeSnapshot(app3On ? { app3On } : {}), { node, enforcement: "default", attachMode: "tcx", ...extra });

test("n1: rc-vxlan with the node's vni, port, local address, derived MAC and underlay MTU - 50", () => {
  const { desired, warnings } = compileFor("n1", { underlayMtu: 1500 });
  assert.deepEqual(warnings.filter((w) => w.object?.startsWith("Node/")), []);
  assert.deepEqual(desired.devices.get(VXLAN_DEVICE), {
    name: "rc-vxlan",
    kind: "vxlan",
    mac: vxlanMac("n1"),
    mtu: 1450,
    vxlan: { vni: 7, port: 8472, local: N1.address, learning: false },
    owned: true,
    up: true,
  });
  assert.match(vxlanMac("n1"), /^02(:[0-9a-f]{2}){5}$/, "locally administered unicast");
  assert.notEqual(vxlanMac("n1"), vxlanMac("n2"));
  assert.equal(vxlanMac("n1"), vxlanMac("n1"), "a pure function of the name");
  // A smaller underlay (e.g. a 1450-byte cloud network) shrinks the overlay with it.
  assert.equal(compileFor("n1", { underlayMtu: 1450 }).desired.devices.get(VXLAN_DEVICE)!.mtu, 1400);
});

test("n1: every pod CIDR of n2 routes via n2's underlay address on rc-vxlan (onlink), with ARP and FDB entries for n2's MAC", () => {
  const { desired } = compileFor("n1");
  const overlayRoutes = [...desired.routes.values()].filter((r) => r.device === VXLAN_DEVICE);
  assert.deepEqual(overlayRoutes, N2.podCIDRs.map((cidr) => ({ destination: cidr, device: "rc-vxlan", gateway: N2.address, onlink: true, scope: "universe" })));
  assert.ok(!desired.routes.has(N1.podCIDRs[0]), "no overlay route to the node's own pod CIDR");
  assert.deepEqual([...desired.neighbours.values()], [{ device: "rc-vxlan", address: N2.address, mac: vxlanMac("n2"), fdbDst: N2.address }]);
  assert.ok(desired.neighbours.has(neighbourId({ device: "rc-vxlan", address: N2.address })));
  // n2's view is the mirror image: the MAC n1 writes for n2 is the MAC n2 gives its own device.
  const n2 = compileFor("n2").desired;
  assert.equal(n2.devices.get(VXLAN_DEVICE)!.mac, desired.neighbours.get(`rc-vxlan/${N2.address}`)!.mac);
  assert.equal(n2.neighbours.get(`rc-vxlan/${N1.address}`)!.mac, desired.devices.get(VXLAN_DEVICE)!.mac);
  assert.deepEqual([...n2.routes.values()].filter((r) => r.device === VXLAN_DEVICE).map((r) => r.destination), [...N1.podCIDRs]);
  assert.equal(desired.sysctls.get("net/ipv4/ip_forward")?.value, "1");
});

test("n1: only app1 gets devices (both veth ends at the overlay MTU); n2's endpoints are in the ipcache with tunnel endpoint n2", () => {
  const { desired } = compileFor("n1", { underlayMtu: 1500 });
  const endpointDevices = [...desired.devices.values()].filter((d) => d.endpoint !== undefined);
  assert.deepEqual(endpointDevices.map((d) => [d.endpoint, d.name, d.mtu]), [["app1", "lxc-app1", 1450], ["app1", "eth0", 1450]]);
  assert.deepEqual([...desired.endpoints.keys()], ["10.11.255.104"]);
  assert.deepEqual(desired.ipcache.get("10.11.90.17/32"), { prefix: "10.11.90.17/32", identity: 36895, tunnelEndpoint: N2.address });
  assert.equal(desired.ipcache.get("10.11.33.3/32")!.tunnelEndpoint, N2.address);
  assert.equal(desired.ipcache.get("10.11.255.104/32")!.tunnelEndpoint, undefined, "a local endpoint has no tunnel endpoint");
  assert.equal(desired.ipcache.get(`${N1.address}/32`)!.identity, 1, "own node address: host");
  assert.equal(desired.ipcache.get(`${N2.address}/32`)!.identity, 6, "other node address: remote-node");
});

test("the same manifests give the same identities on n1 and n2; host addresses map to identity 1", () => {
  const n1 = compileFor("n1", { hostAddresses: ["198.51.100.7", N1.address] }).desired;
  const n2 = compileFor("n2").desired;
  for (const prefix of ["10.11.255.104/32", "10.11.90.17/32", "10.11.33.3/32"]) {
    assert.equal(n1.ipcache.get(prefix)!.identity, n2.ipcache.get(prefix)!.identity, prefix);
  }
  assert.equal(n1.ipcache.get("10.11.90.17/32")!.identity, 36895);
  assert.equal(n2.endpoints.get("10.11.90.17")!.identity, 36895);
  assert.equal(n1.endpoints.get("10.11.255.104")!.identity, n2.ipcache.get("10.11.255.104/32")!.identity);
  assert.equal(n1.ipcache.get("198.51.100.7/32")!.identity, 1);
  // app1's policy on n1 allows app2's identity, which n2 gives app2's own endpoint entry.
  const allow = n1.policy.get("app1")!.toEntries("app1").find((e) => e.decision === "allow");
  assert.equal(allow!.identity, n2.endpoints.get("10.11.90.17")!.identity);
});

test("moving app3 to n1 moves its devices and changes its tunnel endpoint on n2, not its identity", () => {
  const before = { n1: compileFor("n1").desired, n2: compileFor("n2").desired };
  const after = { n1: compileFor("n1", {}, "n1").desired, n2: compileFor("n2", {}, "n1").desired };
  assert.ok(before.n2.devices.has("lxc-app3") && !after.n2.devices.has("lxc-app3"));
  assert.ok(!before.n1.devices.has("lxc-app3") && after.n1.devices.has("lxc-app3"));
  assert.equal(after.n2.ipcache.get("10.11.255.33/32")!.tunnelEndpoint, N1.address);
  assert.equal(after.n1.ipcache.get("10.11.255.33/32")!.identity, before.n1.ipcache.get("10.11.33.3/32")!.identity);
  assert.equal(after.n2.ipcache.get("10.11.255.33/32")!.identity, after.n1.ipcache.get("10.11.255.33/32")!.identity);
});

test("no tunnel on the local node: no overlay, endpoint veths keep the kernel's MTU", () => {
  const nodes = `${nodeYaml(N1, "")}---\n${nodeYaml(N2)}`;
  const { desired } = compileSnapshot(multinodeSnapshot({ nodes }), { node: "n1", enforcement: "default", attachMode: "tcx" });
  assert.equal(desired.devices.has(VXLAN_DEVICE), false);
  assert.equal(desired.neighbours.size, 0);
  assert.equal(desired.devices.get("lxc-app1")!.mtu, undefined);
});

test("a remote node with another VNI gets no overlay route and a warning naming the field; IPv6 pod CIDRs are routed", () => {
  const odd = { ...N2, podCIDRs: [...N2.podCIDRs, "fd00:11::/112"] };
  const vni = `${nodeYaml(N1)}---\n${nodeYaml(N2, "  tunnel:\n    type: vxlan\n    vni: 9\n")}`;
  const a = compileSnapshot(multinodeSnapshot({ nodes: vni }), { node: "n1", enforcement: "default", attachMode: "tcx" });
  assert.equal(a.desired.neighbours.size, 0);
  assert.equal([...a.desired.routes.values()].filter((r) => r.device === VXLAN_DEVICE).length, 0);
  const w = a.warnings.find((p) => p.object === "Node/n2");
  assert.equal(w?.path, "spec.tunnel");
  assert.match(w!.message, /expected vxlan vni 7 port 8472 like node n1, got vni 9 port 8472/);

  // IPv6 pod CIDRs are routed too (test/unit/overlay-ipv6.test.ts), without a warning.
  const v6 = compileSnapshot(multinodeSnapshot({ nodes: `${nodeYaml(N1)}---\n${nodeYaml(odd)}` }), { node: "n1", enforcement: "default", attachMode: "tcx" });
  assert.deepEqual([...v6.desired.routes.values()].filter((r) => r.device === VXLAN_DEVICE).map((r) => r.destination), [...odd.podCIDRs]);
  assert.equal(v6.warnings.find((p) => p.path === "spec.podCIDRs"), undefined);
});
