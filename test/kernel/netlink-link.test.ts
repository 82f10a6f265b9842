import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { gunzipSync } from "node:zlib";
import {
  linkCreate, linkDelete, linkGet, linkList, linkSetAlias, linkSetDown, linkSetMac, linkSetMtu, linkSetNetns, linkSetUp,
  NetlinkError, openRoute, type NetlinkSocket,
} from "../../reconciler/netlink/index.js";
import { ipJson, makeNetns } from "./helpers/netlink.js";

interface IpLink {
  ifindex: number; ifname: string; link?: string; mtu: number; address: string; ifalias?: string; link_netnsid?: number; link_index?: number;
  flags: string[];
  linkinfo?: { info_kind: string; info_data?: Record<string, unknown> };
}

function open(t: { after: (fn: () => void) => void }, ns: string): NetlinkSocket {
  const s = openRoute(ns);
  t.after(() => s.close());
  return s;
}

test("veth with its peer created directly in another namespace", (t) => {
  const ns = makeNetns(t, "lk");
  const peerNs = makeNetns(t, "lk");
  const s = open(t, ns);
  linkCreate(s, { kind: "veth", name: "lxc1", mtu: 1450, alias: "reconcile:ep1", peer: { name: "eth0", netns: peerNs, mac: "02:00:00:00:00:0a" } });
  const host = linkGet(s, "lxc1");
  assert.ok(host);
  assert.equal(host.kind, "veth");
  assert.equal(host.mtu, 1450);
  assert.equal(host.alias, "reconcile:ep1");
  assert.equal(host.linkNetnsId !== undefined, true, "peer lives in another namespace");
  const [ip] = ipJson<IpLink[]>(ns, ["-d", "link", "show", "lxc1"]);
  assert.equal(ip!.linkinfo?.info_kind, "veth");
  assert.equal(ip!.address, host.mac);
  assert.equal(ip!.ifalias, "reconcile:ep1");
  assert.equal(ip!.link_netnsid, host.linkNetnsId);
  const [peer] = ipJson<IpLink[]>(peerNs, ["link", "show", "eth0"]);
  assert.equal(peer!.address, "02:00:00:00:00:0a");
  assert.equal(host.peerIndex, peer!.ifindex, "peerIndex is the peer's ifindex in its namespace");
  assert.equal(linkGet(s, "eth0"), undefined, "the peer is not in the host-side namespace");
});

test("set up/down, mtu, mac, alias; EEXIST names the operation; delete is idempotent", (t) => {
  const ns = makeNetns(t, "lk");
  const s = open(t, ns);
  linkCreate(s, { kind: "veth", name: "va", peer: { name: "vb" } });
  linkSetMtu(s, "va", 1280);
  linkSetMac(s, "va", "02:11:22:33:44:55");
  linkSetAlias(s, "va", "reconcile:x");
  linkSetUp(s, "va");
  linkSetUp(s, "vb");
  let [ip] = ipJson<IpLink[]>(ns, ["link", "show", "va"]);
  assert.equal(ip!.mtu, 1280);
  assert.equal(ip!.address, "02:11:22:33:44:55");
  assert.equal(ip!.ifalias, "reconcile:x");
  assert.ok(ip!.flags.includes("UP"));
  const l = linkGet(s, ip!.ifindex)!;
  assert.deepEqual([l.name, l.up, l.mtu, l.mac, l.alias], ["va", true, 1280, "02:11:22:33:44:55", "reconcile:x"]);
  linkSetDown(s, "va");
  linkSetAlias(s, "va", "");
  [ip] = ipJson<IpLink[]>(ns, ["link", "show", "va"]);
  assert.ok(!ip!.flags.includes("UP"));
  assert.equal(linkGet(s, "va")!.alias, undefined, "empty alias clears it");
  assert.throws(() => linkCreate(s, { kind: "veth", name: "va", peer: { name: "vc" } }), (e: unknown) =>
    e instanceof NetlinkError && e.code === "EEXIST" && /^create veth link va: netlink\(RTM_NEWLINK\): EEXIST/.test(e.message));
  assert.equal(linkDelete(s, "va"), true);
  assert.equal(linkDelete(s, "va"), false);
  assert.equal(linkGet(s, "vb"), undefined, "deleting one end removes the pair");
});

test("move a device to another namespace", (t) => {
  const ns = makeNetns(t, "lk");
  const other = makeNetns(t, "lk");
  const s = open(t, ns);
  const o = open(t, other);
  linkCreate(s, { kind: "veth", name: "mv1", peer: { name: "mv2" } });
  linkSetNetns(s, "mv2", other);
  assert.equal(linkGet(s, "mv2"), undefined);
  assert.equal(linkGet(o, "mv2")?.kind, "veth");
  assert.deepEqual(ipJson<IpLink[]>(other, ["link", "show", "mv2"]).map((l) => l.ifname), ["mv2"]);
});

test("macvlan in bridge mode on a parent device in the namespace", (t) => {
  const ns = makeNetns(t, "lk");
  const s = open(t, ns);
  // This kernel has no CONFIG_DUMMY; a veth end is the ethernet parent instead.
  linkCreate(s, { kind: "veth", name: "par0", peer: { name: "par1" } });
  linkCreate(s, { kind: "macvlan", name: "mac0", parent: "par0", mode: "bridge", mtu: 1400 });
  const m = linkGet(s, "mac0")!;
  const parent = linkGet(s, "par0")!;
  assert.deepEqual([m.kind, m.macvlanMode, m.linkIndex, m.mtu], ["macvlan", "bridge", parent.index, 1400]);
  const [ip] = ipJson<IpLink[]>(ns, ["-d", "link", "show", "mac0"]);
  assert.equal(ip!.linkinfo?.info_kind, "macvlan");
  assert.equal(ip!.linkinfo?.info_data?.mode, "bridge");
  assert.equal(ip!.link, "par0", "ip names the parent");
});

test("vxlan with vni, port, local address, underlay device and learning off", (t) => {
  const ns = makeNetns(t, "lk");
  const s = open(t, ns);
  linkCreate(s, { kind: "veth", name: "und0", peer: { name: "und1" } });
  linkCreate(s, { kind: "vxlan", name: "vx0", vni: 4242, port: 8472, local: "192.0.2.10", dev: "und0" });
  const v = linkGet(s, "vx0")!;
  assert.equal(v.kind, "vxlan");
  assert.deepEqual(v.vxlan, { vni: 4242, port: 8472, local: "192.0.2.10", linkIndex: linkGet(s, "und0")!.index, learning: false });
  const [ip] = ipJson<IpLink[]>(ns, ["-d", "link", "show", "vx0"]);
  const d = ip!.linkinfo!.info_data!;
  assert.deepEqual([d.id, d.port, d.local, d.learning], [4242, 8472, "192.0.2.10", false]);
  assert.throws(() => linkCreate(s, { kind: "vxlan", name: "vx1", vni: 4242, port: 8472 }), (e: unknown) =>
    e instanceof NetlinkError && e.code === "EEXIST" && e.extAck !== undefined && /VNI/.test(e.extAck));
});

function kernelHasDummy(): boolean {
  try {
    return /^CONFIG_DUMMY=[ym]$/m.test(gunzipSync(readFileSync("/proc/config.gz")).toString());
  } catch {
    return true; // no config to read: expect the feature
  }
}

test("dummy devices (or a clear EOPNOTSUPP on kernels built without CONFIG_DUMMY)", (t) => {
  const ns = makeNetns(t, "lk");
  const s = open(t, ns);
  if (kernelHasDummy()) {
    linkCreate(s, { kind: "dummy", name: "dm0", mtu: 9000 });
    assert.deepEqual([linkGet(s, "dm0")?.kind, linkGet(s, "dm0")?.mtu], ["dummy", 9000]);
  } else {
    assert.throws(() => linkCreate(s, { kind: "dummy", name: "dm0" }), (e: unknown) =>
      e instanceof NetlinkError && e.code === "EOPNOTSUPP" && /create dummy link dm0/.test(e.message));
    assert.equal(linkList(s).some((l) => l.name === "dm0"), false);
  }
});
