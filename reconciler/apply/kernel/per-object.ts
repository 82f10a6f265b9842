// Most kernel objects are changed one syscall at a time: run each change, record its own failure.

import type { Change } from "../../plan/diff.js";
import { errorText, failure, type ObjectResult } from "../target.js";

/** Runs every change; returns the ones that failed. */
export function eachChange<C extends Change>(changes: readonly C[], fn: (c: C) => void): ObjectResult[] {
  const failures: ObjectResult[] = [];
  for (const c of changes) {
    try {
      fn(c);
    } catch (err) {
      failures.push(failure(c, errorText(err)));
    }
  }
  return failures;
}
