// Which source --source names (a directory or a git repository), and opening it: for one read (the
// one-shot commands) or to follow it (the daemon).

import { readFileSync } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { readDirSnapshot, resolveDirSource, watchDir } from "./dir.js";
import { GitSourceError, type SourceError } from "./errors.js";
import { GitSource, type GitSourceStatus } from "./git.js";
import type { Snapshot } from "./snapshot.js";
import { createWebhookHandler } from "./webhook.js";
import type { IncomingMessage, ServerResponse } from "node:http";

export interface SourceOptions {
  /** A directory or a git URL. */
  source: string;
  /** Force a git source for a URL that does not look like one. */
  sourceType?: "git";
  ref?: string;
  /** Subdirectory of the source that holds the manifests. */
  path?: string;
  stateDir: string;
  gitIntervalMs: number;
  /** ssh allowed-signers file for commit signatures. */
  verifySignatures?: string;
  gitToken?: string;
  gitTokenFile?: string;
  gitSshKeyFile?: string;
  /** File holding the webhook's shared secret (git sources): POST /hooks/git triggers a fetch. */
  webhookSecretFile?: string;
}

export function isGitUrl(source: string): boolean {
  return /^(https?|ssh|git|file):\/\//.test(source) || /^[\w.-]+@[\w.-]+:/.test(source);
}

export function isGitSource(opts: Pick<SourceOptions, "source" | "sourceType">): boolean {
  return opts.sourceType === "git" || isGitUrl(opts.source);
}

/** A source being followed. */
export interface FollowedSource {
  close(): Promise<void>;
  /** Git sources: fetch state for `reconcile status`. */
  status?: () => GitSourceStatus;
  /** Git sources with a webhook secret: the push handler, and the secret (to keep it out of logs). */
  webhook?: { handler: (req: IncomingMessage, res: ServerResponse) => void; secret: string };
}

export interface FollowCallbacks {
  onSnapshot: (snapshot: Snapshot) => void;
  onError: (err: SourceError) => void;
}

/**
 * Follows the source: a git repository fetched every gitIntervalMs (and on a webhook push), or a
 * directory watched for changes. Resolves once the first snapshot was delivered or failed.
 */
export async function followSource(opts: SourceOptions, cb: FollowCallbacks): Promise<FollowedSource> {
  if (!isGitSource(opts)) {
    const { root, boundary } = await resolveDirSource(opts.source, opts.path);
    const close = await watchDir(root, cb.onSnapshot, { boundary, onError: cb.onError });
    return { close };
  }
  const git = new GitSource({
    url: opts.source,
    stateDir: opts.stateDir,
    ...(opts.ref ? { ref: opts.ref } : {}),
    ...(opts.path ? { path: opts.path } : {}),
    intervalMs: opts.gitIntervalMs,
    ...(opts.gitToken ? { token: opts.gitToken } : {}),
    ...(opts.gitTokenFile ? { tokenFile: opts.gitTokenFile } : {}),
    ...(opts.gitSshKeyFile ? { sshKeyFile: opts.gitSshKeyFile } : {}),
    ...(opts.verifySignatures ? { verifySignatures: { allowedSignersFile: opts.verifySignatures } } : {}),
    onSnapshot: cb.onSnapshot,
    onError: cb.onError,
  });
  let webhook: FollowedSource["webhook"];
  if (opts.webhookSecretFile) {
    const secret = readFileSync(opts.webhookSecretFile, "utf8").trim();
    webhook = { secret, handler: createWebhookHandler({ secret, onPush: () => void git.sync() }) };
  }
  await git.start();
  return { close: () => git.close(), status: () => git.status(), ...(webhook ? { webhook } : {}) };
}

/** What a one-shot read needs: the source, and for git sources the ref, auth and checks of the daemon. */
export type OnceOptions = Pick<SourceOptions, "source" | "path" | "sourceType" | "ref" | "verifySignatures" | "gitToken" | "gitTokenFile" | "gitSshKeyFile"> & {
  /** Directory under which a git source's private temporary checkout is made (default: the system's). */
  tempParent?: string;
};

/**
 * Reads the source once. A git source is fetched (shallow, one ref) into a private temporary
 * directory that is removed afterwards, with the daemon's GitSource (same auth, same signature
 * check); its revision reads `git:<sha>`.
 */
export async function readSourceOnce(opts: OnceOptions): Promise<Snapshot> {
  if (isGitSource(opts)) return readGitOnce(opts);
  const { root, boundary } = await resolveDirSource(opts.source, opts.path);
  return readDirSnapshot(root, { boundary });
}

async function readGitOnce(opts: OnceOptions): Promise<Snapshot> {
  // The checkout runs git in its own directory: a local repository path must not be relative.
  const url = isGitUrl(opts.source) ? opts.source : path.resolve(opts.source);
  if (opts.tempParent) await mkdir(opts.tempParent, { recursive: true, mode: 0o700 });
  const tmp = await mkdtemp(path.join(opts.tempParent ?? tmpdir(), "reconcile-git-")); // mode 0700
  try {
    let snapshot: Snapshot | undefined;
    const git = new GitSource({
      url,
      stateDir: tmp,
      intervalMs: 0,
      ...(opts.ref ? { ref: opts.ref } : {}),
      ...(opts.path ? { path: opts.path } : {}),
      ...(opts.gitToken ? { token: opts.gitToken } : {}),
      ...(opts.gitTokenFile ? { tokenFile: opts.gitTokenFile } : {}),
      ...(opts.gitSshKeyFile ? { sshKeyFile: opts.gitSshKeyFile } : {}),
      ...(opts.verifySignatures ? { verifySignatures: { allowedSignersFile: opts.verifySignatures } } : {}),
      onSnapshot: (s) => (snapshot = s),
    });
    const result = await git.sync();
    await git.close();
    if (result.error) throw result.error;
    if (!snapshot) throw new GitSourceError("sync", `${opts.ref ?? "HEAD"} from ${opts.source}: no snapshot was read`);
    return { revision: `${GIT_REVISION_PREFIX}${snapshot.revision}`, files: snapshot.files };
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

/** One-shot revisions of git sources read `git:<sha>` (directories read `sha256:<hex>`). */
export const GIT_REVISION_PREFIX = "git:";
