// Daemon mode: a source (directory watcher or git) feeds the reconcile loop; netlink events and a
// periodic resync catch drift; status on a unix socket, optional metrics, sd_notify, signals.

import { readFileSync } from "node:fs";
import { reconcileOnce, StatusTable, unconfirmed } from "../apply/executor.js";
import { ManifestError, formatProblem } from "../manifest/load.js";
import { foreignPrograms, tcxChains, type ForeignProgram } from "../apply/kernel/index.js";
import { ReconcileLoop, type ReconcileOutcome, type Trigger } from "../daemon/loop.js";
import { Logger } from "../daemon/log.js";
import { createNotifier } from "../daemon/notify.js";
import { closeAll, installSignalHandlers, type Closable } from "../daemon/signals.js";
import { DaemonMetrics, startMetricsServer, startStatusServer } from "../daemon/status.js";
import { netnsIdentity, subscribe, type Subscription } from "../netlink/index.js";
import type { Change } from "../plan/diff.js";
import { EmptySnapshotError, IncrementalPipeline, isEmptyModel } from "../plan/pipeline.js";
import type { DesiredState } from "../datapath/state.js";
import { mapSpec, POLICY_MAP_CAPACITY } from "../datapath/maps.js";
import { resolveDirSource, watchDir } from "../source/dir.js";
import { GitSource } from "../source/git.js";
import { createWebhookHandler } from "../source/webhook.js";
import type { Snapshot } from "../source/snapshot.js";
import type { GlobalOptions } from "./args.js";
import type { Io } from "./commands.js";
import { compileSnapshotFor, isGitUrl } from "./commands.js";
import { openKernel } from "./kernel.js";

/** Quiet time after a netlink event before the drift re-check runs. */
const EVENT_DEBOUNCE_MS = 100;

export async function runDaemon(opts: GlobalOptions, io: Io): Promise<number> {
  const env = io.env;
  const log = new Logger({ format: opts.logFormat, level: opts.logLevel, write: (line) => io.stderr.write(`${line}\n`) });
  const notifier = createNotifier(env as NodeJS.ProcessEnv, (err) => log.warn("sd_notify failed", { error: err.message }));
  const kernel = openKernel(opts);
  const metrics = new DaemonMetrics();
  const objects = new StatusTable();
  let lastApplied: string | null = null;
  // The kernel as the last fully successful run left it. A new revision is planned against it; the
  // kernel itself is read on resyncs, netlink events, retries and after any failure.
  let inForce: DesiredState | undefined;

  // The last compiled revision: a resync of the same revision on an unchanged host reuses it rather
  // than compiling a million entries again.
  let cache: { revision: string; host: string; compiled: ReturnType<typeof compileSnapshotFor> } | undefined;
  // A new revision is loaded and compiled incrementally from the previous one: unchanged files are
  // not parsed again, only the endpoints whose selecting rules changed are recompiled, and their
  // unchanged policy maps are skipped by the diff against `inForce`.
  const pipeline = new IncrementalPipeline();

  // Foreign tcx programs ahead of ours can pass traffic before our policy sees it. They are not
  // ours to remove: reported in status and metrics, and logged once each time the set changes.
  let foreignAhead: ForeignProgram[] = [];
  let foreignSeen = new Set<string>();
  const checkForeignPrograms = () => {
    if (kernel.attachMode !== "tcx") return;
    let found: ForeignProgram[];
    try {
      found = foreignPrograms(tcxChains(kernel.ctx));
    } catch (err) {
      log.warn("cannot read the programs on reconcile's tcx hooks", { error: (err as Error).message });
      return;
    }
    metrics.setForeignPrograms(found);
    foreignAhead = found.filter((p) => p.position === "before");
    const keyOf = (p: ForeignProgram) => `${p.netns ?? ""}/${p.device}/${p.hook}/${p.progId}/${p.position}`;
    const now = new Map(found.map((p) => [keyOf(p), p]));
    for (const [key, p] of now) {
      if (foreignSeen.has(key)) continue;
      const fields = { device: p.device, ...(p.netns ? { netns: p.netns } : {}), hook: p.hook, progId: p.progId, program: p.program };
      if (p.position === "before") log.warn("foreign tcx program runs ahead of reconcile's: if it returns pass, traffic bypasses the policy; reconcile leaves it in place", fields);
      else log.info("foreign tcx program runs after reconcile's", fields);
    }
    for (const key of foreignSeen) if (!now.has(key)) log.notice("foreign tcx program gone from reconcile's hook", { program: key });
    foreignSeen = new Set(now.keys());
  };

  const reconcile = async (snapshot: Snapshot, trigger: Trigger): Promise<ReconcileOutcome> => {
    let compiled;
    try {
      const h = kernel.host();
      const host = JSON.stringify([h.addresses, [...h.mtuByAddress]]);
      if (cache?.revision === snapshot.revision && cache.host === host) compiled = cache.compiled;
      else {
        const t0 = Date.now();
        compiled = compileSnapshotFor(snapshot, opts, kernel, pipeline);
        log.debug("compiled", { revision: snapshot.revision, ms: Date.now() - t0, reuse: pipeline.describeLast() });
        cache = { revision: snapshot.revision, host, compiled };
      }
    } catch (err) {
      if (err instanceof ManifestError) {
        const problems = err.problems.filter((p) => p.severity === "error").map(formatProblem);
        log.error("revision rejected: invalid manifests, nothing applied", { revision: snapshot.revision, errors: problems.length });
        for (const p of problems) log.error(p);
        return { ok: false, changes: 0, errors: [], invalid: problems };
      }
      if (err instanceof Error && err.name === "CapacityError") return { ok: false, changes: 0, errors: [], invalid: [err.message] };
      throw err;
    }
    if (compiled.facts?.local === false) {
      const message = `refusing to apply: ${compiled.facts.note}; run the daemon on that node`;
      log.error(message);
      return { ok: false, changes: 0, errors: [{ object: `node/${opts.node}`, message }] };
    }
    if (!opts.allowEmpty && isEmptyModel(compiled.model)) {
      // The revision in force: what the last good run left, else what the kernel holds.
      const endpointsInForce = inForce ? inForce.endpoints.size : ((await kernel.targets.get("endpoint")?.observe(compiled.desired))?.size ?? 0);
      if (endpointsInForce > 0) {
        const message = new EmptySnapshotError(snapshot.revision, endpointsInForce).message;
        log.error("revision rejected: no manifests", { revision: snapshot.revision, reason: message });
        return { ok: false, changes: 0, errors: [], invalid: [message] };
      }
    }
    const known = trigger === "source" ? inForce : undefined;
    const report = await reconcileOnce(kernel.targets, compiled.desired, known);
    // The same revision again (resync, netlink event) with changes to make: someone changed the datapath.
    const isDrift = snapshot.revision === lastApplied && trigger !== "source";
    // A repair counts only when the kernel shows it afterwards: the kinds it changed are read again.
    // What is still planned did not stick; it is drift still there, retried with backoff, not "ok".
    if (isDrift && report.failed.length === 0 && report.plan.changes.length > 0) {
      for (const c of await unconfirmed(kernel.targets, compiled.desired, report.plan)) {
        report.failed.push({ resource: c.resource, id: c.id, ok: false, error: `repaired, but the kernel does not show it afterwards (${c.op}: ${c.reason})` });
      }
    }
    inForce = report.failed.length === 0 ? compiled.desired : undefined;
    objects.record(report);
    logChanges(log, report.plan.changes, isDrift);
    for (const f of report.failed) log.error("apply failed", { resource: f.resource, id: f.id, error: f.error });
    // A run that read the kernel (or changed attachments) looks at the hooks too; a new commit
    // planned against the last known state does not pay for it.
    if (!known || report.plan.changes.some((c) => c.resource === "attachment")) checkForeignPrograms();
    if (report.failed.length === 0) {
      lastApplied = snapshot.revision;
      updateMapMetrics(compiled.desired, metrics);
      recordRevision(snapshot.revision);
    }
    return {
      ok: report.failed.length === 0,
      changes: report.plan.changes.length,
      drift: isDrift ? report.plan.changes.length : 0,
      errors: report.failed.map((f) => ({ object: `${f.resource}/${f.id}`, message: f.error ?? "" })),
    };
  };

  // The revision the pinned datapath enforces, as the last successful apply (of any process)
  // recorded it with the pins: a daemon restarted while its source is invalid still knows it.
  let recorded = kernel.ctx.recordedRevision();
  const recordRevision = (revision: string): void => {
    if (recorded === revision) return;
    try {
      kernel.ctx.recordRevision(revision);
      recorded = revision;
    } catch (err) {
      log.warn("cannot record the revision in force under the pin root", { revision, error: (err as Error).message });
    }
  };

  let ready = false;
  const loop = new ReconcileLoop({
    reconcile,
    resyncIntervalMs: opts.resyncIntervalMs,
    recordedRevision: recorded ?? null,
    onRun: (run, status) => {
      metrics.observeRun(run, status);
      const fields = { trigger: run.trigger, revision: run.revision, result: run.result, changes: run.changes, drift: run.drift, ms: run.finishedAt - run.startedAt };
      // A failed run says why on its own line (a run that threw has no "apply failed" lines).
      if (run.result === "failed") {
        const first = run.errors[0];
        log.error("reconciled", { ...fields, errors: run.errors.length, ...(first ? { object: first.object, error: first.message } : {}) });
      } else log.info("reconciled", fields);
      if (run.result === "ok" && !ready) {
        ready = true;
        notifier.ready(`applied ${run.revision}`);
      } else if (run.result === "invalid" && !ready && status.appliedRevision !== null) {
        // Nothing of the invalid revision was applied; the recorded one stays in force in the kernel.
        ready = true;
        log.warn("revision in force taken from the pins; drift is not corrected until a valid revision arrives", { inForce: status.appliedRevision, rejected: run.revision });
        notifier.ready(`${status.appliedRevision} in force (recorded); ${run.revision} is invalid`);
      } else {
        notifier.status(`${run.result} ${run.revision}: ${run.changes} changes, ${run.errors.length} errors`);
      }
      watchNamespaces();
    },
  });

  // Netlink events in the namespaces we manage trigger an immediate drift check.
  const subscriptions = new Map<string, Subscription>();
  let eventTimer: NodeJS.Timeout | undefined;
  const onEvent = () => {
    clearTimeout(eventTimer);
    eventTimer = setTimeout(() => loop.trigger("resync"), EVENT_DEBOUNCE_MS);
  };
  const watchNamespaces = () => {
    const owned = kernel.ctx.ownedNetns();
    for (const [netns, sub] of subscriptions) {
      // A namespace deleted, or deleted and made again, is not the one this subscription watches
      // (and the subscription alone would keep the old one alive): drop it, and watch the new one.
      if (netns === "" || (owned.includes(netns) && sub.netnsIdentity === netnsIdentity(netns))) continue;
      sub.close();
      subscriptions.delete(netns);
    }
    for (const netns of ["", ...owned]) {
      if (subscriptions.has(netns)) continue;
      if (netns !== "" && netnsIdentity(netns) === undefined) continue; // marked, gone: the next plan sees to it
      try {
        subscriptions.set(netns, subscribe(onEvent, { ...(netns ? { netns } : {}), unref: true }));
      } catch (err) {
        log.warn("cannot watch namespace for drift", { netns, error: (err as Error).message });
      }
    }
  };
  watchNamespaces();

  const source = opts.source!;
  let listening: string | undefined;
  const closables: Closable[] = [{ name: "notifier", close: () => notifier.stopping() }];
  // Sources are closed before the loop, the loop (waiting for a run in progress) before the servers.
  // A start-up failure (socket in use, port taken, unreachable first fetch) closes what was started
  // and ends in the error boundary: a half-started daemon must not keep running.
  try {
    let gitStatus: (() => unknown) | undefined;
    let webhook: ReturnType<typeof createWebhookHandler> | undefined;
    if (isGitUrl(source) || env.RECONCILE_SOURCE_TYPE === "git") {
      const tokenFile = env.RECONCILE_GIT_TOKEN_FILE;
      const git = new GitSource({
        url: source,
        stateDir: opts.stateDir,
        ...(opts.ref ? { ref: opts.ref } : {}),
        ...(opts.path ? { path: opts.path } : {}),
        intervalMs: opts.gitIntervalMs,
        ...(env.RECONCILE_GIT_TOKEN ? { token: env.RECONCILE_GIT_TOKEN } : {}),
        ...(tokenFile ? { tokenFile } : {}),
        ...(env.RECONCILE_GIT_SSH_KEY_FILE ? { sshKeyFile: env.RECONCILE_GIT_SSH_KEY_FILE } : {}),
        ...(opts.verifySignatures ? { verifySignatures: { allowedSignersFile: opts.verifySignatures } } : {}),
        onSnapshot: (s) => loop.submit(s),
        onError: (err) => {
          metrics.gitFetchFailed();
          loop.reportSourceError(err);
          log.warn("git source failed; the last good revision stays in force", { error: err.message });
        },
      });
      gitStatus = () => git.status();
      const secretFile = env.RECONCILE_WEBHOOK_SECRET_FILE;
      if (secretFile) {
        const secret = readFileSync(secretFile, "utf8").trim();
        log.addSecret(secret);
        webhook = createWebhookHandler({ secret, onPush: () => void git.sync() });
      }
      await git.start();
      closables.push({ name: "git source", close: () => git.close() });
    } else {
      const { root, boundary } = await resolveDirSource(source, opts.path);
      const close = await watchDir(root, (s) => loop.submit(s), {
        boundary,
        onError: (err) => {
          loop.reportSourceError(err);
          log.warn("manifest directory unreadable; the last good revision stays in force", { error: err.message });
        },
      });
      closables.push({ name: "directory watcher", close });
    }

    closables.push({ name: "loop", close: () => loop.stop() });
    const statusServer = await startStatusServer({
      socketPath: opts.socket,
      getStatus: () => ({
        node: opts.node,
        ...loop.status(),
        objectsInError: objects.errors(),
        foreignAhead: foreignAhead.map((p) => ({ device: p.device, ...(p.netns ? { netns: p.netns } : {}), hook: p.hook, progId: p.progId, program: p.program })),
        ...(gitStatus ? { git: gitStatus() } : {}),
      }),
    });
    closables.push({ name: "status server", close: () => statusServer.close() });
    if (opts.listen) {
      const server = await startMetricsServer({ listen: opts.listen, metrics, isReady: () => ready, ...(webhook ? { routes: { "/hooks/git": webhook } } : {}) });
      listening = server.address; // the real port when --listen asked for port 0
      closables.push({ name: "metrics server", close: () => server.close() });
    }
    const stopWatchdog = notifier.startWatchdog();
    closables.push({ name: "watchdog", close: stopWatchdog });
    closables.push({
      name: "netlink subscriptions",
      close: () => {
        clearTimeout(eventTimer);
        for (const s of subscriptions.values()) s.close();
      },
    });
    closables.push({ name: "kernel", close: () => kernel.close() });
  } catch (err) {
    await closeAll([...closables, { name: "kernel", close: () => kernel.close() }]).catch(() => {});
    throw err;
  }
  log.notice("started", { node: opts.node, source, attachMode: kernel.attachMode, attachPosition: opts.attachPosition, pinRoot: opts.bpffsRoot, socket: opts.socket, ...(listening ? { listen: listening } : {}) });

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

/**
 * Runs with more changes than this log one summary line instead of a line per change (those go to
 * debug): a cold start at DESIGN scale plans 1.1M changes, whose lines cost ≈ 5 s and ≈ 200 MB of
 * log (journald would drop most of them anyway).
 */
export const CHANGE_LINES_MAX = 1000;

/** One line per change (warn "drift corrected" for drift, else info "change"), or a summary past CHANGE_LINES_MAX. */
export function logChanges(log: Logger, changes: readonly Change[], drift: boolean): void {
  const detailed = changes.length <= CHANGE_LINES_MAX;
  const level = detailed ? (drift ? "warn" : "info") : "debug";
  // A change's id and entries are made only when asked (a cold plan holds a million): only for lines
  // that are written.
  const lines = log.enabled(level);
  const msg = drift ? "drift corrected" : "change";
  const counts: Record<string, number> = {};
  for (const c of changes) {
    if (lines) log.log(level, msg, { op: c.op, resource: c.resource, id: c.id, reason: c.reason, ...(drift ? { found: c.before ?? null, restored: c.after ?? null } : {}) });
    if (detailed) continue;
    const k = `${c.resource}.${c.op}`;
    counts[k] = (counts[k] ?? 0) + 1;
  }
  if (detailed) return;
  const summary = { total: changes.length, ...counts, detail: "one line per change at --log-level debug" };
  if (drift) log.warn("drift corrected (summary)", summary);
  else log.info("changes (summary)", summary);
}

/**
 * Map fill after a run with no failures, when the kernel holds exactly the desired state (counting
 * keys in the kernel would cost a syscall per entry). The policy figure is the fullest endpoint's
 * share of its own map, since each endpoint's map has its own capacity.
 */
function updateMapMetrics(desired: DesiredState, metrics: DaemonMetrics): void {
  let policyEntries = 0;
  let fullest = 0;
  for (const entries of desired.policy.values()) {
    policyEntries += entries.size;
    fullest = Math.max(fullest, entries.size);
  }
  for (const [name, entries, pressure] of [
    ["ipcache", desired.ipcache.size, desired.ipcache.size / mapSpec("ipcache").maxEntries],
    ["endpoints", desired.endpoints.size, desired.endpoints.size / mapSpec("endpoints").maxEntries],
    ["policy", policyEntries, fullest / POLICY_MAP_CAPACITY],
  ] as const) {
    metrics.setMapEntries(name, entries);
    metrics.setMapPressure(name, pressure);
  }
}
