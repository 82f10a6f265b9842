// --source as the one-shot commands read it: the options the source layer needs, from the CLI's.

import { readSourceOnce, type OnceOptions } from "../source/open.js";
import type { Snapshot } from "../source/snapshot.js";
import type { GlobalOptions } from "./args.js";

/** Reads the manifests named by --source once (a git source at --ref, fetched and removed again). */
export async function readSource(opts: GlobalOptions): Promise<Snapshot> {
  return readSourceOnce(onceOptions(opts, opts.source!, opts.ref, opts.sourceType));
}

/** The one-shot source options of `source` at `ref`, with the git settings the daemon would use. */
export function onceOptions(opts: GlobalOptions, source: string, ref: string | undefined, sourceType: "git" | undefined): OnceOptions {
  const o: OnceOptions = { source };
  if (ref !== undefined) o.ref = ref;
  if (sourceType) o.sourceType = sourceType;
  if (opts.stateDirGiven) o.tempParent = opts.stateDir;
  for (const key of ["path", "verifySignatures", "gitToken", "gitTokenFile", "gitSshKeyFile"] as const) {
    if (opts[key] !== undefined) o[key] = opts[key];
  }
  return o;
}
