// Most kernel objects are changed one syscall at a time: run each change, record its own failure.

import type { Change } from "../../plan/diff.js";
import { errorText, failure, type ObjectResult } from "../target.js";

/** Runs every change; returns the ones that failed. `progress` hears how many are done after each. */
export function eachChange<C extends Change>(changes: readonly C[], fn: (c: C) => void, progress?: (done: number) => void): ObjectResult[] {
  const failures: ObjectResult[] = [];
  changes.forEach((c, i) => {
    try {
      fn(c);
    } catch (err) {
      failures.push(failure(c, errorText(err)));
    }
    progress?.(i + 1);
  });
  return failures;
}
