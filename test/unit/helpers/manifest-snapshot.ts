// Build a Snapshot from a directory of the repository (examples/...), for manifest tests.

import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import type { Snapshot, SnapshotFile } from "../../../reconciler/source/snapshot.js";

/** Repository root (three levels above this file). */
export const REPO_ROOT = fileURLToPath(new URL("../../../", import.meta.url));

/** Every file under `dir` (relative to the repository root), paths relative to `dir`. */
export function snapshotOfDir(dir: string, revision = "test-revision"): Snapshot {
  const root = join(REPO_ROOT, dir);
  const files: SnapshotFile[] = [];
  const walk = (d: string): void => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else files.push({ path: relative(root, p).split("\\").join("/"), content: readFileSync(p, "utf8") });
    }
  };
  walk(root);
  return { revision, files };
}
