import { test } from "node:test";
import assert from "node:assert/strict";
import {
  addrAdd, addrDelete, addrList, addrReplace, confKey, linkCreate, linkGet, linkSetUp, neighAdd, neighDelete, neighList,
  neighReplace, NetlinkError, openRoute, routeAdd, routeDelete, routeList, routeReplace, sysctlRead, sysctlWrite,
  SysctlError, constants as C, type NetlinkSocket,
} from "../../reconciler/netlink/index.js";
import { ipJson, makeNetns, run } from "./helpers/netlink.js";

function setup(t: { after: (fn: () => void) => void }, ns: string): NetlinkSocket {
  const s = openRoute(ns);
  t.after(() => s.close());
  linkCreate(s, { kind: "veth", name: "ar0", peer: { name: "ar1" } });
  linkSetUp(s, "ar0");
  linkSetUp(s, "ar1");
  return s;
}

interface IpAddr { ifname: string; addr_info: Array<{ local: string; prefixlen: number; family: string; scope: string }> }

test("addresses: add, replace (idempotent), list per device, delete", (t) => {
  const ns = makeNetns(t, "ar");
  const s = setup(t, ns);
  addrAdd(s, "ar0", "10.20.0.1/24");
  addrAdd(s, "ar0", "fd00:20::1/64", { noDad: true });
  addrReplace(s, "ar0", "10.20.0.1/24");
  assert.throws(() => addrAdd(s, "ar0", "10.20.0.1/24"), (e: unknown) => e instanceof NetlinkError && e.code === "EEXIST");
  const ours = addrList(s, { link: "ar0" }).filter((a) => a.scope === C.RT_SCOPE_UNIVERSE).map((a) => a.cidr).sort();
  assert.deepEqual(ours, ["10.20.0.1/24", "fd00:20::1/64"]);
  const [ip] = ipJson<IpAddr[]>(ns, ["addr", "show", "dev", "ar0", "scope", "global"]);
  assert.deepEqual(ip!.addr_info.filter((a) => a.local).map((a) => `${a.local}/${a.prefixlen}`).sort(), ours);
  assert.equal(addrList(s, { link: "ar1" }).some((a) => a.address === "10.20.0.1"), false, "device filter applies");
  assert.equal(addrDelete(s, "ar0", "10.20.0.1/24"), true);
  assert.equal(addrDelete(s, "ar0", "10.20.0.1/24"), false);
  assert.equal(addrList(s, { link: "ar0", family: C.AF_INET }).length, 0);
});

interface IpRoute { dst: string; gateway?: string; dev?: string; scope?: string; flags: string[]; protocol?: string }

test("routes: scope link, gateway, onlink default in a table, replace, delete; matches ip route", (t) => {
  const ns = makeNetns(t, "ar");
  const s = setup(t, ns);
  addrAdd(s, "ar0", "10.30.0.1/24");
  routeAdd(s, { dst: "10.31.0.7", dev: "ar0" });
  routeAdd(s, { dst: "10.32.0.0/16", gateway: "10.30.0.2", dev: "ar0" });
  routeAdd(s, { dst: "default", gateway: "169.254.1.1", dev: "ar0", onlink: true, table: 100 });
  routeReplace(s, { dst: "10.32.0.0/16", gateway: "10.30.0.3", dev: "ar0" });
  routeReplace(s, { dst: "10.32.0.0/16", gateway: "10.30.0.3", dev: "ar0" });
  const ar0 = linkGet(s, "ar0")!.index;

  const main = routeList(s, { table: C.RT_TABLE_MAIN, family: C.AF_INET });
  const host = main.find((r) => r.dst === "10.31.0.7/32")!;
  assert.deepEqual([host.scope, host.oif, host.gateway], [C.RT_SCOPE_LINK, ar0, undefined]);
  const gw = main.filter((r) => r.dst === "10.32.0.0/16");
  assert.equal(gw.length, 1, "replace did not duplicate");
  assert.equal(gw[0]!.gateway, "10.30.0.3");
  const ipMain = ipJson<IpRoute[]>(ns, ["route", "show", "table", "main"]);
  assert.deepEqual(ipMain.map((r) => r.dst).sort(), ["10.30.0.0/24", "10.31.0.7", "10.32.0.0/16"]);
  assert.equal(ipMain.find((r) => r.dst === "10.31.0.7")!.scope, "link");

  const t100 = routeList(s, { table: 100 });
  assert.deepEqual(t100.map((r) => [r.dst, r.gateway, r.onlink, r.oif, r.table]), [["0.0.0.0/0", "169.254.1.1", true, ar0, 100]]);
  const [ipDef] = ipJson<IpRoute[]>(ns, ["route", "show", "table", "100"]);
  assert.deepEqual([ipDef!.dst, ipDef!.gateway, ipDef!.dev, ipDef!.flags], ["default", "169.254.1.1", "ar0", ["onlink"]]);

  assert.equal(routeDelete(s, { dst: "default", table: 100 }), true);
  assert.equal(routeDelete(s, { dst: "default", table: 100 }), false);
  assert.equal(routeDelete(s, { dst: "10.31.0.7", dev: "ar0" }), true);
  assert.deepEqual(ipJson<IpRoute[]>(ns, ["route", "show", "table", "100"]), []);
  assert.equal(routeList(s, { table: C.RT_TABLE_MAIN }).some((r) => r.dst === "10.31.0.7/32"), false);
});

interface IpNeigh { dst: string; lladdr?: string; state: string[] }

test("neighbours: permanent entries add/replace/delete; matches ip neigh", (t) => {
  const ns = makeNetns(t, "ar");
  const s = setup(t, ns);
  neighAdd(s, { dev: "ar0", address: "10.40.0.9", mac: "02:00:00:00:40:09" });
  neighReplace(s, { dev: "ar0", address: "10.40.0.9", mac: "02:00:00:00:40:0a" });
  neighReplace(s, { dev: "ar0", address: "fd00:40::9", mac: "02:00:00:00:40:0b" });
  assert.throws(() => neighAdd(s, { dev: "ar0", address: "10.40.0.9", mac: "02:00:00:00:40:09" }),
    (e: unknown) => e instanceof NetlinkError && e.code === "EEXIST");
  const ours = neighList(s, { dev: "ar0" }).filter((n) => n.states.includes("permanent"));
  assert.deepEqual(ours.map((n) => [n.address, n.mac]).sort(), [["10.40.0.9", "02:00:00:00:40:0a"], ["fd00:40::9", "02:00:00:00:40:0b"]]);
  const ip = ipJson<IpNeigh[]>(ns, ["neigh", "show", "dev", "ar0", "nud", "permanent"]);
  assert.deepEqual(ip.map((n) => [n.dst, n.lladdr, n.state]).sort(),
    [["10.40.0.9", "02:00:00:00:40:0a", ["PERMANENT"]], ["fd00:40::9", "02:00:00:00:40:0b", ["PERMANENT"]]]);
  assert.equal(neighList(s, { dev: "ar1" }).some((n) => n.address === "10.40.0.9"), false);
  assert.equal(neighDelete(s, "ar0", "10.40.0.9"), true);
  assert.equal(neighDelete(s, "ar0", "10.40.0.9"), false);
  assert.deepEqual(ipJson<IpNeigh[]>(ns, ["neigh", "show", "dev", "ar0", "to", "10.40.0.9"]), []);
});

test("sysctl read/write happen inside the namespace", (t) => {
  const ns = makeNetns(t, "ar");
  setup(t, ns);
  const key = confKey(4, "ar0", "proxy_arp");
  assert.equal(sysctlRead(key, ns), "0");
  sysctlWrite(key, 1, ns);
  assert.equal(sysctlRead(key, ns), "1");
  assert.equal(run("ip", ["netns", "exec", ns, "sysctl", "-n", "net.ipv4.conf.ar0.proxy_arp"]).trim(), "1");
  // ar0 exists only in the test namespace, so the host view must not have it.
  assert.throws(() => sysctlRead(key), (e: unknown) => e instanceof SysctlError && /ENOENT/.test(e.message));
});
