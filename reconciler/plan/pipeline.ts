// Snapshot → Model → CompiledPolicy → DesiredState: the pure chain every command starts with.

import { buildDesiredState } from "../datapath/desired.js";
import { MAP_SPECS, POLICY_MAP_CAPACITY } from "../datapath/maps.js";
import type { DesiredState } from "../datapath/state.js";
import { loadSnapshot, ManifestError } from "../manifest/load.js";
import type { ManifestProblem, Model } from "../manifest/model.js";
import { compile } from "../policy/compile.js";
import type { CompiledPolicy } from "../policy/types.js";
import type { Snapshot } from "../source/snapshot.js";

export interface PipelineOptions {
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

/** Load, validate, compile. Throws ManifestError with every problem of the snapshot at once. */
export function loadModel(snapshot: Snapshot): { model: Model; warnings: ManifestProblem[] } {
  const result = loadSnapshot(snapshot);
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
  const policy = compile(model, {
    node: opts.node,
    enforcement: opts.enforcement,
    ...(opts.hostAddresses ? { hostAddresses: opts.hostAddresses } : {}),
  });
  const desired = buildDesiredState(model, policy, {
    attachMode: opts.attachMode,
    ...(opts.programTags ? { programTags: opts.programTags } : {}),
    ...(opts.underlayMtu !== undefined ? { underlayMtu: opts.underlayMtu } : {}),
    onWarning: (p) => desiredWarnings.push(p),
  });
  checkCapacity(policy, desired);
  return { model, policy, desired, warnings: [...warnings, ...policy.warnings, ...desiredWarnings] };
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
