// The events' times are bpf_ktime_get_ns(): CLOCK_MONOTONIC nanoseconds since boot. A wall clock time
// is made by sampling both clocks once, at start: Node's process.hrtime.bigint() reads
// CLOCK_MONOTONIC on Linux (libuv's uv_hrtime), the same clock as the programs'.
//
// Sampled once, the offset drifts only by what NTP slews the wall clock while monitor runs (a few
// ms a day at most); a step of the wall clock (date -s) is not followed.

export interface WallClock {
  /** Epoch milliseconds (with a fraction) of a CLOCK_MONOTONIC nanosecond reading. */
  wallMs(monotonicNs: bigint): number;
}

/** Samples both clocks now (the clocks are parameters for the tests). */
export function sampleClock(now: () => number = Date.now, monotonic: () => bigint = process.hrtime.bigint): WallClock {
  const mono = monotonic();
  const wall = now();
  return { wallMs: (ns) => wall + Number(ns - mono) / 1e6 };
}
