// Error classes → what the user reads. Known failures say what failed; anything else is a bug.

import { ManifestError, formatProblem } from "../manifest/load.js";

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

/** JavaScript's own error types: thrown by code that went wrong, not by a failure it describes. */
const BUILTIN_ERRORS = new Set(["Error", "TypeError", "RangeError", "ReferenceError", "SyntaxError", "EvalError", "URIError", "AggregateError", "AssertionError"]);

/**
 * Every failure reconcile reports on purpose (bad input, a kernel refusal, an unreachable source,
 * a missing feature) is an error class of its own that says what failed, expected and got; its
 * message is for the user. A plain or built-in error is a bug. Node's system errors (ENOENT,
 * EACCES on a path the user named) carry a code and are the user's to fix too.
 */
function isDomainError(err: Error): boolean {
  const code = (err as Error & { code?: unknown }).code;
  return !BUILTIN_ERRORS.has(err.name) || (typeof code === "string" && /^E[A-Z]+$/.test(code));
}
