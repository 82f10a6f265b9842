// Interface addresses (RTM_*ADDR): list, add, replace, delete.
import {
  AF_INET, AF_INET6, IFA_ADDRESS, IFA_BROADCAST, IFA_FLAGS, IFA_F_NODAD, IFA_LABEL, IFA_LOCAL, NLM_F_CREATE,
  NLM_F_EXCL, NLM_F_REPLACE, RTM_DELADDR, RTM_GETADDR, RTM_NEWADDR, RT_SCOPE_UNIVERSE,
} from "./constants.js";
import {
  attr, attrU32, bytesToIp, decodeIfAddrMsg, encodeIfAddrMsg, ipToBytes, parseAttrs, parsePrefix, read, type NlMsg,
} from "./message.js";
import { linkIndex, type LinkRef } from "./link.js";
import { NetlinkError, type NetlinkSocket, type Request } from "./socket.js";

/** An address assigned to a device. */
export interface Address {
  /** ifindex of the device. */
  index: number;
  family: typeof AF_INET | typeof AF_INET6;
  /** The address itself (IFA_LOCAL for IPv4, IFA_ADDRESS for IPv6), canonical text. */
  address: string;
  prefixLen: number;
  /** "address/prefixLen". */
  cidr: string;
  /** Peer address for point-to-point (IFA_ADDRESS when it differs from IFA_LOCAL). */
  peer?: string;
  broadcast?: string;
  /** IFA_LABEL (IPv4 only). */
  label?: string;
  /** RT_SCOPE_* (0 global, 253 link, 254 host). */
  scope: number;
  /** IFA_F_* flags (all 32 bits). */
  flags: number;
}

export function decodeAddress(m: NlMsg): Address {
  const h = decodeIfAddrMsg(m.payload);
  const a = parseAttrs(m.payload, 8);
  const localB = a.get(IFA_LOCAL);
  const addrB = a.get(IFA_ADDRESS);
  const address = bytesToIp((localB ?? addrB)!);
  const out: Address = {
    index: h.index,
    family: h.family === AF_INET6 ? AF_INET6 : AF_INET,
    address,
    prefixLen: h.prefixLen,
    cidr: `${address}/${h.prefixLen}`,
    scope: h.scope,
    flags: read.u32(a.get(IFA_FLAGS)) ?? h.flags,
  };
  if (localB && addrB && !localB.equals(addrB)) out.peer = bytesToIp(addrB);
  const brd = a.get(IFA_BROADCAST);
  if (brd) out.broadcast = bytesToIp(brd);
  const label = read.str(a.get(IFA_LABEL));
  if (label) out.label = label;
  return out;
}

/** Options for adding an address. */
export interface AddrOptions {
  /** RT_SCOPE_* (default global). */
  scope?: number;
  /** IPv6: skip duplicate address detection, so the address is usable at once. */
  noDad?: boolean;
  /** IPv4 broadcast address. */
  broadcast?: string;
}

/** Build an RTM_NEWADDR/RTM_DELADDR request for `cidr` on ifindex `index`. Pure. */
export function buildAddr(type: number, flags: number, index: number, cidr: string, opts: AddrOptions = {}): Request {
  const p = parsePrefix(cidr);
  const bytes = ipToBytes(p.address);
  const ifaFlags = opts.noDad ? IFA_F_NODAD : 0;
  const attrs = [attr(IFA_LOCAL, bytes), attr(IFA_ADDRESS, bytes)];
  if (opts.broadcast) attrs.push(attr(IFA_BROADCAST, ipToBytes(opts.broadcast)));
  if (ifaFlags) attrs.push(attrU32(IFA_FLAGS, ifaFlags));
  return {
    type, flags,
    header: encodeIfAddrMsg({ family: p.family, prefixLen: p.prefixLen, flags: ifaFlags, scope: opts.scope ?? RT_SCOPE_UNIVERSE, index }),
    attrs,
  };
}

/** Addresses, optionally of one device and/or one family. */
export function addrList(sock: NetlinkSocket, filter: { link?: LinkRef; family?: typeof AF_INET | typeof AF_INET6 } = {}): Address[] {
  const index = filter.link === undefined ? 0 : linkIndex(sock, filter.link);
  const header = encodeIfAddrMsg({ family: filter.family ?? 0, prefixLen: 0, flags: 0, scope: 0, index });
  return sock.dump(`list addresses${filter.link !== undefined ? ` of ${filter.link}` : ""}`, { type: RTM_GETADDR, header })
    .filter((m) => m.type === RTM_NEWADDR)
    .map(decodeAddress)
    // Strict checking filters by index in the kernel; this keeps the result right on old kernels too.
    .filter((a) => index === 0 || a.index === index);
}

/** Add an address; throws NetlinkError EEXIST if present. */
export function addrAdd(sock: NetlinkSocket, link: LinkRef, cidr: string, opts: AddrOptions = {}): void {
  sock.request(`add address ${cidr} to ${link}`, buildAddr(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, linkIndex(sock, link), cidr, opts));
}

/** Add or update an address (idempotent). */
export function addrReplace(sock: NetlinkSocket, link: LinkRef, cidr: string, opts: AddrOptions = {}): void {
  sock.request(`replace address ${cidr} on ${link}`, buildAddr(RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE, linkIndex(sock, link), cidr, opts));
}

/** Remove an address. Returns false if it was not there. */
export function addrDelete(sock: NetlinkSocket, link: LinkRef, cidr: string): boolean {
  try {
    sock.request(`delete address ${cidr} from ${link}`, buildAddr(RTM_DELADDR, 0, linkIndex(sock, link), cidr));
    return true;
  } catch (e) {
    if (e instanceof NetlinkError && (e.code === "EADDRNOTAVAIL" || e.code === "ENOENT")) return false;
    throw e;
  }
}
