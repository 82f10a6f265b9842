// The daemon's first run after start (a cold start applies a million entries for tens of seconds)
// reports its progress: structured log lines (one per phase, and at most one every
// PLAIN_INTERVAL_MS between them; none with --no-progress), and the counts `reconcile status`
// shows while it runs (always: reading them costs nothing).

import { PlainCadence, ProgressTracker, type ProgressEvent, type ProgressSink, type ProgressSnapshot } from "../apply/progress.js";
import type { Logger } from "./log.js";
import type { ReconcileService } from "./service.js";

export class StartupProgress {
  private readonly tracker: ProgressTracker;
  private readonly cadence: PlainCadence;
  readonly sink: ProgressSink = (event: ProgressEvent) => {
    const phaseChanged = this.tracker.on(event);
    if (this.log && this.cadence.due(phaseChanged)) this.log.info("first run: progress", progressFields(this.tracker.snapshot()));
  };

  /** Without `log`, nothing is logged; status() still counts. */
  constructor(
    private readonly log: Logger | undefined,
    now: () => number,
  ) {
    this.tracker = new ProgressTracker(now);
    this.cadence = new PlainCadence(now);
  }

  /** For `reconcile status`: the phase, the counts and the time so far. */
  status(): ProgressSnapshot {
    return this.tracker.snapshot();
  }
}

/** phase=apply ms=12300 endpoints=12/40 entries=420000/1100000 other=30/80 failed=0 */
export function progressFields(s: ProgressSnapshot): Record<string, unknown> {
  const fields: Record<string, unknown> = { phase: s.phase, ms: Math.round(s.elapsedMs) };
  for (const [key, c] of [["endpoints", s.endpoints], ["entries", s.entries], ["other", s.other]] as const) if (c.total) fields[key] = `${c.done}/${c.total}`;
  fields.failed = s.failed;
  return fields;
}

/**
 * The loop's reconcile: the service's, with the first run's progress (log lines unless `quiet`)
 * and, while that run lasts, `current()` for the status document.
 */
export function withStartupProgress(service: ReconcileService, o: { log: Logger; now: () => number; quiet: boolean }): { reconcile: ReconcileService["reconcile"]; current: () => ProgressSnapshot | undefined } {
  let first = true;
  let startup: StartupProgress | undefined;
  return {
    reconcile: async (snapshot, trigger) => {
      if (!first) return service.reconcile(snapshot, trigger);
      first = false;
      startup = new StartupProgress(o.quiet ? undefined : o.log, o.now);
      try {
        return await service.reconcile(snapshot, trigger, startup.sink);
      } finally {
        startup = undefined;
      }
    },
    current: () => startup?.status(),
  };
}
