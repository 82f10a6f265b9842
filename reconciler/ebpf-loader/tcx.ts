// SPDX-License-Identifier: Apache-2.0
// tcx links (kernel >= 6.6): attach a sched_cls program to a device's ingress/egress, update in place.
import * as sys from "./sys.js";
import { BpfError, Errno } from "./sys.js";
import type { BpfProgram } from "./program.js";
import { requireFeature } from "./features.js";

export type TcxHook = "ingress" | "egress";
/** Where a new program goes among those already attached to the hook. */
export type TcxPosition = "first" | "last";

const attachTypes: Record<TcxHook, number> = {
  ingress: sys.AttachType.TCX_INGRESS,
  egress: sys.AttachType.TCX_EGRESS,
};
const BPF_LINK_TYPE_TCX = 11;

export interface TcxLinkInfo {
  id: number;
  progId: number;
  ifindex: number;
  hook: TcxHook;
}

/** A link that is not a usable tcx link: another link type, an unknown attach type, or unreadable. */
export class TcxLinkError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "TcxLinkError";
  }
}

export class TcxLink {
  readonly fd: number;
  private closed = false;

  private constructor(fd: number) {
    this.fd = fd;
    sys.trackFd(this, fd);
  }

  /**
   * Attach `prog` to a device's hook. `position` "last" (the default, as the kernel does without
   * flags) appends it after the programs already there; "first" puts it at the head (BPF_F_BEFORE
   * with no relative program), so it runs before them.
   */
  static attach(prog: BpfProgram, ifindex: number, hook: TcxHook, position: TcxPosition = "last"): TcxLink {
    const op = `attach tcx ${hook} ifindex ${ifindex}${position === "first" ? " first" : ""}`;
    try {
      return new TcxLink(sys.linkCreateTcx(prog.fd, ifindex, attachTypes[hook], op, position === "first" ? sys.BPF_F_BEFORE : 0));
    } catch (err) {
      if (err instanceof BpfError && err.errno === Errno.EINVAL) requireFeature("tcx", err);
      throw err;
    }
  }

  static openPinned(path: string): TcxLink {
    const op = `open pinned tcx link ${path}`;
    return TcxLink.checked(sys.objGet(path, op), op);
  }

  static fromId(id: number): TcxLink {
    const op = `open link id ${id}`;
    return TcxLink.checked(sys.linkGetFdById(id, op), op);
  }

  /**
   * What a pinned tcx link attaches, read without keeping it open (open, one info, close: a resync
   * reads thousands of them). Throws TcxLinkError when the pin is not a tcx link.
   */
  static readPinned(path: string): TcxLinkInfo {
    const op = `open pinned tcx link ${path}`;
    const fd = sys.objGet(path, op);
    try {
      return checkedInfo(fd, op);
    } finally {
      sys.closeFd(fd);
    }
  }

  private static checked(fd: number, op: string): TcxLink {
    const l = new TcxLink(fd);
    try {
      checkedInfo(fd, op);
    } catch (err) {
      l.close();
      throw err;
    }
    return l;
  }

  info(): TcxLinkInfo {
    return linkInfo(this.fd);
  }

  /** Replace the program in place (BPF_LINK_UPDATE): no gap, same link id. */
  update(prog: BpfProgram): void {
    sys.linkUpdate(this.fd, prog.fd, `update tcx link to program ${prog.name}`);
  }

  pin(path: string): void {
    sys.objPin(this.fd, path, `pin tcx link at ${path}`);
  }

  /** Detach from the device (BPF_LINK_DETACH) even if pinned, then close the fd. Pins must be removed separately. */
  detach(): void {
    sys.linkDetach(this.fd, "detach tcx link");
    this.close();
  }

  /** Close the fd; an unpinned link detaches, a pinned one stays attached. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    sys.untrackFd(this);
    sys.closeFd(this.fd);
  }
}

// struct bpf_link_info: type @0, id @4, prog_id @8, tcx.ifindex @16, tcx.attach_type @20 (64 bytes).
function linkInfo(fd: number): TcxLinkInfo {
  const b = Buffer.alloc(64);
  sys.objGetInfoByFd(fd, b, "info tcx link");
  const type = b.readUInt32LE(0);
  if (type !== BPF_LINK_TYPE_TCX) throw new TcxLinkError(`link ${b.readUInt32LE(4)} is of type ${type}, not tcx (${BPF_LINK_TYPE_TCX})`);
  const at = b.readUInt32LE(20);
  const hook: TcxHook | undefined = at === attachTypes.ingress ? "ingress" : at === attachTypes.egress ? "egress" : undefined;
  if (!hook) throw new TcxLinkError(`tcx link ${b.readUInt32LE(4)} has attach type ${at}`);
  // A detached link reports ifindex 0.
  return { id: b.readUInt32LE(4), progId: b.readUInt32LE(8), ifindex: b.readUInt32LE(16), hook };
}

/** linkInfo() of a link just opened by `op`; any failure is a TcxLinkError naming op. */
function checkedInfo(fd: number, op: string): TcxLinkInfo {
  try {
    return linkInfo(fd);
  } catch (err) {
    throw new TcxLinkError(`${op}: ${(err as Error).message}`, { cause: err });
  }
}

/** Programs and links attached to a device's tcx hook (BPF_PROG_QUERY), first to last. */
export function queryTcx(ifindex: number, hook: TcxHook): { progIds: number[]; linkIds: number[]; revision: bigint } {
  let cap = 64;
  for (;;) {
    const progs = Buffer.alloc(cap * 4);
    const links = Buffer.alloc(cap * 4);
    const r = sys.progQueryRaw(ifindex, attachTypes[hook], progs, links);
    if (r.errno === Errno.ENOSPC && r.count > cap) {
      cap = r.count;
      continue;
    }
    if (r.errno !== 0) {
      const err = new BpfError(`query tcx ${hook} ifindex ${ifindex}`, "bpf(BPF_PROG_QUERY)", r.errno);
      if (r.errno === Errno.EINVAL) requireFeature("tcx", err);
      throw err;
    }
    const progIds: number[] = [];
    const linkIds: number[] = [];
    for (let i = 0; i < r.count; i++) {
      progIds.push(progs.readUInt32LE(i * 4));
      linkIds.push(links.readUInt32LE(i * 4));
    }
    return { progIds, linkIds, revision: r.revision };
  }
}
