// FDB entries of a vxlan device (the overlay's "MAC → remote node" table) written and read over
// netlink, cross-checked with `bridge -j fdb show`, in a private namespace.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  fdbDelete, fdbList, fdbReplace, linkCreate, linkSetUp, neighList, neighReplace, openRoute, constants as C,
} from "../../reconciler/netlink/index.js";
import { makeNetns, run } from "./helpers/netlink.js";

interface BridgeFdb { mac: string; dst?: string; flags: string[]; state?: string; ifname?: string }

function bridgeFdb(ns: string, dev: string): BridgeFdb[] {
  const out = run("bridge", ["-n", ns, "-j", "fdb", "show", "dev", dev]).trim();
  return out === "" ? [] : (JSON.parse(out) as BridgeFdb[]);
}

test("fdb: replace (idempotent, overwrites dst), list per device, delete; bridge fdb agrees", (t) => {
  const ns = makeNetns(t, "fdb");
  const s = openRoute(ns);
  t.after(() => s.close());
  linkCreate(s, { kind: "vxlan", name: "fdbvx0", vni: 7, port: 8472, local: "192.0.2.11", learning: false });
  linkCreate(s, { kind: "vxlan", name: "fdbvx1", vni: 8, port: 8473, local: "192.0.2.11", learning: false });
  linkSetUp(s, "fdbvx0");
  assert.deepEqual(fdbList(s, "fdbvx0"), [], "a new vxlan device without a remote has no FDB entries");

  fdbReplace(s, { dev: "fdbvx0", mac: "02:aa:bb:cc:dd:01", dst: "192.0.2.12" });
  fdbReplace(s, { dev: "fdbvx0", mac: "02:aa:bb:cc:dd:01", dst: "192.0.2.12" });
  fdbReplace(s, { dev: "fdbvx0", mac: "02:aa:bb:cc:dd:02", dst: "192.0.2.13" });
  fdbReplace(s, { dev: "fdbvx1", mac: "02:aa:bb:cc:dd:03", dst: "192.0.2.14" });
  const ours = fdbList(s, "fdbvx0").map((e) => ({ mac: e.mac, dst: e.dst, permanent: (e.state & C.NUD_PERMANENT) !== 0, self: (e.flags & C.NTF_SELF) !== 0 }));
  assert.deepEqual(ours.sort((a, b) => a.mac.localeCompare(b.mac)), [
    { mac: "02:aa:bb:cc:dd:01", dst: "192.0.2.12", permanent: true, self: true },
    { mac: "02:aa:bb:cc:dd:02", dst: "192.0.2.13", permanent: true, self: true },
  ], "one entry per MAC (replace did not add a second remote); the other device's entry is not listed");
  const bridge = bridgeFdb(ns, "fdbvx0").map((e) => ({ mac: e.mac, dst: e.dst, state: e.state, self: e.flags.includes("self") }));
  assert.deepEqual(bridge.sort((a, b) => a.mac.localeCompare(b.mac)), [
    { mac: "02:aa:bb:cc:dd:01", dst: "192.0.2.12", state: "permanent", self: true },
    { mac: "02:aa:bb:cc:dd:02", dst: "192.0.2.13", state: "permanent", self: true },
  ]);

  // Replace moves a MAC to another remote instead of adding one.
  fdbReplace(s, { dev: "fdbvx0", mac: "02:aa:bb:cc:dd:01", dst: "192.0.2.99" });
  assert.deepEqual(bridgeFdb(ns, "fdbvx0").filter((e) => e.mac === "02:aa:bb:cc:dd:01").map((e) => e.dst), ["192.0.2.99"]);

  assert.equal(fdbDelete(s, { dev: "fdbvx0", mac: "02:aa:bb:cc:dd:01" }), true);
  assert.equal(fdbDelete(s, { dev: "fdbvx0", mac: "02:aa:bb:cc:dd:01" }), false, "a missing entry is reported, not thrown");
  assert.deepEqual(bridgeFdb(ns, "fdbvx0").map((e) => e.mac), ["02:aa:bb:cc:dd:02"]);
  assert.deepEqual(fdbList(s, "fdbvx1").map((e) => e.dst), ["192.0.2.14"]);
});

test("fdb + permanent ARP entry on a vxlan device: the pair the overlay writes per remote node", (t) => {
  const ns = makeNetns(t, "fdbn");
  const s = openRoute(ns);
  t.after(() => s.close());
  linkCreate(s, { kind: "vxlan", name: "fdbvx0", vni: 2, port: 8472, local: "192.0.2.11", learning: false, mtu: 1450, mac: "02:00:00:00:00:11" });
  linkSetUp(s, "fdbvx0");
  fdbReplace(s, { dev: "fdbvx0", mac: "02:00:00:00:00:12", dst: "192.0.2.12" });
  neighReplace(s, { dev: "fdbvx0", address: "192.0.2.12", mac: "02:00:00:00:00:12", state: C.NUD_PERMANENT });
  const arp = neighList(s, { dev: "fdbvx0", family: C.AF_INET });
  assert.deepEqual(arp.map((n) => [n.address, n.mac, n.states]), [["192.0.2.12", "02:00:00:00:00:12", ["permanent"]]]);
  const ip = JSON.parse(run("ip", ["-n", ns, "-j", "neigh", "show", "dev", "fdbvx0", "nud", "permanent"])) as Array<{ dst: string; lladdr: string }>;
  assert.deepEqual(ip.map((n) => [n.dst, n.lladdr]), [["192.0.2.12", "02:00:00:00:00:12"]]);
  // The route an overlay installs through it is accepted by the kernel (gateway on-link). The kernel
  // checks the gateway's address type in the local table, which exists once any address does.
  linkSetUp(s, "lo");
  run("ip", ["-n", ns, "route", "add", "10.11.90.0/24", "via", "192.0.2.12", "dev", "fdbvx0", "onlink"]);
  const r = JSON.parse(run("ip", ["-n", ns, "-j", "route", "get", "10.11.90.17"])) as Array<{ gateway: string; dev: string }>;
  assert.deepEqual([r[0]!.gateway, r[0]!.dev], ["192.0.2.12", "fdbvx0"]);
});
