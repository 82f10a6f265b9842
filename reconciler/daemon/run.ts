// Daemon mode: a source (directory watcher or git) feeds the reconcile loop, which runs the
// reconcile service; netlink events and a periodic resync catch drift; status on a unix socket,
// optional metrics, sd_notify, signals.

import { createHash } from "node:crypto";
import path from "node:path";
import type { KernelPort, Suspension, Watch } from "../apply/port.js";
import { DirLoadStore, loaderBuild } from "../manifest/dir-store.js";
import type { LoadStore } from "../manifest/load.js";
import { eventOptions, type NodeCompileOptions } from "../plan/snapshot-to-desired.js";
import { followSource, isGitSource, type SourceOptions } from "../source/open.js";
import { Logger, type LogFormat, type LogLevel } from "./log.js";
import { ReconcileLoop, realTimers, type Timers } from "./loop.js";
import { createNotifier, type Notifier } from "./notify.js";
import { MemoryReleaser, releaseUnusedMemory, type MemoryReleaserOptions } from "./memory.js";
import { withStartupProgress } from "./progress.js";
import { ReconcileService } from "./service.js";
import { DaemonEvents } from "./events.js";
import { closeAll, installSignalHandlers, type Closable } from "./signals.js";
import { DaemonMetrics, startMetricsServer, startStatusServer } from "./status.js";

/** Quiet time after a netlink event before the drift re-check runs. */
const EVENT_DEBOUNCE_MS = 100;

export interface DaemonOptions extends NodeCompileOptions, SourceOptions {
  resyncIntervalMs: number;
  /** Status socket path. */
  socket: string;
  /** Optional TCP address for /metrics, /healthz, /readyz (and the git webhook). */
  listen?: string;
  logFormat: LogFormat;
  logLevel: LogLevel;
  bpffsRoot: string;
  /** Where fresh tcx links go among foreign programs (for the start-up line; the kernel port applies it). */
  attachPosition: "first" | "last";
  allowEmpty: boolean;
  /** No progress log lines for the first run (--no-progress); status shows its progress all the same. */
  noProgress?: boolean;
  /** --log-drops: a log line per drop event (rate-limited). */
  logDrops?: boolean;
}

/** The daemon minus its I/O edges (source, servers, signals): what the scenario tests drive. */
export interface DaemonCore {
  service: ReconcileService;
  loop: ReconcileLoop;
  metrics: DaemonMetrics;
  /** The datapath's events: counted into metrics, logged, served to monitor (start() opens the ring). */
  events: DaemonEvents;
  /** The document `reconcile status` shows, with `extra` (e.g. the git source's state) merged in. */
  status(extra?: Record<string, unknown>): Record<string, unknown>;
  /** Whether the first run succeeded (readiness). */
  ready(): boolean;
  /** Subscribes to netlink events of any namespace reconcile owns that has no subscription yet. */
  watchNamespaces(): void;
  /** Stops the event subscriptions and the pending memory release. */
  closeWatches(): void;
  /** `reconcile suspend`: apply nothing until resume (recorded with the pins); returns the status. */
  suspend(reason?: string): Record<string, unknown>;
  /** `reconcile resume`: a run starts at once; returns the status. */
  resume(): Record<string, unknown>;
}

export interface CoreOptions {
  kernel: KernelPort;
  opts: NodeCompileOptions & { resyncIntervalMs: number; allowEmpty?: boolean; noProgress?: boolean; logDrops?: boolean };
  log: Logger;
  notifier?: Notifier;
  timers?: Timers;
  /** Keeps the load results of manifest files across restarts (see openLoadStore). */
  loadStore?: { store: LoadStore; build: string };
  /** Gives unused memory back when idle after a run (memory.ts): the process's own in runDaemon. */
  memory?: Pick<MemoryReleaserOptions, "rss" | "release">;
}

/**
 * The service, the loop and the drift watches wired together. A netlink event in a managed
 * namespace triggers a resync after EVENT_DEBOUNCE_MS of quiet.
 */
export function createDaemonCore({ kernel, opts, log, notifier, timers = realTimers, loadStore, memory: processMemory }: CoreOptions): DaemonCore {
  const metrics = new DaemonMetrics();
  const service = new ReconcileService(kernel, { node: opts.node, enforcement: opts.enforcement, ...eventOptions(opts), attachMode: opts.attachMode, allowEmpty: opts.allowEmpty ?? false, log, metrics, ...(loadStore ? { loadStore } : {}) });
  const events = new DaemonEvents({ kernel, metrics, log, logDrops: opts.logDrops ?? false, inForce: () => service.inForceCompiled(), timers });
  const restored = service.restoreSuspension();
  metrics.setSuspended(restored !== undefined);
  if (restored) log.warn("suspended (recorded with the pins): changes are planned and reported, nothing is applied until reconcile resume", suspensionFields(restored));
  let ready = false;
  const subscriptions = new Map<string, Watch>();
  let eventTimer: unknown;
  // The first run (a cold start's long apply) logs its progress, and status shows it while it runs.
  const startup = withStartupProgress(service, { log, now: () => timers.now(), quiet: opts.noProgress ?? false });
  const memory = processMemory && memoryReleaser(processMemory, timers, log);
  const loop = new ReconcileLoop({
    reconcile: (snapshot, trigger) => {
      memory?.runStarted();
      return startup.reconcile(snapshot, trigger);
    },
    resyncIntervalMs: opts.resyncIntervalMs,
    recordedRevision: service.recorded ?? null,
    timers,
    onRun: (run, status) => {
      memory?.runEnded();
      metrics.observeRun(run, status);
      if (run.result === "suspended") {
        log.info("reconciled", { trigger: run.trigger, revision: run.revision, result: run.result, pending: run.changes, drift: run.drift, ms: run.finishedAt - run.startedAt });
        const inForce = status.appliedRevision ?? "nothing";
        if (!ready) {
          // Suspended from the start: what the pins hold stays in force, and that is the daemon's job now.
          ready = true;
          notifier?.ready(`suspended; ${inForce} in force, ${run.changes} changes pending`);
        } else notifier?.status(`suspended; ${inForce} in force, ${run.changes} changes pending`);
        watchNamespaces();
        return;
      }
      const fields = { trigger: run.trigger, revision: run.revision, result: run.result, changes: run.changes, drift: run.drift, ms: run.finishedAt - run.startedAt };
      // A failed run says why on its own line (a run that threw has no "apply failed" lines).
      if (run.result === "failed") {
        const first = run.errors[0];
        log.error("reconciled", { ...fields, errors: run.errors.length, ...(first ? { object: first.object, error: first.message } : {}) });
      } else log.info("reconciled", fields);
      if (run.result === "ok" && !ready) {
        ready = true;
        notifier?.ready(`applied ${run.revision}`);
      } else if (run.result === "invalid" && !ready && status.appliedRevision !== null) {
        // Nothing of the invalid revision was applied; the recorded one stays in force in the kernel.
        ready = true;
        log.warn("revision in force taken from the pins; drift is not corrected until a valid revision arrives", { inForce: status.appliedRevision, rejected: run.revision });
        notifier?.ready(`${status.appliedRevision} in force (recorded); ${run.revision} is invalid`);
      } else {
        notifier?.status(`${run.result} ${run.revision}: ${run.changes} changes, ${run.errors.length} errors`);
      }
      watchNamespaces();
    },
  });
  const onEvent = () => {
    timers.clearTimeout(eventTimer);
    eventTimer = timers.setTimeout(() => loop.trigger("resync"), EVENT_DEBOUNCE_MS);
  };
  const watchNamespaces = () => {
    const owned = kernel.ownedNetns();
    for (const [netns, sub] of subscriptions) {
      if (netns === "" || (owned.includes(netns) && !sub.stale())) continue;
      sub.close();
      subscriptions.delete(netns);
    }
    for (const netns of ["", ...owned]) {
      if (subscriptions.has(netns)) continue;
      try {
        const sub = kernel.watch(netns, onEvent);
        if (sub) subscriptions.set(netns, sub); // else marked but gone: the next plan sees to it
      } catch (err) {
        log.warn("cannot watch namespace for drift", { netns, error: (err as Error).message });
      }
    }
  };
  return {
    service,
    loop,
    metrics,
    events,
    status: (extra = {}) => {
      const progress = startup.current();
      return { node: opts.node, suspended: service.suspended() ?? null, ...(progress ? { progress } : {}), ...loop.status(), objectsInError: service.objects.errors(), foreignAhead: service.foreignAhead(), events: events.totals(), ...(memory ? { memory: memory.summary() } : {}), ...extra };
    },
    ready: () => ready,
    watchNamespaces,
    ...suspensionControls({ service, metrics, log, loop, timers, node: opts.node }),
    closeWatches: () => {
      memory?.close();
      timers.clearTimeout(eventTimer);
      for (const s of subscriptions.values()) s.close();
      subscriptions.clear();
    },
  };
}

/** Gives unused memory back when the daemon is idle after a run (memory.ts): in status, and logged at debug level. */
function memoryReleaser(processMemory: NonNullable<CoreOptions["memory"]>, timers: Timers, log: Logger): MemoryReleaser {
  const releaser: MemoryReleaser = new MemoryReleaser({
    timers,
    ...processMemory,
    onReleased: () => log.debug("memory released", releaser.summary().last),
  });
  return releaser;
}

/** suspend() and resume() of the daemon core: the service's state, the metric, the log line, and a run at once. */
function suspensionControls(c: { service: ReconcileService; metrics: DaemonMetrics; log: Logger; loop: ReconcileLoop; timers: Timers; node: string }): Pick<DaemonCore, "suspend" | "resume"> {
  const { service, metrics, log, loop, timers, node } = c;
  return {
    suspend: (reason) => {
      const already = service.suspended();
      if (!already) {
        const suspension = { since: timers.now(), ...(reason ? { reason } : {}) };
        service.suspend(suspension); // throws when it cannot be recorded: a suspension that a restart forgets is none
        metrics.setSuspended(true);
        log.notice("suspended: changes are planned and reported, nothing is applied until reconcile resume", suspensionFields(suspension));
        loop.trigger("manual"); // the pending changes show at once
      }
      return { node, suspended: service.suspended() ?? null, alreadySuspended: already !== undefined };
    },
    resume: () => {
      const was = service.suspended();
      if (was) {
        service.resume();
        metrics.setSuspended(false);
        log.notice("resumed: applying now", { suspendedFor: `${Math.round((timers.now() - was.since) / 1000)}s` });
        loop.trigger("manual");
      }
      return { node, suspended: null, wasSuspended: was !== undefined };
    },
  };
}

function suspensionFields(s: Suspension): Record<string, unknown> {
  return { since: new Date(s.since).toISOString(), ...(s.reason ? { reason: s.reason } : {}) };
}

/**
 * The load results of the source's manifest files, kept under the state directory
 * (`load-cache/<hash of the source>`): a restart reads back the results of unchanged files instead
 * of parsing them. Without a usable directory the daemon runs as well, only its starts parse everything.
 */
function openLoadStore(opts: DaemonOptions, log: Logger): { store: LoadStore; build: string } | undefined {
  const dir = path.join(opts.stateDir, "load-cache", createHash("sha256").update(opts.source).digest("hex").slice(0, 16));
  try {
    return { store: new DirLoadStore(dir), build: loaderBuild() };
  } catch (err) {
    log.warn("load results are not kept across restarts (every start parses all manifests)", { dir, error: (err as Error).message });
    return undefined;
  }
}

export interface DaemonIo {
  /** Where log lines go. */
  writeLog: (line: string) => void;
  /** The systemd service protocol's variables (NOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID). */
  systemd: Readonly<Record<string, string | undefined>>;
}

/** Runs until SIGTERM/SIGINT; resolves to the exit code. The kernel port is the caller's to open and is closed here. */
export async function runDaemon(opts: DaemonOptions, kernel: KernelPort, io: DaemonIo): Promise<number> {
  const log = new Logger({ format: opts.logFormat, level: opts.logLevel, write: io.writeLog });
  const notifier = createNotifier(io.systemd as NodeJS.ProcessEnv, (err) => log.warn("sd_notify failed", { error: err.message }));
  const loadStore = openLoadStore(opts, log);
  const memory = { rss: () => process.memoryUsage.rss(), release: releaseUnusedMemory };
  const core = createDaemonCore({ kernel, opts, log, notifier, memory, ...(loadStore ? { loadStore } : {}) });
  const { loop } = core;
  core.watchNamespaces();

  let listening: string | undefined;
  const closables: Closable[] = [{ name: "notifier", close: () => notifier.stopping() }];
  // Sources are closed before the loop, the loop (waiting for a run in progress) before the servers.
  // A start-up failure (socket in use, port taken, unreachable first fetch) closes what was started
  // and ends in the error boundary: a half-started daemon must not keep running.
  try {
    const git = isGitSource(opts);
    const source = await followSource(opts, {
      onSnapshot: (s) => loop.submit(s),
      onError: (err) => {
        if (git) core.metrics.gitFetchFailed();
        loop.reportSourceError(err);
        log.warn(`${git ? "git source failed" : "manifest directory unreadable"}; the last good revision stays in force`, { error: err.message });
      },
    });
    if (source.webhook) log.addSecret(source.webhook.secret);
    closables.push({ name: "source", close: () => source.close() });
    closables.push({ name: "loop", close: () => loop.stop() });
    // After the loop: no run adds results while the rest are written.
    closables.push({ name: "load results", close: () => core.service.persistLoadsNow() });
    const statusServer = await startStatusServer({
      socketPath: opts.socket,
      getStatus: () => core.status(source.status ? { git: source.status() } : {}),
      actions: { suspend: (body) => core.suspend(typeof body.reason === "string" ? body.reason : undefined), resume: () => core.resume() },
      routes: { "/events": (req, res) => core.events.serve(req, res) },
    });
    closables.push({ name: "status server", close: () => statusServer.close() });
    // Read before the status server closes: its event streams end with the reader.
    if (core.events.start()) closables.splice(closables.length - 1, 0, { name: "event reader", close: () => core.events.close() });
    if (opts.listen) {
      const routes = source.webhook ? { "/hooks/git": source.webhook.handler } : undefined;
      const server = await startMetricsServer({ listen: opts.listen, metrics: core.metrics, isReady: core.ready, ...(routes ? { routes } : {}) });
      listening = server.address; // the real port when --listen asked for port 0
      closables.push({ name: "metrics server", close: () => server.close() });
    }
    closables.push({ name: "watchdog", close: notifier.startWatchdog() });
    closables.push({ name: "netlink subscriptions", close: core.closeWatches });
    closables.push({ name: "kernel", close: () => kernel.close() });
  } catch (err) {
    await closeAll([...closables, { name: "kernel", close: () => kernel.close() }]).catch(() => {});
    throw err;
  }
  log.notice("started", { node: opts.node, source: opts.source, attachMode: kernel.attachMode, attachPosition: opts.attachPosition, pinRoot: opts.bpffsRoot, socket: opts.socket, ...(listening ? { listen: listening } : {}) });

  // SIGTERM leaves the datapath as it is: pinned maps and links keep enforcing.
  return new Promise<number>((resolve) => {
    const remove = installSignalHandlers({
      onReload: () => {
        log.info("resync requested (SIGHUP)");
        loop.trigger("signal");
      },
      onStop: async (signal) => {
        log.notice("stopping; the datapath stays in force", { signal });
        await closeAll(closables);
        remove();
        resolve(0);
      },
      onForce: () => resolve(1),
      onStopError: (err) => {
        log.error("shutdown incomplete", { error: (err as Error).message });
        resolve(1);
      },
    });
  });
}
