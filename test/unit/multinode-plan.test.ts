// Pure parts of the overlay: FDB request bytes, the plan for neighbour entries and vxlan devices,
// and which facts of this machine apply to the node being compiled.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as C from "../../reconciler/netlink/constants.js";
import { buildFdb, decodeFdb, FDB_STATE } from "../../reconciler/netlink/fdb.js";
import { decodeNdMsg, encodeNdMsg, parseAttrs, attr } from "../../reconciler/netlink/message.js";
import { diff } from "../../reconciler/plan/diff.js";
import { emptyState } from "../../reconciler/datapath/state.js";
import { compileSnapshot } from "../../reconciler/plan/snapshot-to-desired.js";
import { nodeFacts } from "../../reconciler/plan/facts.js";
import { multinodeSnapshot, N1 } from "./helpers/multinode-model.js";

test("fdb replace: RTM_NEWNEIGH, AF_BRIDGE, NTF_SELF, permanent+noarp, create|replace, lladdr and dst", () => {
  const req = buildFdb(C.RTM_NEWNEIGH, 5, "02:aa:bb:cc:dd:ee", "192.0.2.12");
  assert.equal(req.type, C.RTM_NEWNEIGH);
  assert.equal(req.flags, C.NLM_F_CREATE | C.NLM_F_REPLACE);
  // struct ndmsg: family u8, pad u8, pad u16, ifindex s32, state u16, flags u8, type u8.
  assert.deepEqual([...req.header!], [7, 0, 0, 0, 5, 0, 0, 0, 0xc0, 0, 0x02, 0]);
  assert.equal(FDB_STATE, C.NUD_PERMANENT | C.NUD_NOARP);
  assert.deepEqual([...Buffer.concat(req.attrs!)], [
    10, 0, C.NDA_LLADDR, 0, 0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0, 0, // 4 + 6, padded to 12
    8, 0, C.NDA_DST, 0, 192, 0, 2, 12,
  ]);
});

test("fdb delete: no state, no create flags; without dst it removes the MAC's whole entry", () => {
  const del = buildFdb(C.RTM_DELNEIGH, 9, "02:00:00:00:00:01");
  assert.equal(del.type, C.RTM_DELNEIGH);
  assert.equal(del.flags, 0);
  assert.deepEqual(decodeNdMsg(del.header!), { family: C.AF_BRIDGE, index: 9, state: 0, flags: C.NTF_SELF, type: 0 });
  const a = parseAttrs(Buffer.concat(del.attrs!));
  assert.deepEqual([...a.keys()], [C.NDA_LLADDR]);
  const v6 = parseAttrs(Buffer.concat(buildFdb(C.RTM_DELNEIGH, 9, "02:00:00:00:00:01", "2001:db8::2").attrs!));
  assert.equal(v6.get(C.NDA_DST)!.length, 16);
});

test("fdb dump reply decodes to mac, dst, state and flags", () => {
  const payload = Buffer.concat([
    encodeNdMsg({ family: C.AF_BRIDGE, index: 3, state: C.NUD_PERMANENT, flags: C.NTF_SELF, type: 0 }),
    attr(C.NDA_LLADDR, Buffer.from([2, 1, 2, 3, 4, 5])),
    attr(C.NDA_DST, Buffer.from([192, 0, 2, 11])),
  ]);
  assert.deepEqual(decodeFdb({ type: C.RTM_NEWNEIGH, flags: 0, seq: 0, pid: 0, payload }), {
    index: 3, mac: "02:01:02:03:04:05", dst: "192.0.2.11", state: C.NUD_PERMANENT, flags: C.NTF_SELF,
  });
});

const n1 = () => compileSnapshot(multinodeSnapshot(), { node: "n1", enforcement: "default", attachMode: "tcx" }).desired;

test("plan from nothing creates the vxlan device first, then routes, then the neighbour, before endpoint state", () => {
  const plan = diff(n1(), emptyState());
  const order = plan.changes.map((c) => `${c.resource} ${c.id}`);
  const at = (s: string) => order.indexOf(s);
  assert.ok(at("device rc-vxlan") >= 0 && at("device rc-vxlan") < at("route 10.11.90.0/24"));
  assert.ok(at("route 10.11.90.0/24") < at("neighbour rc-vxlan/192.0.2.12"));
  assert.ok(at("neighbour rc-vxlan/192.0.2.12") < order.findIndex((s) => s.startsWith("sysctl ")));
  // Deletes run in reverse: the neighbour goes before the route and the device.
  const teardown = diff({ ...n1(), ...emptyState(), policy: new Map() }, n1());
  const del = teardown.changes.map((c) => `${c.resource} ${c.id}`);
  assert.ok(del.indexOf("neighbour rc-vxlan/192.0.2.12") < del.indexOf("route 10.11.90.0/24"));
  assert.ok(del.indexOf("route 10.11.90.0/24") < del.indexOf("device rc-vxlan"));
});

test("a VNI change replaces the device and rewrites the routes and neighbours on it; a MAC change only updates", () => {
  const want = n1();
  const have = n1();
  const dev = have.devices.get("rc-vxlan")!;
  have.devices.set("rc-vxlan", { ...dev, vxlan: { ...dev.vxlan!, vni: 99 } });
  const plan = diff(want, have);
  const ops = plan.changes.map((c) => `${c.op} ${c.resource} ${c.id}: ${c.reason}`);
  assert.deepEqual(ops, [
    'update device rc-vxlan: vxlan {"vni":99,"port":8472,"local":"192.0.2.11","learning":false} → {"vni":7,"port":8472,"local":"192.0.2.11","learning":false}',
    "update route 10.11.90.0/24: device rc-vxlan is replaced",
    "update route 10.11.33.0/24: device rc-vxlan is replaced",
    "update neighbour rc-vxlan/192.0.2.12: device rc-vxlan is replaced",
  ]);

  const macOnly = n1();
  macOnly.devices.set("rc-vxlan", { ...dev, mac: "02:00:00:00:00:99" });
  assert.deepEqual(diff(want, macOnly).changes.map((c) => `${c.op} ${c.resource} ${c.id}`), ["update device rc-vxlan"]);
});

test("neighbour drift (another MAC or FDB destination) and a route that lost onlink are updates; an orphan FDB entry is pruned", () => {
  const want = n1();
  const have = n1();
  have.neighbours.set("rc-vxlan/192.0.2.12", { ...have.neighbours.get("rc-vxlan/192.0.2.12")!, fdbDst: "192.0.2.99" });
  const r = have.routes.get("10.11.33.0/24")!;
  have.routes.set("10.11.33.0/24", { destination: r.destination, device: r.device, gateway: r.gateway!, scope: "universe" });
  have.neighbours.set("rc-vxlan/fdb:02:00:00:00:00:07", { device: "rc-vxlan", address: "fdb:02:00:00:00:00:07", mac: "02:00:00:00:00:07", fdbDst: "192.0.2.7" });
  const ops = diff(want, have).changes.map((c) => `${c.op} ${c.resource} ${c.id}: ${c.reason}`);
  assert.deepEqual(ops, [
    "update route 10.11.33.0/24: onlink undefined → true",
    "update neighbour rc-vxlan/192.0.2.12: fdbDst 192.0.2.99 → 192.0.2.12",
    "delete neighbour rc-vxlan/fdb:02:00:00:00:00:07: no longer desired",
  ]);
});

test("nodeFacts: this machine's addresses and MTU only for the node whose address is here", () => {
  const host = { addresses: ["10.0.0.5", N1.address], mtuByAddress: new Map([["10.0.0.5", 9000], [N1.address, 1450]]) };
  const model = compileSnapshot(multinodeSnapshot(), { node: "n1", enforcement: "default", attachMode: "tcx" }).model;
  assert.deepEqual(nodeFacts(host, model, "n1"), { local: true, hostAddresses: host.addresses, underlayMtu: 1450 });
  const other = nodeFacts(host, model, "n2");
  assert.equal(other.local, false);
  assert.equal(other.hostAddresses, undefined);
  assert.equal(other.underlayMtu, undefined);
  assert.match(other.note!, /node n2 is not this machine \(its address 192\.0\.2\.12 is not here\)/);
  // A node without a Node manifest (single-host setups): this machine, MTU unknown.
  assert.deepEqual(nodeFacts(host, model, "elsewhere"), { local: true, hostAddresses: host.addresses });
});
