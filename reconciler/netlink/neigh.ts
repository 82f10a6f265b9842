// Neighbour (ARP/NDP) entries (RTM_*NEIGH): list, add, replace, delete.
import {
  AF_INET, AF_INET6, NDA_DST, NDA_IFINDEX, NDA_LLADDR, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE, NUD_DELAY, NUD_FAILED,
  NUD_INCOMPLETE, NUD_NOARP, NUD_PERMANENT, NUD_PROBE, NUD_REACHABLE, NUD_STALE, RTM_DELNEIGH, RTM_GETNEIGH,
  RTM_NEWNEIGH, RTN_UNICAST,
} from "./constants.js";
import {
  attr, attrU32, bytesToIp, bytesToMac, decodeNdMsg, encodeNdMsg, ipFamily, ipToBytes, macToBytes, parseAttrs, type NlMsg,
} from "./message.js";
import { linkIndex, type LinkRef } from "./link.js";
import { NetlinkError, type NetlinkSocket, type Request } from "./socket.js";

const STATE_NAMES: Array<[number, string]> = [
  [NUD_INCOMPLETE, "incomplete"], [NUD_REACHABLE, "reachable"], [NUD_STALE, "stale"], [NUD_DELAY, "delay"],
  [NUD_PROBE, "probe"], [NUD_FAILED, "failed"], [NUD_NOARP, "noarp"], [NUD_PERMANENT, "permanent"],
];

/** A neighbour cache entry. */
export interface Neighbour {
  /** ifindex of the device. */
  index: number;
  family: typeof AF_INET | typeof AF_INET6;
  /** The neighbour's IP address. */
  address: string;
  /** Link-layer address; undefined for incomplete/failed entries. */
  mac?: string;
  /** NUD_* bit set. */
  state: number;
  /** NUD_* names, e.g. ["permanent"]. */
  states: string[];
  /** NTF_* flags. */
  flags: number;
}

export function decodeNeighbour(m: NlMsg): Neighbour {
  const h = decodeNdMsg(m.payload);
  const a = parseAttrs(m.payload, 12);
  const dst = a.get(NDA_DST);
  const n: Neighbour = {
    index: h.index,
    family: h.family === AF_INET6 ? AF_INET6 : AF_INET,
    address: dst ? bytesToIp(dst) : "",
    state: h.state,
    states: STATE_NAMES.filter(([bit]) => h.state & bit).map(([, name]) => name),
    flags: h.flags,
  };
  const ll = a.get(NDA_LLADDR);
  if (ll && ll.length > 0) n.mac = bytesToMac(ll);
  return n;
}

/** A neighbour entry to write. */
export interface NeighbourSpec {
  dev: LinkRef;
  /** IP address. */
  address: string;
  /** Link-layer address "aa:bb:cc:dd:ee:ff". */
  mac: string;
  /** NUD_* state; default NUD_PERMANENT. */
  state?: number;
}

/** Build an RTM_NEWNEIGH/RTM_DELNEIGH request for ifindex `index`. Pure. */
export function buildNeigh(type: number, flags: number, index: number, address: string, mac?: string, state = NUD_PERMANENT): Request {
  const attrs = [attr(NDA_DST, ipToBytes(address))];
  if (mac !== undefined) attrs.push(attr(NDA_LLADDR, macToBytes(mac)));
  return { type, flags, header: encodeNdMsg({ family: ipFamily(address), index, state, flags: 0, type: RTN_UNICAST }), attrs };
}

/** Neighbour entries (IPv4 and IPv6 unless `family`), optionally of one device. */
export function neighList(sock: NetlinkSocket, filter: { dev?: LinkRef; family?: typeof AF_INET | typeof AF_INET6 } = {}): Neighbour[] {
  const index = filter.dev === undefined ? 0 : linkIndex(sock, filter.dev);
  // Dumped per family: AF_UNSPEC would also dump the bridge FDB (AF_BRIDGE).
  const families = filter.family !== undefined ? [filter.family] : [AF_INET, AF_INET6];
  const out: Neighbour[] = [];
  for (const family of families) {
    // Strict dump checking wants ndm_ifindex 0; the device filter goes in NDA_IFINDEX.
    const header = encodeNdMsg({ family, index: 0, state: 0, flags: 0, type: 0 });
    const attrs = index ? [attrU32(NDA_IFINDEX, index)] : [];
    for (const m of sock.dump("list neighbours", { type: RTM_GETNEIGH, header, attrs })) {
      if (m.type !== RTM_NEWNEIGH) continue;
      const n = decodeNeighbour(m);
      if (index === 0 || n.index === index) out.push(n);
    }
  }
  return out;
}

/** Add an entry; throws NetlinkError EEXIST if one exists for that address. */
export function neighAdd(sock: NetlinkSocket, spec: NeighbourSpec): void {
  sock.request(`add neighbour ${spec.address} lladdr ${spec.mac} dev ${spec.dev}`,
    buildNeigh(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_EXCL, linkIndex(sock, spec.dev), spec.address, spec.mac, spec.state));
}

/** Add or overwrite an entry (idempotent). */
export function neighReplace(sock: NetlinkSocket, spec: NeighbourSpec): void {
  sock.request(`replace neighbour ${spec.address} lladdr ${spec.mac} dev ${spec.dev}`,
    buildNeigh(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE, linkIndex(sock, spec.dev), spec.address, spec.mac, spec.state));
}

/** Delete an entry. Returns false if there was none. */
export function neighDelete(sock: NetlinkSocket, dev: LinkRef, address: string): boolean {
  try {
    sock.request(`delete neighbour ${address} dev ${dev}`, buildNeigh(RTM_DELNEIGH, 0, linkIndex(sock, dev), address, undefined, 0));
    return true;
  } catch (e) {
    if (e instanceof NetlinkError && e.code === "ENOENT") return false;
    throw e;
  }
}
