// The kernel port: everything the daemon service and the commands need from a kernel, and nothing
// more. The real one (apply/kernel/open.ts) sits on ebpf-loader and netlink; the daemon's scenario
// tests use one over the in-memory targets. The CLI reaches the kernel only through this.

import type { Targets } from "./executor.js";
import type { MachineFacts } from "../plan/facts.js";

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

/** MachineFacts: attach mode, program tags, and host() (this machine's addresses and device MTUs). */
export interface KernelPort extends MachineFacts {
  /** observe() and apply(), one target per resource kind. */
  readonly targets: Targets;
  /** Namespaces reconcile created and still owns ("" is never among them). */
  ownedNetns(): string[];
  /** Calls `onEvent` on link, address and route changes in `netns` ("" for reconcile's own). */
  watch(netns: string, onEvent: () => void): { close(): void };
  /** Policy hit counters of endpoint `epId`, by policy-entry key. */
  policyStats(epId: number): Map<number, Counter>;
  /** Drop counters of endpoint `epId`. */
  drops(epId: number): DropCounter[];
  /** Ids of every tcx program on a hook, in the order they run; undefined when the device is gone. */
  tcxPrograms(device: string, hook: "ingress" | "egress", netns?: string): number[] | undefined;
  /** After a teardown removed every object: unpins the maps and removes reconcile's pin directories. */
  prune(): void;
  close(): void;
}
