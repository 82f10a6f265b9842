// Progress of --once and teardown on stderr (stdout keeps the plan and the result). On a terminal: one
// line redrawn in place, at most ten times a second. Piped, or in the journal, or with NO_COLOR: a
// plain line per phase and at most one every few seconds, and never an escape code. Off with
// --no-progress, and for --output json unless stderr is a terminal (a script reading the JSON
// should not have to filter its stderr).

import { formatElapsed, PHASE_LABEL, PlainCadence, ProgressTracker, type ProgressEvent, type ProgressSink, type ProgressSnapshot } from "../apply/progress.js";
import type { GlobalOptions } from "./args.js";
import type { Io } from "./io.js";

/** Redraws of the terminal line: at most one per this. */
export const REDRAW_MS = 100;

export interface ProgressOutput {
  sink: ProgressSink;
  /** The run is over: the live line gives way to a summary line (`completed`), or to nothing (it threw). */
  finish(completed: boolean): void;
}

interface Clock {
  now: () => number;
  /** Redraws the terminal line while nothing reports (the elapsed time moves); none in tests. */
  every?: (ms: number, fn: () => void) => () => void;
}

const realClock: Clock = {
  now: Date.now,
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
  if (tty && !io.env.NO_COLOR && io.env.TERM !== "dumb") return new TerminalProgress(write, clock, io.stderr.columns ?? 80);
  return new PlainProgress(write, clock.now);
}

/** Per-kind counts: "device 20/20 · policy 420,000/1,100,000". */
function countsText(s: ProgressSnapshot, separator: string): string {
  return s.kinds.map((k) => `${k.resource} ${n(k.done)}/${n(k.total)}${k.failed ? ` (${n(k.failed)} failed)` : ""}`).join(separator);
}

function n(x: number): string {
  return x.toLocaleString("en-US");
}

function summary(s: ProgressSnapshot): string {
  const what = s.total === 0 ? "no changes" : `${n(s.done)} of ${n(s.total)} changes made, ${n(s.failed)} failed`;
  return `reconcile: done in ${formatElapsed(s.elapsedMs)}: ${what}\n`;
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
    private readonly columns: number,
  ) {
    this.tracker = new ProgressTracker(clock.now);
    this.stop = clock.every?.(REDRAW_MS * 2, () => this.draw()) ?? (() => {});
  }

  finish(completed: boolean): void {
    this.stop();
    if (completed) this.write(`\r\x1b[K${summary(this.tracker.snapshot())}`);
    else if (this.tracker.started) this.write("\r\x1b[K");
  }

  private draw(): void {
    if (!this.tracker.started) return;
    this.lastDraw = this.clock.now();
    const s = this.tracker.snapshot();
    const counts = countsText(s, " · ");
    const line = `reconcile: ${PHASE_LABEL[s.phase]} ${formatElapsed(s.elapsedMs)}${counts ? ` · ${counts}` : ""}`;
    // Wider than the terminal, the line would wrap and \r would redraw only its last row.
    this.write(`\r${line.slice(0, Math.max(10, this.columns - 1))}\x1b[K`);
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
    if (completed) this.write(summary(this.tracker.snapshot()));
  }

  private line(): void {
    const s = this.tracker.snapshot();
    const counts = countsText(s, ", ");
    this.write(`reconcile: ${PHASE_LABEL[s.phase]} (${formatElapsed(s.elapsedMs)})${counts ? `: ${counts}` : ""}\n`);
  }
}
