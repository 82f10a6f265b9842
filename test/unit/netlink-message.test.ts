import { test } from "node:test";
import assert from "node:assert/strict";
import {
  align4, attr, attrNested, attrString, attrU16BE, attrU32, bytesToIp, bytesToMac, decodeIfInfoMsg, decodeTcMsg,
  encodeIfInfoMsg, encodeMessage, ipToBytes, macToBytes, parseAttrList, parseAttrs, parseError, parseMessages,
  parsePrefix, read, MessageFormatError, AddressParseError,
} from "../../reconciler/netlink/message.js";
import * as C from "../../reconciler/netlink/constants.js";
import { NetlinkError } from "../../reconciler/netlink/socket.js";

test("attr pads to 4 bytes but records the unpadded length", () => {
  const a = attrString(C.IFLA_IFNAME, "lxc1"); // 4 hdr + 5 payload = 9 -> 12
  assert.equal(a.length, 12);
  assert.equal(a.readUInt16LE(0), 9);
  assert.equal(a.readUInt16LE(2), C.IFLA_IFNAME);
  assert.deepEqual([...a.subarray(4)], [0x6c, 0x78, 0x63, 0x31, 0, 0, 0, 0]);
  assert.equal(align4(0), 0);
  assert.equal(align4(5), 8);
  assert.equal(align4(8), 8);
});

test("nested attributes round-trip and flag bits are masked on parse", () => {
  const inner = [attrU32(C.IFLA_MACVLAN_MODE, C.MACVLAN_MODE_BRIDGE), attrU16BE(C.IFLA_VXLAN_PORT, 4789)];
  const outer = attrNested(C.IFLA_LINKINFO, [attrString(C.IFLA_INFO_KIND, "macvlan"), attrNested(C.IFLA_INFO_DATA, inner)]);
  // Set NLA_F_NESTED on the outer type like some senders do; the parser must ignore it.
  outer.writeUInt16LE(C.IFLA_LINKINFO | C.NLA_F_NESTED, 2);
  const top = parseAttrs(outer);
  const li = parseAttrs(top.get(C.IFLA_LINKINFO)!);
  assert.equal(read.str(li.get(C.IFLA_INFO_KIND)), "macvlan");
  const data = parseAttrs(li.get(C.IFLA_INFO_DATA)!);
  assert.equal(read.u32(data.get(C.IFLA_MACVLAN_MODE)), 4);
  // __be16: 4789 = 0x12b5 on the wire as 12 b5.
  assert.deepEqual([...data.get(C.IFLA_VXLAN_PORT)!], [0x12, 0xb5]);
  assert.equal(read.u16be(data.get(C.IFLA_VXLAN_PORT)), 4789);
});

test("parseAttrList keeps repeated types in order; parseAttrs keeps the first", () => {
  const buf = Buffer.concat([attrU32(1, 10), attrU32(2, 20), attrU32(1, 30)]);
  assert.deepEqual(parseAttrList(buf).map((a) => [a.type, a.data.readUInt32LE(0)]), [[1, 10], [2, 20], [1, 30]]);
  assert.equal(read.u32(parseAttrs(buf).get(1)), 10);
});

test("a truncated attribute is a MessageFormatError, not garbage", () => {
  const a = attrU32(1, 7);
  a.writeUInt16LE(40, 0); // claims 40 bytes, has 8
  assert.throws(() => parseAttrs(a), MessageFormatError);
});

test("encodeMessage writes nlmsghdr and parseMessages splits a multi-message datagram", () => {
  const m1 = encodeMessage(C.RTM_NEWLINK, C.NLM_F_REQUEST | C.NLM_F_ACK, 7, 99, encodeIfInfoMsg({ index: 3 }), [attrString(C.IFLA_IFNAME, "x")]);
  assert.equal(m1.readUInt32LE(0), 16 + 16 + 8); // attributes count with their padding, as iproute2 does
  assert.equal(m1.length, 16 + 16 + 8);
  const m2 = encodeMessage(C.NLMSG_DONE, C.NLM_F_MULTI, 7, 99, Buffer.alloc(4));
  const msgs = parseMessages(Buffer.concat([m1, m2]));
  assert.equal(msgs.length, 2);
  assert.deepEqual({ ...msgs[0]!, payload: undefined }, { type: C.RTM_NEWLINK, flags: 5, seq: 7, pid: 99, payload: undefined });
  assert.equal(decodeIfInfoMsg(msgs[0]!.payload).index, 3);
  assert.equal(read.str(parseAttrs(msgs[0]!.payload, 16).get(C.IFLA_IFNAME)), "x");
  assert.equal(msgs[1]!.type, C.NLMSG_DONE);
});

/** An NLMSG_ERROR as the kernel sends it with NETLINK_CAP_ACK and NETLINK_EXT_ACK. */
function errorMsg(errno: number, seq: number, text?: string, offs?: number): Buffer {
  const orig = Buffer.alloc(16);
  orig.writeUInt32LE(64, 0); // original length (payload not echoed: capped)
  orig.writeUInt16LE(C.RTM_NEWLINK, 4);
  orig.writeUInt32LE(seq, 8);
  const err = Buffer.alloc(4);
  err.writeInt32LE(-errno, 0);
  const tlvs: Buffer[] = [];
  if (text) tlvs.push(attrString(C.NLMSGERR_ATTR_MSG, text));
  if (offs !== undefined) tlvs.push(attrU32(C.NLMSGERR_ATTR_OFFS, offs));
  const flags = C.NLM_F_CAPPED | (tlvs.length ? C.NLM_F_ACK_TLVS : 0);
  return encodeMessage(C.NLMSG_ERROR, flags, seq, 1, Buffer.concat([err, orig]), tlvs);
}

test("parseError reads errno, the echoed seq and the extended ack", () => {
  const [m] = parseMessages(errorMsg(17, 42, "A VXLAN device with the specified VNI already exists", 36));
  assert.deepEqual(parseError(m!), { errno: 17, seq: 42, message: "A VXLAN device with the specified VNI already exists", offset: 36 });
  const [ack] = parseMessages(errorMsg(0, 43));
  assert.deepEqual(parseError(ack!), { errno: 0, seq: 43 });
});

test("NetlinkError names the operation, message type, errno and kernel text", () => {
  const e = new NetlinkError("create link lxc1", C.RTM_NEWLINK, 17, "Device already exists");
  assert.equal(e.message, "create link lxc1: netlink(RTM_NEWLINK): EEXIST: Device already exists");
  assert.equal(e.code, "EEXIST");
  const noText = new NetlinkError("delete route 10.0.0.0/8", C.RTM_DELROUTE, 3);
  assert.match(noText.message, /^delete route 10\.0\.0\.0\/8: netlink\(RTM_DELROUTE\): ESRCH: \S/);
  assert.equal(new NetlinkError("x", C.RTM_NEWLINK, 95).code, "EOPNOTSUPP");
});

test("IP addresses: bytes round-trip and IPv6 prints in RFC 5952 form", () => {
  assert.deepEqual([...ipToBytes("10.1.2.3")], [10, 1, 2, 3]);
  assert.equal(bytesToIp(ipToBytes("fd00:0:0:0:0:0:0:1")), "fd00::1");
  assert.equal(bytesToIp(ipToBytes("2001:db8:0:0:1:0:0:1")), "2001:db8::1:0:0:1"); // first longest run
  assert.equal(bytesToIp(ipToBytes("::")), "::");
  assert.equal(bytesToIp(ipToBytes("fe80::1:2")), "fe80::1:2");
  assert.equal(bytesToIp(ipToBytes("1:2:3:4:5:6:7:8")), "1:2:3:4:5:6:7:8");
  assert.equal(bytesToIp(ipToBytes("1:0:3:4:5:6:7:8")), "1:0:3:4:5:6:7:8"); // a single zero group stays
  assert.equal(bytesToIp(ipToBytes("::ffff:10.0.0.1")), "::ffff:10.0.0.1");
  assert.throws(() => ipToBytes("10.0.0.256"), AddressParseError);
});

test("parsePrefix canonicalises and rejects bad lengths", () => {
  assert.deepEqual(parsePrefix("10.0.0.0/8"), { address: "10.0.0.0", family: C.AF_INET, prefixLen: 8 });
  assert.deepEqual(parsePrefix("FD00:0::5"), { address: "fd00::5", family: C.AF_INET6, prefixLen: 128 });
  assert.throws(() => parsePrefix("10.0.0.0/33"), /expected 0\.\.32, got "33"/);
  assert.throws(() => parsePrefix("10.0.0.0/x"), AddressParseError);
});

test("MAC addresses round-trip and reject malformed text", () => {
  assert.equal(bytesToMac(macToBytes("02:AB:0:1:2:ff")), "02:ab:00:01:02:ff");
  assert.throws(() => macToBytes("02:ab:00:01:02"), /expected aa:bb:cc:dd:ee:ff/);
});

test("tcmsg decode matches the kernel layout", () => {
  const b = Buffer.alloc(20);
  b.writeInt32LE(5, 4);
  b.writeUInt32LE(0xffff0000, 8);
  b.writeUInt32LE(0xfffffff1, 12);
  b.writeUInt32LE((10 << 16) | 0x0300, 16);
  assert.deepEqual(decodeTcMsg(b), { family: 0, index: 5, handle: 0xffff0000, parent: 0xfffffff1, info: 0x000a0300 });
  assert.equal(attr(1, Buffer.alloc(0)).length, 4);
});
