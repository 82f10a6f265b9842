// The daemon's reader of the datapath's events: it owns the ring buffer's consumer position while it
// runs, counts every event into Prometheus (drops by endpoint, reason and direction; policy verdicts
// by endpoint), logs drops when asked (--log-drops, rate-limited), and serves the named events to
// `reconcile monitor` over the status socket (GET /events): a ring has one consumer position, and
// two readers of it would each see only part of the events.

import type { IncomingMessage, ServerResponse } from "node:http";
import type { EventBudget, KernelPort } from "../apply/port.js";
import type { DatapathEvent } from "../datapath/layouts.js";
import { sampleClock, type WallClock } from "../monitor/clock.js";
import { nameEvent, namingContext, type MonitorEvent, type NamingContext } from "../monitor/event.js";
import { readEvents } from "../monitor/reader.js";
import { isPolicyReason, reasonName } from "../monitor/reasons.js";
import type { CompiledForNode } from "../plan/snapshot-to-desired.js";
import type { Logger } from "./log.js";
import type { Timers } from "./loop.js";
import type { DaemonMetrics } from "./status.js";

/** Drop lines per second --log-drops writes at most; the rest are folded into one count line. */
export const LOG_DROPS_PER_SECOND = 10;
/** How often the event_budget map (suppressed, lost) is read into the metrics and the streams. */
const BUDGET_INTERVAL_MS = 1000;
/** A monitor that reads slower than events come gets this much buffered, then skips (and is told how many). */
const STREAM_BUFFER_MAX = 1 << 20;

export interface DaemonEventsOptions {
  kernel: Pick<KernelPort, "events" | "eventBudget">;
  metrics: DaemonMetrics;
  log: Logger;
  /** --log-drops: log each drop (at most LOG_DROPS_PER_SECOND lines a second). */
  logDrops: boolean;
  /** The compiled revision in force (names and provenance), or undefined before the first run. */
  inForce: () => CompiledForNode | undefined;
  timers: Timers;
  clock?: WallClock;
}

/** A subscriber of the stream: takes one line (without its newline); false = it could not take it. */
type Sink = (line: string) => boolean;

/** What the stream's "stats" line and `reconcile status` report. */
export interface EventTotals {
  read: number;
  malformed: number;
  suppressed: number;
  lost: number;
}

export class DaemonEvents {
  private readonly sinks = new Map<Sink, { skipped: number }>();
  private readonly stop = new AbortController();
  private reading: Promise<unknown> | undefined;
  private budgetTimer: unknown;
  private budget: EventBudget = { suppressed: 0n, lost: 0n };
  private counted = { read: 0, malformed: 0 };
  private naming: { compiled: CompiledForNode; ctx: NamingContext } | undefined;
  private readonly clock: WallClock;
  // --log-drops' rate limit: lines written in the current second, drops folded.
  private window = { start: 0, lines: 0, folded: 0 };

  constructor(private readonly opts: DaemonEventsOptions) {
    this.clock = opts.clock ?? sampleClock();
  }

  /** Opens the ring buffer and starts reading it; false (and a log line) when the pins have none. */
  start(): boolean {
    let stream;
    try {
      stream = this.opts.kernel.events();
    } catch (err) {
      this.opts.log.warn("cannot open the datapath's event ring buffer: no drop or verdict metrics, monitor reads the ring itself", { error: (err as Error).message });
      return false;
    }
    if (!stream) {
      this.opts.log.info("no event ring buffer under the pin root (a datapath from before events): no drop or verdict metrics until one is applied");
      return false;
    }
    this.reading = readEvents(stream, (ev) => this.handle(ev), {
      signal: this.stop.signal,
      onMalformed: (err) => {
        this.counted.malformed++;
        this.opts.log.debug("event record does not decode", { error: err.message });
      },
    }).then(
      () => {},
      (err: unknown) => this.opts.log.error("reading the event ring buffer failed: no more drop or verdict metrics", { error: (err as Error).message }),
    ).finally(() => stream.close());
    this.pollBudget();
    return true;
  }

  /** Stops reading, ends the streams, and closes the ring buffer. */
  async close(): Promise<void> {
    this.stop.abort();
    this.opts.timers.clearTimeout(this.budgetTimer);
    await this.reading;
    for (const sink of this.sinks.keys()) sink("");
    this.sinks.clear();
  }

  totals(): EventTotals {
    return { ...this.counted, suppressed: Number(this.budget.suppressed), lost: Number(this.budget.lost) };
  }

  /** One event: counted, logged (a drop, with --log-drops), and sent to every stream. */
  handle(ev: DatapathEvent): void {
    this.counted.read++;
    const ctx = this.names();
    const endpoint = ctx?.endpoints.get(ev.epId)?.name ?? `endpoint ${ev.epId}`;
    const m = this.opts.metrics;
    if (ev.kind === "drop") {
      m.countDrop(endpoint, reasonName(ev.reason), ev.direction);
      if (isPolicyReason(ev.reason)) m.countVerdict(endpoint, "deny");
    } else if (ev.kind === "audit") m.countVerdict(endpoint, "audit");
    else if (ev.verdict === "allow") m.countVerdict(endpoint, "allow"); // a deny verdict event repeats its drop: counted there
    const logIt = this.opts.logDrops && ev.kind === "drop";
    if (!logIt && this.sinks.size === 0) return; // naming costs more than counting: only when someone reads it
    const named = nameEvent(ev, ctx, this.clock);
    if (logIt) this.logDrop(named);
    if (this.sinks.size) this.send(JSON.stringify(named));
  }

  private names(): NamingContext | undefined {
    const compiled = this.opts.inForce();
    if (!compiled) return undefined;
    if (this.naming?.compiled !== compiled) this.naming = { compiled, ctx: namingContext(compiled) };
    return this.naming.ctx;
  }

  private logDrop(e: MonitorEvent): void {
    const now = this.opts.timers.now();
    if (now - this.window.start >= 1000) {
      if (this.window.folded) this.opts.log.warn("drops not logged (rate limit)", { folded: this.window.folded, limit: `${LOG_DROPS_PER_SECOND}/s`, detail: "every drop is counted in reconcile_drops_total" });
      this.window = { start: now, lines: 0, folded: 0 };
    }
    if (this.window.lines >= LOG_DROPS_PER_SECOND) {
      this.window.folded++;
      return;
    }
    this.window.lines++;
    this.opts.log.info("drop", {
      endpoint: e.endpoint || `endpoint ${e.epId}`,
      direction: e.direction,
      reason: e.reasonName,
      src: e.src,
      dst: e.dst,
      sport: e.sport,
      dport: e.dport,
      protocol: e.protocolName,
      peer: e.peer.names.join(",") || `identity ${e.peer.identity}`,
      identity: e.peer.identity,
      ...(e.provenance ? { decision: e.provenance } : {}),
      ...(e.rules.length ? { rules: e.rules.map((r) => `${r.file}:${r.line}`).join(",") } : {}),
    });
  }

  private send(line: string): void {
    for (const [sink, state] of this.sinks) if (!sink(line)) state.skipped++;
  }

  /** Reads event_budget into the metrics and the streams, now and every BUDGET_INTERVAL_MS. */
  private pollBudget(): void {
    try {
      const b = this.opts.kernel.eventBudget();
      this.budget = { suppressed: b.suppressed, lost: b.lost };
      this.opts.metrics.setEventBudget(this.budget);
    } catch (err) {
      this.opts.log.debug("cannot read event_budget", { error: (err as Error).message });
    }
    for (const [sink, state] of this.sinks) sink(JSON.stringify({ type: "stats", ...this.totals(), skipped: state.skipped }));
    if (!this.stop.signal.aborted) this.budgetTimer = this.opts.timers.setTimeout(() => this.pollBudget(), BUDGET_INTERVAL_MS);
  }

  /**
   * GET /events on the status socket: newline-delimited JSON, first {"type":"hello", …}, then one
   * MonitorEvent a line, and {"type":"stats", …} every second. A reader that falls behind by more
   * than STREAM_BUFFER_MAX bytes misses events, and its stats line says how many ("skipped").
   */
  serve(req: IncomingMessage, res: ServerResponse): void {
    if (req.method !== "GET") {
      res.writeHead(405, { "content-type": "application/json" }).end(`${JSON.stringify({ error: "method not allowed" })}\n`);
      return;
    }
    if (!this.reading) {
      res.writeHead(503, { "content-type": "application/json" }).end(`${JSON.stringify({ error: "the daemon does not read the event ring buffer (none under the pin root)" })}\n`);
      return;
    }
    res.writeHead(200, { "content-type": "application/x-ndjson", "cache-control": "no-store" });
    const sink: Sink = (line) => {
      if (line === "") {
        res.end();
        return true;
      }
      if (res.writableLength > STREAM_BUFFER_MAX) return false;
      res.write(`${line}\n`);
      return true;
    };
    const compiled = this.opts.inForce();
    res.write(`${JSON.stringify({ type: "hello", revision: compiled?.desired.revision ?? null, node: compiled?.desired.node ?? null })}\n`);
    this.sinks.set(sink, { skipped: 0 });
    res.on("close", () => this.sinks.delete(sink));
  }
}
