// Error classes → what the user reads. Known failures say what failed; anything else is a bug.

import { ManifestError, formatProblem } from "../manifest/load.js";
import { CapacityError } from "../plan/pipeline.js";
import { UsageError } from "./args.js";

/** Errors whose message is meant for the user as it is (they name what failed and why). */
export class ReconcileError extends Error {
  override name = "ReconcileError";
}

export function describeError(err: unknown): string {
  if (err instanceof ManifestError) {
    const errors = err.problems.filter((p) => p.severity === "error").length;
    return `${err.problems.map(formatProblem).join("\n")}\nreconcile: ${errors} error(s) in manifests; nothing was applied\n`;
  }
  if (err instanceof UsageError || err instanceof CapacityError || err instanceof ReconcileError) {
    return `reconcile: ${err.message}\n`;
  }
  if (err instanceof Error && isKernelError(err)) {
    return `reconcile: ${err.message}\n`;
  }
  const detail = err instanceof Error ? (err.stack ?? err.message) : String(err);
  return `reconcile: internal error (this is a bug, please report it):\n${detail}\n`;
}

/** Errors from the kernel layers carry the operation and errno in their message already. */
function isKernelError(err: Error): boolean {
  return ["BpfError", "VerifierError", "MapMismatchError", "NetlinkError", "NetnsError", "PinRootError", "SyscallError", "SysctlError", "FeatureError", "NativeModuleError", "AssetNotFoundError", "UnsafePathError", "SourceError", "GitSourceError", "PathEscapeError", "SizeLimitError"].includes(err.name) || "errno" in err;
}
