// The reconcile service: one run of snapshot → compile → plan → apply against a kernel port, with
// what makes the daemon's runs cheap and honest: the compile cache, planning a new commit against
// the state the last successful run left, and telling drift from change. `--once` makes one run of
// the same service; the daemon's loop (daemon/loop.ts) decides when runs happen.

import { reconcileOnce, StatusTable, unconfirmed, type ApplyReport } from "../apply/executor.js";
import type { ProgressSink } from "../apply/progress.js";
import { foreignPrograms, type ForeignProgram, type KernelPort, type Suspension } from "../apply/port.js";
import { mapSpec, POLICY_MAP_CAPACITY } from "../datapath/maps.js";
import type { ActualState, DesiredState, PolicyMapEntry } from "../datapath/state.js";
import { formatProblem, ManifestError, type LoadStore } from "../manifest/load.js";
import { diff, type Change, type Plan } from "../plan/diff.js";
import { policyEntryText } from "../plan/render.js";
import { peerNames, type PeerNames } from "../policy/peer-names.js";
import { CapacityError, compileForNode, EmptySnapshotError, IncrementalPipeline, isEmptyModel, NotThisNodeError, refuseEmpty, requireLocal, type CompiledForNode, type NodeCompileOptions } from "../plan/snapshot-to-desired.js";
import type { Snapshot } from "../source/snapshot.js";
import type { Logger } from "./log.js";
import type { ReconcileOutcome, Trigger } from "./loop.js";
import type { DaemonMetrics } from "./status.js";

export interface ServiceOptions extends NodeCompileOptions {
  /** Apply a snapshot with no manifests even while endpoints are in force (see refuseEmpty). */
  allowEmpty?: boolean;
  log?: Logger;
  metrics?: DaemonMetrics;
  /** Where the load results of parsed files are kept across restarts (the daemon's state directory). */
  loadStore?: { store: LoadStore; build: string };
}

/**
 * Checks the plan a run is about to apply, made against `observed` (what the kernel holds now);
 * throws to refuse it before anything is written (a stale saved plan).
 */
export type PlanCheck = (plan: Plan, observed: ActualState) => void;

/** One applied run: the plan and its results, the compiled revision, and whether it corrected drift. */
export interface RunReport {
  report: ApplyReport;
  compiled: CompiledForNode;
  /** The revision was already in force: the changes made were drift corrections. */
  drift: boolean;
  /** Suspended: the plan was made against the kernel and nothing of it applied. */
  suspended?: boolean;
}

/** What a suspended daemon would do: the last plan it made and did not apply. */
export interface Pending {
  revision: string;
  changes: number;
  /** The revision is the one in force: the pending changes are drift. */
  drift: boolean;
  /** Changes by "resource.op". */
  counts: Record<string, number>;
}

/** Bytes of load results saved after one run (see persistLoadsLater). */
const PERSIST_BYTES_PER_RUN = 8 * 1024 * 1024;

export class ReconcileService {
  /** Objects in error after the last run, for `reconcile status`. */
  readonly objects = new StatusTable();
  private lastApplied: string | null = null;
  // The kernel as the last fully successful run left it. A new revision is planned against it; the
  // kernel itself is read on resyncs, netlink events, retries and after any failure.
  private inForce: DesiredState | undefined;
  // The last compiled revision: a resync of the same revision on an unchanged host reuses it rather
  // than compiling a million entries again.
  private cache: { revision: string; host: string; compiled: CompiledForNode } | undefined;
  // A new revision is loaded and compiled incrementally from the previous one: unchanged files are
  // not parsed again, only the endpoints whose selecting rules changed are recompiled, and their
  // unchanged policy maps are skipped by the diff against `inForce`.
  private readonly pipeline: IncrementalPipeline;
  // persistLoads() is due (set while one is scheduled), and the last error it logged.
  private persistDue = false;
  private persistError: string | undefined;
  // Foreign tcx programs ahead of ours can pass traffic before our policy sees it. They are not
  // ours to remove: reported in status and metrics, and logged once each time the set changes.
  private foreign: ForeignProgram[] = [];
  private foreignSeen = new Set<string>();
  /** The revision recorded with the pins (the one in force before this process applied any). */
  recorded: string | undefined;
  /** Set: runs plan and report, and apply nothing (suspend/resume). */
  private suspension: Suspension | undefined;
  /** The last plan a suspended run made. */
  private pendingPlan: Pending | undefined;
  /** The compiled revision the last fully successful run applied: the names of the events. */
  private appliedCompiled: CompiledForNode | undefined;

  constructor(
    private readonly kernel: KernelPort,
    private readonly opts: ServiceOptions,
  ) {
    this.recorded = kernel.recordedRevision();
    this.pipeline = new IncrementalPipeline(opts.loadStore);
  }

  /** Foreign tcx programs that run ahead of reconcile's, as the last run that looked saw them. */
  foreignAhead(): Array<Omit<ForeignProgram, "position">> {
    return this.foreign.filter((p) => p.position === "before").map(({ position: _, ...p }) => p);
  }

  /** The compiled revision the last fully successful run put in force (undefined before one). */
  inForceCompiled(): CompiledForNode | undefined {
    return this.appliedCompiled;
  }

  /** The revision the last fully successful run put in force. */
  get appliedRevision(): string | null {
    return this.lastApplied;
  }

  /** The suspension in force (with what it holds back), or undefined. */
  suspended(): (Suspension & { pending: Pending | null }) | undefined {
    return this.suspension && { ...this.suspension, pending: this.pendingPlan ?? null };
  }

  /** Takes up the suspension recorded with the pins (a daemon restarted while suspended stays so). */
  restoreSuspension(): Suspension | undefined {
    this.suspension = this.kernel.recordedSuspension();
    return this.suspension;
  }

  /** From now on runs apply nothing; recorded with the pins first, so it survives a restart. */
  suspend(suspension: Suspension): void {
    this.kernel.recordSuspension(suspension);
    this.suspension = suspension;
  }

  resume(): void {
    this.kernel.recordSuspension(undefined);
    this.suspension = undefined;
    this.pendingPlan = undefined;
  }

  /**
   * One run. Throws ManifestError (invalid manifests) and CapacityError (the commit would not fit)
   * before anything is written, NotThisNodeError for another node's revision, and
   * EmptySnapshotError for a revision without manifests while endpoints are in force.
   * `progress` hears the phases and the apply's batches (--once, the daemon's first run).
   */
  async run(snapshot: Snapshot, trigger: Trigger, expect?: PlanCheck, progress?: ProgressSink): Promise<RunReport> {
    progress?.({ type: "phase", phase: "compile" });
    const compiled = this.compile(snapshot);
    requireLocal(compiled);
    if (!this.opts.allowEmpty && isEmptyModel(compiled.model)) {
      // The endpoints in force: what the last good run left, else what the kernel holds.
      const inForce = this.inForce?.endpoints.size ?? (await this.kernel.targets.get("endpoint")?.observe(compiled.desired))?.size ?? 0;
      refuseEmpty(false, compiled, inForce);
    }
    if (this.suspension) return this.planOnly(snapshot, compiled);
    let known: ActualState | undefined = trigger === "source" ? this.inForce : undefined;
    if (expect) {
      // A saved plan: planned against the kernel as it is now, checked before anything is written.
      progress?.({ type: "phase", phase: "observe" });
      const observed = await this.kernel.targets.observe(compiled.desired);
      expect(diff(compiled.desired, observed), observed);
      known = observed;
    }
    const report = await reconcileOnce(this.kernel.targets, compiled.desired, known, progress);
    // The same revision again (resync, netlink event) with changes to make: someone changed the datapath.
    const drift = snapshot.revision === this.lastApplied && trigger !== "source";
    // A repair counts only when the kernel shows it afterwards: the kinds it changed are read again.
    // What is still planned did not stick; it is drift still there, retried with backoff, not "ok".
    if (drift && report.failed.length === 0 && report.plan.size > 0) {
      for (const c of await unconfirmed(this.kernel.targets, compiled.desired, report.plan)) {
        report.failed.push({ resource: c.resource, id: c.id, error: `repaired, but the kernel does not show it afterwards (${c.op}: ${c.reason})` });
      }
    }
    this.inForce = report.failed.length === 0 ? compiled.desired : undefined;
    this.objects.record(report);
    // A run that read the kernel (or changed attachments) looks at the hooks too; a new commit
    // planned against the last known state does not pay for it.
    if (!known || report.plan.touches("attachment")) this.checkForeignPrograms();
    if (report.failed.length === 0) {
      this.lastApplied = snapshot.revision;
      this.appliedCompiled = compiled;
      if (this.opts.metrics) updateMapMetrics(compiled.desired, this.opts.metrics);
      this.recordRevision(snapshot.revision);
    }
    return { report, compiled, drift };
  }

  /** A suspended run: the kernel is read and planned against, and nothing is written. */
  private async planOnly(snapshot: Snapshot, compiled: CompiledForNode): Promise<RunReport> {
    const plan = diff(compiled.desired, await this.kernel.targets.observe(compiled.desired));
    const drift = snapshot.revision === (this.lastApplied ?? this.recorded);
    this.pendingPlan = { revision: snapshot.revision, changes: plan.size, drift, counts: plan.tally() };
    this.inForce = undefined; // the kernel may differ from what the last run left: read it after resume
    return { report: { plan, applied: 0, failed: [] }, compiled, drift, suspended: true };
  }

  /** run() as the daemon's loop wants it: every failure classified into an outcome, and logged. */
  async reconcile(snapshot: Snapshot, trigger: Trigger, progress?: ProgressSink): Promise<ReconcileOutcome> {
    const log = this.opts.log;
    let run: RunReport;
    try {
      run = await this.run(snapshot, trigger, undefined, progress);
    } catch (err) {
      this.persistLoadsLater();
      if (err instanceof ManifestError) {
        const problems = err.problems.filter((p) => p.severity === "error").map(formatProblem);
        log?.error("revision rejected: invalid manifests, nothing applied", { revision: snapshot.revision, errors: problems.length });
        for (const p of problems) log?.error(p);
        return { ok: false, changes: 0, errors: [], invalid: problems };
      }
      if (err instanceof EmptySnapshotError) {
        log?.error("revision rejected: no manifests", { revision: snapshot.revision, reason: err.message });
        return { ok: false, changes: 0, errors: [], invalid: [err.message] };
      }
      if (err instanceof CapacityError) return { ok: false, changes: 0, errors: [], invalid: [err.message] };
      if (err instanceof NotThisNodeError) {
        log?.error(err.message);
        return { ok: false, changes: 0, errors: [{ object: `node/${this.opts.node}`, message: err.message }] };
      }
      throw err;
    }
    this.persistLoadsLater();
    const { report, drift } = run;
    if (run.suspended) {
      const pending = this.pendingPlan!;
      if (pending.changes) log?.warn(`suspended: ${drift ? "drift" : "changes"} pending, nothing applied`, { revision: pending.revision, pending: pending.changes, ...pending.counts });
      if (log?.enabled("debug")) for (const c of take(report.plan, CHANGE_LINES_MAX)) log.debug("pending", { op: c.op, resource: c.resource, id: c.id, reason: c.reason });
      return { ok: true, suspended: true, changes: pending.changes, drift: drift ? pending.changes : 0, errors: [] };
    }
    if (log) logChanges(log, report.plan, drift, peerNames(run.compiled.policy));
    for (const f of report.failed) log?.error("apply failed", { resource: f.resource, id: f.id, error: f.error });
    return {
      ok: report.failed.length === 0,
      changes: report.plan.size,
      drift: drift ? report.plan.size : 0,
      errors: report.failed.map((f) => ({ object: `${f.resource}/${f.id}`, message: f.error ?? "" })),
    };
  }

  /**
   * Saves load results of the files runs parsed, once the run has been reported (a cold start is
   * ready first), at most PERSIST_BYTES_PER_RUN after each run: V8 frees a serialized record's
   * memory only at its next garbage collection, and writing all 28 MB of a DESIGN-scale cold start
   * at once raised the daemon's peak RSS by ≈ 60–80 MiB. The rest follows after the next runs
   * (resyncs), and all of it at a graceful stop (persistLoadsNow). A failure costs only the next
   * start's speed: it is logged, and the results are tried again after the next run.
   */
  private persistLoadsLater(): void {
    if (this.opts.loadStore === undefined || this.persistDue) return;
    this.persistDue = true;
    setImmediate(() => {
      this.persistDue = false;
      this.persistLoadsNow(PERSIST_BYTES_PER_RUN);
    });
  }

  /** Writes the load results not saved yet (all of them, unless `maxBytes`). */
  persistLoadsNow(maxBytes = Infinity): void {
    if (this.opts.loadStore === undefined) return;
    const t0 = Date.now();
    try {
      const saved = this.pipeline.persistLoads(maxBytes);
      this.persistError = undefined;
      if (saved.written > 0) this.opts.log?.debug("load results saved", { files: saved.written, bytes: saved.bytes, remaining: saved.remaining, ms: Date.now() - t0 });
    } catch (err) {
      const message = (err as Error).message;
      if (message !== this.persistError) this.opts.log?.warn("cannot save the load results; the next start parses those files again", { error: message });
      this.persistError = message;
    }
  }

  /** What the pins enforce from now on: a daemon started later while its source is invalid reports it. */
  private recordRevision(revision: string): void {
    if (this.recorded === revision) return;
    try {
      this.kernel.recordRevision(revision);
      this.recorded = revision;
    } catch (err) {
      this.opts.log?.warn("cannot record the revision in force under the pin root", { revision, error: (err as Error).message });
    }
  }

  private checkForeignPrograms(): void {
    if (this.kernel.attachMode !== "tcx") return;
    const log = this.opts.log;
    let found: ForeignProgram[];
    try {
      found = foreignPrograms(this.kernel.tcxChains());
    } catch (err) {
      log?.warn("cannot read the programs on reconcile's tcx hooks", { error: (err as Error).message });
      return;
    }
    this.opts.metrics?.setForeignPrograms(found);
    this.foreign = found;
    const keyOf = (p: ForeignProgram) => `${p.netns ?? ""}/${p.device}/${p.hook}/${p.progId}/${p.position}`;
    const now = new Map(found.map((p) => [keyOf(p), p]));
    for (const [key, p] of now) {
      if (this.foreignSeen.has(key)) continue;
      const fields = { device: p.device, ...(p.netns ? { netns: p.netns } : {}), hook: p.hook, progId: p.progId, program: p.program };
      if (p.position === "before") log?.warn("foreign tcx program runs ahead of reconcile's: if it returns pass, traffic bypasses the policy; reconcile leaves it in place", fields);
      else log?.info("foreign tcx program runs after reconcile's", fields);
    }
    for (const key of this.foreignSeen) if (!now.has(key)) log?.notice("foreign tcx program gone from reconcile's hook", { program: key });
    this.foreignSeen = new Set(now.keys());
  }

  private compile(snapshot: Snapshot): CompiledForNode {
    const h = this.kernel.host();
    const host = JSON.stringify([h.addresses, [...h.mtuByAddress]]);
    if (this.cache?.revision === snapshot.revision && this.cache.host === host) return this.cache.compiled;
    const t0 = Date.now();
    const compiled = compileForNode(snapshot, this.opts, this.kernel, this.pipeline);
    this.opts.log?.debug("compiled", { revision: snapshot.revision, ms: Date.now() - t0, reuse: this.pipeline.describeLast() });
    this.cache = { revision: snapshot.revision, host, compiled };
    return compiled;
  }
}

/**
 * Runs with more changes than this log one summary line instead of a line per change (those go to
 * debug): a cold start at DESIGN scale plans 1.1M changes, whose lines cost ≈ 5 s and ≈ 200 MB of
 * log (journald would drop most of them anyway).
 */
export const CHANGE_LINES_MAX = 1000;

/**
 * One line per change (warn "drift corrected" for drift, else info "change"), or a summary past
 * CHANGE_LINES_MAX. A policy change's line also says in words what the entry means (`entry=`).
 */
export function logChanges(log: Logger, plan: Plan, drift: boolean, peers?: PeerNames): void {
  const detailed = plan.size <= CHANGE_LINES_MAX;
  const level = detailed ? (drift ? "warn" : "info") : "debug";
  const msg = drift ? "drift corrected" : "change";
  // A change, its id and its entries are made only when asked (a cold plan has a million): only for
  // lines that are written; the summary counts come from the plan.
  if (log.enabled(level)) {
    for (const c of plan) {
      const entry = c.resource === "policy" ? (c.after ?? c.before) : undefined;
      log.log(level, msg, {
        op: c.op,
        resource: c.resource,
        id: c.id,
        ...(entry ? { entry: policyEntryText(entry as PolicyMapEntry, peers) } : {}),
        reason: c.reason,
        ...(drift ? { found: c.before ?? null, restored: c.after ?? null } : {}),
      });
    }
  }
  if (detailed) return;
  const summary = { total: plan.size, ...plan.tally(), detail: "one line per change at --log-level debug" };
  if (drift) log.warn("drift corrected (summary)", summary);
  else log.info("changes (summary)", summary);
}

/** The first `n` of some changes. */
function* take(changes: Iterable<Change>, n: number): Generator<Change> {
  if (n <= 0) return;
  for (const c of changes) {
    yield c;
    if (--n === 0) return;
  }
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
