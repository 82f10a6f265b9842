// Files that ship inside the single executable (BPF objects, koffi's native addon) and how to reach
// them both from the binary and from a source checkout.
//
// Inside a Node single executable application (SEA) `require` only loads built-in modules, so the
// bundle replaces koffi's own native-addon lookup with loadEmbeddedKoffi() below (see
// tools/build-binary.mjs). A shared object can only be dlopen()ed from a file, so the embedded
// koffi.node is written once to a private, content-addressed path and loaded from there.

import { createHash, randomBytes } from "node:crypto";
import {
  closeSync,
  constants as fsConstants,
  fchmodSync,
  fsyncSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  chmodSync,
  statSync,
  unlinkSync,
  writeSync,
  type Stats,
} from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, extname, join } from "node:path";
import * as sea from "node:sea";
import { fileURLToPath } from "node:url";

// Replaced at bundle time by tools/build-binary.mjs (esbuild `define`); undeclared when running
// from source, hence the `typeof` guards.
declare const __RECONCILE_BPF_OBJECTS__: readonly string[] | undefined;

/** The sticky bit: in such a directory only a file's owner may rename or delete it. */
const STICKY = 0o1000;

/** Asset key of koffi's native addon inside the binary. */
export const KOFFI_ASSET = "koffi.node";

/** An asset that is neither embedded in the binary nor present in the source checkout. */
export class AssetNotFoundError extends Error {
  override name = "AssetNotFoundError";
  constructor(
    /** Asset key, e.g. "policy.o". */
    readonly asset: string,
    /** Where it was looked for. */
    readonly where: string,
    options?: { cause?: unknown },
  ) {
    super(`asset ${asset} not found in ${where}`, options);
  }
}

/** A directory or file we would execute code from is not private to us. */
export class UnsafePathError extends Error {
  override name = "UnsafePathError";
  constructor(
    readonly path: string,
    /** What is wrong, e.g. "owned by uid 1000 (expected 0)". */
    readonly problem: string,
  ) {
    super(`refusing ${path}: ${problem}`);
  }
}

/** The embedded native addon could not be written anywhere usable, or not loaded from there. */
export class NativeModuleError extends Error {
  override name = "NativeModuleError";
  constructor(
    readonly module: string,
    /** One line per candidate directory that was tried, saying why it was not used. */
    readonly attempts: readonly string[],
  ) {
    super(`cannot load the embedded native module ${module}:\n  ${attempts.join("\n  ")}`);
  }
}

/** True when running as the single executable built by `npm run build:binary`. */
export function isSingleExecutable(): boolean {
  return typeof sea.isSea === "function" && sea.isSea();
}

/** Repository root when running from source (two levels above this file). */
function repoRoot(): string {
  return fileURLToPath(new URL("../../", import.meta.url));
}

/**
 * Bytes of an asset: from the binary's embedded assets, otherwise `bpf/build/<name>` in the source
 * checkout. Returns a copy that the caller may keep or modify.
 */
export function readAsset(name: string): Buffer {
  if (isSingleExecutable()) {
    try {
      return Buffer.from(sea.getAsset(name));
    } catch (err) {
      throw new AssetNotFoundError(name, "the executable's embedded assets", { cause: err });
    }
  }
  const file = join(repoRoot(), "bpf", "build", name);
  try {
    return readFileSync(file);
  } catch (err) {
    throw new AssetNotFoundError(name, file, { cause: err });
  }
}

/** Names of the BPF objects available to readAsset() (e.g. ["policy.o"]), sorted. */
export function listBpfObjects(): string[] {
  if (isSingleExecutable()) {
    return typeof __RECONCILE_BPF_OBJECTS__ === "undefined" ? [] : [...__RECONCILE_BPF_OBJECTS__];
  }
  try {
    return readdirSync(join(repoRoot(), "bpf", "build"))
      .filter((f) => f.endsWith(".o"))
      .sort();
  } catch {
    return [];
  }
}

/** How a native module was made available, for `reconcile version`. */
export interface NativeModuleStatus {
  /** Asset key, e.g. "koffi.node". */
  module: string;
  /** File it was loaded from. */
  path: string;
  /** sha256 of its bytes (hex); also part of the file name. */
  sha256: string;
  /** written: new file; reused: existing file matched; replaced: existing file did not match its hash. */
  action: "written" | "reused" | "replaced";
}

const loaded: NativeModuleStatus[] = [];

/** Native modules extracted and loaded by this process (empty when running from source). */
export function nativeModuleStatus(): readonly NativeModuleStatus[] {
  return loaded;
}

/**
 * Directories the addon may be extracted to, best first: systemd's RuntimeDirectory=, /run/reconcile,
 * the state dir, the user's runtime dir, then a per-user directory in the system temp dir.
 */
export function nativeDirCandidates(env: Readonly<Record<string, string | undefined>>, uid: number, tmp: string = tmpdir()): string[] {
  const dirs: string[] = [];
  const runtime = env.RUNTIME_DIRECTORY?.split(":")[0];
  if (runtime) dirs.push(join(runtime, "native"));
  dirs.push("/run/reconcile/native");
  dirs.push(join(env.RECONCILE_STATE_DIR || "/var/lib/reconcile", "native"));
  if (env.XDG_RUNTIME_DIR) dirs.push(join(env.XDG_RUNTIME_DIR, "reconcile", "native"));
  dirs.push(join(tmp, `reconcile-${uid}`, "native"));
  return [...new Set(dirs)]; // RUNTIME_DIRECTORY is /run/reconcile under the shipped unit
}

function currentUid(): number {
  return process.getuid?.() ?? 0;
}

/** Directory `dir` exists (created 0700 if missing), is ours and writable only by us. */
function ensurePrivateDir(dir: string, uid: number): void {
  const parent = dirname(dir);
  if (parent !== dir) {
    let st: Stats | undefined;
    try {
      // stat, not lstat: an existing ancestor may be a symlink (e.g. /var/run); its target is checked.
      st = statSync(parent);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    }
    if (!st) ensurePrivateDir(parent, uid);
    else checkParent(parent, st, uid);
  }
  try {
    mkdirSync(dir, { mode: 0o700 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
  }
  const st = lstatSync(dir);
  if (!st.isDirectory()) throw new UnsafePathError(dir, "not a directory");
  if (st.uid !== uid) throw new UnsafePathError(dir, `owned by uid ${st.uid} (expected ${uid})`);
  if (st.mode & 0o022) throw new UnsafePathError(dir, `mode ${octal(st.mode)} is group or world writable`);
  if ((st.mode & 0o777) !== 0o700) chmodSync(dir, 0o700);
}

/**
 * An existing ancestor may be shared (/run, /tmp) but must not let others replace our directory:
 * owned by us or root, and writable by others only with the sticky bit (like /tmp).
 */
function checkParent(dir: string, st: Stats, uid: number): void {
  if (!st.isDirectory()) throw new UnsafePathError(dir, "not a directory");
  if (st.uid !== uid && st.uid !== 0) throw new UnsafePathError(dir, `owned by uid ${st.uid} (expected ${uid} or 0)`);
  if (st.mode & 0o022 && !(st.mode & STICKY)) {
    throw new UnsafePathError(dir, `mode ${octal(st.mode)} is group or world writable without the sticky bit`);
  }
}

function octal(mode: number): string {
  return "0" + (mode & 0o7777).toString(8);
}

function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/**
 * Writes `bytes` to `<dir>/<stem>-<sha256><ext>` (dir 0700, file 0500, both ours) unless a file with
 * exactly these bytes is already there, and returns its path. A file whose bytes do not match its
 * name is replaced. Writes go to a temporary name first and are renamed into place, so a concurrent
 * reader never sees a partial file.
 */
export function extractNativeModule(name: string, bytes: Uint8Array, dir: string, uid: number = currentUid()): NativeModuleStatus {
  ensurePrivateDir(dir, uid);
  const hash = sha256(bytes);
  const ext = extname(name);
  const path = join(dir, `${basename(name, ext)}-${hash}${ext}`);
  let existing: Stats | undefined;
  try {
    existing = lstatSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  if (existing) {
    const ours = existing.isFile() && existing.uid === uid && !(existing.mode & 0o022);
    if (ours && sha256(readFileSync(path)) === hash) {
      if ((existing.mode & 0o777) !== 0o500) chmodSync(path, 0o500);
      return { module: name, path, sha256: hash, action: "reused" };
    }
  }
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`);
  const fd = openSync(tmp, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW, 0o600);
  try {
    for (let off = 0; off < bytes.length; ) off += writeSync(fd, bytes, off, bytes.length - off);
    fsyncSync(fd);
    fchmodSync(fd, 0o500);
  } catch (err) {
    closeSync(fd);
    unlinkSync(tmp);
    throw err;
  }
  closeSync(fd);
  try {
    renameSync(tmp, path);
  } catch (err) {
    unlinkSync(tmp);
    throw err;
  }
  return { module: name, path, sha256: hash, action: existing ? "replaced" : "written" };
}

/**
 * Inside the binary: extracts the embedded koffi.node and loads it, returning the addon's exports
 * (what `require("@koromix/koffi-<platform>-<arch>")` returns in node_modules). Tries each candidate
 * directory in turn; one that is unsafe, read-only or mounted noexec is skipped.
 */
export function loadEmbeddedKoffi(): unknown {
  const bytes = readAsset(KOFFI_ASSET);
  const attempts: string[] = [];
  for (const dir of nativeDirCandidates(process.env, currentUid())) {
    let status: NativeModuleStatus;
    try {
      status = extractNativeModule(KOFFI_ASSET, bytes, dir);
    } catch (err) {
      attempts.push(`${dir}: ${err instanceof Error ? err.message : String(err)}`);
      continue;
    }
    const mod = { exports: {} as unknown };
    try {
      process.dlopen(mod, status.path);
    } catch (err) {
      attempts.push(`${status.path}: dlopen: ${err instanceof Error ? err.message : String(err)}`);
      continue;
    }
    loaded.push(status);
    return mod.exports;
  }
  throw new NativeModuleError(KOFFI_ASSET, attempts);
}
