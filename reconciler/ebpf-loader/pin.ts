// SPDX-License-Identifier: Apache-2.0
// Pin paths on bpffs are plain files to unlink.
import { unlinkSync } from "node:fs";

/** A pin that exists could not be removed (e.g. EACCES, EPERM); `cause` is the fs error. */
export class UnpinError extends Error {
  readonly path: string;
  constructor(path: string, options: { cause: unknown }) {
    super(`unpin ${path}: ${(options.cause as Error).message}`, options);
    this.name = "UnpinError";
    this.path = path;
  }
}

/** Remove a pin; a missing pin is fine (delete is idempotent). */
export function unpin(path: string): void {
  try {
    unlinkSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") {
      throw new UnpinError(path, { cause: err });
    }
  }
}
