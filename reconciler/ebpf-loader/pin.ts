// SPDX-License-Identifier: Apache-2.0
// Pin paths on bpffs are plain files to unlink.
import { unlinkSync } from "node:fs";

/** Remove a pin; a missing pin is fine (delete is idempotent). */
export function unpin(path: string): void {
  try {
    unlinkSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") {
      throw new Error(`unpin ${path}: ${(err as Error).message}`, { cause: err });
    }
  }
}
