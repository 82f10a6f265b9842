// Forwarding database entries of a device itself (`bridge fdb ... self`), as a vxlan device keeps
// them: inner destination MAC → remote underlay address. RTM_*NEIGH with family AF_BRIDGE. Request
// building and reply decoding are pure and exported for unit tests.
import {
  AF_BRIDGE, NDA_DST, NDA_LLADDR, NLM_F_CREATE, NLM_F_REPLACE, NTF_SELF, NUD_NOARP, NUD_PERMANENT, RTM_DELNEIGH,
  RTM_GETNEIGH, RTM_NEWNEIGH,
} from "./constants.js";
import { attr, bytesToIp, bytesToMac, decodeNdMsg, encodeNdMsg, ipToBytes, macToBytes, parseAttrs, type NlMsg } from "./message.js";
import { linkIndex, type LinkRef } from "./link.js";
import { NetlinkError, type NetlinkSocket, type Request } from "./socket.js";

/** One FDB entry of a device (one remote of it: a vxlan entry with several remotes is several). */
export interface FdbEntry {
  /** ifindex of the device holding the entry. */
  index: number;
  /** Inner destination MAC, lower-case colon form. */
  mac: string;
  /** Remote underlay address the frame is encapsulated to; undefined for entries without one. */
  dst?: string;
  /** NUD_* bit set (NUD_PERMANENT for the entries reconcile writes). */
  state: number;
  /** NTF_* flags (NTF_SELF: the device's own table, not a bridge master's). */
  flags: number;
}

/** An FDB entry to write: frames to `mac` on `dev` go to the underlay address `dst`. */
export interface FdbSpec {
  dev: LinkRef;
  /** Inner destination MAC "aa:bb:cc:dd:ee:ff". */
  mac: string;
  /** Remote underlay address (IPv4 or IPv6). */
  dst: string;
}

/** The state reconcile writes: permanent (never aged, never learned over) and no ARP. */
export const FDB_STATE = NUD_PERMANENT | NUD_NOARP;

/** Decodes an RTM_NEWNEIGH message of family AF_BRIDGE. */
export function decodeFdb(m: NlMsg): FdbEntry {
  const h = decodeNdMsg(m.payload);
  const a = parseAttrs(m.payload, 12);
  const ll = a.get(NDA_LLADDR);
  const e: FdbEntry = { index: h.index, mac: ll && ll.length === 6 ? bytesToMac(ll) : "", state: h.state, flags: h.flags };
  const dst = a.get(NDA_DST);
  if (dst && (dst.length === 4 || dst.length === 16)) e.dst = bytesToIp(dst);
  return e;
}

/**
 * RTM_NEWNEIGH (replace) or RTM_DELNEIGH for ifindex `index`, family AF_BRIDGE, NTF_SELF. Pure.
 * A delete without `dst` removes the MAC's entry with all its remotes.
 */
export function buildFdb(type: typeof RTM_NEWNEIGH | typeof RTM_DELNEIGH, index: number, mac: string, dst?: string): Request {
  const attrs = [attr(NDA_LLADDR, macToBytes(mac))];
  if (dst !== undefined) attrs.push(attr(NDA_DST, ipToBytes(dst)));
  const isNew = type === RTM_NEWNEIGH;
  return {
    type,
    flags: isNew ? NLM_F_CREATE | NLM_F_REPLACE : 0,
    header: encodeNdMsg({ family: AF_BRIDGE, index, state: isNew ? FDB_STATE : 0, flags: NTF_SELF, type: 0 }),
    attrs,
  };
}

/** The FDB entries of one device's own table (NTF_SELF), with a MAC. */
export function fdbList(sock: NetlinkSocket, dev: LinkRef): FdbEntry[] {
  const index = linkIndex(sock, dev);
  // Strict dump checking takes the device in ndm_ifindex (the "bridge port" filter of the dump).
  const header = encodeNdMsg({ family: AF_BRIDGE, index, state: 0, flags: 0, type: 0 });
  const out: FdbEntry[] = [];
  for (const m of sock.dump(`list fdb of ${dev}`, { type: RTM_GETNEIGH, header, attrs: [] })) {
    if (m.type !== RTM_NEWNEIGH) continue;
    const e = decodeFdb(m);
    if (e.index === index && e.mac !== "" && (e.flags & NTF_SELF) !== 0) out.push(e);
  }
  return out;
}

/** Adds or overwrites `mac dst DST dev DEV self permanent` (idempotent). */
export function fdbReplace(sock: NetlinkSocket, spec: FdbSpec): void {
  sock.request(`replace fdb ${spec.mac} dst ${spec.dst} dev ${spec.dev}`, buildFdb(RTM_NEWNEIGH, linkIndex(sock, spec.dev), spec.mac, spec.dst));
}

/** Deletes the entry of `mac` (only its remote `dst` if given). Returns false if there was none. */
export function fdbDelete(sock: NetlinkSocket, spec: { dev: LinkRef; mac: string; dst?: string }): boolean {
  try {
    sock.request(`delete fdb ${spec.mac}${spec.dst ? ` dst ${spec.dst}` : ""} dev ${spec.dev}`, buildFdb(RTM_DELNEIGH, linkIndex(sock, spec.dev), spec.mac, spec.dst));
    return true;
  } catch (e) {
    if (e instanceof NetlinkError && e.code === "ENOENT") return false;
    throw e;
  }
}
