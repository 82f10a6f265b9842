// A manual clock for the daemon's loop (daemon/loop.ts Timers): timers fire only when a test advances time.

import type { Timers } from "../../../reconciler/daemon/loop.js";

export class FakeTimers implements Timers {
  t = 1_000_000;
  private seq = 0;
  private timers = new Map<number, { at: number; fn: () => void }>();
  now(): number {
    return this.t;
  }
  setTimeout(fn: () => void, ms: number): unknown {
    const id = ++this.seq;
    this.timers.set(id, { at: this.t + ms, fn });
    return id;
  }
  clearTimeout(h: unknown): void {
    this.timers.delete(h as number);
  }
  /** Delays of pending timers, relative to now, sorted. */
  pending(): number[] {
    return [...this.timers.values()].map((x) => x.at - this.t).sort((a, b) => a - b);
  }
  /** Advance to the next timer and fire it; returns the time advanced. */
  fireNext(): number {
    const next = [...this.timers.entries()].sort((a, b) => a[1].at - b[1].at)[0];
    if (!next) throw new Error("no timer pending");
    const [id, { at, fn }] = next;
    const dt = at - this.t;
    this.t = at;
    this.timers.delete(id);
    fn();
    return dt;
  }
}
