// rtnetlink notifications (links, addresses, routes) without ever blocking the event loop.
//
// Approach: a non-blocking netlink socket joined to the multicast groups, drained by a timer on the
// main thread (one recv(MSG_DONTWAIT) per tick when idle, about a microsecond). Chosen over a
// blocking recv through koffi's async call on a worker thread because close() must be reliable:
// on Linux, close(2) does not wake a thread blocked in recv(2) on that fd, and the fd number could be
// reused by another socket while the worker still waits on it. Here the socket is only ever touched
// by the main thread, so close() simply stops the timer and closes the fd; no event is delivered
// after close() returns. The cost is latency of up to `intervalMs` (default 20 ms).
import {
  RTM_DELADDR, RTM_DELLINK, RTM_DELROUTE, RTM_NEWADDR, RTM_NEWLINK, RTM_NEWROUTE, RTNLGRP_IPV4_IFADDR,
  RTNLGRP_IPV4_ROUTE, RTNLGRP_IPV6_IFADDR, RTNLGRP_IPV6_ROUTE, RTNLGRP_LINK,
} from "./constants.js";
import { decodeAddress, type Address } from "./addr.js";
import { decodeLink, type Link } from "./link.js";
import { decodeRoute, type Route } from "./route.js";
import { SyscallError } from "./libc.js";
import type { NlMsg } from "./message.js";
import { openRouteIdentified } from "./netns.js";
import type { NetlinkSocket } from "./socket.js";

export type EventGroup = "link" | "ipv4-addr" | "ipv6-addr" | "ipv4-route" | "ipv6-route";
const GROUPS: Record<EventGroup, number> = {
  link: RTNLGRP_LINK, "ipv4-addr": RTNLGRP_IPV4_IFADDR, "ipv6-addr": RTNLGRP_IPV6_IFADDR,
  "ipv4-route": RTNLGRP_IPV4_ROUTE, "ipv6-route": RTNLGRP_IPV6_ROUTE,
};
export const ALL_EVENT_GROUPS: readonly EventGroup[] = Object.keys(GROUPS) as EventGroup[];

/** A parsed notification. "overrun" means the kernel dropped events (ENOBUFS): re-list everything. */
export type NetlinkEvent =
  | { type: "link"; action: "new" | "del"; link: Link }
  | { type: "address"; action: "new" | "del"; address: Address }
  | { type: "route"; action: "new" | "del"; route: Route }
  | { type: "overrun" };

/** Decode one notification message; undefined for types we do not subscribe to. Pure. */
export function decodeEvent(m: NlMsg): NetlinkEvent | undefined {
  switch (m.type) {
    case RTM_NEWLINK: return { type: "link", action: "new", link: decodeLink(m) };
    case RTM_DELLINK: return { type: "link", action: "del", link: decodeLink(m) };
    case RTM_NEWADDR: return { type: "address", action: "new", address: decodeAddress(m) };
    case RTM_DELADDR: return { type: "address", action: "del", address: decodeAddress(m) };
    case RTM_NEWROUTE: return { type: "route", action: "new", route: decodeRoute(m) };
    case RTM_DELROUTE: return { type: "route", action: "del", route: decodeRoute(m) };
    default: return undefined;
  }
}

/** Options for subscribe. */
export interface SubscribeOptions {
  /** Named namespace to watch (the socket is opened inside it); default the current one. */
  netns?: string;
  /** Groups to join; default all of ALL_EVENT_GROUPS. */
  groups?: readonly EventGroup[];
  /** Poll period in ms; default 20. */
  intervalMs?: number;
  /** Socket receive buffer; default 4 MiB (bursts of thousands of route events fit). */
  receiveBuffer?: number;
  /** Let the process exit while subscribed (timer.unref()); default false. */
  unref?: boolean;
  /** Called once if receiving fails for a reason other than overrun; the subscription is closed. */
  onError?: (err: Error) => void;
}

/** A live subscription. */
export class Subscription {
  private readonly sock: NetlinkSocket;
  private readonly timer: NodeJS.Timeout;
  private closed = false;
  /** netnsIdentity() of the namespace watched (undefined: the current one). A namespace deleted and
   *  made again under its name is another namespace: this subscription keeps watching the old one. */
  readonly netnsIdentity: string | undefined;

  constructor(private readonly listener: (ev: NetlinkEvent) => void, private readonly opts: SubscribeOptions = {}) {
    const groups = (opts.groups ?? ALL_EVENT_GROUPS).map((g) => GROUPS[g]);
    const opened = openRouteIdentified(opts.netns, { groups, nonblocking: true, receiveBuffer: opts.receiveBuffer ?? 4 << 20 });
    this.sock = opened.socket;
    this.netnsIdentity = opened.identity;
    this.timer = setInterval(() => this.poll(), opts.intervalMs ?? 20);
    if (opts.unref) this.timer.unref();
  }

  /** Deliver everything queued now (also runs on every timer tick). Returns how many events. */
  poll(): number {
    if (this.closed) return 0;
    let msgs: NlMsg[];
    try {
      msgs = this.sock.receiveNow();
    } catch (e) {
      if (e instanceof SyscallError && e.code === "ENOBUFS") {
        this.listener({ type: "overrun" });
        return 1;
      }
      this.close();
      const err = e instanceof Error ? e : new Error(String(e));
      if (this.opts.onError) this.opts.onError(err);
      else throw err;
      return 0;
    }
    let n = 0;
    for (const m of msgs) {
      if (this.closed) break; // the listener may close us mid-batch
      const ev = decodeEvent(m);
      if (ev) {
        n++;
        this.listener(ev);
      }
    }
    return n;
  }

  /** Stop: no event is delivered after this returns. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    this.sock.close();
  }

  get isClosed(): boolean {
    return this.closed;
  }
}

/** Subscribe to link/address/route notifications; see Subscription. */
export function subscribe(listener: (ev: NetlinkEvent) => void, opts: SubscribeOptions = {}): Subscription {
  return new Subscription(listener, opts);
}
