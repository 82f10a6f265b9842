// Between runs the daemon holds far more resident memory than it uses. V8 keeps the pages its
// collections free in a pool for reuse and gives them back to the system only under memory
// pressure; glibc keeps the freed blocks of the buffers a run read and wrote. At DESIGN scale that
// is 40–60 MiB of each after a cold start (test/bench/README.md, "Issue 16 §3, 2026-12-07 16:40–18:00").
// When the daemon has been idle for a moment after a run that grew its RSS, it gives them back.

import v8 from "node:v8";
import vm from "node:vm";
import koffi from "koffi";
import type { Timers } from "./loop.js";

/** How long after a run, with no run started since, the memory is given back. */
export const RELEASE_IDLE_MS = 2_000;
/** RSS growth since the last release that makes the next idle moment release again. Below it a
 *  release (a full collection, ≈ 0.2–0.3 s at DESIGN scale) costs more than it returns. */
export const RELEASE_GROWTH_BYTES = 32 * 2 ** 20;

export interface Released {
  rssBefore: number;
  rssAfter: number;
  ms: number;
}

export interface MemoryReleaserOptions {
  timers: Timers;
  /** Resident set size now, in bytes. */
  rss: () => number;
  /** Gives the unused memory back (releaseUnusedMemory in the daemon). */
  release: () => void;
  onReleased: (r: Released) => void;
  idleMs?: number;
  growthBytes?: number;
}

/** Decides when: after a run that grew RSS by growthBytes since the last release, once no run has
 *  started for idleMs. */
export class MemoryReleaser {
  private timer: unknown = null;
  private baseline: number;
  private releases = 0;
  private last: Released | undefined;

  constructor(private readonly opts: MemoryReleaserOptions) {
    this.baseline = opts.rss();
  }

  /** A run starts: the release waits for the next idle moment. */
  runStarted(): void {
    if (this.timer !== null) this.opts.timers.clearTimeout(this.timer);
    this.timer = null;
  }

  /** A run ended. */
  runEnded(): void {
    if (this.timer !== null || this.opts.rss() < this.baseline + (this.opts.growthBytes ?? RELEASE_GROWTH_BYTES)) return;
    this.timer = this.opts.timers.setTimeout(() => this.releaseNow(), this.opts.idleMs ?? RELEASE_IDLE_MS);
  }

  close(): void {
    this.runStarted();
  }

  /** For `reconcile status`: how often memory was given back, and the last time's numbers in MiB. */
  summary(): { releases: number; last?: { rssBeforeMiB: number; rssAfterMiB: number; ms: number } } {
    if (this.last === undefined) return { releases: 0 };
    const { rssBefore, rssAfter, ms } = this.last;
    return { releases: this.releases, last: { rssBeforeMiB: mib(rssBefore), rssAfterMiB: mib(rssAfter), ms } };
  }

  private releaseNow(): void {
    this.timer = null;
    const { timers, rss } = this.opts;
    const rssBefore = rss();
    const started = timers.now();
    this.opts.release();
    this.baseline = rss();
    this.releases++;
    this.last = { rssBefore, rssAfter: this.baseline, ms: timers.now() - started };
    this.opts.onReleased(this.last);
  }
}

function mib(bytes: number): number {
  return Math.round(bytes / 2 ** 20);
}

let fullCollection: ((options: object) => void) | undefined;
let mallocTrim: ((pad: number) => number) | undefined;

/**
 * A full collection of the kind V8 runs before it reports being out of memory (it also gives the
 * pooled pages back and shrinks the young generation), then glibc's malloc_trim. The collector is
 * reached the way --expose-gc would expose it, without exposing it to the daemon's own code.
 */
export function releaseUnusedMemory(): void {
  if (fullCollection === undefined) {
    v8.setFlagsFromString("--expose-gc");
    fullCollection = vm.runInNewContext("gc") as (options: object) => void;
    v8.setFlagsFromString("--no-expose-gc");
  }
  fullCollection({ type: "major", execution: "sync", flavor: "last-resort" });
  mallocTrim ??= koffi.load("libc.so.6").func("int malloc_trim(size_t pad)") as unknown as (pad: number) => number;
  mallocTrim(0);
}
