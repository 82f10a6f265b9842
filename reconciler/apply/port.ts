// The kernel port: everything the daemon service and the commands need from a kernel, and nothing
// more. The real one (apply/kernel/open.ts) sits on ebpf-loader and netlink; the daemon's scenario
// tests use one over the in-memory targets. The CLI reaches the kernel only through this.

import type { Targets } from "./executor.js";
import type { MachineFacts } from "../plan/facts.js";

/** A netlink subscription in one namespace. */
export interface Watch {
  close(): void;
  /** The name no longer means the namespace watched (deleted, or deleted and made again). */
  stale(): boolean;
}

/** A per-endpoint counter read from the datapath's per-CPU maps, summed over CPUs. */
export interface Counter {
  packets: bigint;
  bytes: bigint;
}

export interface DropCounter extends Counter {
  /** Drop reason name (see datapath/layouts.ts DropReason), or its number when unknown. */
  reason: string;
  direction: "ingress" | "egress";
}

/**
 * The datapath's event ring buffer (bpf/include/events.h), opened for reading. Only one reader may
 * own a ring's consumer position: two readers of the same ring steal records from each other (the
 * daemon serves the ring to `reconcile monitor` for that reason, docs/monitor.md).
 */
export interface EventStream {
  /**
   * Calls `onRecord` for each record available now (at most `max`), in ring order; returns how many.
   * `buf` is valid only during the call (it is the ring's memory).
   */
  drain(onRecord: (buf: Buffer, offset: number, length: number) => void, max?: number): number;
  /** Resolves true when records are available, false after `timeoutMs` without any; never blocks the event loop. */
  wait(timeoutMs: number): Promise<boolean>;
  close(): void;
}

/** Events the programs did not report, summed over endpoints and CPUs (the event_budget map). */
export interface EventBudget {
  /** No token left in the endpoint's per-CPU bucket (the rate limit). */
  suppressed: bigint;
  /** The ring buffer was full (the reader fell behind). */
  lost: bigint;
}

/** The daemon is suspended: it plans and reports, and applies nothing (`reconcile suspend`). */
export interface Suspension {
  /** Epoch ms when it was suspended. */
  since: number;
  /** What the operator said, if anything. */
  reason?: string;
}

/** MachineFacts: attach mode, program tags, and host() (this machine's addresses and device MTUs). */
export interface KernelPort extends MachineFacts {
  /** observe() and apply(), one target per resource kind. */
  readonly targets: Targets;
  /** Namespaces reconcile created and still owns ("" is never among them). */
  ownedNetns(): string[];
  /**
   * Calls `onEvent` on link, address and route changes in `netns` ("" for reconcile's own); undefined
   * when that namespace does not exist (any more).
   */
  watch(netns: string, onEvent: () => void): Watch | undefined;
  /** The revision the pinned datapath enforces, as the last fully successful apply (of any process) recorded it. */
  recordedRevision(): string | undefined;
  recordRevision(revision: string): void;
  /** The suspension recorded with the pins (it outlives the daemon process), or undefined. */
  recordedSuspension(): Suspension | undefined;
  /** Records a suspension, or removes the record (undefined). */
  recordSuspension(suspension: Suspension | undefined): void;
  /** Policy hit counters of endpoint `epId`, by policy-entry key. */
  policyStats(epId: number): Map<number, Counter>;
  /** Drop counters of endpoint `epId`. */
  drops(epId: number): DropCounter[];
  /** The event ring buffer, opened for reading; undefined when the pins have none (a datapath from before events). */
  events(): EventStream | undefined;
  /** What the programs did not report (rate limit, full ring) so far; zeros when there is no budget map. */
  eventBudget(): EventBudget;
  /** The programs on every tcx hook that carries one of reconcile's links, in run order. */
  tcxChains(): TcxChain[];
  /** Where reconcile pins its tcx link for a hook (removing it makes the next run attach afresh). */
  linkPin(hook: { device: string; hook: "ingress" | "egress"; netns?: string }): string;
  /** After a teardown removed every object: unpins the maps and removes reconcile's pin directories. */
  prune(): void;
  close(): void;
}

/** One program on a tcx hook: reconcile's (its pinned link's) or someone else's. */
export interface TcxProgramOnHook {
  progId: number;
  /** 0 for a program attached without a link. */
  linkId: number;
  /** The program's name as the kernel knows it ("" when it went away meanwhile). */
  program: string;
  owner: "reconcile" | "foreign";
}

export interface TcxChain {
  device: string;
  netns?: string;
  hook: "ingress" | "egress";
  /** In the order the kernel runs them. */
  programs: TcxProgramOnHook[];
}

/** A program on one of reconcile's hooks that is not reconcile's, and whether it runs before ours. */
export interface ForeignProgram {
  device: string;
  netns?: string;
  hook: "ingress" | "egress";
  progId: number;
  program: string;
  position: "before" | "after";
}

/** The foreign programs on reconcile's hooks. One "before" ours that returns pass bypasses the policy. */
export function foreignPrograms(chains: readonly TcxChain[]): ForeignProgram[] {
  const out: ForeignProgram[] = [];
  for (const c of chains) {
    const ours = c.programs.findIndex((p) => p.owner === "reconcile");
    c.programs.forEach((p, i) => {
      if (p.owner !== "foreign") return;
      out.push({ device: c.device, ...(c.netns ? { netns: c.netns } : {}), hook: c.hook, progId: p.progId, program: p.program, position: ours < 0 || i < ours ? "before" : "after" });
    });
  }
  return out;
}
