// Error classes → what the user reads. Known failures say what failed; anything else is a bug.

import { StatusServerError } from "../daemon/errors.js";
import { ManifestError, formatProblem } from "../manifest/load.js";
import { CapacityError, EmptySnapshotError, NotThisNodeError } from "../plan/snapshot-to-desired.js";
import { ExplainQueryError } from "../policy/explain.js";
import { IdentityRangeExhaustedError } from "../policy/identity.js";
import { PrefixParseError } from "../manifest/ip.js";
import { SourceError } from "../source/errors.js";
import { UsageError } from "./args.js";
import { AssetNotFoundError, NativeModuleError, UnsafePathError } from "./assets.js";

/** Errors whose message is meant for the user as it is (they name what failed and why). */
export class ReconcileError extends Error {
  override name = "ReconcileError";
}

export function describeError(err: unknown): string {
  if (err instanceof ManifestError) {
    const errors = err.problems.filter((p) => p.severity === "error").length;
    return `${err.problems.map(formatProblem).join("\n")}\nreconcile: ${errors} error(s) in manifests; nothing was applied\n`;
  }
  if (err instanceof Error && isDomainError(err)) {
    return `reconcile: ${err.message}\n`;
  }
  const detail = err instanceof Error ? (err.stack ?? err.message) : String(err);
  return `reconcile: internal error (this is a bug, please report it):\n${detail}\n`;
}

type ErrorClass = abstract new (...args: never[]) => Error;

/**
 * Every failure reconcile reports on purpose (bad input, a kernel refusal, an unreachable source,
 * a missing feature) is one of these classes: its message names what failed, expected and got, and
 * is for the user. Anything else (a plain Error, a TypeError, a library told nonsense) is a bug.
 */
const USER_ERRORS: readonly ErrorClass[] = [
  ReconcileError,
  UsageError,
  SourceError, // and its kinds: path escapes, size limits, git, signatures
  CapacityError,
  EmptySnapshotError,
  NotThisNodeError,
  ExplainQueryError,
  PrefixParseError,
  IdentityRangeExhaustedError,
  StatusServerError,
  AssetNotFoundError,
  UnsafePathError,
  NativeModuleError,
];


/**
 * The kernel layers' user-facing classes (apply/errors.ts). They load with koffi, which the binary
 * extracts first, so they are imported lazily with the kernel and made known here when it opens.
 */
let kernelErrors: readonly ErrorClass[] = [];
export function knowKernelErrors(classes: readonly ErrorClass[]): void {
  kernelErrors = classes;
}

/** Node's system errors (ENOENT, EACCES on a path the user named) carry an errno code: the user's to fix too. */
function isDomainError(err: Error): boolean {
  const code = (err as Error & { code?: unknown }).code;
  return USER_ERRORS.some((cls) => err instanceof cls) || kernelErrors.some((cls) => err instanceof cls) || (typeof code === "string" && /^E[A-Z]+$/.test(code));
}
