// Opening the real kernel: the pin root, the embedded datapath object, the attach mode, the tags of
// the programs this binary carries, and the facts about this machine the compiler needs (its
// addresses, the underlay MTU). The result is the kernel port (apply/port.ts).

import { rmdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { linkPinPath, programTag, KernelContext, kernelTargets, REVISION_DIR, SUSPENSION_DIR, tcxChains } from "./index.js";
import type { Counter, DropCounter, EventBudget, KernelPort } from "../port.js";
import { DROP_KEY, EVENT_BUDGET, POLICY_STATS_KEY, decodeDropKey, decodePerCpuCounters, decodePolicyStatsKey, DropReason } from "../../datapath/layouts.js";
import { MAP_SPECS } from "../../datapath/maps.js";
import { numPossibleCpus, parseElf, probeFeatures, programTags, RingBuffer, unpin, type Features } from "../../ebpf-loader/index.js";
import { addrList, constants, linkGet, netnsIdentity, subscribe, type NetlinkSocket } from "../../netlink/index.js";
import type { HostInfo } from "../../plan/facts.js";
import { GATEWAY_V4 } from "../../policy/host.js";
import { policyEntryKey } from "../../policy/key.js";
import { sysfsRcuKnob } from "./rcu.js";

export type { Features };

export const DATAPATH_OBJECT = "endpoint.o";

export interface OpenOptions {
  /** bpffs directory holding reconcile's pins. */
  pinRoot: string;
  attachMode: "auto" | "tcx" | "tc";
  /** Where fresh tcx links go among foreign programs (default first). */
  attachPosition?: "first" | "last";
  /** Expedite RCU grace periods (/sys/kernel/rcu_expedited) while a batch of tcx links is made. */
  expediteAttach?: boolean;
  /** Reads an object this binary carries (bpf/build/NAME). */
  readObject: (name: string) => Buffer;
}

export interface Kernel extends KernelPort {
  ctx: KernelContext;
}

export function openKernel(opts: OpenOptions): Kernel {
  const ctx = new KernelContext({ pinRoot: opts.pinRoot, datapathObject: opts.readObject(DATAPATH_OBJECT) });
  const tags = new Map<string, string>();
  for (const [name, spec] of ctx.collectionSpec().programs) tags.set(name, programTag(spec));
  return {
    ctx,
    targets: kernelTargets(ctx, {
      ...(opts.attachPosition ? { attachPosition: opts.attachPosition } : {}),
      ...(opts.expediteAttach ? { expediteRcu: sysfsRcuKnob() } : {}),
    }),
    attachMode: resolveAttachMode(opts.attachMode),
    programTags: tags,
    host: () => readHostInfo(ctx.route()),
    ownedNetns: () => ctx.ownedNetns(),
    watch: (netns, onEvent) => {
      if (netns !== "" && netnsIdentity(netns) === undefined) return undefined;
      const sub = subscribe(onEvent, { ...(netns ? { netns } : {}), unref: true });
      // A namespace deleted or made again is not the one this subscription watches (and the
      // subscription alone would keep the old one alive).
      return { close: () => sub.close(), stale: () => netns !== "" && sub.netnsIdentity !== netnsIdentity(netns) };
    },
    recordedRevision: () => ctx.recordedRevision(),
    recordRevision: (revision) => ctx.recordRevision(revision),
    recordedSuspension: () => ctx.recordedSuspension(),
    recordSuspension: (suspension) => ctx.recordSuspension(suspension),
    policyStats: (epId) => readPolicyStats(ctx, epId),
    drops: (epId) => readDrops(ctx, epId),
    events: () => {
      // The pinned ring, mapped afresh for each reader (a closed reader unmaps only its own view).
      const m = ctx.map("events");
      return m ? RingBuffer.open(m) : undefined;
    },
    eventBudget: () => readEventBudget(ctx),
    tcxChains: () => tcxChains(ctx),
    linkPin: (h) => linkPinPath(opts.pinRoot, h),
    prune: () => prunePinRoot(ctx, opts.pinRoot),
    close: () => ctx.close(),
  };
}

/** auto: tcx where the kernel has it (6.6+), else tc. */
export function resolveAttachMode(mode: OpenOptions["attachMode"]): "tcx" | "tc" {
  if (mode !== "auto") return mode;
  return probeFeatures().tcx ? "tcx" : "tc";
}

/** What `reconcile version` says about the kernel and the programs in an object, read without loading them. */
export function kernelFeatures(): Features {
  return probeFeatures();
}

export function objectPrograms(object: Buffer): Array<{ name: string; section: string; tag: string; tagSha1: string }> {
  return [...parseElf(object).programs.values()].map((p) => {
    const [tag, tagSha1] = programTags(p);
    return { name: p.name, section: p.section, tag, tagSha1 };
  });
}

/**
 * The host's global addresses and the MTU of the device each is on. Read on every daemon run: only
 * the devices that carry such an address are asked for their MTU, since dumping every link cost
 * ≈ 100 ms per run with the 2,000 veth ends of 1,000 endpoints (test/bench/daemon.bench.ts).
 */
export function readHostInfo(sock: NetlinkSocket): HostInfo {
  const addresses: string[] = [];
  const seen: Array<{ address: string; index: number }> = [];
  for (const a of addrList(sock)) {
    if (a.scope !== constants.RT_SCOPE_UNIVERSE || a.address === GATEWAY_V4 || /^fe[89ab]/i.test(a.address)) continue;
    if (!addresses.includes(a.address)) addresses.push(a.address); // a handful: the host's own addresses
    seen.push({ address: a.address, index: a.index });
  }
  const mtu = new Map<number, number | undefined>();
  for (const { index } of seen) if (!mtu.has(index)) mtu.set(index, linkGet(sock, index)?.mtu); // undefined: gone meanwhile
  const mtuByAddress = new Map<string, number>();
  for (const { address, index } of seen) {
    const m = mtu.get(index);
    if (m !== undefined) mtuByAddress.set(address, m);
  }
  return { addresses, mtuByAddress };
}

function readPolicyStats(ctx: KernelContext, epId: number): Map<number, Counter> {
  const out = new Map<number, Counter>();
  for (const { key, counter } of perCpuCounters(ctx, "policy_stats")) {
    const k = decodePolicyStatsKey(key.buf, key.at);
    if (k.epId === epId) out.set(policyEntryKey(k.key), counter);
  }
  return out;
}

function readDrops(ctx: KernelContext, epId: number): DropCounter[] {
  const reasons = new Map<number, string>(Object.entries(DropReason).map(([name, n]) => [n as number, name]));
  const out: DropCounter[] = [];
  for (const { key, counter } of perCpuCounters(ctx, "drops")) {
    const k = decodeDropKey(key.buf, key.at);
    if (k.epId === epId) out.push({ reason: reasons.get(k.reason) ?? String(k.reason), direction: k.direction, ...counter });
  }
  return out;
}

/** The event_budget map's suppressed and lost counters, summed over endpoints and CPUs. */
function readEventBudget(ctx: KernelContext): EventBudget {
  const out: EventBudget = { suppressed: 0n, lost: 0n };
  const m = ctx.map("event_budget");
  if (!m) return out;
  const { values, count } = m.lookupBatch();
  if (count === 0) return out;
  const cpus = numPossibleCpus();
  const valueBytes = cpus * EVENT_BUDGET.size; // one struct event_budget (32 bytes, 8-aligned) per possible CPU
  for (let i = 0; i < count; i++) {
    for (let c = 0; c < cpus; c++) {
      const at = i * valueBytes + c * EVENT_BUDGET.size;
      out.suppressed += values.readBigUInt64LE(at + EVENT_BUDGET.offsets.suppressed);
      out.lost += values.readBigUInt64LE(at + EVENT_BUDGET.offsets.lost);
    }
  }
  return out;
}

/** Every entry of a per-CPU counter map, its key left encoded (a buffer and an offset) and its counters summed. */
function* perCpuCounters(ctx: KernelContext, name: "policy_stats" | "drops"): Generator<{ key: { buf: Buffer; at: number }; counter: Counter }> {
  const m = ctx.map(name);
  if (!m) return;
  const { keys, values, count } = m.lookupBatch();
  const cpus = numPossibleCpus();
  const keySize = (name === "drops" ? DROP_KEY : POLICY_STATS_KEY).size;
  const valueBytes = values.length / Math.max(count, 1);
  for (let i = 0; i < count; i++) {
    const c = decodePerCpuCounters(values, i * valueBytes, cpus);
    yield { key: { buf: keys, at: i * keySize }, counter: { packets: c.packets, bytes: c.bytes } };
  }
}

/** Unpins the maps, then removes the now-empty directories (links/, netns/ marks) and the pin root. */
function prunePinRoot(ctx: KernelContext, pinRoot: string): void {
  ctx.close();
  for (const m of MAP_SPECS) unpin(join(pinRoot, m.name));
  // Only now-empty directories remain (links/, netns/ marks, the revision record); anything else
  // there is not ours to remove.
  for (const dir of ["links", "netns", REVISION_DIR, SUSPENSION_DIR]) rmSync(join(pinRoot, dir), { recursive: true, force: true });
  try {
    rmdirSync(pinRoot);
  } catch {
    /* not empty (foreign pins stay) or already gone */
  }
}

export { KERNEL_ERRORS } from "../errors.js";
