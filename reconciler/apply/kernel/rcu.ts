// Expedited RCU grace periods while a batch of tcx links is made or removed (--expedite-attach).
//
// Each BPF_LINK_CREATE of a tcx link swaps the device's program array and waits for an RCU grace
// period before it returns, holding RTNL (≈ 8.4 ms here), so links are made one after another at
// that rate however many threads make them: 200 links took 8.5 ms each from one thread, 9.0 ms from
// 4 and 10.5 ms from 64. Removing a link waits the same way (8.6 ms a link). With
// /sys/kernel/rcu_expedited set, the kernel expedites those grace periods (an IPI to every CPU
// instead of waiting for each to pass a quiescent state): 0.01 ms a link either way. The knob is host-wide, so it is set only when the operator asks, only while the batch is
// made, and put back afterwards, also when the batch fails.

import { readFileSync, writeFileSync } from "node:fs";

export const RCU_EXPEDITED_PATH = "/sys/kernel/rcu_expedited";

/** The kernel's rcu_expedited knob (a file holding 0 or 1), behind an interface for tests. */
export interface RcuKnob {
  /** The current value ("0", "1"), undefined when the knob cannot be read (not on this kernel). */
  read(): string | undefined;
  write(value: "0" | "1"): void;
}

export function sysfsRcuKnob(path = RCU_EXPEDITED_PATH): RcuKnob {
  return {
    read: () => {
      try {
        return readFileSync(path, "utf8").trim();
      } catch {
        return undefined;
      }
    },
    write: (value) => writeFileSync(path, value),
  };
}

/**
 * Runs fn with RCU grace periods expedited: sets the knob to 1 when it is 0 and back to 0 after.
 * When it is already set (by the operator or another tool) or cannot be read or written, fn runs
 * as the kernel is, and the knob is left alone.
 */
export async function withExpeditedRcu<T>(knob: RcuKnob, fn: () => Promise<T>): Promise<T> {
  if (knob.read() !== "0") return fn();
  try {
    knob.write("1");
  } catch {
    return fn(); // read-only sysfs (a container): the links are made at the normal rate
  }
  try {
    return await fn();
  } finally {
    knob.write("0");
  }
}
