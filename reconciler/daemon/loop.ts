// The reconcile loop engine: decides WHEN to reconcile WHICH snapshot. It knows nothing about the
// kernel; the reconcile function is injected, and so are the clock and timers.
//
// Rules:
// - One run at a time. Triggers arriving during a run coalesce into one follow-up run that uses the
//   newest snapshot.
// - A commit is a transaction: a snapshot the reconcile function reports `invalid` was not applied
//   at all; the last good snapshot stays the target (and is what resyncs re-apply).
// - A failed run (ok: false, or a thrown error) is retried with exponential backoff, 100 ms → 60 s.
// - A resync (drift check) runs every `resyncIntervalMs` after the last run, and on demand (SIGHUP).

import type { Snapshot } from "../source/snapshot.js";

/** What the injected reconcile function reports for one run. */
export interface ReconcileOutcome {
  /** Everything in the snapshot is in force. */
  ok: boolean;
  /** Number of changes made (0 for a no-op resync). */
  changes: number;
  /** Objects that failed to apply, each with what went wrong. */
  errors: { object: string; message: string }[];
  /** Manifest problems: non-empty means the snapshot was rejected and nothing was applied. */
  invalid?: string[];
  /** Drift corrections made in this run (entries found different from desired and fixed). */
  drift?: number;
  /** Suspended: the run planned and applied nothing; `changes` are the pending ones (and `drift`
   *  says how many of them are drift of the revision in force). */
  suspended?: boolean;
}

/** Why a run happened. */
export type Trigger = "source" | "resync" | "signal" | "retry" | "manual";

export type ReconcileFn = (snapshot: Snapshot, trigger: Trigger) => Promise<ReconcileOutcome>;

/** Clock and timers, injected so tests can drive time. */
export interface Timers {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const realTimers: Timers = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => {
    const h = setTimeout(fn, ms);
    h.unref(); // the daemon is kept alive by its servers and sources, not by the loop's timers
    return h;
  },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

export interface LoopOptions {
  reconcile: ReconcileFn;
  /** Time between resyncs, in ms (default 30 000). 0 disables the timer. */
  resyncIntervalMs?: number;
  /** First retry delay after a failure, in ms (default 100). */
  backoffInitialMs?: number;
  /** Largest retry delay, in ms (default 60 000). */
  backoffMaxMs?: number;
  timers?: Timers;
  /** Called after every run (for logs and metrics). */
  onRun?: (run: RunRecord, status: LoopStatus) => void;
  /** The revision the datapath enforces from before this process started (recorded with the pins
   *  by the last successful apply): the applied revision until a run applies one. */
  recordedRevision?: string | null;
}

/** One finished run. Times are epoch ms. */
export interface RunRecord {
  trigger: Trigger;
  revision: string;
  startedAt: number;
  finishedAt: number;
  /** "ok": applied; "failed": some objects failed (retrying); "invalid": snapshot rejected;
   *  "suspended": planned only (`changes` and `drift` are pending, not made). */
  result: "ok" | "failed" | "invalid" | "suspended";
  changes: number;
  drift: number;
  errors: { object: string; message: string }[];
  invalid: string[];
}

/** Everything `reconcile status` shows about the loop. */
export interface LoopStatus {
  /** Revision last applied successfully (null before the first success), or the one recorded with
   *  the pins when this process has applied none yet. */
  appliedRevision: string | null;
  /** Where appliedRevision comes from: "run" (a run of this process applied it), "record" (recorded
   *  by an earlier process: in force in the kernel, but with no valid snapshot of it at hand this
   *  process cannot resync it, so drift is not corrected until a valid revision arrives), or null. */
  appliedFrom: "run" | "record" | null;
  /** Revision the daemon last tried to put in force, whatever the result. A resync of the revision
   *  already in force is not a new attempt: after a refused commit this keeps naming it (as Flux's
   *  lastAttemptedRevision does) while the last good revision is re-applied. */
  attemptedRevision: string | null;
  /** Newest revision received from the source. */
  latestRevision: string | null;
  /** The last run, if any. */
  lastRun: RunRecord | null;
  /** Epoch ms of the last successful run. */
  lastSuccessAt: number | null;
  /** Failures since the last success (drives the backoff). */
  consecutiveFailures: number;
  /** When the next retry / resync is due (epoch ms), if scheduled. */
  nextRetryAt: number | null;
  nextResyncAt: number | null;
  /** Sum of `drift` over all runs. */
  driftCorrections: number;
  /** Runs since start. */
  runs: number;
  /** A run is in progress. */
  running: boolean;
  /** Last error the source reported (fetch failed, unreadable tree), cleared by a new snapshot. */
  sourceError: { message: string; at: number } | null;
}

/** Delay before retry number `failures` (1-based): initial·2^(failures-1), capped. */
export function backoffDelay(failures: number, initialMs = 100, maxMs = 60_000): number {
  if (failures <= 0) return 0;
  return Math.min(maxMs, initialMs * 2 ** Math.min(failures - 1, 30));
}

// When several triggers coalesce, the run is labelled with the most specific one.
const TRIGGER_RANK: Record<Trigger, number> = { source: 4, signal: 3, manual: 2, retry: 1, resync: 0 };

export class ReconcileLoop {
  private readonly timers: Timers;
  private readonly resyncMs: number;
  private readonly backoffInitial: number;
  private readonly backoffMax: number;
  /** Snapshot that should be in force: the newest valid (or not yet judged) one. */
  private target: Snapshot | null = null;
  /** Last snapshot applied successfully or judged valid; the fallback after an invalid one. */
  private lastGood: Snapshot | null = null;
  /** Revision last rejected as invalid: receiving it again does not re-run. */
  private rejectedRevision: string | null = null;
  private pending: Trigger | null = null;
  private runningPromise: Promise<void> | null = null;
  private retryTimer: unknown = null;
  private resyncTimer: unknown = null;
  private stopped = false;
  private st: LoopStatus = {
    appliedRevision: null,
    appliedFrom: null,
    attemptedRevision: null,
    latestRevision: null,
    lastRun: null,
    lastSuccessAt: null,
    consecutiveFailures: 0,
    nextRetryAt: null,
    nextResyncAt: null,
    driftCorrections: 0,
    runs: 0,
    running: false,
    sourceError: null,
  };

  constructor(private readonly opts: LoopOptions) {
    this.timers = opts.timers ?? realTimers;
    this.resyncMs = opts.resyncIntervalMs ?? 30_000;
    this.backoffInitial = opts.backoffInitialMs ?? 100;
    this.backoffMax = opts.backoffMaxMs ?? 60_000;
    if (opts.recordedRevision) {
      this.st.appliedRevision = opts.recordedRevision;
      this.st.appliedFrom = "record";
    }
  }

  status(): LoopStatus {
    return { ...this.st, lastRun: this.st.lastRun && { ...this.st.lastRun } };
  }

  /** A new snapshot from the source. */
  submit(snapshot: Snapshot): void {
    if (this.stopped) return;
    this.st.latestRevision = snapshot.revision;
    this.st.sourceError = null;
    if (snapshot.revision === this.rejectedRevision) return; // same invalid content again
    this.target = snapshot;
    this.trigger("source");
  }

  /** The source failed; the current target stays in force. Shown in status. */
  reportSourceError(err: Error): void {
    this.st.sourceError = { message: err.message, at: this.timers.now() };
  }

  /** Ask for a run now (SIGHUP → "signal"). Coalesces with a running or pending run. */
  trigger(reason: Trigger = "manual"): void {
    if (this.stopped) return;
    if (this.pending === null || TRIGGER_RANK[reason] > TRIGGER_RANK[this.pending]) this.pending = reason;
    if (this.runningPromise === null) this.runningPromise = this.drain();
  }

  /** Resolves when no run is in progress or pending. */
  async idle(): Promise<void> {
    while (this.runningPromise) await this.runningPromise;
  }

  /** Stop scheduling; waits for a run in progress (the datapath is left as it is). */
  async stop(): Promise<void> {
    this.stopped = true;
    this.pending = null;
    this.clearTimer("retry");
    this.clearTimer("resync");
    await this.idle();
  }

  private clearTimer(which: "retry" | "resync"): void {
    if (which === "retry") {
      if (this.retryTimer !== null) this.timers.clearTimeout(this.retryTimer);
      this.retryTimer = null;
      this.st.nextRetryAt = null;
    } else {
      if (this.resyncTimer !== null) this.timers.clearTimeout(this.resyncTimer);
      this.resyncTimer = null;
      this.st.nextResyncAt = null;
    }
  }

  private async drain(): Promise<void> {
    // Yield first, so `runningPromise` is assigned before the finally below clears it.
    await null;
    try {
      while (this.pending !== null && !this.stopped) {
        const trigger = this.pending;
        this.pending = null;
        const snapshot = this.target;
        if (snapshot === null) continue; // nothing received yet (or only invalid snapshots)
        this.clearTimer("retry"); // this run is the retry
        await this.runOnce(snapshot, trigger);
      }
    } finally {
      this.runningPromise = null;
    }
  }

  private async runOnce(snapshot: Snapshot, trigger: Trigger): Promise<void> {
    this.st.running = true;
    const startedAt = this.timers.now();
    let outcome: ReconcileOutcome;
    try {
      outcome = await this.opts.reconcile(snapshot, trigger);
    } catch (err) {
      outcome = { ok: false, changes: 0, errors: [{ object: "reconcile", message: err instanceof Error ? err.message : String(err) }] };
    }
    const finishedAt = this.timers.now();
    this.st.running = false;
    const invalid = outcome.invalid ?? [];
    const result: RunRecord["result"] = invalid.length > 0 ? "invalid" : outcome.suspended ? "suspended" : outcome.ok ? "ok" : "failed";
    const run: RunRecord = {
      trigger,
      revision: snapshot.revision,
      startedAt,
      finishedAt,
      result,
      changes: outcome.changes,
      drift: outcome.drift ?? 0,
      errors: outcome.errors,
      invalid,
    };
    this.st.runs++;
    this.st.lastRun = run;
    if (result !== "suspended" && (trigger === "source" || snapshot.revision !== this.st.appliedRevision)) this.st.attemptedRevision = snapshot.revision;
    if (result !== "suspended") this.st.driftCorrections += run.drift;

    if (result === "suspended") {
      // Nothing applied and nothing failed: the snapshot stays the target for the run after resume,
      // and resyncs keep observing (no retries: there is nothing to retry).
      this.lastGood = snapshot;
    } else if (result === "invalid") {
      // Nothing was applied: fall back to the last good snapshot. Retrying the same content is
      // pointless, so no backoff; a new commit or the next resync moves things on.
      this.rejectedRevision = snapshot.revision;
      if (this.target === snapshot) this.target = this.lastGood;
    } else if (result === "ok") {
      this.lastGood = snapshot;
      this.st.appliedRevision = snapshot.revision;
      this.st.appliedFrom = "run";
      this.st.lastSuccessAt = finishedAt;
      this.st.consecutiveFailures = 0;
    } else {
      // Valid but not fully applied: it stays the target and is retried with backoff.
      this.lastGood = snapshot;
      this.st.consecutiveFailures++;
      if (this.pending === null && !this.stopped) {
        const delay = backoffDelay(this.st.consecutiveFailures, this.backoffInitial, this.backoffMax);
        this.st.nextRetryAt = finishedAt + delay;
        this.retryTimer = this.timers.setTimeout(() => {
          this.retryTimer = null;
          this.st.nextRetryAt = null;
          this.trigger("retry");
        }, delay);
      }
    }
    this.scheduleResync(finishedAt);
    this.opts.onRun?.(run, this.status());
  }

  private scheduleResync(from: number): void {
    this.clearTimer("resync");
    if (this.stopped || this.resyncMs <= 0) return;
    this.st.nextResyncAt = from + this.resyncMs;
    this.resyncTimer = this.timers.setTimeout(() => {
      this.resyncTimer = null;
      this.st.nextResyncAt = null;
      this.trigger("resync");
    }, this.resyncMs);
  }
}
