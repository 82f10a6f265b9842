// `reconcile monitor`: the datapath's events as lines, as they happen. Two ways in:
// - through the daemon (GET /events on its socket): it owns the ring buffer's consumer position and
//   names events from the revision in force;
// - the pinned ring buffer itself (no daemon): names from --source, or numbers only without it.
// Either way the filters apply here, and the summary at the end (Ctrl-C, --count) goes to stderr.

import { request, type IncomingMessage } from "node:http";
import { join } from "node:path";
import type { KernelPort } from "../apply/port.js";
import { refusalText } from "../daemon/status.js";
import { sampleClock } from "../monitor/clock.js";
import { nameEvent, namingContext, type MonitorEvent, type NamingContext } from "../monitor/event.js";
import { matchesFilter } from "../monitor/filter.js";
import { formatJson, formatText } from "../monitor/format.js";
import { readEvents } from "../monitor/reader.js";
import type { Command } from "./args.js";
import { ReconcileError } from "./errors.js";
import type { Io } from "./io.js";

type MonitorCommand = Extract<Command, { name: "monitor" }>;

export interface MonitorDeps {
  /** Aborted on Ctrl-C (SIGINT) or SIGTERM: monitor stops, prints its summary and exits 0. */
  signal: AbortSignal;
  openKernel: () => Promise<KernelPort>;
  /** The revision of --source, compiled for --node (only called when --source is given). */
  compile: (kernel: KernelPort) => Promise<Parameters<typeof namingContext>[0]>;
}

/** What the summary line reports. */
interface Tally {
  shown: number;
  read: number;
  /** The datapath's counters (or the daemon's stream's) at the start and now: the summary shows the growth. */
  budget?: { first: Budget; last: Budget };
}

interface Budget {
  suppressed: number;
  lost: number;
  /** Events the daemon could not send to this reader (it fell behind). */
  skipped?: number;
}

export async function monitor(command: MonitorCommand, io: Io, deps: MonitorDeps): Promise<number> {
  const stop = new AbortController();
  const onAbort = () => stop.abort();
  deps.signal.addEventListener("abort", onAbort, { once: true });
  // A closed pipe (monitor | head) ends monitor as Ctrl-C does.
  io.stdout.once("error", onAbort);
  const tally: Tally = { shown: 0, read: 0 };
  const show = (e: MonitorEvent, line?: string) => {
    tally.read++;
    if (stop.signal.aborted || !matchesFilter(command.filter, e)) return;
    io.stdout.write(`${command.opts.output === "json" ? (line ?? formatJson(e)) : formatText(e)}\n`);
    tally.shown++;
    if (command.count !== undefined && tally.shown >= command.count) stop.abort();
  };
  try {
    const daemon = command.via === "ring" ? undefined : await openDaemonStream(command.opts.socket, command.via === "daemon");
    if (daemon) await fromDaemon(daemon, command.opts.socket, io, stop.signal, show, tally);
    else await fromRing(command, io, deps, stop.signal, show, tally);
  } finally {
    deps.signal.removeEventListener("abort", onAbort);
    io.stdout.off("error", onAbort);
  }
  io.stderr.write(`monitor: ${summary(tally)}\n`);
  return 0;
}

function summary(t: Tally): string {
  const parts = [`${t.shown} events shown, ${t.read} read`];
  if (t.budget) {
    const { first, last } = t.budget;
    parts.push(`the datapath suppressed ${last.suppressed - first.suppressed} (rate limit) and lost ${last.lost - first.lost} (ring full)`);
    if (last.skipped) parts.push(`the daemon skipped ${last.skipped - (first.skipped ?? 0)} for this reader (it fell behind)`);
  }
  return parts.join("; ");
}

/**
 * GET /events on the daemon's socket. undefined when nothing listens there and `required` is false
 * (monitor then reads the ring itself); an error when the daemon answers but serves no events.
 */
function openDaemonStream(socketPath: string, required: boolean): Promise<IncomingMessage | undefined> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path: "/events", method: "GET" }, (res) => {
      if (res.statusCode === 200) return resolve(res);
      let body = "";
      res.on("data", (c: Buffer) => (body += c.toString()));
      res.on("end", () => reject(new ReconcileError(`monitor: the daemon at ${socketPath} serves no events (HTTP ${res.statusCode}: ${refusalText(body)})`)));
    });
    req.on("error", (err: NodeJS.ErrnoException) => {
      const absent = err.code === "ENOENT" || err.code === "ECONNREFUSED";
      if (absent && !required) return resolve(undefined);
      reject(new ReconcileError(`monitor: cannot reach the daemon at ${socketPath} (is it running?): ${err.message}`));
    });
    req.end();
  });
}

/** The daemon's newline-delimited JSON: a hello (its revision), events, and a stats line every second. */
async function fromDaemon(res: IncomingMessage, socketPath: string, io: Io, signal: AbortSignal, show: (e: MonitorEvent, line: string) => void, tally: Tally): Promise<void> {
  let partial = "";
  let ended = false;
  // A line that is not JSON rejects here, so that it reaches the one error boundary (a throw in the
  // data handler would be an uncaught exception).
  const done = new Promise<void>((resolve, reject) => {
    res.on("end", () => {
      ended = true;
      resolve();
    });
    res.on("close", () => resolve());
    signal.addEventListener("abort", () => resolve(), { once: true });
    res.on("data", (chunk: Buffer) => {
      const lines = (partial + chunk.toString("utf8")).split("\n");
      partial = lines.pop()!;
      for (const line of lines) {
        if (!line) continue;
        let msg: { type: string; revision?: string | null } & Partial<Budget>;
        try {
          msg = JSON.parse(line) as typeof msg;
        } catch {
          return reject(new ReconcileError(`monitor: the daemon at ${socketPath} sent a line that is not JSON: ${line.slice(0, 200)}`));
        }
        if (msg.type === "hello") io.stderr.write(`monitor: reading events from the daemon at ${socketPath} (revision ${msg.revision ?? "none applied yet"})\n`);
        else if (msg.type === "stats") {
          const now = { suppressed: msg.suppressed ?? 0, lost: msg.lost ?? 0, skipped: msg.skipped ?? 0 };
          tally.budget = { first: tally.budget?.first ?? now, last: now };
        } else show(msg as unknown as MonitorEvent, line);
      }
    });
  });
  try {
    await done;
  } finally {
    res.destroy();
  }
  if (ended && !signal.aborted) throw new ReconcileError(`monitor: the daemon at ${socketPath} ended the event stream (it stopped or restarted)`);
}

/** The pinned ring buffer, read here; names from --source's revision, numbers only without it. */
async function fromRing(command: MonitorCommand, io: Io, deps: MonitorDeps, signal: AbortSignal, show: (e: MonitorEvent) => void, tally: Tally): Promise<void> {
  const kernel = await deps.openKernel();
  try {
    const ctx: NamingContext | undefined = command.opts.source ? namingContext(await deps.compile(kernel)) : undefined;
    const stream = kernel.events();
    const ring = join(command.opts.bpffsRoot, "events"); // where the kernel port pins the map of that name
    if (!stream) throw new ReconcileError(`monitor: no event ring buffer at ${ring} (nothing applied there, or a datapath from before events)`);
    const budget = (): Budget => {
      const b = kernel.eventBudget();
      return { suppressed: Number(b.suppressed), lost: Number(b.lost) };
    };
    const start = budget();
    tally.budget = { first: start, last: start };
    io.stderr.write(`monitor: reading the ring buffer at ${ring} (${ctx ? `revision ${ctx.revision}` : "numbers only: give --source for names"})\n`);
    const clock = sampleClock();
    try {
      await readEvents(stream, (ev) => show(nameEvent(ev, ctx, clock)), {
        signal,
        onMalformed: (err) => io.stderr.write(`monitor: an event record does not decode: ${err.message}\n`),
      });
    } finally {
      stream.close();
    }
    tally.budget.last = budget();
  } finally {
    kernel.close();
  }
}
