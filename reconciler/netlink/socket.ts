// A NETLINK_ROUTE socket: request/ack with sequence numbers, multi-part dumps, kernel errors with
// extended ack. All calls are synchronous on the calling (main) thread: rtnetlink handles a request
// inside sendto() and builds dump parts inside recv(), so a blocking recv here never waits for
// anything external. Event subscriptions use a non-blocking socket instead (events.ts).
import { constants as osConstants } from "node:os";
import { getSystemErrorMap } from "node:util";
import * as libc from "./libc.js";
import {
  NETLINK_ROUTE, NLMSG_DONE, NLMSG_ERROR, NLMSG_NOOP, NLMSG_OVERRUN, NLM_F_ACK, NLM_F_DUMP,
  NLM_F_DUMP_INTR, NLM_F_MULTI, NLM_F_REQUEST, RTM_NAMES, SOL_NETLINK, NETLINK_EXT_ACK,
  NETLINK_CAP_ACK, NETLINK_GET_STRICT_CHK, NETLINK_ADD_MEMBERSHIP,
} from "./constants.js";
import { MessageFormatError, encodeMessage, parseDone, parseError, parseMessages, type NlMsg } from "./message.js";

const MSG_TRUNC = 0x20;

/** Name of an rtnetlink message type for messages ("RTM_NEWLINK", or "type 99"). */
export function rtmName(type: number): string {
  return RTM_NAMES[type] ?? `type ${type}`;
}

/** The kernel refused a netlink request. */
export class NetlinkError extends Error {
  override readonly name = "NetlinkError";
  constructor(
    /** What we were doing, e.g. "create link lxc1". */
    readonly op: string,
    /** The request's message type (RTM_*). */
    readonly msgType: number,
    /** Positive errno from the kernel. */
    readonly errno: number,
    /** The kernel's extended-ack message, when it sent one. */
    readonly extAck?: string,
    options?: ErrorOptions,
  ) {
    const desc = extAck ?? getSystemErrorMap().get(-errno)?.[1] ?? "";
    super(`${op}: netlink(${rtmName(msgType)}): ${libc.errnoName(errno)}${desc ? `: ${desc}` : ""}`, options);
  }
  /** errno name, e.g. "EEXIST". */
  get code(): string {
    return libc.errnoName(this.errno);
  }
}

/** The socket was used after close() (a bug in the caller). */
export class SocketClosedError extends Error {
  override readonly name = "SocketClosedError";
}

/** Options for opening a netlink socket. */
export interface SocketOptions {
  /** RTNLGRP_* multicast groups to join (for event subscriptions). */
  groups?: number[];
  /** Open with SOCK_NONBLOCK (event subscriptions poll; requests block). */
  nonblocking?: boolean;
  /** SO_RCVBUF(FORCE) in bytes; large values avoid ENOBUFS on busy event sockets. */
  receiveBuffer?: number;
}

/** A request body: message type, NLM_F_* modifiers beyond REQUEST/ACK, fixed header, attributes. */
export interface Request {
  type: number;
  /** Extra flags (NLM_F_CREATE|NLM_F_EXCL, NLM_F_DUMP, ...). REQUEST and ACK are added. */
  flags?: number;
  header: Buffer;
  attrs?: Buffer[];
}

const RECV_BUF = 1 << 20;
/** Attempts of an interrupted dump, the first one included. */
const DUMP_ATTEMPTS = 8;

const NEVER_NOTIFIED = new Int32Array(new SharedArrayBuffer(4));

/** Blocks this thread for `ms` (the netlink calls are synchronous; a dump's retry waits in place). */
function pause(ms: number): void {
  Atomics.wait(NEVER_NOTIFIED, 0, 0, ms);
}

export class NetlinkSocket {
  readonly fd: number;
  /** Our port id (nl_pid) as assigned by the kernel at bind time. */
  readonly portId: number;
  private seq: number;
  private closed = false;
  private readonly rbuf = Buffer.alloc(RECV_BUF);
  private readonly kernelAddr = sockaddrNl(0, 0);

  constructor(opts: SocketOptions = {}) {
    let type = libc.SOCK_RAW | libc.SOCK_CLOEXEC;
    if (opts.nonblocking) type |= libc.SOCK_NONBLOCK;
    this.fd = libc.socket(libc.AF_NETLINK, type, NETLINK_ROUTE, "open netlink socket");
    try {
      // Extended ack: the kernel explains refusals. Capped ack: it does not echo our request back.
      libc.setsockoptInt(this.fd, SOL_NETLINK, NETLINK_EXT_ACK, 1, "enable NETLINK_EXT_ACK");
      libc.setsockoptInt(this.fd, SOL_NETLINK, NETLINK_CAP_ACK, 1, "enable NETLINK_CAP_ACK");
      // Strict checking makes the kernel honour filters in dump requests (ifindex, table) and
      // reject malformed headers instead of guessing.
      libc.setsockoptInt(this.fd, SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1, "enable NETLINK_GET_STRICT_CHK");
      if (opts.receiveBuffer) {
        libc.setsockoptInt(this.fd, libc.SOL_SOCKET, libc.SO_RCVBUFFORCE, opts.receiveBuffer, "set SO_RCVBUFFORCE");
      }
      libc.bind(this.fd, sockaddrNl(0, 0), "bind netlink socket");
      this.portId = libc.getsockname(this.fd, 12, "read netlink port id").readUInt32LE(4);
      for (const g of opts.groups ?? []) {
        libc.setsockoptInt(this.fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, g, `join rtnetlink group ${g}`);
      }
    } catch (e) {
      libc.close(this.fd);
      throw e;
    }
    // Start from a time-derived number so stale replies from an earlier process are unlikely to match.
    this.seq = (Date.now() & 0x7fffffff) >>> 0;
  }

  /**
   * Send a request and wait for its ACK. Returns any messages the kernel sent before the ACK
   * (e.g. the reply to a GET without NLM_F_DUMP). Throws NetlinkError on NLMSG_ERROR.
   */
  request(op: string, req: Request): NlMsg[] {
    const seq = this.send(req, NLM_F_REQUEST | NLM_F_ACK | (req.flags ?? 0));
    const out: NlMsg[] = [];
    for (;;) {
      for (const m of this.receive(op)) {
        if (m.seq !== seq || m.pid !== this.portId) continue; // not ours (stale)
        if (m.type === NLMSG_ERROR) {
          const e = parseError(m);
          if (e.errno === 0) return out;
          throw new NetlinkError(op, req.type, e.errno, e.message);
        }
        if (m.type === NLMSG_NOOP) continue;
        out.push(m);
      }
    }
  }

  /**
   * A dump (NLM_F_DUMP): all parts until NLMSG_DONE. If the kernel flags the dump as interrupted
   * (NLM_F_DUMP_INTR: the table changed while dumping) it is tried again after 2, 4, … 128 ms,
   * DUMP_ATTEMPTS times in all (≈ 0.25 s): right after a thousand interfaces are made, their IPv6
   * addresses keep the address table changing for a while, and retries back to back all failed.
   */
  dump(op: string, req: Request): NlMsg[] {
    for (let attempt = 1; ; attempt++) {
      const { msgs, interrupted } = this.dumpOnce(op, req);
      if (!interrupted) return msgs;
      if (attempt >= DUMP_ATTEMPTS) {
        throw new NetlinkError(op, req.type, 4 /* EINTR */, `dump interrupted ${attempt} times by concurrent changes`);
      }
      pause(2 ** attempt);
    }
  }

  private dumpOnce(op: string, req: Request): { msgs: NlMsg[]; interrupted: boolean } {
    const seq = this.send(req, NLM_F_REQUEST | NLM_F_DUMP | (req.flags ?? 0));
    const msgs: NlMsg[] = [];
    let interrupted = false;
    for (;;) {
      for (const m of this.receive(op)) {
        if (m.seq !== seq || m.pid !== this.portId) continue;
        if (m.flags & NLM_F_DUMP_INTR) interrupted = true;
        if (m.type === NLMSG_DONE) {
          const d = parseDone(m);
          if (d.errno !== 0) throw new NetlinkError(op, req.type, d.errno, d.message);
          return { msgs, interrupted };
        }
        if (m.type === NLMSG_ERROR) {
          const e = parseError(m);
          if (e.errno === 0) return { msgs, interrupted }; // an ACK ends a dump of nothing
          throw new NetlinkError(op, req.type, e.errno, e.message);
        }
        if (m.type === NLMSG_NOOP || m.type === NLMSG_OVERRUN) continue;
        msgs.push(m);
        if (!(m.flags & NLM_F_MULTI)) return { msgs, interrupted };
      }
    }
  }

  /**
   * Non-blocking receive for subscription sockets: every message queued now (possibly none).
   * Throws SyscallError ENOBUFS when the kernel dropped events (the caller must resync).
   */
  receiveNow(): NlMsg[] {
    this.assertOpen("receive");
    const out: NlMsg[] = [];
    for (;;) {
      const n = libc.recv(this.fd, this.rbuf, libc.MSG_DONTWAIT | MSG_TRUNC, "receive netlink events");
      if (n < 0) return out;
      if (n > this.rbuf.length) throw new MessageFormatError(`netlink datagram of ${n} bytes exceeds the ${this.rbuf.length}-byte buffer`);
      out.push(...parseMessages(this.rbuf, n));
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    libc.close(this.fd);
  }

  get isClosed(): boolean {
    return this.closed;
  }

  private send(req: Request, flags: number): number {
    this.assertOpen("send");
    this.seq = (this.seq + 1) >>> 0;
    const buf = encodeMessage(req.type, flags, this.seq, this.portId, req.header, req.attrs ?? []);
    libc.sendto(this.fd, buf, this.kernelAddr, `send ${rtmName(req.type)}`);
    return this.seq;
  }

  private receive(op: string): NlMsg[] {
    const n = libc.recv(this.fd, this.rbuf, MSG_TRUNC, `${op}: receive`);
    // recv answers -1 only for EAGAIN, which a blocking socket should never see.
    if (n < 0) throw new libc.SyscallError("recv", osConstants.errno.EAGAIN, `${op}: receive`);
    if (n > this.rbuf.length) throw new MessageFormatError(`${op}: netlink datagram of ${n} bytes exceeds the ${this.rbuf.length}-byte buffer`);
    return parseMessages(this.rbuf, n);
  }

  private assertOpen(what: string): void {
    if (this.closed) throw new SocketClosedError(`netlink socket: ${what} after close`);
  }
}

/** struct sockaddr_nl { sa_family_t nl_family; unsigned short nl_pad; __u32 nl_pid; __u32 nl_groups; } */
function sockaddrNl(pid: number, groups: number): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt16LE(libc.AF_NETLINK, 0);
  b.writeUInt32LE(pid, 4);
  b.writeUInt32LE(groups, 8);
  return b;
}
