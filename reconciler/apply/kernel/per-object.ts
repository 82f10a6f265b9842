// Most kernel objects are changed one syscall at a time: run each change, record its own result.

import type { Change } from "../../plan/diff.js";
import { errorText, type ObjectResult } from "../target.js";

export function eachChange(changes: readonly Change[], fn: (c: Change) => void): ObjectResult[] {
  return changes.map((c) => {
    try {
      fn(c);
      return { resource: c.resource, id: c.id, ok: true };
    } catch (err) {
      return { resource: c.resource, id: c.id, ok: false, error: errorText(err) };
    }
  });
}
