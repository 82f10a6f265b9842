// Network devices (RTM_*LINK): list/get, create veth/macvlan/vxlan/dummy, set up/down, mtu, mac,
// alias, move to a namespace, delete. Request building and reply decoding are pure and exported for
// unit tests; the functions taking a NetlinkSocket do the I/O.
import {
  AF_INET, AF_UNSPEC, IFF_UP, IFLA_ADDRESS, IFLA_EXT_MASK, IFLA_IFALIAS, IFLA_IFNAME, IFLA_INFO_DATA,
  IFLA_INFO_KIND, IFLA_INFO_SLAVE_KIND, IFLA_LINK, IFLA_LINKINFO, IFLA_LINK_NETNSID, IFLA_MACVLAN_MODE,
  IFLA_MASTER, IFLA_MTU, IFLA_NET_NS_FD, IFLA_OPERSTATE, IFLA_TXQLEN, IFLA_VXLAN_GROUP, IFLA_VXLAN_GROUP6,
  IFLA_VXLAN_ID, IFLA_VXLAN_LEARNING, IFLA_VXLAN_LINK, IFLA_VXLAN_LOCAL, IFLA_VXLAN_LOCAL6, IFLA_VXLAN_PORT,
  MACVLAN_MODE_BRIDGE, MACVLAN_MODE_PASSTHRU, MACVLAN_MODE_PRIVATE, MACVLAN_MODE_VEPA, NLM_F_CREATE,
  NLM_F_EXCL, RTEXT_FILTER_SKIP_STATS, RTEXT_FILTER_VF, RTM_DELLINK, RTM_GETLINK, RTM_NEWLINK, RTM_SETLINK,
  VETH_INFO_PEER,
} from "./constants.js";
import {
  attr, attrNested, attrString, attrU16BE, attrU32, attrU8, attrS32, bytesToIp, bytesToMac,
  decodeIfInfoMsg, encodeIfInfoMsg, ipFamily, ipToBytes, macToBytes, parseAttrs, read, type NlMsg,
} from "./message.js";
import { closeNetnsFd, openNetnsFd, openRoute } from "./netns.js";
import { NetlinkError, type NetlinkSocket, type Request } from "./socket.js";

/** A device by index (number) or name (string). */
export type LinkRef = number | string;

export type MacvlanMode = "private" | "vepa" | "bridge" | "passthru";
const MACVLAN_MODES: Record<MacvlanMode, number> = {
  private: MACVLAN_MODE_PRIVATE, vepa: MACVLAN_MODE_VEPA, bridge: MACVLAN_MODE_BRIDGE, passthru: MACVLAN_MODE_PASSTHRU,
};

/** VXLAN settings read back from IFLA_INFO_DATA. */
export interface VxlanInfo {
  /** VXLAN network identifier. */
  vni: number;
  /** UDP destination port. */
  port?: number;
  /** Local (source) underlay address. */
  local?: string;
  /** Remote or multicast group address. */
  remote?: string;
  /** Underlay device index. */
  linkIndex?: number;
  /** Whether the FDB learns source addresses. */
  learning?: boolean;
}

/** A network device as the kernel reports it. */
export interface Link {
  /** ifindex, unique within the namespace. */
  index: number;
  name: string;
  /** IFLA_INFO_KIND ("veth", "macvlan", "vxlan", "dummy", ...); undefined for physical and loopback devices. */
  kind?: string;
  /** IFLA_INFO_SLAVE_KIND when enslaved (e.g. "bridge"). */
  slaveKind?: string;
  mtu: number;
  /** Hardware address, lower-case colon form; undefined for devices without one. */
  mac?: string;
  /** IFF_* flags. */
  flags: number;
  /** IFF_UP is set (administratively up). */
  up: boolean;
  /** RFC 2863 operational state ("up", "down", "unknown", "lowerlayerdown", ...). */
  operState: string;
  /** IFLA_IFALIAS; reconcile marks its own devices with "reconcile:<endpoint>". */
  alias?: string;
  /** ifindex of the master (bridge, bond, vrf). */
  masterIndex?: number;
  /** IFLA_LINK: the veth peer, macvlan parent, ... (an index in linkNetnsId's namespace if set). */
  linkIndex?: number;
  /** IFLA_LINK_NETNSID: namespace id (as seen from this namespace) of the device linkIndex refers to. */
  linkNetnsId?: number;
  /** For veth: the peer's ifindex (same as linkIndex). */
  peerIndex?: number;
  txqlen?: number;
  /** macvlan/macvtap mode. */
  macvlanMode?: MacvlanMode;
  /** vxlan settings. */
  vxlan?: VxlanInfo;
}

const OPER_STATES = ["unknown", "notpresent", "down", "lowerlayerdown", "testing", "dormant", "up"];

/** Decode an RTM_NEWLINK message. */
export function decodeLink(m: NlMsg): Link {
  const ifi = decodeIfInfoMsg(m.payload);
  const a = parseAttrs(m.payload, 16);
  const link: Link = {
    index: ifi.index,
    name: read.str(a.get(IFLA_IFNAME)) ?? "",
    mtu: read.u32(a.get(IFLA_MTU)) ?? 0,
    flags: ifi.flags,
    up: (ifi.flags & IFF_UP) !== 0,
    operState: OPER_STATES[read.u8(a.get(IFLA_OPERSTATE)) ?? 0] ?? "unknown",
  };
  const mac = a.get(IFLA_ADDRESS);
  if (mac && mac.length > 0) link.mac = bytesToMac(mac);
  const alias = read.str(a.get(IFLA_IFALIAS));
  if (alias) link.alias = alias;
  const master = read.u32(a.get(IFLA_MASTER));
  if (master) link.masterIndex = master;
  const lnk = read.s32(a.get(IFLA_LINK));
  if (lnk !== undefined) link.linkIndex = lnk;
  const nsid = read.s32(a.get(IFLA_LINK_NETNSID));
  if (nsid !== undefined && nsid >= 0) link.linkNetnsId = nsid;
  const txq = read.u32(a.get(IFLA_TXQLEN));
  if (txq !== undefined) link.txqlen = txq;
  const li = a.get(IFLA_LINKINFO);
  if (li) {
    const info = parseAttrs(li);
    const kind = read.str(info.get(IFLA_INFO_KIND));
    if (kind) link.kind = kind;
    const slave = read.str(info.get(IFLA_INFO_SLAVE_KIND));
    if (slave) link.slaveKind = slave;
    const data = info.get(IFLA_INFO_DATA);
    if (kind === "veth" && link.linkIndex !== undefined) link.peerIndex = link.linkIndex;
    if (data && (kind === "macvlan" || kind === "macvtap")) {
      const mode = read.u32(parseAttrs(data).get(IFLA_MACVLAN_MODE));
      const name = (Object.keys(MACVLAN_MODES) as MacvlanMode[]).find((k) => MACVLAN_MODES[k] === mode);
      if (name) link.macvlanMode = name;
    }
    if (data && kind === "vxlan") link.vxlan = decodeVxlan(parseAttrs(data));
  }
  return link;
}

function decodeVxlan(d: Map<number, Buffer>): VxlanInfo {
  const v: VxlanInfo = { vni: read.u32(d.get(IFLA_VXLAN_ID)) ?? 0 };
  const port = read.u16be(d.get(IFLA_VXLAN_PORT));
  if (port !== undefined) v.port = port;
  const local = d.get(IFLA_VXLAN_LOCAL) ?? d.get(IFLA_VXLAN_LOCAL6);
  if (local) v.local = bytesToIp(local);
  const remote = d.get(IFLA_VXLAN_GROUP) ?? d.get(IFLA_VXLAN_GROUP6);
  if (remote) v.remote = bytesToIp(remote);
  const link = read.u32(d.get(IFLA_VXLAN_LINK));
  if (link) v.linkIndex = link;
  const learning = read.u8(d.get(IFLA_VXLAN_LEARNING));
  if (learning !== undefined) v.learning = learning !== 0;
  return v;
}

// ---------------------------------------------------------------- create

/** Settings every created device may take. */
interface CommonLinkSpec {
  /** Device name (<= 15 bytes). */
  name: string;
  mtu?: number;
  /** Hardware address "aa:bb:cc:dd:ee:ff"; kernel picks a random one if omitted. */
  mac?: string;
  /** IFLA_IFALIAS, e.g. "reconcile:<endpoint>" to mark ownership. */
  alias?: string;
  /** Create the device directly in this named namespace (IFLA_NET_NS_FD). */
  netns?: string;
  txqlen?: number;
}

/** The far end of a veth pair. */
export interface VethPeerSpec {
  name: string;
  /** Put the peer into this named namespace at creation (IFLA_NET_NS_FD inside VETH_INFO_PEER). */
  netns?: string;
  mtu?: number;
  mac?: string;
}

export interface VethSpec extends CommonLinkSpec {
  kind: "veth";
  peer: VethPeerSpec;
}

export interface MacvlanSpec extends CommonLinkSpec {
  kind: "macvlan";
  /** Lower device (in the namespace of the socket). */
  parent: LinkRef;
  /** Default "bridge". */
  mode?: MacvlanMode;
}

export interface VxlanSpec extends CommonLinkSpec {
  kind: "vxlan";
  /** VXLAN network identifier (0..2^24-1). */
  vni: number;
  /** UDP destination port; default 4789 (IANA). */
  port?: number;
  /** Local underlay address. */
  local?: string;
  /** Remote unicast endpoint or multicast group. */
  remote?: string;
  /** Underlay device. */
  dev?: LinkRef;
  /** FDB learning; default false (reconcile programs the FDB itself). */
  learning?: boolean;
}

export interface DummySpec extends CommonLinkSpec {
  kind: "dummy";
}

export type LinkSpec = VethSpec | MacvlanSpec | VxlanSpec | DummySpec;

/** Namespace fds to pass in a create request, opened by the caller and closed after sending. */
export interface NsFds {
  /** fd for spec.netns, if set. */
  self?: number;
  /** fd for spec.peer.netns (veth), if set. */
  peer?: number;
}

// IFLA_IFALIAS is not among them: the kernel ignores it when creating a device (rtnl_create_link
// does not apply it), so linkCreate sets the alias in a second request.
function commonAttrs(s: { name: string; mtu?: number; mac?: string; txqlen?: number }, nsFd?: number): Buffer[] {
  const out = [attrString(IFLA_IFNAME, s.name)];
  if (s.mtu !== undefined) out.push(attrU32(IFLA_MTU, s.mtu));
  if (s.mac !== undefined) out.push(attr(IFLA_ADDRESS, macToBytes(s.mac)));
  if (s.txqlen !== undefined) out.push(attrU32(IFLA_TXQLEN, s.txqlen));
  if (nsFd !== undefined) out.push(attrS32(IFLA_NET_NS_FD, nsFd));
  return out;
}

/**
 * Build the RTM_NEWLINK request for a spec. Device references (macvlan parent, vxlan dev) must
 * already be resolved to indexes in `indexes`. Pure.
 */
export function buildCreateLink(spec: LinkSpec, fds: NsFds = {}, indexes: { parent?: number; dev?: number } = {}): Request {
  const attrs = commonAttrs(spec, fds.self);
  const info: Buffer[] = [attrString(IFLA_INFO_KIND, spec.kind)];
  switch (spec.kind) {
    case "veth": {
      const peer = Buffer.concat([encodeIfInfoMsg({ family: AF_UNSPEC }), ...commonAttrs(spec.peer, fds.peer)]);
      info.push(attrNested(IFLA_INFO_DATA, [attr(VETH_INFO_PEER, peer)]));
      break;
    }
    case "macvlan": {
      if (indexes.parent === undefined) throw new TypeError(`create macvlan ${spec.name}: parent index not resolved`);
      attrs.push(attrU32(IFLA_LINK, indexes.parent));
      info.push(attrNested(IFLA_INFO_DATA, [attrU32(IFLA_MACVLAN_MODE, MACVLAN_MODES[spec.mode ?? "bridge"])]));
      break;
    }
    case "vxlan": {
      if (!Number.isInteger(spec.vni) || spec.vni < 0 || spec.vni >= 1 << 24) {
        throw new RangeError(`create vxlan ${spec.name}: vni: expected 0..16777215, got ${spec.vni}`);
      }
      const d = [attrU32(IFLA_VXLAN_ID, spec.vni), attrU16BE(IFLA_VXLAN_PORT, spec.port ?? 4789)];
      d.push(attrU8(IFLA_VXLAN_LEARNING, spec.learning ? 1 : 0));
      if (spec.local) d.push(attr(ipFamily(spec.local) === AF_INET ? IFLA_VXLAN_LOCAL : IFLA_VXLAN_LOCAL6, ipToBytes(spec.local)));
      if (spec.remote) d.push(attr(ipFamily(spec.remote) === AF_INET ? IFLA_VXLAN_GROUP : IFLA_VXLAN_GROUP6, ipToBytes(spec.remote)));
      if (indexes.dev !== undefined) d.push(attrU32(IFLA_VXLAN_LINK, indexes.dev));
      info.push(attrNested(IFLA_INFO_DATA, d));
      break;
    }
    case "dummy":
      break;
  }
  attrs.push(attrNested(IFLA_LINKINFO, info));
  return { type: RTM_NEWLINK, flags: NLM_F_CREATE | NLM_F_EXCL, header: encodeIfInfoMsg({ family: AF_UNSPEC }), attrs };
}

/**
 * Create a device. Throws NetlinkError EEXIST if the name is taken. An alias is set right after
 * creation (the kernel ignores it in the create request); if that fails the device is deleted again,
 * so a device never exists without its ownership mark.
 */
export function linkCreate(sock: NetlinkSocket, spec: LinkSpec): void {
  const op = `create ${spec.kind} link ${spec.name}`;
  const indexes: { parent?: number; dev?: number } = {};
  if (spec.kind === "macvlan") indexes.parent = linkIndex(sock, spec.parent);
  if (spec.kind === "vxlan" && spec.dev !== undefined) indexes.dev = linkIndex(sock, spec.dev);
  const fds: NsFds = {};
  try {
    if (spec.netns !== undefined) fds.self = openNetnsFd(spec.netns);
    if (spec.kind === "veth" && spec.peer.netns !== undefined) fds.peer = openNetnsFd(spec.peer.netns);
    sock.request(op, buildCreateLink(spec, fds, indexes));
  } finally {
    if (fds.self !== undefined) closeNetnsFd(fds.self);
    if (fds.peer !== undefined) closeNetnsFd(fds.peer);
  }
  if (spec.alias !== undefined) {
    // The device lives in spec.netns if given, which this socket may not see.
    const target = spec.netns === undefined ? sock : openRoute(spec.netns);
    try {
      linkSetAlias(target, spec.name, spec.alias);
    } catch (e) {
      try { linkDelete(target, spec.name); } catch { /* report the alias failure, not this one */ }
      throw e;
    } finally {
      if (target !== sock) target.close();
    }
  }
}

// ---------------------------------------------------------------- read

function refHeader(ref: LinkRef): { header: Buffer; attrs: Buffer[] } {
  return typeof ref === "number"
    ? { header: encodeIfInfoMsg({ index: ref }), attrs: [] }
    : { header: encodeIfInfoMsg({}), attrs: [attrString(IFLA_IFNAME, ref)] };
}

const EXT_MASK = attrU32(IFLA_EXT_MASK, RTEXT_FILTER_VF | RTEXT_FILTER_SKIP_STATS);

/** All devices in the socket's namespace. */
export function linkList(sock: NetlinkSocket): Link[] {
  return sock.dump("list links", { type: RTM_GETLINK, header: encodeIfInfoMsg({}), attrs: [EXT_MASK] })
    .filter((m) => m.type === RTM_NEWLINK).map(decodeLink);
}

/** One device, or undefined if there is none by that name/index. */
export function linkGet(sock: NetlinkSocket, ref: LinkRef): Link | undefined {
  const { header, attrs } = refHeader(ref);
  try {
    const msgs = sock.request(`get link ${ref}`, { type: RTM_GETLINK, header, attrs: [...attrs, EXT_MASK] });
    const m = msgs.find((x) => x.type === RTM_NEWLINK);
    return m ? decodeLink(m) : undefined;
  } catch (e) {
    if (e instanceof NetlinkError && e.code === "ENODEV") return undefined;
    throw e;
  }
}

/** A device that must exist. */
export class LinkNotFoundError extends Error {
  override readonly name = "LinkNotFoundError";
  constructor(readonly ref: LinkRef) {
    super(`link ${ref}: not found`);
  }
}

/** Index of a device; throws LinkNotFoundError if missing. */
export function linkIndex(sock: NetlinkSocket, ref: LinkRef): number {
  if (typeof ref === "number") return ref;
  const l = linkGet(sock, ref);
  if (!l) throw new LinkNotFoundError(ref);
  return l.index;
}

// ---------------------------------------------------------------- modify

function setLink(sock: NetlinkSocket, op: string, ref: LinkRef, ifi: { flags?: number; change?: number }, extra: Buffer[]): void {
  const base = refHeader(ref);
  const header = typeof ref === "number" ? encodeIfInfoMsg({ index: ref, ...ifi }) : encodeIfInfoMsg(ifi);
  sock.request(op, { type: RTM_SETLINK, header, attrs: [...base.attrs, ...extra] });
}

export function linkSetUp(sock: NetlinkSocket, ref: LinkRef): void {
  setLink(sock, `set link ${ref} up`, ref, { flags: IFF_UP, change: IFF_UP }, []);
}

export function linkSetDown(sock: NetlinkSocket, ref: LinkRef): void {
  setLink(sock, `set link ${ref} down`, ref, { flags: 0, change: IFF_UP }, []);
}

export function linkSetMtu(sock: NetlinkSocket, ref: LinkRef, mtu: number): void {
  setLink(sock, `set link ${ref} mtu ${mtu}`, ref, {}, [attrU32(IFLA_MTU, mtu)]);
}

export function linkSetMac(sock: NetlinkSocket, ref: LinkRef, mac: string): void {
  setLink(sock, `set link ${ref} address ${mac}`, ref, {}, [attr(IFLA_ADDRESS, macToBytes(mac))]);
}

/** Set IFLA_IFALIAS; an empty string removes the alias. */
export function linkSetAlias(sock: NetlinkSocket, ref: LinkRef, alias: string): void {
  setLink(sock, `set link ${ref} alias ${JSON.stringify(alias)}`, ref, {}, [attrString(IFLA_IFALIAS, alias)]);
}

/** Move a device into named namespace `netns` (it gets a possibly different index there). */
export function linkSetNetns(sock: NetlinkSocket, ref: LinkRef, netns: string): void {
  const fd = openNetnsFd(netns);
  try {
    setLink(sock, `move link ${ref} to netns ${netns}`, ref, {}, [attrS32(IFLA_NET_NS_FD, fd)]);
  } finally {
    closeNetnsFd(fd);
  }
}

/** Delete a device (a veth's peer goes with it). Returns false if it did not exist. */
export function linkDelete(sock: NetlinkSocket, ref: LinkRef): boolean {
  const { header, attrs } = refHeader(ref);
  try {
    sock.request(`delete link ${ref}`, { type: RTM_DELLINK, header, attrs });
    return true;
  } catch (e) {
    if (e instanceof NetlinkError && e.code === "ENODEV") return false;
    throw e;
  }
}
