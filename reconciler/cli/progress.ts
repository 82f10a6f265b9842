// Progress of --once and teardown on stderr (stdout keeps the plan and the result). On a terminal: one
// line redrawn in place (carriage return and erase-line, no colour, so NO_COLOR changes nothing),
// at most ten times a second, then a summary line. Piped, in the journal, or on TERM=dumb: a plain
// line per phase and at most one every PLAIN_INTERVAL_MS (5 s) between them, never an escape code.
// Off with --no-progress, and for --output json unless stderr is a terminal (a script reading the
// JSON should not have to filter its stderr).

import { countParts, formatElapsed, PHASE_LABEL, PlainCadence, ProgressTracker, type ProgressEvent, type ProgressSink, type ProgressSnapshot } from "../apply/progress.js";
import type { GlobalOptions } from "./args.js";
import type { Io } from "./io.js";

/** Redraws of the terminal line: at most one per this. */
export const REDRAW_MS = 100;

export interface ProgressOutput {
  sink: ProgressSink;
  /** The run is over: the live line gives way to a summary line (`completed`), or to nothing (it threw). */
  finish(completed: boolean): void;
}

export interface Clock {
  now: () => number;
  /** Redraws the terminal line while nothing reports (the elapsed time moves); none in tests. */
  every?: (ms: number, fn: () => void) => () => void;
}

export const realClock: Clock = {
  now: () => performance.now(),
  every: (ms, fn) => {
    const t = setInterval(fn, ms);
    t.unref();
    return () => clearInterval(t);
  },
};

/** The progress output the streams and flags ask for, or undefined when it is off. */
export function progressFor(io: Io, opts: Pick<GlobalOptions, "output" | "noProgress">, clock: Clock = realClock): ProgressOutput | undefined {
  if (opts.noProgress) return undefined;
  const write = (text: string) => void io.stderr.write(text);
  const tty = io.stderr.isTTY === true;
  if (!tty && opts.output === "json") return undefined;
  if (tty && io.env.TERM !== "dumb") return new TerminalProgress(write, clock, () => io.stderr.columns || 80);
  return new PlainProgress(write, clock.now);
}

/**
 * "reconcile: done in 12.3s (1,100,040 changes)". What succeeded and failed is the result's to say
 * (a change that failed before the maps existed and was made after them failed only for a while).
 */
export function summaryLine(s: ProgressSnapshot): string {
  return `reconcile: done in ${formatElapsed(s.elapsedMs)} (${s.total === 0 ? "no changes" : `${s.total.toLocaleString("en-US")} changes`})\n`;
}

/** The single updating line of a terminal. */
export class TerminalProgress implements ProgressOutput {
  private readonly tracker: ProgressTracker;
  private lastDraw = -Infinity;
  private readonly stop: () => void;
  readonly sink: ProgressSink = (event: ProgressEvent) => {
    const phaseChanged = this.tracker.on(event);
    if (phaseChanged || this.clock.now() - this.lastDraw >= REDRAW_MS) this.draw();
  };

  constructor(
    private readonly write: (text: string) => void,
    private readonly clock: Clock,
    private readonly columns: () => number,
  ) {
    this.tracker = new ProgressTracker(clock.now);
    this.stop = clock.every?.(REDRAW_MS * 2, () => this.draw()) ?? (() => {});
  }

  finish(completed: boolean): void {
    this.stop();
    if (completed) this.write(`\r\x1b[K${summaryLine(this.tracker.snapshot())}`);
    else if (this.tracker.started) this.write("\r\x1b[K");
  }

  private draw(): void {
    if (!this.tracker.started) return;
    this.lastDraw = this.clock.now();
    const s = this.tracker.snapshot();
    const line = [`reconcile: ${PHASE_LABEL[s.phase]} ${formatElapsed(s.elapsedMs)}`, ...countParts(s)].join(" · ");
    // Wider than the terminal, the line would wrap and \r would redraw only its last row.
    this.write(`\r${line.slice(0, Math.max(10, this.columns() - 1))}\x1b[K`);
  }
}

/** Plain lines, for a pipe or the journal. */
export class PlainProgress implements ProgressOutput {
  private readonly tracker: ProgressTracker;
  private readonly cadence: PlainCadence;
  readonly sink: ProgressSink = (event: ProgressEvent) => {
    const phaseChanged = this.tracker.on(event);
    if (this.cadence.due(phaseChanged)) this.line();
  };

  constructor(
    private readonly write: (text: string) => void,
    now: () => number,
  ) {
    this.tracker = new ProgressTracker(now);
    this.cadence = new PlainCadence(now);
  }

  finish(completed: boolean): void {
    if (completed) this.write(summaryLine(this.tracker.snapshot()));
  }

  private line(): void {
    const s = this.tracker.snapshot();
    const counts = countParts(s).join(", ");
    this.write(`reconcile: ${PHASE_LABEL[s.phase]} (${formatElapsed(s.elapsedMs)})${counts ? `: ${counts}` : ""}\n`);
  }
}
