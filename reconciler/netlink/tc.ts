// The legacy tc attach path: clsact qdisc + cls_bpf filters in direct-action mode (kernels without
// tcx). Listing returns every filter on the hook, including ones other tools installed, so callers
// can recognise theirs (by prio/handle/name) and leave the rest alone.
import {
  AF_UNSPEC, ETH_P_ALL, NLM_F_CREATE, NLM_F_EXCL, RTM_DELQDISC, RTM_DELTFILTER, RTM_GETQDISC, RTM_GETTFILTER,
  RTM_NEWQDISC, RTM_NEWTFILTER, TCA_BPF_FD, TCA_BPF_FLAGS, TCA_BPF_FLAG_ACT_DIRECT, TCA_BPF_ID, TCA_BPF_NAME,
  TCA_BPF_TAG, TCA_CHAIN, TCA_KIND, TCA_OPTIONS, TC_H_CLSACT, TC_H_MIN_EGRESS, TC_H_MIN_INGRESS, tcHandle,
} from "./constants.js";
import { attrNested, attrString, attrU32, decodeTcMsg, encodeTcMsg, parseAttrs, read, type NlMsg } from "./message.js";
import { linkIndex, type LinkRef } from "./link.js";
import { NetlinkError, type NetlinkSocket, type Request } from "./socket.js";

export type TcDirection = "ingress" | "egress";

/** The clsact qdisc's handle, ffff:0. */
export const CLSACT_HANDLE = 0xffff0000;

/** tcm_parent of filters on a clsact hook: ffff:fff2 (ingress) or ffff:fff3 (egress). */
export function hookParent(direction: TcDirection): number {
  return tcHandle(TC_H_CLSACT, direction === "ingress" ? TC_H_MIN_INGRESS : TC_H_MIN_EGRESS);
}

/** A qdisc on a device. */
export interface Qdisc {
  /** ifindex. */
  index: number;
  kind: string;
  handle: number;
  parent: number;
}

/** A tc filter on a clsact hook. */
export interface TcFilter {
  /** ifindex. */
  index: number;
  direction: TcDirection;
  /** Classifier kind ("bpf", "u32", "flower", ...). */
  kind: string;
  /** Priority (tc "pref"). */
  prio: number;
  /** Ethernet protocol in host order (0x0003 = all). */
  protocol: number;
  handle: number;
  chain: number;
  /** For kind "bpf": program id, name, tag (hex) and whether it runs in direct-action mode. */
  bpf?: { id?: number; name?: string; tag?: string; directAction: boolean };
}

/** A cls_bpf filter to install. */
export interface BpfFilterSpec {
  dev: LinkRef;
  direction: TcDirection;
  /** An fd of a loaded BPF_PROG_TYPE_SCHED_CLS program. The caller keeps owning it. */
  fd: number;
  /** Name shown by tc (TCA_BPF_NAME), e.g. "reconcile:lxc1:ingress". */
  name: string;
  /** Priority (1..65535). */
  prio: number;
  /** Filter handle (non-zero). */
  handle: number;
  /** Default true: the program's return code is the verdict (TC_ACT_*). */
  directAction?: boolean;
}

function info(prio: number, protocol = ETH_P_ALL): number {
  // tcm_info = TC_H_MAKE(prio << 16, htons(protocol)).
  const be = ((protocol & 0xff) << 8) | ((protocol >> 8) & 0xff);
  return ((prio << 16) >>> 0 | be) >>> 0;
}

/** RTM_NEWTFILTER for a cls_bpf filter on ifindex `index`. Pure. */
export function buildBpfFilter(spec: BpfFilterSpec, index: number, flags: number): Request {
  if (!Number.isInteger(spec.prio) || spec.prio < 1 || spec.prio > 0xffff) throw new RangeError(`tc filter prio: expected 1..65535, got ${spec.prio}`);
  if (!Number.isInteger(spec.handle) || spec.handle < 1 || spec.handle > 0xffffffff) throw new RangeError(`tc filter handle: expected 1..2^32-1, got ${spec.handle}`);
  const opts = [attrU32(TCA_BPF_FD, spec.fd), attrString(TCA_BPF_NAME, spec.name)];
  if (spec.directAction ?? true) opts.push(attrU32(TCA_BPF_FLAGS, TCA_BPF_FLAG_ACT_DIRECT));
  return {
    type: RTM_NEWTFILTER, flags,
    header: encodeTcMsg({ family: AF_UNSPEC, index, handle: spec.handle, parent: hookParent(spec.direction), info: info(spec.prio) }),
    attrs: [attrString(TCA_KIND, "bpf"), attrNested(TCA_OPTIONS, opts)],
  };
}

export function decodeQdisc(m: NlMsg): Qdisc {
  const t = decodeTcMsg(m.payload);
  const a = parseAttrs(m.payload, 20);
  return { index: t.index, kind: read.str(a.get(TCA_KIND)) ?? "", handle: t.handle, parent: t.parent };
}

export function decodeFilter(m: NlMsg, direction: TcDirection): TcFilter {
  const t = decodeTcMsg(m.payload);
  const a = parseAttrs(m.payload, 20);
  const kind = read.str(a.get(TCA_KIND)) ?? "";
  const protoBe = t.info & 0xffff;
  const f: TcFilter = {
    index: t.index, direction, kind,
    prio: t.info >>> 16,
    protocol: ((protoBe & 0xff) << 8) | (protoBe >> 8),
    handle: t.handle,
    chain: read.u32(a.get(TCA_CHAIN)) ?? 0,
  };
  const o = a.get(TCA_OPTIONS);
  if (kind === "bpf" && o) {
    const b = parseAttrs(o);
    const bpf: NonNullable<TcFilter["bpf"]> = { directAction: ((read.u32(b.get(TCA_BPF_FLAGS)) ?? 0) & TCA_BPF_FLAG_ACT_DIRECT) !== 0 };
    const id = read.u32(b.get(TCA_BPF_ID));
    if (id !== undefined) bpf.id = id;
    const name = read.str(b.get(TCA_BPF_NAME));
    if (name !== undefined) bpf.name = name;
    const tag = b.get(TCA_BPF_TAG);
    if (tag) bpf.tag = tag.toString("hex");
    f.bpf = bpf;
  }
  return f;
}

/** Qdiscs, optionally of one device. */
export function qdiscList(sock: NetlinkSocket, dev?: LinkRef): Qdisc[] {
  const index = dev === undefined ? 0 : linkIndex(sock, dev);
  return sock.dump("list qdiscs", { type: RTM_GETQDISC, header: encodeTcMsg({ family: AF_UNSPEC, index, handle: 0, parent: 0, info: 0 }) })
    .filter((m) => m.type === RTM_NEWQDISC).map(decodeQdisc).filter((q) => index === 0 || q.index === index);
}

/** A different qdisc occupies clsact's slot (e.g. a plain "ingress" qdisc). */
export class QdiscConflictError extends Error {
  override readonly name = "QdiscConflictError";
}

/**
 * Make sure `dev` has a clsact qdisc. Returns true if it was created now, false if it already
 * existed. Throws QdiscConflictError if another qdisc holds the ingress/clsact slot.
 */
export function qdiscEnsureClsact(sock: NetlinkSocket, dev: LinkRef): boolean {
  const index = linkIndex(sock, dev);
  const req: Request = {
    type: RTM_NEWQDISC, flags: NLM_F_CREATE | NLM_F_EXCL,
    header: encodeTcMsg({ family: AF_UNSPEC, index, handle: CLSACT_HANDLE, parent: TC_H_CLSACT, info: 0 }),
    attrs: [attrString(TCA_KIND, "clsact")],
  };
  try {
    sock.request(`add clsact qdisc to ${dev}`, req);
    return true;
  } catch (e) {
    if (!(e instanceof NetlinkError) || e.code !== "EEXIST") throw e;
    const q = qdiscList(sock, index).find((x) => x.parent === TC_H_CLSACT);
    if (q?.kind === "clsact") return false;
    throw new QdiscConflictError(`add clsact qdisc to ${dev}: expected clsact at ffff:fff1, got ${q?.kind ?? "nothing"}`, { cause: e });
  }
}

/** Remove the clsact qdisc (and with it every filter on both hooks). Returns false if absent. */
export function qdiscDeleteClsact(sock: NetlinkSocket, dev: LinkRef): boolean {
  const index = linkIndex(sock, dev);
  try {
    sock.request(`delete clsact qdisc from ${dev}`, {
      type: RTM_DELQDISC, header: encodeTcMsg({ family: AF_UNSPEC, index, handle: CLSACT_HANDLE, parent: TC_H_CLSACT, info: 0 }),
      attrs: [attrString(TCA_KIND, "clsact")],
    });
    return true;
  } catch (e) {
    if (e instanceof NetlinkError && (e.code === "ENOENT" || e.code === "EINVAL")) return false;
    throw e;
  }
}

/** Every filter on one hook of `dev` (ours and foreign). Empty if there is no clsact qdisc. */
export function filterList(sock: NetlinkSocket, dev: LinkRef, direction: TcDirection): TcFilter[] {
  const index = linkIndex(sock, dev);
  let msgs: NlMsg[];
  try {
    msgs = sock.dump(`list ${direction} filters on ${dev}`, {
      type: RTM_GETTFILTER, header: encodeTcMsg({ family: AF_UNSPEC, index, handle: 0, parent: hookParent(direction), info: 0 }),
    });
  } catch (e) {
    // No clsact qdisc: the hook does not exist, so there are no filters on it.
    if (e instanceof NetlinkError && (e.code === "EINVAL" || e.code === "ENOENT")) return [];
    throw e;
  }
  return msgs
    .filter((m) => m.type === RTM_NEWTFILTER)
    .map((m) => decodeFilter(m, direction))
    // The dump also lists each classifier instance itself (handle 0, no options); those are not filters.
    .filter((f) => f.handle !== 0);
}

function bpfFilter(sock: NetlinkSocket, spec: BpfFilterSpec, flags: number, verb: string): void {
  const index = linkIndex(sock, spec.dev);
  sock.request(`${verb} bpf filter ${spec.name} on ${spec.dev} ${spec.direction} prio ${spec.prio} handle ${spec.handle}`,
    buildBpfFilter(spec, index, flags));
}

/** Add a cls_bpf filter; throws NetlinkError EEXIST if prio/handle is taken. Needs clsact first. */
export function filterAddBpf(sock: NetlinkSocket, spec: BpfFilterSpec): void {
  bpfFilter(sock, spec, NLM_F_CREATE | NLM_F_EXCL, "add");
}

/** Add or atomically replace the program of the cls_bpf filter at prio/handle. */
export function filterReplaceBpf(sock: NetlinkSocket, spec: BpfFilterSpec): void {
  bpfFilter(sock, spec, NLM_F_CREATE, "replace");
}

/** Which filter to delete: exactly one (prio and non-zero handle), never a whole priority. */
export interface FilterRef {
  dev: LinkRef;
  direction: TcDirection;
  prio: number;
  handle: number;
  /** Classifier kind; default "bpf". */
  kind?: string;
  /** Ethernet protocol (host order); default ETH_P_ALL. */
  protocol?: number;
}

/** Delete one filter. Returns false if it did not exist. */
export function filterDelete(sock: NetlinkSocket, ref: FilterRef): boolean {
  if (!ref.handle) throw new RangeError("tc filter delete: handle must be non-zero (handle 0 would delete every filter at that prio)");
  const index = linkIndex(sock, ref.dev);
  try {
    sock.request(`delete filter on ${ref.dev} ${ref.direction} prio ${ref.prio} handle ${ref.handle}`, {
      type: RTM_DELTFILTER,
      header: encodeTcMsg({ family: AF_UNSPEC, index, handle: ref.handle, parent: hookParent(ref.direction), info: info(ref.prio, ref.protocol) }),
      attrs: [attrString(TCA_KIND, ref.kind ?? "bpf")],
    });
    return true;
  } catch (e) {
    if (e instanceof NetlinkError && (e.code === "ENOENT" || e.code === "EINVAL")) return false;
    throw e;
  }
}
