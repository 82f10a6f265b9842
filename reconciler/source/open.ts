// Which source --source names (a directory or a git repository), and opening it: for one read (the
// one-shot commands) or to follow it (the daemon).

import { readFileSync } from "node:fs";
import { readDirSnapshot, resolveDirSource, watchDir } from "./dir.js";
import type { SourceError } from "./errors.js";
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

/** Reads the source once. */
export async function readSourceOnce(opts: Pick<SourceOptions, "source" | "path" | "sourceType">): Promise<Snapshot> {
  if (isGitSource(opts)) {
    throw new OneShotGitError(`--source ${opts.source} is a git repository: one-shot commands read a directory; run the daemon for git sources, or clone it and pass the directory`);
  }
  const { root, boundary } = await resolveDirSource(opts.source, opts.path);
  return readDirSnapshot(root, { boundary });
}

export class OneShotGitError extends Error {
  override name = "OneShotGitError";
}
