// Snapshot → Model → CompiledPolicy → DesiredState (load → compile → desired): the pure chain every command starts with.

import { buildDesiredState, type DesiredOptions, type MonitorVerdicts } from "../datapath/desired.js";
import { MAP_SPECS, POLICY_MAP_CAPACITY } from "../datapath/maps.js";
import type { DesiredState } from "../datapath/state.js";
import { DEFAULT_LOAD_LIMITS, LoadCache, loadSnapshot, ManifestError, type LoadStore } from "../manifest/load.js";
import type { ManifestProblem, Model } from "../manifest/model.js";
import { compile, type CompileMemo } from "../policy/compile.js";
import { compileIncremental, type IncrementalReport } from "../policy/incremental.js";
import type { CompiledPolicy, CompileOptions } from "../policy/types.js";
import type { Snapshot } from "../source/snapshot.js";
import { nodeFacts, type MachineFacts, type NodeFacts } from "./facts.js";

/** Audit mode and datapath event settings (--enforcement-mode, --monitor-verdicts, --event-rate):
 *  part of every compile, so that --dry-run, --once, the daemon and diff plan the same entries. */
export interface EventOptions {
  /** audit: every endpoint in audit mode (default enforce). */
  enforcementMode?: "enforce" | "audit";
  /** Policy verdict events every endpoint reports (default none). */
  monitorVerdicts?: MonitorVerdicts;
  /** Events per second per CPU per endpoint (default DEFAULT_EVENT_RATE). */
  eventRate?: number;
}

/** The EventOptions that are set, and only those (absent ones keep compiles' options equal). */
export function eventOptions(opts: EventOptions): EventOptions {
  return {
    ...(opts.enforcementMode !== undefined ? { enforcementMode: opts.enforcementMode } : {}),
    ...(opts.monitorVerdicts !== undefined ? { monitorVerdicts: opts.monitorVerdicts } : {}),
    ...(opts.eventRate !== undefined ? { eventRate: opts.eventRate } : {}),
  };
}

export interface PipelineOptions extends EventOptions {
  /** Node to compile for. */
  node: string;
  enforcement: "default" | "always" | "never";
  /** Resolved attach mode (auto already decided by a probe). */
  attachMode: "tcx" | "tc";
  /** Local host addresses (identity host): the CLI reads them from the kernel of this machine. */
  hostAddresses?: string[];
  /** MTU of the local node's underlay device (see DesiredOptions.underlayMtu); default 1500. */
  underlayMtu?: number;
  /** Tags of the programs this binary carries (see DesiredOptions). */
  programTags?: ReadonlyMap<string, string>;
}

export interface Compiled {
  model: Model;
  policy: CompiledPolicy;
  desired: DesiredState;
  /** Warnings from loading and compiling (never fatal). */
  warnings: ManifestProblem[];
}

/** A commit whose datapath would not fit in the maps: refused before anything is written. */
export class CapacityError extends Error {
  override name = "CapacityError";
  constructor(
    message: string,
    readonly map: string,
    readonly needed: number,
    readonly capacity: number,
  ) {
    super(message);
  }
}

/** True for a model with no objects at all: the snapshot of an emptied or unmounted directory. */
export function isEmptyModel(model: Model): boolean {
  return model.endpoints.length === 0 && model.identities.length === 0 && model.rules.length === 0 && model.nodes.length === 0;
}

/**
 * An empty snapshot (no manifests at all) while the datapath in force has endpoints: refused unless
 * --allow-empty, since applying it would remove every endpoint, and an emptied or unmounted
 * directory is far likelier than an intended teardown. Nothing is applied.
 */
export class EmptySnapshotError extends Error {
  override name = "EmptySnapshotError";
  constructor(
    readonly revision: string,
    /** Endpoints of the datapath in force. */
    readonly endpointsInForce: number,
  ) {
    super(
      `revision ${revision} holds no manifests, but the datapath in force has ${endpointsInForce} endpoint(s): refusing to remove them ` +
        `(an emptied or unmounted source?); nothing was applied. Pass --allow-empty (RECONCILE_ALLOW_EMPTY=true) to apply an empty revision`,
    );
  }
}

/**
 * Refuses (EmptySnapshotError) a snapshot with no manifests while `endpointsInForce` endpoints are
 * in force, unless `allowEmpty`. Nothing in force: an empty datapath may stay empty.
 */
export function refuseEmpty(allowEmpty: boolean, compiled: Pick<Compiled, "model"> & { snapshot: Snapshot }, endpointsInForce: number): void {
  if (allowEmpty || !isEmptyModel(compiled.model) || endpointsInForce === 0) return;
  throw new EmptySnapshotError(compiled.snapshot.revision, endpointsInForce);
}

/** Load, validate, compile. Throws ManifestError with every problem of the snapshot at once.
 *  With a `cache`, files it already loaded with the same content are not parsed again. */
export function loadModel(snapshot: Snapshot, cache?: LoadCache): { model: Model; warnings: ManifestProblem[] } {
  const result = loadSnapshot(snapshot, DEFAULT_LOAD_LIMITS, cache);
  const errors = result.problems.filter((p) => p.severity === "error");
  if (errors.length || !result.model) throw new ManifestError(result.problems);
  return { model: result.model, warnings: result.problems };
}

export function compileSnapshot(snapshot: Snapshot, opts: PipelineOptions): Compiled {
  const { model, warnings } = loadModel(snapshot);
  return compileModel(model, warnings, opts);
}

/** Compile an already loaded model (`warnings` are its load warnings, passed through). */
export function compileModel(model: Model, warnings: ManifestProblem[], opts: PipelineOptions): Compiled {
  const desiredWarnings: ManifestProblem[] = [];
  const policy = compile(model, compileOptions(opts));
  const desired = buildDesiredState(model, policy, desiredOptions(opts, desiredWarnings));
  checkCapacity(policy, desired);
  return { model, policy, desired, warnings: [...warnings, ...policy.warnings, ...desiredWarnings] };
}

function compileOptions(opts: PipelineOptions): CompileOptions {
  return {
    node: opts.node,
    enforcement: opts.enforcement,
    ...(opts.hostAddresses ? { hostAddresses: opts.hostAddresses } : {}),
    ...(opts.enforcementMode === "audit" ? { audit: true as const } : {}),
  };
}

function desiredOptions(opts: PipelineOptions, warnings: ManifestProblem[]): DesiredOptions {
  return {
    attachMode: opts.attachMode,
    ...(opts.programTags ? { programTags: opts.programTags } : {}),
    ...(opts.underlayMtu !== undefined ? { underlayMtu: opts.underlayMtu } : {}),
    ...(opts.monitorVerdicts !== undefined ? { monitorVerdicts: opts.monitorVerdicts } : {}),
    ...(opts.eventRate !== undefined ? { eventRate: opts.eventRate } : {}),
    onWarning: (p) => warnings.push(p),
  };
}

/** Stages of IncrementalPipeline.compileModel, reported as each one ends (for timing). */
export type PipelineStage = "compile" | "desired";

/**
 * loadModel + compileModel for a sequence of snapshots (the daemon's commits): each call starts
 * from what the previous one built, so a commit costs roughly what it changes.
 * - load: files with unchanged content are not parsed again (LoadCache);
 * - compile: compileIncremental recomputes only the identities whose selecting rules changed and
 *   falls back to a full compile when the identity universe changed (policy/incremental.ts);
 * - desired state: endpoints whose EndpointPolicy object was reused get the previous per-endpoint
 *   policy Map, and an unchanged ipcache the previous Map (buildDesiredState's `previous`), so a
 *   diff against the previous desired state skips them by identity.
 * Each result equals what loadModel + compileModel give for the same snapshot. Not for concurrent
 * use: one call at a time, as the daemon's loop makes them.
 */
export class IncrementalPipeline {
  private readonly cache: LoadCache;
  private last: { memo: CompileMemo; policy: CompiledPolicy; desired: DesiredState } | undefined;
  private report: IncrementalReport | undefined;

  /** With a `loadStore`, files no earlier call loaded are looked up there before they are parsed. */
  constructor(loadStore?: { store: LoadStore; build: string }) {
    this.cache = new LoadCache(loadStore);
  }

  load(snapshot: Snapshot): { model: Model; warnings: ManifestProblem[] } {
    return loadModel(snapshot, this.cache);
  }

  /** Writes load results parsed since the last call to the load store (LoadCache.persist). */
  persistLoads(maxBytes?: number): { written: number; bytes: number; remaining: number } {
    return this.cache.persist(maxBytes);
  }

  compileModel(model: Model, warnings: ManifestProblem[], opts: PipelineOptions, onStage?: (stage: PipelineStage) => void): Compiled {
    const desiredWarnings: ManifestProblem[] = [];
    const inc = compileIncremental(model, compileOptions(opts), this.last?.memo);
    onStage?.("compile");
    const previous = this.last ? { compiled: this.last.policy, desired: this.last.desired } : undefined;
    const desired = buildDesiredState(model, inc.policy, desiredOptions(opts, desiredWarnings), previous);
    onStage?.("desired");
    checkCapacity(inc.policy, desired);
    this.last = { memo: inc.memo, policy: inc.policy, desired };
    this.report = inc.report;
    return { model, policy: inc.policy, desired, warnings: [...warnings, ...inc.policy.warnings, ...desiredWarnings] };
  }

  /** One line on what the last load and compile reused, for logs. */
  describeLast(): string {
    const r = this.report;
    const { reused, restored, parsed } = this.cache.last;
    const files = `${reused} files reused, ${restored ? `${restored} read back from the load store, ` : ""}${parsed} parsed`;
    if (r === undefined) return files;
    if (r.full) return `${files}; full compile (${r.reason})`;
    return `${files}; ${r.changedRules} rules changed, ${r.recomputedEndpoints} endpoint policies recomputed, ipcache ${r.ipcacheReused ? "reused" : "rebuilt"}`;
  }
}

function checkCapacity(policy: CompiledPolicy, desired: DesiredState): void {
  for (const ep of policy.endpoints) {
    if (ep.entrySet.size > POLICY_MAP_CAPACITY) {
      throw new CapacityError(
        `endpoint ${ep.endpoint} needs ${ep.entrySet.size} policy entries but its policy map holds ${POLICY_MAP_CAPACITY}; nothing was applied`,
        "policy",
        ep.entrySet.size,
        POLICY_MAP_CAPACITY,
      );
    }
  }
  for (const [name, size] of [
    ["ipcache", desired.ipcache.size],
    ["endpoints", desired.endpoints.size],
  ] as const) {
    const capacity = MAP_SPECS.find((m) => m.name === name)!.maxEntries;
    if (size > capacity) {
      throw new CapacityError(`map ${name} needs ${size} entries but holds ${capacity}; nothing was applied`, name, size, capacity);
    }
  }
}

/** What compileForNode needs to know besides the snapshot. */
export interface NodeCompileOptions extends EventOptions {
  node: string;
  enforcement: PipelineOptions["enforcement"];
  /** Used when there is no machine to ask (auto then means tcx). */
  attachMode: "auto" | "tcx" | "tc";
}

export type CompiledForNode = Compiled & { snapshot: Snapshot; facts?: NodeFacts };

/**
 * Compiles a snapshot for `opts.node`. With a machine: its attach mode and program tags, and, when
 * the node is this machine, its host addresses and underlay MTU (see nodeFacts). With a `pipeline`
 * (the daemon's, kept across commits), it loads and compiles incrementally from the pipeline's
 * previous snapshot; the result is the same.
 */
export function compileForNode(snapshot: Snapshot, opts: NodeCompileOptions, machine?: MachineFacts, pipeline?: IncrementalPipeline): CompiledForNode {
  const { model, warnings } = pipeline ? pipeline.load(snapshot) : loadModel(snapshot);
  const facts = machine ? nodeFacts(machine.host(), model, opts.node) : undefined;
  const compileWith: typeof compileModel = pipeline ? (m, w, o) => pipeline.compileModel(m, w, o) : compileModel;
  const compiled = compileWith(model, warnings, {
    node: opts.node,
    enforcement: opts.enforcement,
    ...eventOptions(opts),
    attachMode: machine?.attachMode ?? (opts.attachMode === "auto" ? "tcx" : opts.attachMode),
    ...(machine ? { programTags: machine.programTags } : {}),
    ...(facts?.hostAddresses ? { hostAddresses: facts.hostAddresses } : {}),
    ...(facts?.underlayMtu !== undefined ? { underlayMtu: facts.underlayMtu } : {}),
  });
  return { ...compiled, snapshot, ...(facts ? { facts } : {}) };
}

/** The node compiled for is another machine: its plan is not this kernel's to apply. */
export class NotThisNodeError extends Error {
  override name = "NotThisNodeError";
}

/** Refuses to apply another node's plan here. */
export function requireLocal(compiled: CompiledForNode): void {
  if (compiled.facts?.local === false) {
    throw new NotThisNodeError(`refusing to apply: ${compiled.facts.note}; run reconcile on that node, or preview it with --dry-run`);
  }
}
