// The IPv6 overlay's next hops through the real kernel, in a private namespace: an IPv6 route and
// an IPv4 route (RTA_VIA) via a link-local gateway on a vxlan device, with the permanent NDP entry
// that resolves it; read back over netlink and cross-checked with `ip -j`.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  linkCreate, linkSetUp, neighList, neighReplace, openRoute, routeDelete, routeList, routeReplace, constants as C,
} from "../../reconciler/netlink/index.js";
import { eui64LinkLocal } from "../../reconciler/datapath/desired.js";
import { ipJson, makeNetns } from "./helpers/netlink.js";

test("route via a link-local: IPv6 (RTA_GATEWAY) and IPv4 (RTA_VIA) on a vxlan device, read back; ip agrees", (t) => {
  const ns = makeNetns(t, "rvia");
  const s = openRoute(ns);
  t.after(() => s.close());
  linkCreate(s, { kind: "vxlan", name: "rviavx0", vni: 7, port: 8472, local: "2001:db8::11", learning: false, mac: "02:00:00:00:00:11" });
  linkSetUp(s, "rviavx0");
  const remoteMac = "02:00:00:00:00:12";
  const gw = eui64LinkLocal(remoteMac);
  assert.equal(gw, "fe80::ff:fe00:12");
  neighReplace(s, { dev: "rviavx0", address: gw, mac: remoteMac, state: C.NUD_PERMANENT });
  routeReplace(s, { dst: "fd00:a:2::/64", dev: "rviavx0", gateway: gw, scope: "universe" });
  routeReplace(s, { dst: "10.11.90.0/24", dev: "rviavx0", gateway: gw, scope: "universe" });
  routeReplace(s, { dst: "10.11.90.0/24", dev: "rviavx0", gateway: gw, scope: "universe" }); // idempotent

  const ours = routeList(s, { dev: "rviavx0", table: C.RT_TABLE_MAIN }).filter((r) => r.gateway !== undefined);
  assert.deepEqual(ours.map((r) => [r.family, r.dst, r.gateway]).sort((a, b) => (a[0] as number) - (b[0] as number)), [
    [C.AF_INET, "10.11.90.0/24", gw],
    [C.AF_INET6, "fd00:a:2::/64", gw],
  ]);
  const ip4 = ipJson<Array<{ dst: string; via?: { family: string; host: string } }>>(ns, ["-4", "route", "show", "dev", "rviavx0"]);
  assert.deepEqual(ip4.map((r) => [r.dst, r.via?.family, r.via?.host]), [["10.11.90.0/24", "inet6", gw]]);
  const ip6 = ipJson<Array<{ dst: string; gateway?: string }>>(ns, ["-6", "route", "show", "dev", "rviavx0"]);
  assert.deepEqual(ip6.filter((r) => r.gateway).map((r) => [r.dst, r.gateway]), [["fd00:a:2::/64", gw]]);
  // The kernel resolves both families' next hop through the one NDP entry.
  const got = ipJson<Array<{ gateway?: string; via?: { host: string }; dev: string }>>(ns, ["route", "get", "10.11.90.5"]);
  assert.deepEqual([got[0]!.via?.host, got[0]!.dev], [gw, "rviavx0"]);
  assert.deepEqual(neighList(s, { dev: "rviavx0", family: C.AF_INET6 }).filter((n) => n.address === gw).map((n) => [n.mac, n.states]), [[remoteMac, ["permanent"]]]);

  // Deleting with the same spec removes it (the RTA_VIA must match).
  assert.equal(routeDelete(s, { dst: "10.11.90.0/24", dev: "rviavx0", gateway: gw }), true);
  assert.equal(routeDelete(s, { dst: "10.11.90.0/24", dev: "rviavx0", gateway: gw }), false);
  assert.deepEqual(ipJson(ns, ["-4", "route", "show", "dev", "rviavx0"]), []);
});
