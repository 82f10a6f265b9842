// The daemon's first run after start (a cold start applies a million entries for tens of seconds)
// reports its progress: structured log lines (one per phase, and at most one every few seconds
// between them), and the counts `reconcile status` shows while it runs.

import { PlainCadence, ProgressTracker, type ProgressEvent, type ProgressSink, type ProgressSnapshot } from "../apply/progress.js";
import type { Logger } from "./log.js";

export class StartupProgress {
  private readonly tracker: ProgressTracker;
  private readonly cadence: PlainCadence;
  readonly sink: ProgressSink = (event: ProgressEvent) => {
    const phaseChanged = this.tracker.on(event);
    if (this.cadence.due(phaseChanged)) this.log.info("first run: progress", progressFields(this.tracker.snapshot()));
  };

  constructor(
    private readonly log: Logger,
    now: () => number,
  ) {
    this.tracker = new ProgressTracker(now);
    this.cadence = new PlainCadence(now);
  }

  /** For `reconcile status`: the phase, the counts per kind and the time so far. */
  status(): ProgressSnapshot {
    return this.tracker.snapshot();
  }
}

/** phase=apply ms=12300 done=N total=N failed=N device=20/20 policy=420000/1100000 */
export function progressFields(s: ProgressSnapshot): Record<string, unknown> {
  const fields: Record<string, unknown> = { phase: s.phase, ms: s.elapsedMs, done: s.done, total: s.total, failed: s.failed };
  for (const k of s.kinds) fields[k.resource] = `${k.done}/${k.total}`;
  return fields;
}
