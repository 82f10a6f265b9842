// Request builders and reply decoders of the netlink package, checked byte by byte without a kernel.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as C from "../../reconciler/netlink/constants.js";
import { buildCreateLink, decodeLink } from "../../reconciler/netlink/link.js";
import { buildRoute, decodeRoute } from "../../reconciler/netlink/route.js";
import { buildAddr } from "../../reconciler/netlink/addr.js";
import { buildNeigh } from "../../reconciler/netlink/neigh.js";
import { buildBpfFilter, decodeFilter, hookParent } from "../../reconciler/netlink/tc.js";
import { sysctlPath, confKey, SysctlKeyError } from "../../reconciler/netlink/sysctl.js";
import { netnsPath, NetnsError } from "../../reconciler/netlink/netns.js";
import { decodeEvent } from "../../reconciler/netlink/events.js";
import {
  attr, attrNested, attrString, attrU32, attrU8, decodeIfInfoMsg, decodeRtMsg, decodeTcMsg, encodeIfInfoMsg,
  encodeRtMsg, encodeTcMsg, parseAttrs, read, type NlMsg,
} from "../../reconciler/netlink/message.js";

const attrsOf = (b: Buffer[]) => parseAttrs(Buffer.concat(b));

test("veth create request nests the peer's ifinfomsg and attributes in VETH_INFO_PEER", () => {
  const req = buildCreateLink(
    { kind: "veth", name: "lxc1", mtu: 1450, alias: "reconcile:ep1", peer: { name: "eth0", netns: "ns1", mac: "02:00:00:00:00:01" } },
    { peer: 33 },
  );
  assert.equal(req.type, C.RTM_NEWLINK);
  assert.equal(req.flags, C.NLM_F_CREATE | C.NLM_F_EXCL);
  const a = attrsOf(req.attrs!);
  assert.equal(read.str(a.get(C.IFLA_IFNAME)), "lxc1");
  assert.equal(read.u32(a.get(C.IFLA_MTU)), 1450);
  assert.equal(a.get(C.IFLA_IFALIAS), undefined, "the kernel ignores an alias at creation; linkCreate sets it after");
  assert.equal(a.get(C.IFLA_NET_NS_FD), undefined, "the host side stays in the current namespace");
  const li = parseAttrs(a.get(C.IFLA_LINKINFO)!);
  assert.equal(read.str(li.get(C.IFLA_INFO_KIND)), "veth");
  const peer = parseAttrs(li.get(C.IFLA_INFO_DATA)!).get(C.VETH_INFO_PEER)!;
  assert.deepEqual(decodeIfInfoMsg(peer), { family: 0, type: 0, index: 0, flags: 0, change: 0 });
  const pa = parseAttrs(peer, 16);
  assert.equal(read.str(pa.get(C.IFLA_IFNAME)), "eth0");
  assert.equal(read.s32(pa.get(C.IFLA_NET_NS_FD)), 33);
  assert.deepEqual([...pa.get(C.IFLA_ADDRESS)!], [2, 0, 0, 0, 0, 1]);
});

test("macvlan and vxlan requests carry parent, mode, vni, port (big-endian), local and learning off", () => {
  const mv = attrsOf(buildCreateLink({ kind: "macvlan", name: "mv0", parent: "eth0" }, {}, { parent: 7 }).attrs!);
  assert.equal(read.u32(mv.get(C.IFLA_LINK)), 7);
  const mvData = parseAttrs(parseAttrs(mv.get(C.IFLA_LINKINFO)!).get(C.IFLA_INFO_DATA)!);
  assert.equal(read.u32(mvData.get(C.IFLA_MACVLAN_MODE)), C.MACVLAN_MODE_BRIDGE);

  const vx = attrsOf(buildCreateLink({ kind: "vxlan", name: "vx0", vni: 0x123456, local: "192.0.2.1", port: 8472 }, {}, { dev: 4 }).attrs!);
  const d = parseAttrs(parseAttrs(vx.get(C.IFLA_LINKINFO)!).get(C.IFLA_INFO_DATA)!);
  assert.equal(read.u32(d.get(C.IFLA_VXLAN_ID)), 0x123456);
  assert.deepEqual([...d.get(C.IFLA_VXLAN_PORT)!], [0x21, 0x18]);
  assert.deepEqual([...d.get(C.IFLA_VXLAN_LOCAL)!], [192, 0, 2, 1]);
  assert.equal(read.u32(d.get(C.IFLA_VXLAN_LINK)), 4);
  assert.equal(read.u8(d.get(C.IFLA_VXLAN_LEARNING)), 0);
  assert.throws(() => buildCreateLink({ kind: "vxlan", name: "vx1", vni: 1 << 24 }), /vni: expected 0\.\.16777215, got 16777216/);
  assert.throws(() => buildCreateLink({ kind: "macvlan", name: "m", parent: "x" }), /parent index not resolved/);
});

test("decodeLink reads kind, peer, netnsid, alias and macvlan mode from a kernel-shaped message", () => {
  const payload = Buffer.concat([
    encodeIfInfoMsg({ index: 9, flags: C.IFF_UP | C.IFF_BROADCAST }),
    attrString(C.IFLA_IFNAME, "lxc1"), attrU32(C.IFLA_MTU, 1500), attr(C.IFLA_ADDRESS, Buffer.from([0xaa, 0, 0, 0, 0, 1])),
    attrString(C.IFLA_IFALIAS, "reconcile:ep"), attrU32(C.IFLA_LINK, 2), attrU32(C.IFLA_LINK_NETNSID, 1),
    attrU8(C.IFLA_OPERSTATE, 6), attrNested(C.IFLA_LINKINFO, [attrString(C.IFLA_INFO_KIND, "veth")]),
  ]);
  const l = decodeLink({ type: C.RTM_NEWLINK, flags: 0, seq: 0, pid: 0, payload });
  assert.deepEqual(l, {
    index: 9, name: "lxc1", mtu: 1500, flags: 3, up: true, operState: "up", mac: "aa:00:00:00:00:01",
    alias: "reconcile:ep", linkIndex: 2, linkNetnsId: 1, kind: "veth", peerIndex: 2,
  });
});

test("route requests: scope link without gateway, universe with one, onlink flag, table > 255 in RTA_TABLE", () => {
  const host = buildRoute(C.RTM_NEWROUTE, 0, { dst: "10.0.0.5" }, 3);
  const h1 = decodeRtMsg(host.header);
  assert.deepEqual({ dstLen: h1.dstLen, scope: h1.scope, table: h1.table, type: h1.type, protocol: h1.protocol },
    { dstLen: 32, scope: C.RT_SCOPE_LINK, table: 254, type: C.RTN_UNICAST, protocol: C.RTPROT_BOOT });
  assert.equal(read.u32(attrsOf(host.attrs!).get(C.RTA_OIF)), 3);

  const def = buildRoute(C.RTM_NEWROUTE, 0, { dst: "default", gateway: "169.254.1.1", onlink: true, table: 1000 }, 3);
  const h2 = decodeRtMsg(def.header);
  assert.equal(h2.scope, C.RT_SCOPE_UNIVERSE);
  assert.equal(h2.flags, C.RTNH_F_ONLINK);
  assert.equal(h2.table, 0);
  const a2 = attrsOf(def.attrs!);
  assert.equal(read.u32(a2.get(C.RTA_TABLE)), 1000);
  assert.equal(a2.get(C.RTA_DST), undefined);
  assert.deepEqual([...a2.get(C.RTA_GATEWAY)!], [169, 254, 1, 1]);

  const del = decodeRtMsg(buildRoute(C.RTM_DELROUTE, 0, { dst: "fd00::/64" }).header);
  assert.equal(del.scope, 255, "delete matches any scope");
  assert.equal(del.family, C.AF_INET6);
  // An IPv4 route may have an IPv6 gateway (RTA_VIA, test/unit/overlay-ipv6.test.ts); not the reverse.
  assert.throws(() => buildRoute(C.RTM_NEWROUTE, 0, { dst: "fd00::/64", gateway: "10.0.0.1" }), /expected an IPv6 route's gateway to be IPv6, got IPv4/);
});

test("decodeRoute reports default routes as 0.0.0.0/0 and takes the table from RTA_TABLE", () => {
  const payload = Buffer.concat([
    encodeRtMsg({ family: C.AF_INET, dstLen: 0, srcLen: 0, tos: 0, table: 0, protocol: 4, scope: 0, type: 1, flags: C.RTNH_F_ONLINK }),
    attrU32(C.RTA_TABLE, 1000), attr(C.RTA_GATEWAY, Buffer.from([10, 0, 0, 1])), attrU32(C.RTA_OIF, 2),
  ]);
  assert.deepEqual(decodeRoute({ type: C.RTM_NEWROUTE, flags: 0, seq: 0, pid: 0, payload }), {
    family: C.AF_INET, dst: "0.0.0.0/0", table: 1000, protocol: 4, scope: 0, type: 1, onlink: true, gateway: "10.0.0.1", oif: 2,
  });
});

test("address and neighbour requests", () => {
  const a = buildAddr(C.RTM_NEWADDR, 0, 4, "fd00::1/64", { noDad: true });
  assert.deepEqual([...a.header], [C.AF_INET6, 64, C.IFA_F_NODAD, 0, 4, 0, 0, 0]);
  assert.equal(read.u32(attrsOf(a.attrs!).get(C.IFA_FLAGS)), C.IFA_F_NODAD);
  const n = buildNeigh(C.RTM_NEWNEIGH, 0, 4, "10.0.0.9", "02:00:00:00:00:09");
  assert.equal(n.header.readUInt16LE(8), C.NUD_PERMANENT);
  assert.deepEqual([...attrsOf(n.attrs!).get(C.NDA_LLADDR)!], [2, 0, 0, 0, 0, 9]);
});

test("cls_bpf request: clsact hook parent, prio/protocol in tcm_info, fd, name, direct-action", () => {
  const req = buildBpfFilter({ dev: "x", direction: "egress", fd: 12, name: "reconcile:lxc1", prio: 3, handle: 1 }, 5, C.NLM_F_CREATE);
  const t = decodeTcMsg(req.header);
  assert.equal(t.parent, 0xfffffff3);
  assert.equal(hookParent("ingress"), 0xfffffff2);
  assert.equal(t.info, (3 << 16) | 0x0300, "ETH_P_ALL in network byte order");
  assert.equal(t.handle, 1);
  const a = attrsOf(req.attrs!);
  assert.equal(read.str(a.get(C.TCA_KIND)), "bpf");
  const o = parseAttrs(a.get(C.TCA_OPTIONS)!);
  assert.equal(read.u32(o.get(C.TCA_BPF_FD)), 12);
  assert.equal(read.str(o.get(C.TCA_BPF_NAME)), "reconcile:lxc1");
  assert.equal(read.u32(o.get(C.TCA_BPF_FLAGS)), C.TCA_BPF_FLAG_ACT_DIRECT);
  assert.throws(() => buildBpfFilter({ dev: "x", direction: "egress", fd: 1, name: "n", prio: 0, handle: 1 }, 5, 0), /prio: expected 1\.\.65535/);
});

test("decodeFilter extracts the bpf program id, name, tag and direct-action", () => {
  const payload = Buffer.concat([
    encodeTcMsg({ family: 0, index: 2, handle: 1, parent: 0xfffffff2, info: (7 << 16) | 0x0300 }),
    attrString(C.TCA_KIND, "bpf"),
    attrNested(C.TCA_OPTIONS, [attrString(C.TCA_BPF_NAME, "p"), attrU32(C.TCA_BPF_FLAGS, 1), attrU32(C.TCA_BPF_ID, 44),
      attr(C.TCA_BPF_TAG, Buffer.from("0102030405060708", "hex"))]),
  ]);
  const m: NlMsg = { type: C.RTM_NEWTFILTER, flags: 0, seq: 0, pid: 0, payload };
  assert.deepEqual(decodeFilter(m, "ingress"), {
    index: 2, direction: "ingress", kind: "bpf", prio: 7, protocol: 3, handle: 1, chain: 0,
    bpf: { directAction: true, id: 44, name: "p", tag: "0102030405060708" },
  });
});

test("events decode by message type and ignore others", () => {
  const payload = Buffer.concat([encodeIfInfoMsg({ index: 4 }), attrString(C.IFLA_IFNAME, "e0")]);
  const ev = decodeEvent({ type: C.RTM_DELLINK, flags: 0, seq: 0, pid: 0, payload });
  assert.equal(ev?.type, "link");
  assert.equal(ev?.type === "link" && ev.action === "del" && ev.link.name, "e0");
  assert.equal(decodeEvent({ type: C.RTM_NEWNEIGH, flags: 0, seq: 0, pid: 0, payload }), undefined);
});

test("sysctl and netns paths refuse traversal", () => {
  assert.equal(sysctlPath(confKey(4, "lxc1", "proxy_arp")), "/proc/sys/net/ipv4/conf/lxc1/proxy_arp");
  assert.throws(() => sysctlPath("net/../../etc/passwd"), SysctlKeyError);
  assert.throws(() => sysctlPath("kernel/hostname"), SysctlKeyError);
  assert.equal(netnsPath("ep1"), "/run/netns/ep1");
  assert.throws(() => netnsPath("../x"), NetnsError);
  assert.throws(() => netnsPath(""), NetnsError);
});
