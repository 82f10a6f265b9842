// Ring buffer records as the programs write them (bpf/include/events.h), built from the layout's
// offsets, and an event stream that serves them: what the monitor and daemon tests feed.

import type { EventStream } from "../../../reconciler/apply/port.js";
import { DIR_EGRESS, DIR_INGRESS, EVENT, EventType, FAMILY_IPV4, FAMILY_IPV6, Verdict, encodePolicyKey, type PolicyKey } from "../../../reconciler/datapath/layouts.js";
import { parseIPv4, parseIPv6 } from "../../../reconciler/manifest/ip.js";

export interface RecordFields {
  timeNs?: bigint;
  type: "drop" | "verdict" | "audit";
  epId: number;
  peerIdentity: number;
  direction: "ingress" | "egress";
  reason?: number;
  verdict: "allow" | "deny";
  /** The deciding entry's key (port already masked to its prefix); absent: default deny. */
  match?: PolicyKey;
  protocol: number;
  saddr: string;
  daddr: string;
  sport: number;
  dport: number;
  length?: number;
}

export function encodeRecord(f: RecordFields): Buffer {
  const o = EVENT.offsets;
  const b = Buffer.alloc(EVENT.size);
  b.writeBigUInt64LE(f.timeNs ?? 1_000_000_000n, o.time_ns);
  b.writeUInt32LE(f.epId, o.ep_id);
  b.writeUInt32LE(f.peerIdentity, o.peer_identity);
  b.writeUInt32LE(f.length ?? 60, o.len);
  b[o.type] = { drop: EventType.DROP, verdict: EventType.VERDICT, audit: EventType.AUDIT }[f.type];
  b[o.direction] = f.direction === "ingress" ? DIR_INGRESS : DIR_EGRESS;
  b[o.reason] = f.reason ?? 0;
  b[o.verdict] = f.verdict === "allow" ? Verdict.ALLOW : Verdict.DENY;
  if (f.match) encodePolicyKey(f.match, b, o.match);
  const v6 = f.saddr.includes(":");
  b[o.family] = v6 ? FAMILY_IPV6 : FAMILY_IPV4;
  b[o.protocol] = f.protocol;
  b.writeUInt16BE(f.sport, o.sport);
  b.writeUInt16BE(f.dport, o.dport);
  Buffer.from(v6 ? parseIPv6(f.saddr)! : parseIPv4(f.saddr)!).copy(b, o.saddr);
  Buffer.from(v6 ? parseIPv6(f.daddr)! : parseIPv4(f.daddr)!).copy(b, o.daddr);
  return b;
}

/**
 * An event stream over records the test pushes: drain hands them out of one shared buffer (as the
 * ring does, valid only during the call), wait resolves when some are pushed or the timeout passes.
 */
export class FakeEventStream implements EventStream {
  private queue: Buffer[] = [];
  private waiter: (() => void) | undefined;
  closed = false;
  drains = 0;

  push(...records: Buffer[]): void {
    this.queue.push(...records);
    this.waiter?.();
  }

  drain(onRecord: (buf: Buffer, offset: number, length: number) => void, max = Infinity): number {
    this.drains++;
    const taken = this.queue.splice(0, Math.min(max, this.queue.length));
    if (taken.length === 0) return 0;
    const ring = Buffer.concat([Buffer.alloc(8), ...taken.map((r) => Buffer.concat([Buffer.alloc(8), r]))]);
    let at = 8;
    for (const r of taken) {
      onRecord(ring, at + 8, r.length);
      at += 8 + r.length;
    }
    ring.fill(0xee); // a record kept past its call would read garbage, as with the real ring
    return taken.length;
  }

  wait(timeoutMs: number): Promise<boolean> {
    if (this.queue.length) return Promise.resolve(true);
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.waiter = undefined;
        resolve(false);
      }, timeoutMs);
      this.waiter = () => {
        clearTimeout(t);
        this.waiter = undefined;
        resolve(true);
      };
    });
  }

  close(): void {
    this.closed = true;
  }
}
