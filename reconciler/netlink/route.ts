// Routes (RTM_*ROUTE): list per table, add, replace, delete. Single-path routes only (no multipath
// or nexthop objects; not needed by reconcile).
import {
  AF_INET, AF_INET6, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE, RTA_DST, RTA_GATEWAY, RTA_OIF, RTA_PREFSRC,
  RTA_PRIORITY, RTA_TABLE, RTA_VIA, RTM_DELROUTE, RTM_GETROUTE, RTM_NEWROUTE, RTNH_F_ONLINK, RTN_BLACKHOLE, RTN_LOCAL,
  RTN_UNICAST, RTN_UNREACHABLE, RTPROT_BOOT, RT_SCOPE_HOST, RT_SCOPE_LINK, RT_SCOPE_UNIVERSE, RT_TABLE_MAIN,
} from "./constants.js";
import {
  attr, attrU32, bytesToIp, decodeRtMsg, encodeRtMsg, ipFamily, ipToBytes, parseAttrs, parsePrefix, read, type NlMsg,
} from "./message.js";
import { linkIndex, type LinkRef } from "./link.js";
import { NetlinkError, type NetlinkSocket, type Request } from "./socket.js";

export type RouteType = "unicast" | "local" | "blackhole" | "unreachable";
const ROUTE_TYPES: Record<RouteType, number> = {
  unicast: RTN_UNICAST, local: RTN_LOCAL, blackhole: RTN_BLACKHOLE, unreachable: RTN_UNREACHABLE,
};
const RT_SCOPE_NOWHERE = 255;

/** A route as the kernel reports it. */
export interface Route {
  family: typeof AF_INET | typeof AF_INET6;
  /** Destination prefix, "0.0.0.0/0" / "::/0" for default routes. */
  dst: string;
  /** Routing table id (254 main, 255 local). */
  table: number;
  /** RTPROT_* (2 kernel, 3 boot, 4 static, ...). */
  protocol: number;
  /** RT_SCOPE_* (0 universe, 253 link, 254 host). */
  scope: number;
  /** RTN_* type number (1 unicast, 2 local, 6 blackhole, ...). */
  type: number;
  /** Next hop: RTA_GATEWAY, or RTA_VIA when its family differs from the route's. */
  gateway?: string;
  /** Output device ifindex. */
  oif?: number;
  prefsrc?: string;
  /** Metric. */
  priority?: number;
  /** RTNH_F_ONLINK: the gateway is taken as on-link without a covering prefix. */
  onlink: boolean;
}

export function decodeRoute(m: NlMsg): Route {
  const h = decodeRtMsg(m.payload);
  const a = parseAttrs(m.payload, 12);
  const family = h.family === AF_INET6 ? AF_INET6 : AF_INET;
  const dstB = a.get(RTA_DST);
  const dst = dstB ? bytesToIp(dstB) : family === AF_INET ? "0.0.0.0" : "::";
  const r: Route = {
    family,
    dst: `${dst}/${h.dstLen}`,
    table: read.u32(a.get(RTA_TABLE)) ?? h.table,
    protocol: h.protocol,
    scope: h.scope,
    type: h.type,
    onlink: (h.flags & RTNH_F_ONLINK) !== 0,
  };
  const gw = a.get(RTA_GATEWAY);
  if (gw) r.gateway = bytesToIp(gw);
  // An IPv4 route via an IPv6 gateway: family (u16) then the address.
  const via = a.get(RTA_VIA);
  if (!gw && via && (via.length === 6 || via.length === 18)) r.gateway = bytesToIp(via.subarray(2));
  const oif = read.u32(a.get(RTA_OIF));
  if (oif !== undefined) r.oif = oif;
  const src = a.get(RTA_PREFSRC);
  if (src) r.prefsrc = bytesToIp(src);
  const prio = read.u32(a.get(RTA_PRIORITY));
  if (prio !== undefined) r.priority = prio;
  return r;
}

/** A route to add, replace or delete. */
export interface RouteSpec {
  /** Destination: "10.0.0.0/24", "10.0.0.5" (host route) or "default" (IPv4; "default6" for IPv6). */
  dst: string;
  /** Next hop. An IPv6 gateway on an IPv4 route is sent as RTA_VIA (Linux ≥ 5.2; the kernel then
   *  resolves it through the device's NDP table). */
  gateway?: string;
  /** Output device. */
  dev?: LinkRef;
  /** Table id; default main (254). */
  table?: number;
  /** "link", "host", "universe" or a RT_SCOPE_* number. Default as `ip route`: link without a gateway, else universe. */
  scope?: "universe" | "link" | "host" | number;
  /** Treat the gateway as directly reachable on dev (RTNH_F_ONLINK). */
  onlink?: boolean;
  /** Preferred source address. */
  prefsrc?: string;
  /** Metric. */
  priority?: number;
  /** RTPROT_*; default boot (3), as `ip route`. */
  protocol?: number;
  /** Default unicast. */
  type?: RouteType;
}

function dstPrefix(dst: string): { family: typeof AF_INET | typeof AF_INET6; bytes?: Buffer; len: number } {
  if (dst === "default") return { family: AF_INET, len: 0 };
  if (dst === "default6") return { family: AF_INET6, len: 0 };
  const p = parsePrefix(dst);
  return { family: p.family, bytes: ipToBytes(p.address), len: p.prefixLen };
}

/** Build an RTM_NEWROUTE/RTM_DELROUTE request; `oif` is the resolved dev index. Pure. */
export function buildRoute(type: number, flags: number, spec: RouteSpec, oif?: number): Request {
  const d = dstPrefix(spec.dst);
  const gwFamily = spec.gateway ? ipFamily(spec.gateway) : undefined;
  const via = gwFamily !== undefined && gwFamily !== d.family;
  if (via && !(d.family === AF_INET && gwFamily === AF_INET6)) {
    throw new RangeError(`route ${spec.dst}: gateway ${spec.gateway}: expected an IPv6 route's gateway to be IPv6, got IPv4`);
  }
  const table = spec.table ?? RT_TABLE_MAIN;
  const rtype = ROUTE_TYPES[spec.type ?? "unicast"];
  let scope: number;
  if (typeof spec.scope === "number") scope = spec.scope;
  else if (spec.scope === "link") scope = RT_SCOPE_LINK;
  else if (spec.scope === "host") scope = RT_SCOPE_HOST;
  else if (spec.scope === "universe") scope = RT_SCOPE_UNIVERSE;
  else if (type === RTM_DELROUTE) scope = RT_SCOPE_NOWHERE; // wildcard: match whatever scope it has
  else if (rtype === RTN_LOCAL) scope = RT_SCOPE_HOST;
  else if (rtype === RTN_UNICAST && !spec.gateway) scope = RT_SCOPE_LINK;
  else scope = RT_SCOPE_UNIVERSE;
  const header = encodeRtMsg({
    family: d.family, dstLen: d.len, srcLen: 0, tos: 0,
    table: table < 256 ? table : 0,
    protocol: type === RTM_DELROUTE && spec.protocol === undefined ? 0 : spec.protocol ?? RTPROT_BOOT,
    scope, type: rtype, flags: spec.onlink ? RTNH_F_ONLINK : 0,
  });
  const attrs: Buffer[] = [attrU32(RTA_TABLE, table)];
  if (d.bytes) attrs.push(attr(RTA_DST, d.bytes));
  if (spec.gateway && via) attrs.push(attr(RTA_VIA, rtvia(spec.gateway)));
  else if (spec.gateway) attrs.push(attr(RTA_GATEWAY, ipToBytes(spec.gateway)));
  if (oif !== undefined) attrs.push(attrU32(RTA_OIF, oif));
  if (spec.prefsrc) attrs.push(attr(RTA_PREFSRC, ipToBytes(spec.prefsrc)));
  if (spec.priority !== undefined) attrs.push(attrU32(RTA_PRIORITY, spec.priority));
  return { type, flags, header, attrs };
}

/** struct rtvia for an IPv6 gateway: rtvia_family (host order u16) and the 16 address bytes. */
function rtvia(gateway: string): Buffer {
  const b = Buffer.alloc(18);
  b.writeUInt16LE(AF_INET6, 0);
  ipToBytes(gateway).copy(b, 2);
  return b;
}

/** Filter for routeList. */
export interface RouteFilter {
  family?: typeof AF_INET | typeof AF_INET6;
  /** Only this table (kernel-side filter). Default: all tables. */
  table?: number;
  /** Only routes out of this device. */
  dev?: LinkRef;
}

export function routeList(sock: NetlinkSocket, filter: RouteFilter = {}): Route[] {
  const header = encodeRtMsg({
    family: filter.family ?? 0, dstLen: 0, srcLen: 0, tos: 0, table: filter.table !== undefined && filter.table < 256 ? filter.table : 0,
    protocol: 0, scope: 0, type: 0, flags: 0,
  });
  const attrs = filter.table !== undefined ? [attrU32(RTA_TABLE, filter.table)] : [];
  const oif = filter.dev !== undefined ? linkIndex(sock, filter.dev) : undefined;
  if (oif !== undefined) attrs.push(attrU32(RTA_OIF, oif));
  return sock.dump(`list routes${filter.table !== undefined ? ` in table ${filter.table}` : ""}`, { type: RTM_GETROUTE, header, attrs })
    .filter((m) => m.type === RTM_NEWROUTE)
    .map(decodeRoute)
    .filter((r) => (filter.table === undefined || r.table === filter.table) && (oif === undefined || r.oif === oif));
}

function describe(spec: RouteSpec): string {
  return `${spec.dst}${spec.gateway ? ` via ${spec.gateway}` : ""}${spec.dev !== undefined ? ` dev ${spec.dev}` : ""}${spec.table !== undefined ? ` table ${spec.table}` : ""}`;
}

function oifOf(sock: NetlinkSocket, spec: RouteSpec): number | undefined {
  return spec.dev === undefined ? undefined : linkIndex(sock, spec.dev);
}

/** Add a route; throws NetlinkError EEXIST if an equal one exists. */
export function routeAdd(sock: NetlinkSocket, spec: RouteSpec): void {
  sock.request(`add route ${describe(spec)}`, buildRoute(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, spec, oifOf(sock, spec)));
}

/** Add or replace the route to spec.dst in spec.table (idempotent). */
export function routeReplace(sock: NetlinkSocket, spec: RouteSpec): void {
  sock.request(`replace route ${describe(spec)}`, buildRoute(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, spec, oifOf(sock, spec)));
}

/** Delete a route. Returns false if no such route existed. */
export function routeDelete(sock: NetlinkSocket, spec: RouteSpec): boolean {
  try {
    sock.request(`delete route ${describe(spec)}`, buildRoute(RTM_DELROUTE, 0, spec, oifOf(sock, spec)));
    return true;
  } catch (e) {
    if (e instanceof NetlinkError && e.code === "ESRCH") return false;
    throw e;
  }
}
