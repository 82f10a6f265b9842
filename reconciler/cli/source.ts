// --source as the one-shot commands read it: the options the source layer needs, from the CLI's.

import { stat } from "node:fs/promises";
import { isGitSource, readSourceOnce, type OnceOptions } from "../source/open.js";
import { localRepository } from "../source/git.js";
import type { Snapshot } from "../source/snapshot.js";
import type { GlobalOptions } from "./args.js";
import { ReconcileError } from "./errors.js";

/** Reads the manifests named by --source once (at --ref: see readSourceAt). */
export async function readSource(opts: GlobalOptions): Promise<Snapshot> {
  return readSourceAt(opts, opts.source!, opts.ref);
}

/**
 * Reads `source` at `ref` once: the one way every one-shot command (validate, explain, --dry-run,
 * --once, inspect and monitor names, each side of diff) turns a source and a ref into a snapshot.
 * - a git URL (or RECONCILE_SOURCE_TYPE=git): fetched at `ref` into a private temporary directory;
 * - a local directory without a ref: the directory as it is (revision sha256:…);
 * - a local directory with a ref: when it is a git repository, that commit of it, read through git
 *   as a git URL is (revision git:<sha>; the working tree does not count); any other directory is
 *   refused, naming `refFlag` (the flag that gave the ref: --ref, or diff's --base).
 */
export async function readSourceAt(opts: GlobalOptions, source: string, ref: string | undefined, refFlag = "--ref"): Promise<Snapshot> {
  let sourceType = opts.sourceType;
  if (ref !== undefined && !isGitSource({ source, ...(sourceType ? { sourceType } : {}) }) && (await isDirectory(source))) {
    await requireRepository(source, ref, refFlag, opts.path);
    sourceType = "git";
  }
  return readSourceOnce(onceOptions(opts, source, ref, sourceType));
}

/** A ref of a local directory needs the directory to be a git repository (the top of one). */
async function requireRepository(dir: string, ref: string, refFlag: string, subPath: string | undefined): Promise<void> {
  const repo = await localRepository(dir);
  if (repo.kind === "top") return;
  if (repo.kind === "inside") {
    const within = subPath ? `${repo.prefix}/${subPath}` : repo.prefix;
    throw new ReconcileError(
      `${refFlag} ${ref}: --source ${dir} is inside the git repository ${repo.top}, not its top, so ${refFlag} cannot name a commit of it ` +
        `(to read that directory at ${ref}: --source ${repo.top} --path ${within} ${refFlag} ${ref})`,
    );
  }
  throw new ReconcileError(
    `${refFlag} ${ref}: --source ${dir} is a directory that is not a git repository, so it has no commit ${ref} to read ` +
      `(a directory is read as it is, without a ref; a ref needs a git repository or a git URL)`,
  );
}

export async function isDirectory(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isDirectory();
  } catch {
    return false;
  }
}

/** The one-shot source options of `source` at `ref`, with the git settings the daemon would use. */
function onceOptions(opts: GlobalOptions, source: string, ref: string | undefined, sourceType: "git" | undefined): OnceOptions {
  const o: OnceOptions = { source };
  if (ref !== undefined) o.ref = ref;
  if (sourceType) o.sourceType = sourceType;
  if (opts.stateDirGiven) o.tempParent = opts.stateDir;
  for (const key of ["path", "verifySignatures", "gitToken", "gitTokenFile", "gitSshKeyFile"] as const) {
    if (opts[key] !== undefined) o[key] = opts[key];
  }
  return o;
}
