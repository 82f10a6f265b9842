// How the V8 heap may grow. V8 lets the old generation grow to up to several times what a full
// collection leaves alive before collecting again; with a million policy entries and a 100,000-
// endpoint manifest tree that slack, not live data, took the daemon past DESIGN §7's 400 MB (live
// heap ≈ 170 MB, RSS ≈ 390 MB). Growing by a fixed 25% keeps RSS near the live data for about 5–15%
// more time in a cold apply (measured: test/bench/README.md, "heap growth").

import v8 from "node:v8";

/** Heap growth after each full collection, in percent of what it left alive. */
export const HEAP_GROWING_PERCENT = 25;

/** Applies the heap growth policy; called first thing by the CLI (and by the benchmarks, so they
 *  measure what the binary does). V8 reads the flag at every full collection, so setting it at run
 *  time is enough. */
export function tuneHeap(): void {
  v8.setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`);
}
