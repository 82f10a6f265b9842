// SPDX-License-Identifier: Apache-2.0
// Cached kernel feature probes. Probes are read-only or use private temporary objects; they never
// attach anything to an interface.
import { release } from "node:os";
import * as sys from "./sys.js";
import { Errno } from "./sys.js";

export interface Features {
  /** tcx links (BPF_TCX_INGRESS/EGRESS), kernel >= 6.6. */
  tcx: boolean;
  /** BPF_MAP_*_BATCH on hash maps, kernel >= 5.6. */
  batchOps: boolean;
  /** uname release, e.g. "6.18.44". */
  kernel: string;
}

/** Minimum kernel for each probed feature. */
export const minKernel = { tcx: "6.6", batchOps: "5.6" } as const;

/** A kernel feature we need is missing. */
export class FeatureError extends Error {
  readonly feature: keyof typeof minKernel;
  readonly minKernel: string;
  readonly kernel: string;
  constructor(feature: keyof typeof minKernel, kernel: string, options?: { cause?: unknown }) {
    super(`${feature} needs Linux >= ${minKernel[feature]}, running ${kernel}`, options);
    this.name = "FeatureError";
    this.feature = feature;
    this.minKernel = minKernel[feature];
    this.kernel = kernel;
  }
}

let cached: Features | undefined;

export function probeFeatures(): Features {
  cached ??= { tcx: probeTcx(), batchOps: probeBatch(), kernel: release() };
  return cached;
}

/** Throws FeatureError when `feature` is missing (call after an operation failed, to explain it). */
export function requireFeature(feature: "tcx" | "batchOps", cause?: unknown): void {
  const f = probeFeatures();
  if (!f[feature]) throw new FeatureError(feature, f.kernel, { cause });
}

// BPF_PROG_QUERY for tcx ingress on lo (ifindex 1, present in every netns) is read-only. Kernels
// without tcx reject the attach type with EINVAL.
function probeTcx(): boolean {
  const r = sys.progQueryRaw(1, sys.AttachType.TCX_INGRESS, Buffer.alloc(4), Buffer.alloc(4));
  return r.errno === 0 || r.errno === Errno.ENOSPC;
}

// One-element batch update on a private 1-entry hash map.
function probeBatch(): boolean {
  const fd = sys.mapCreate(
    { type: 1, keySize: 4, valueSize: 4, maxEntries: 1, flags: 0, innerMapFd: 0, name: "probe_batch" },
    "probe batch ops: create map",
  );
  try {
    return sys.mapUpdateBatch(fd, Buffer.alloc(4), Buffer.alloc(4), 1, 0).errno === 0;
  } finally {
    sys.closeFd(fd);
  }
}
