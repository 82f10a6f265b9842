// Git source: keep a shallow checkout of one ref in the state directory and turn it into Snapshots.
//
// Credentials never touch the disk or the command line: an https token goes to git as an
// `http.extraHeader` through GIT_CONFIG_* environment variables (readable only by this user), and
// an SSH key through GIT_SSH_COMMAND. The remote URL stored in .git/config is the one given, which
// must not embed a password.

import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { promisify } from "node:util";
import { existsSync } from "node:fs";
import { mkdir, readFile, realpath, stat } from "node:fs/promises";
import path from "node:path";
import { simpleGit, type SimpleGit } from "simple-git";
import type { Snapshot } from "./snapshot.js";
import { readDirSnapshot, type DirSnapshotOptions } from "./dir.js";
import { GitSourceError, PathEscapeError, SignatureError, SourceError } from "./errors.js";

export interface GitSourceOptions {
  /** Remote URL: https://, ssh://, user@host:path, file:// or a local path. No embedded password. */
  url: string;
  /** Branch, tag or full 40-hex commit SHA (default "HEAD": the remote's default branch). */
  ref?: string;
  /** Subdirectory of the repository holding the manifests (default: the repository root). */
  path?: string;
  /** Directory owned by reconcile; the checkout lives in `<stateDir>/git/<hash of url>`. */
  stateDir: string;
  /** Poll interval in ms (default 30 000). 0 disables polling (webhook or on-demand only). */
  intervalMs?: number;
  /**
   * Spread of each poll interval, as a fraction of it (default POLL_JITTER = 0.1: each interval is
   * 90..110% of `intervalMs`, and the first poll after start comes at a random point of the first
   * interval). 0 polls at exactly `intervalMs`. Keeps a fleet restarted together from polling the
   * git server in lock-step.
   */
  jitter?: number;
  /** Source of randomness in [0, 1) for the jitter (default Math.random; tests pass their own). */
  random?: () => number;
  /** Token for https remotes (e.g. from RECONCILE_GIT_TOKEN). Sent as HTTP Basic auth. */
  token?: string;
  /** File holding the token; read before every fetch so it can be rotated. */
  tokenFile?: string;
  /** User name sent with the token (default "x-access-token", accepted by common forges). */
  tokenUsername?: string;
  /** Private key file for ssh remotes. */
  sshKeyFile?: string;
  /** When set, only commits with a good SSH signature from an allowed signer are applied. */
  verifySignatures?: { allowedSignersFile: string };
  /** Limits for reading the checked-out tree. */
  dir?: Omit<DirSnapshotOptions, "boundary">;
  /** Per git command timeout in ms (default 120 000). */
  commandTimeoutMs?: number;
  /** Called with each new revision (a different commit SHA than the last one emitted). */
  onSnapshot: (snapshot: Snapshot) => void;
  /** Called when a sync fails; the last good revision stays current. Never receives secrets. */
  onError?: (err: SourceError) => void;
}

/** What status shows about the git source. */
export interface GitSourceStatus {
  url: string;
  ref: string;
  /** Last commit emitted as a snapshot (null before the first success). */
  revision: string | null;
  /** Epoch ms of the last sync attempt and last success. */
  lastSyncAt: number | null;
  lastSuccessAt: number | null;
  /** Message of the last failure, cleared by a success. */
  lastError: string | null;
  /** Fetches that failed since start (network, auth, missing ref). */
  fetchFailures: number;
}

/** Result of one sync. */
export interface SyncResult {
  /** Commit now current (null if none yet). */
  revision: string | null;
  /** A new snapshot was emitted. */
  changed: boolean;
  error?: SourceError;
}

const execFileAsync = promisify(execFile);

const SHA_RE = /^[0-9a-f]{40}$/;

/** Default spread of the poll interval (±10%). */
export const POLL_JITTER = 0.1;

/**
 * How long to wait before the next poll: pure, so the spread can be tested without timers.
 * The first poll after start comes after `random × intervalMs` (a random phase, so nodes started
 * at the same moment spread over the whole interval); every later one after `intervalMs` scaled
 * by a factor uniform in [1 - jitter, 1 + jitter) (so phases keep drifting apart instead of
 * settling back into step). `random` is a number in [0, 1). With `jitter` 0, always `intervalMs`.
 */
export function nextPollDelay(intervalMs: number, opts: { first: boolean; jitter: number; random: number }): number {
  if (!(opts.random >= 0 && opts.random < 1)) throw new RangeError(`random: expected a number in [0, 1), got ${opts.random}`);
  if (!(opts.jitter >= 0 && opts.jitter <= 1)) throw new RangeError(`jitter: expected a fraction in [0, 1], got ${opts.jitter}`);
  if (opts.jitter === 0) return intervalMs;
  if (opts.first) return Math.round(opts.random * intervalMs);
  return Math.round(intervalMs * (1 - opts.jitter + 2 * opts.jitter * opts.random));
}

/** Refuse refs and paths that git could read as options or that leave the checkout. */
export function validateRef(ref: string): void {
  if (ref === "" || ref.startsWith("-") || /[\s~^:?*[\\]|\.\.|@\{/.test(ref)) {
    throw new SourceError(`ref ${JSON.stringify(ref)}: not a valid branch, tag or commit SHA`);
  }
}

export function validateSubPath(p: string): string {
  const norm = path.posix.normalize(p.replaceAll("\\", "/"));
  if (path.posix.isAbsolute(norm) || norm === ".." || norm.startsWith("../")) {
    throw new SourceError(`path ${JSON.stringify(p)}: must be a subdirectory inside the repository`);
  }
  return norm === "." ? "" : norm.replace(/\/$/, "");
}

/** Refuse URLs carrying a password: it would be written to .git/config and shown in errors. */
export function validateUrl(url: string): void {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(url)) {
    const u = new URL(url);
    if (u.password !== "") {
      throw new SourceError(`git URL ${u.protocol}//${u.host}${u.pathname}: embeds a password; pass it as a token (RECONCILE_GIT_TOKEN or a token file) instead`);
    }
  }
}

/** Quote for the POSIX shell that runs GIT_SSH_COMMAND. */
function shQuote(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

export class GitSource {
  private readonly ref: string;
  private readonly subPath: string;
  private readonly checkout: string;
  private readonly intervalMs: number;
  private readonly jitter: number;
  private readonly random: () => number;
  /** No poll has been scheduled yet: the next delay is the random first phase. */
  private firstPoll = true;
  private current: Promise<SyncResult> | null = null;
  private queued: Promise<SyncResult> | null = null;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private st: GitSourceStatus;

  constructor(private readonly opts: GitSourceOptions) {
    validateUrl(opts.url);
    this.ref = opts.ref ?? "HEAD";
    validateRef(this.ref);
    this.subPath = validateSubPath(opts.path ?? "");
    const urlHash = createHash("sha256").update(opts.url).digest("hex").slice(0, 16);
    this.checkout = path.join(opts.stateDir, "git", urlHash);
    this.intervalMs = opts.intervalMs ?? 30_000;
    this.jitter = opts.jitter ?? POLL_JITTER;
    if (!(this.jitter >= 0 && this.jitter <= 1)) throw new SourceError(`git poll jitter: expected a fraction in [0, 1], got ${this.jitter}`);
    this.random = opts.random ?? Math.random;
    this.st = {
      url: opts.url,
      ref: this.ref,
      revision: null,
      lastSyncAt: null,
      lastSuccessAt: null,
      lastError: null,
      fetchFailures: 0,
    };
  }

  /** Where the working tree is checked out. */
  get checkoutDir(): string {
    return this.checkout;
  }

  status(): GitSourceStatus {
    return { ...this.st };
  }

  /** First sync (its outcome is returned; failures are also reported through onError), then polling. */
  async start(): Promise<SyncResult> {
    const r = await this.sync();
    this.scheduleNext();
    return r;
  }

  /**
   * Fetch now. Serialized: while a sync runs, further requests coalesce into one sync that
   * starts after it. Never rejects; failures are in the result and reported through onError.
   */
  sync(): Promise<SyncResult> {
    if (this.queued) return this.queued;
    if (!this.current) {
      this.current = this.runOnce().finally(() => {
        this.current = null;
      });
      return this.current;
    }
    this.queued = this.current.then(() => {
      this.queued = null;
      this.current = this.runOnce().finally(() => {
        this.current = null;
      });
      return this.current;
    });
    return this.queued;
  }

  /** Stop polling; waits for a running sync to finish. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    await (this.queued ?? this.current ?? Promise.resolve());
  }

  private scheduleNext(): void {
    if (this.closed || this.intervalMs <= 0) return;
    const delay = nextPollDelay(this.intervalMs, { first: this.firstPoll, jitter: this.jitter, random: this.random() });
    this.firstPoll = false;
    this.timer = setTimeout(() => {
      void this.sync().then(() => this.scheduleNext());
    }, delay);
    this.timer.unref();
  }

  /** The environment git runs with: credentials here, never on the command line. */
  private async gitEnv(): Promise<Record<string, string>> {
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(process.env)) {
      // Our own settings (tokens among them) are none of git's business, and git never runs an
      // editor, pager or password prompt for a daemon (npm's npm_config_editor would count as one).
      if (v === undefined || k.startsWith("RECONCILE_") || k.startsWith("GIT_") || k.startsWith("npm_")) continue;
      if (/EDITOR|VISUAL|PAGER|ASKPASS/i.test(k)) continue;
      env[k] = v;
    }
    env.GIT_TERMINAL_PROMPT = "0";
    env.LC_ALL = "C";
    let token = this.opts.token;
    if (this.opts.tokenFile) {
      try {
        token = (await readFile(this.opts.tokenFile, "utf8")).trim();
      } catch (err) {
        throw new GitSourceError("credentials", `cannot read token file ${this.opts.tokenFile}`, { cause: err });
      }
    }
    if (token) {
      if (!/^https:\/\//i.test(this.opts.url)) {
        throw new GitSourceError("credentials", `a token is only sent to https:// remotes, not to ${this.opts.url}`);
      }
      const user = this.opts.tokenUsername ?? "x-access-token";
      const basic = Buffer.from(`${user}:${token}`).toString("base64");
      env.GIT_CONFIG_COUNT = "1";
      env.GIT_CONFIG_KEY_0 = "http.extraHeader";
      env.GIT_CONFIG_VALUE_0 = `Authorization: Basic ${basic}`;
    }
    if (this.opts.sshKeyFile) {
      // known_hosts in the state dir: $HOME is usually read-only or hidden under systemd.
      const knownHosts = path.join(this.opts.stateDir, "known_hosts");
      env.GIT_SSH_COMMAND = [
        "ssh",
        "-i",
        shQuote(this.opts.sshKeyFile),
        "-o IdentitiesOnly=yes",
        "-o StrictHostKeyChecking=accept-new",
        `-o UserKnownHostsFile=${shQuote(knownHosts)}`,
        "-o BatchMode=yes",
      ].join(" ");
    }
    return env;
  }

  private async git(): Promise<SimpleGit> {
    return simpleGit({
      baseDir: this.checkout,
      timeout: { block: this.opts.commandTimeoutMs ?? 120_000 },
      // Both are set by us from operator configuration, not from repository content.
      unsafe: { allowUnsafeSshCommand: true, allowUnsafeConfigEnvCount: true },
    }).env(await this.gitEnv());
  }

  /**
   * Runs a git command that prints nothing on success. simple-git waits an extra 50 ms after every
   * command that printed nothing, and a sync runs four of them: most of a push's way to enforcement.
   */
  private async quiet(args: string[]): Promise<void> {
    try {
      await execFileAsync("git", args, { cwd: this.checkout, env: { ...(await this.gitEnv()) }, timeout: this.opts.commandTimeoutMs ?? 120_000 });
    } catch (err) {
      const stderr = (err as { stderr?: string }).stderr?.trim();
      throw new Error(stderr || (err as Error).message, { cause: err });
    }
  }

  private async ensureRepo(git: SimpleGit): Promise<void> {
    if (existsSync(path.join(this.checkout, ".git"))) {
      await this.quiet(["remote", "set-url", "origin", this.opts.url]);
      return;
    }
    await git.raw(["init", "-q"]);
    await git.raw(["remote", "add", "origin", this.opts.url]);
  }

  /** Fetch the ref and return the commit it names. */
  private async fetchCommit(git: SimpleGit): Promise<string> {
    const ref = this.ref;
    if (SHA_RE.test(ref)) {
      try {
        // Servers speaking protocol v2 (and GitHub, GitLab) serve any reachable commit by SHA.
        await this.quiet(["fetch", "-q", "--depth", "1", "--no-tags", "origin", ref]);
      } catch (first) {
        // Older servers only serve advertised refs: fetch everything, deepening a shallow repo.
        const shallow = (await git.raw(["rev-parse", "--is-shallow-repository"])).trim() === "true";
        const args = ["fetch", "-q", "--no-tags", "origin", "+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*"];
        if (shallow) args.splice(2, 0, "--unshallow");
        try {
          await this.quiet(args);
        } catch (second) {
          throw new GitSourceError("fetch", `commit ${ref} from ${this.opts.url}: ${gitMessage(second)}`, { cause: first });
        }
      }
      const got = await git.raw(["rev-parse", "--verify", "--quiet", `${ref}^{commit}`]).catch(() => "");
      if (got.trim() !== ref) throw new GitSourceError("fetch", `commit ${ref} not found in ${this.opts.url}`);
      return ref;
    }
    try {
      await this.quiet(["fetch", "-q", "--depth", "1", "--no-tags", "origin", ref]);
    } catch (err) {
      throw new GitSourceError("fetch", `${ref} from ${this.opts.url}: ${gitMessage(err)}`, { cause: err });
    }
    const commit = (await git.raw(["rev-parse", "--verify", "FETCH_HEAD^{commit}"])).trim();
    if (!SHA_RE.test(commit)) throw new GitSourceError("fetch", `${ref}: FETCH_HEAD is not a commit (got ${JSON.stringify(commit)})`);
    return commit;
  }

  private async verify(commit: string): Promise<void> {
    const v = this.opts.verifySignatures;
    if (!v) return;
    // Run git directly: simple-git resolves when a command fails silently, and verify-commit on an
    // unsigned commit exits 1 without printing anything. The exit status is what counts.
    try {
      await execFileAsync(
        "git",
        ["-c", "gpg.format=ssh", "-c", `gpg.ssh.allowedSignersFile=${v.allowedSignersFile}`, "verify-commit", "--raw", commit],
        { cwd: this.checkout, env: { ...(await this.gitEnv()) }, timeout: this.opts.commandTimeoutMs ?? 120_000 },
      );
    } catch (err) {
      const stderr = (err as { stderr?: string }).stderr?.trim();
      throw new SignatureError(commit, stderr ? gitMessage(stderr) : "no signature");
    }
  }

  private async readTree(commit: string): Promise<Snapshot> {
    const realCheckout = await realpath(this.checkout);
    const root = path.join(realCheckout, this.subPath);
    let realRoot: string;
    try {
      realRoot = await realpath(root);
    } catch (err) {
      throw new SourceError(`path ${JSON.stringify(this.subPath)} does not exist at commit ${commit}`, { cause: err });
    }
    const rel = path.relative(realCheckout, realRoot);
    if (rel.startsWith("..") || path.isAbsolute(rel)) throw new PathEscapeError(this.subPath, realRoot, "the checkout");
    if (!(await stat(realRoot)).isDirectory()) {
      throw new SourceError(`path ${JSON.stringify(this.subPath)} is not a directory at commit ${commit}`);
    }
    const snap = await readDirSnapshot(realRoot, { ...this.opts.dir, boundary: realCheckout });
    return { revision: commit, files: snap.files };
  }

  private async runOnce(): Promise<SyncResult> {
    this.st.lastSyncAt = Date.now();
    try {
      await mkdir(this.checkout, { recursive: true, mode: 0o700 });
      const git = await this.git();
      await this.ensureRepo(git);
      let commit: string;
      try {
        commit = await this.fetchCommit(git);
      } catch (err) {
        this.st.fetchFailures++;
        throw err;
      }
      if (commit === this.st.revision) {
        this.st.lastSuccessAt = Date.now();
        this.st.lastError = null;
        return { revision: commit, changed: false };
      }
      await this.verify(commit);
      // Whatever happened upstream (force push included), the tree becomes exactly this commit.
      await this.quiet(["-c", "advice.detachedHead=false", "checkout", "-q", "--force", "--detach", commit]);
      await this.quiet(["clean", "-q", "-ffdx"]);
      const snap = await this.readTree(commit);
      this.st.revision = commit;
      this.st.lastSuccessAt = Date.now();
      this.st.lastError = null;
      this.opts.onSnapshot(snap);
      return { revision: commit, changed: true };
    } catch (raw) {
      const err = raw instanceof SourceError ? raw : new GitSourceError("sync", gitMessage(raw), { cause: raw });
      this.st.lastError = err.message;
      this.opts.onError?.(err);
      return { revision: this.st.revision, changed: false, error: err };
    }
  }
}

/** Git's own message, trimmed to its meaningful lines. */
function gitMessage(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return msg
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "")
    .join("; ");
}

/** What a local directory is to git: the top of a repository (a work tree's or a bare one), inside one, or neither. */
export type LocalRepository = { kind: "top" } | { kind: "inside"; top: string; prefix: string } | { kind: "none" };

/**
 * Whether a local directory is a git repository that a one-shot read can fetch a ref from (git
 * fetches from the top of a work tree or a bare repository, not from a directory inside one).
 * Git runs without the caller's GIT_* settings, as GitSource runs it.
 */
export async function localRepository(dir: string): Promise<LocalRepository> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith("GIT_")) env[k] = v;
  env.LC_ALL = "C";
  env.GIT_TERMINAL_PROMPT = "0";
  let out: string;
  try {
    ({ stdout: out } = await execFileAsync("git", ["rev-parse", "--is-bare-repository", "--is-inside-work-tree", "--absolute-git-dir", "--show-prefix"], { cwd: dir, env, timeout: 30_000 }));
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr ?? "";
    if (/not a git repository/i.test(stderr)) return { kind: "none" };
    throw new GitSourceError("rev-parse", `${dir}: ${gitMessage(stderr || err)}`, { cause: err });
  }
  const [bare, inWorkTree, gitDir, prefix = ""] = out.split("\n");
  if (bare === "true") return gitDir === (await realpath(dir)) ? { kind: "top" } : { kind: "none" };
  if (inWorkTree !== "true") return { kind: "none" }; // inside a .git directory
  if (prefix === "") return { kind: "top" };
  const top = (await execFileAsync("git", ["rev-parse", "--show-toplevel"], { cwd: dir, env, timeout: 30_000 })).stdout.trim();
  return { kind: "inside", top, prefix: prefix.replace(/\/$/, "") };
}
