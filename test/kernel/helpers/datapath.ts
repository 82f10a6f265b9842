// Helpers for the datapath kernel tests: crafted Ethernet frames for BPF_PROG_RUN, and loading
// bpf/build/endpoint.o with its maps pinned in a private pin dir, filled through the layout codecs.
// Checksums are left zero: the programs never read them.

import { mkdirSync, readFileSync, rmSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { BpfMap, RingBuffer, loadCollection, numPossibleCpus, parseElf, type Collection } from "../../../reconciler/ebpf-loader/index.js";
import * as L from "../../../reconciler/datapath/layouts.js";
import type { Decision, Direction } from "../../../reconciler/policy/types.js";

export function suffix(): string {
  return randomBytes(3).toString("hex");
}

// ---- frames --------------------------------------------------------------------------------------

const MAC_A = Buffer.from([0x02, 0, 0, 0, 0, 0xa]);
const MAC_B = Buffer.from([0x02, 0, 0, 0, 0, 0xb]);

function addr(a: string): Buffer {
  const b = Buffer.alloc(16);
  const fam = L.encodeAddress(a, b, 0);
  return fam === 4 ? b.subarray(0, 4) : b;
}

export function ether(type: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(14);
  MAC_B.copy(h, 0);
  MAC_A.copy(h, 6);
  h.writeUInt16BE(type, 12);
  return Buffer.concat([h, payload]);
}

export interface Ipv4Opts {
  src: string;
  dst: string;
  proto: number;
  /** Fragment offset in 8-byte units (non-zero = non-first fragment). */
  fragOffset?: number;
  moreFragments?: boolean;
  /** Extra option bytes (multiple of 4). */
  options?: Buffer;
}

export function ipv4(o: Ipv4Opts, l4: Buffer): Buffer {
  const opt = o.options ?? Buffer.alloc(0);
  const h = Buffer.alloc(20 + opt.length);
  h[0] = 0x40 | ((20 + opt.length) / 4);
  h.writeUInt16BE(h.length + l4.length, 2);
  h.writeUInt16BE((o.moreFragments ? 0x2000 : 0) | (o.fragOffset ?? 0), 6);
  h[8] = 64;
  h[9] = o.proto;
  addr(o.src).copy(h, 12);
  addr(o.dst).copy(h, 16);
  opt.copy(h, 20);
  return Buffer.concat([h, l4]);
}

/** IPv6 header; `ext` are [nextHeader-of-this-ext, bytes] pairs placed before l4 in order. */
export function ipv6(o: { src: string; dst: string; proto: number; ext?: Array<{ type: number; bytes: Buffer }> }, l4: Buffer): Buffer {
  const ext = o.ext ?? [];
  const chain: Buffer[] = [];
  for (let i = 0; i < ext.length; i++) {
    const b = Buffer.from(ext[i].bytes);
    b[0] = i + 1 < ext.length ? ext[i + 1].type : o.proto;
    chain.push(b);
  }
  const body = Buffer.concat([...chain, l4]);
  const h = Buffer.alloc(40);
  h[0] = 0x60;
  h.writeUInt16BE(body.length, 4);
  h[6] = ext.length > 0 ? ext[0].type : o.proto;
  h[7] = 64;
  addr(o.src).copy(h, 8);
  addr(o.dst).copy(h, 24);
  return Buffer.concat([h, body]);
}

export const HOP_BY_HOP = { type: 0, bytes: Buffer.from([0, 0, 1, 4, 0, 0, 0, 0]) }; // PadN
export function fragmentHeader(offset8: number, more: boolean): { type: number; bytes: Buffer } {
  const b = Buffer.alloc(8);
  b.writeUInt16BE((offset8 << 3) | (more ? 1 : 0), 2);
  b.writeUInt32BE(0x1234, 4);
  return { type: 44, bytes: b };
}

export function tcp(sport: number, dport: number, flags = 0x02): Buffer {
  const b = Buffer.alloc(20);
  b.writeUInt16BE(sport, 0);
  b.writeUInt16BE(dport, 2);
  b[12] = 5 << 4;
  b[13] = flags;
  b.writeUInt16BE(65535, 14);
  return b;
}

export function udp(sport: number, dport: number, payload = Buffer.alloc(4)): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt16BE(sport, 0);
  b.writeUInt16BE(dport, 2);
  b.writeUInt16BE(8 + payload.length, 4);
  return Buffer.concat([b, payload]);
}

/** ICMP/ICMPv6 echo (type 8/0 or 128/129). */
export function icmpEcho(type: number, id: number, seq = 1): Buffer {
  const b = Buffer.alloc(16);
  b[0] = type;
  b.writeUInt16BE(id, 4);
  b.writeUInt16BE(seq, 6);
  return b;
}

/** ICMP/ICMPv6 error quoting `quoted` (an IP packet; only its first bytes matter). */
export function icmpError(type: number, code: number, quoted: Buffer): Buffer {
  const b = Buffer.alloc(8);
  b[0] = type;
  b[1] = code;
  return Buffer.concat([b, quoted]);
}

export function arp(): Buffer {
  const b = Buffer.alloc(28);
  b.writeUInt16BE(1, 0);
  b.writeUInt16BE(0x0800, 2);
  b[4] = 6;
  b[5] = 4;
  b.writeUInt16BE(1, 6);
  return ether(0x0806, b);
}

export const v4 = (o: Ipv4Opts, l4: Buffer): Buffer => ether(0x0800, ipv4(o, l4));
export const v6 = (o: Parameters<typeof ipv6>[0], l4: Buffer): Buffer => ether(0x86dd, ipv6(o, l4));

// ---- the datapath under test ---------------------------------------------------------------------

export const TC_ACT_OK = 0;
export const TC_ACT_SHOT = 2;

export interface EndpointDef {
  addresses: string[];
  epId: number;
  identity: number;
  enforceIngress: boolean;
  enforceEgress: boolean;
  ifindex?: number;
  auditIngress?: boolean;
  auditEgress?: boolean;
  verdictAllow?: boolean;
  verdictDeny?: boolean;
  /** EP_HOST_POLICY: the endpoint programs apply host policy between it and host addresses. */
  hostPolicy?: boolean;
  /** DEFAULT_EVENT_RATE when absent. */
  eventRate?: number;
}

/** A write to the maps packets are judged by: `bump: false` leaves the policy revision as it is. */
export interface WriteOpts {
  bump?: boolean;
}

export interface RuleDef {
  direction: Direction;
  identity: number;
  protocol: number;
  port: number;
  portPrefixLen: number;
  decision: Decision;
  /** A deny that is audited (POLICY_AUDIT). */
  audit?: boolean;
}

/** An endpoint's event budget summed over the CPUs (tokens per CPU are not summed: see perCpu). */
export interface EventBudget {
  suppressed: bigint;
  lost: bigint;
  perCpu: Array<{ lastNs: bigint; tokens: bigint; suppressed: bigint; lost: bigint }>;
}

/**
 * endpoint.o loaded with its maps pinned in a fresh private pin dir, plus typed map helpers.
 * Like reconcile, it seeds the policy revision (policy_rev) and bumps it after each write of
 * endpoint, ipcache or policy entries, so verdicts cached in conntrack go stale as they do in
 * production; `{ bump: false }` on a write leaves the revision alone (to observe the cache).
 */
export class Datapath {
  readonly pinDir = `/sys/fs/bpf/test-dp-${suffix()}`;
  readonly coll: Collection;
  readonly inners = new Map<number, BpfMap>();
  private readonly ncpu = numPossibleCpus();

  constructor(opts: { policyRev?: number } = {}) {
    mkdirSync(this.pinDir);
    try {
      const spec = parseElf(readFileSync(new URL("../../../bpf/build/endpoint.o", import.meta.url)));
      this.coll = loadCollection(spec, { pinRoot: this.pinDir });
      this.setPolicyRev(opts.policyRev ?? 1);
    } catch (err) {
      rmSync(this.pinDir, { recursive: true, force: true });
      throw err;
    }
  }

  /** The current policy revision (0: unseeded, no cached verdict is used). */
  policyRev(): number {
    return this.map("policy_rev").lookup(u32(0))!.readUInt32LE(0);
  }

  setPolicyRev(rev: number): void {
    this.map("policy_rev").update(u32(0), u32(rev));
  }

  /** Moves the revision on, as reconcile does after a batch of writes; returns the new one. */
  bumpPolicyRev(): number {
    const next = L.nextPolicyRevision(this.policyRev());
    this.setPolicyRev(next);
    return next;
  }

  private written(opts: WriteOpts | undefined): void {
    if (opts?.bump !== false && this.policyRev() !== 0) this.bumpPolicyRev();
  }

  map(name: string): BpfMap {
    const m = this.coll.maps.get(name);
    if (!m) throw new Error(`endpoint.o has no map ${name}`);
    return m;
  }

  close(): void {
    for (const m of this.inners.values()) m.close();
    this.coll.close();
    rmSync(this.pinDir, { recursive: true, force: true });
  }

  run(prog: "to_endpoint" | "from_endpoint", frame: Buffer): number {
    return this.coll.programs.get(prog)!.testRun({ data: frame }).retval;
  }

  addEndpoint(ep: EndpointDef, opts?: WriteOpts): void {
    const k = Buffer.alloc(L.ENDPOINT_KEY.size);
    const v = Buffer.alloc(L.ENDPOINT_INFO.size);
    const { addresses: _, ifindex, ...info } = ep;
    L.encodeEndpointInfo({ ifindex: ifindex ?? 0, ...info }, v, 0);
    for (const a of ep.addresses) {
      L.encodeEndpointKey(a, k, 0);
      this.map("endpoints").update(k, v);
    }
    this.written(opts);
  }

  addIpcache(prefix: string, identity: number, opts?: WriteOpts): void {
    const k = Buffer.alloc(L.IPCACHE_KEY.size);
    const v = Buffer.alloc(L.IPCACHE_VALUE.size);
    L.encodeIpcacheKey(prefix, k, 0);
    L.encodeIpcacheValue({ identity }, v, 0);
    this.map("ipcache").update(k, v);
    this.written(opts);
  }

  /** Creates (once) the endpoint's inner policy map and writes the rules into it. */
  addRules(epId: number, rules: RuleDef[], opts?: WriteOpts): void {
    let inner = this.inners.get(epId);
    if (!inner) {
      inner = BpfMap.create(this.map("policy").spec.innerMap!);
      this.inners.set(epId, inner);
      this.map("policy").updateInner(u32(epId), inner);
    }
    const k = Buffer.alloc(L.POLICY_KEY.size);
    const v = Buffer.alloc(L.POLICY_VALUE.size);
    for (const r of rules) {
      const prefixlen = L.encodePolicyKey(r, k, 0);
      L.encodePolicyValue(r.decision, prefixlen, v, 0, r.audit ?? false);
      inner.update(k, v);
    }
    this.written(opts);
  }

  removeRule(epId: number, r: Omit<RuleDef, "decision">, opts?: WriteOpts): boolean {
    const k = Buffer.alloc(L.POLICY_KEY.size);
    L.encodePolicyKey(r, k, 0);
    const removed = this.inners.get(epId)!.delete(k);
    this.written(opts);
    return removed;
  }

  drops(epId: number, reason: number, direction: Direction): bigint {
    const k = Buffer.alloc(L.DROP_KEY.size);
    L.encodeDropKey({ epId, reason, direction }, k, 0);
    const v = this.map("drops").lookup(k);
    return v ? L.decodePerCpuCounters(v, 0, this.ncpu).packets : 0n;
  }

  policyStats(epId: number, key: L.PolicyKey): L.Counters | undefined {
    const k = Buffer.alloc(L.POLICY_STATS_KEY.size);
    L.encodePolicyStatsKey(epId, key, k, 0);
    const v = this.map("policy_stats").lookup(k);
    return v ? L.decodePerCpuCounters(v, 0, this.ncpu) : undefined;
  }

  /** The event budget of epId on every CPU, or undefined when it reported nothing yet. */
  eventBudget(epId: number): EventBudget | undefined {
    const v = this.map("event_budget").lookup(u32(epId));
    if (!v) return undefined;
    const perCpu = Array.from({ length: this.ncpu }, (_, cpu) => {
      const o = cpu * L.EVENT_BUDGET.size;
      return { lastNs: v.readBigUInt64LE(o), tokens: v.readBigUInt64LE(o + 8), suppressed: v.readBigUInt64LE(o + 16), lost: v.readBigUInt64LE(o + 24) };
    });
    return {
      suppressed: perCpu.reduce((n, c) => n + c.suppressed, 0n),
      lost: perCpu.reduce((n, c) => n + c.lost, 0n),
      perCpu,
    };
  }

  /** A reader of the events ring buffer (close it before the Datapath). */
  openEvents(): RingBuffer {
    return RingBuffer.open(this.map("events"));
  }

  ct(key: L.CtKey): L.CtValue | undefined {
    const k = Buffer.alloc(L.CT_KEY.size);
    L.encodeCtKey(key, k, 0);
    const v = this.map("conntrack").lookup(k);
    return v ? L.decodeCtValue(v, 0) : undefined;
  }

  clearConntrack(): void {
    const m = this.map("conntrack");
    for (const k of [...m.keys()]) m.delete(k);
  }
}

/** Every event now in the ring, decoded (the ring is drained). */
export function readEvents(rb: RingBuffer): L.DatapathEvent[] {
  const out: L.DatapathEvent[] = [];
  rb.drain((buf, off, len) => {
    if (len !== L.EVENT.size) throw new Error(`event record of ${len} bytes, expected ${L.EVENT.size}`);
    out.push(L.decodeEvent(buf, off));
  });
  return out;
}

export function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n, 0);
  return b;
}
