// Most kernel objects are changed one syscall at a time: run each change, record its own failure.

import type { Change } from "../../plan/diff.js";
import { errorText, failure, type ObjectResult, type StepProgress } from "../target.js";

/**
 * Runs every change; returns the ones that failed. `progress` hears how many are done after each,
 * and what it returns is awaited (the executor's pause for the event loop, now and then).
 */
export async function eachChange<C extends Change>(changes: readonly C[], fn: (c: C) => void, progress?: StepProgress): Promise<ObjectResult[]> {
  const failures: ObjectResult[] = [];
  for (let i = 0; i < changes.length; i++) {
    const c = changes[i]!;
    try {
      fn(c);
    } catch (err) {
      failures.push(failure(c, errorText(err)));
    }
    const pause = progress?.(i + 1);
    if (pause) await pause;
  }
  return failures;
}
