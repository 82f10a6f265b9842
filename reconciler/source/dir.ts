// Directory source: read a manifest tree into a Snapshot, and watch it for saves.
//
// Reading is a pure function of the tree's contents: same files → same revision on every host.
// Watching re-reads the WHOLE tree after a burst of file events and emits only when the content
// hash changed, so consumers never see a half-applied multi-file save. A watcher remembers what it
// read: a file whose inode, size and times are unchanged (and were not too recent to trust) is not
// read and hashed again, so a save in a 17 MiB tree costs the saved file, not the tree.
//
// The text of every file is kept packed (raw deflate: a tenth of its size for manifests) and
// unpacked when a snapshot's file is read. A daemon holds the watcher's cache, the snapshots in
// force and the loader's per-file results at once, and the loader recognises unchanged files by
// their digest without reading them: at DESIGN scale that keeps 1.5 MiB alive instead of 16 MiB.

import { constants as fsConstants, type BigIntStats } from "node:fs";
import { createHash } from "node:crypto";
import { isUtf8 } from "node:buffer";
import { deflateRawSync, inflateRawSync } from "node:zlib";
import { open, readdir, readlink, realpath, stat, type FileHandle } from "node:fs/promises";
import path from "node:path";
import { watch as chokidarWatch, type FSWatcher } from "chokidar";
import type { Snapshot, SnapshotFile } from "./snapshot.js";
import { PathEscapeError, SizeLimitError, SourceError } from "./errors.js";

export const DEFAULT_MAX_FILE_BYTES = 1024 * 1024;
export const DEFAULT_MAX_TOTAL_BYTES = 64 * 1024 * 1024;

export interface DirSnapshotOptions {
  /** Largest single manifest file accepted, in bytes (default 1 MiB). */
  maxFileBytes?: number;
  /** Largest total of all manifest files, in bytes (default 64 MiB). */
  maxTotalBytes?: number;
  /**
   * Directory that symlinks must not escape (default: the root itself). The git source sets it to
   * the checkout when the root is a subdirectory of it.
   */
  boundary?: string;
  /** Files read before (by a watcher), reused while unchanged; the read updates it. */
  cache?: FileCache;
}

/** A file's text as the source keeps it: packed, with the digest and size of its UTF-8 bytes. */
interface PackedText {
  packed: Buffer;
  /** sha256 of the content's UTF-8 bytes. */
  digest: Buffer;
  size: number;
}

/** Packs what was read as the text it decodes to (invalid UTF-8 becomes U+FFFD, as in toString). */
function packText(read: Buffer): PackedText {
  const bytes = isUtf8(read) ? read : Buffer.from(read.toString("utf8"), "utf8");
  // Level 1: 30 ms for 17 MB of manifests against 60 ms at the default, for 1.5 MiB against 1.3.
  const deflated = deflateRawSync(bytes, { level: 1 });
  // zlib's output is a view of its 64 KiB output chunk, and a small Buffer.from() copy a view of a
  // shared 64 KiB pool slab the reads also fill: either would keep 64 KiB alive for each file.
  const packed = Buffer.allocUnsafeSlow(deflated.length);
  deflated.copy(packed);
  return { packed, digest: createHash("sha256").update(bytes).digest(), size: bytes.length };
}

/** A file of a directory snapshot: its text is unpacked on each read of `content`. */
class DirFile implements SnapshotFile {
  constructor(
    readonly path: string,
    private readonly text: PackedText,
  ) {}

  get content(): string {
    return inflateRawSync(this.text.packed).toString("utf8");
  }

  get digest(): string {
    return this.text.digest.toString("hex");
  }

  get size(): number {
    return this.text.size;
  }

  get digestBytes(): Buffer {
    return this.text.digest;
  }
}

/** What a read found at one absolute path: the stat that identifies the version, and its text. */
interface CachedFile {
  /** dev, ino, size, mtime and ctime (ns), joined: any write or replacement changes it. */
  stamp: string;
  /** mtime in ns, to tell whether the stamp can be trusted (see reusable()). */
  mtimeNs: bigint;
  /** When the content was read, in ns since the epoch. */
  readAtNs: bigint;
  text: PackedText;
}

/** Files by absolute path, as a watcher last read them. */
export type FileCache = Map<string, CachedFile>;

/**
 * A file modified shortly before it was read may have been written again within the same
 * timestamp tick (file times move in jiffies) without its stamp changing: like git's "racy" index
 * entries, such a file is read again until its mtime is comfortably older than the read.
 */
const RACY_NS = 2_000_000_000n;

function reusable(cached: CachedFile | undefined, stamp: string): cached is CachedFile {
  return cached !== undefined && cached.stamp === stamp && cached.readAtNs - cached.mtimeNs > RACY_NS;
}

const MANIFEST_EXTENSIONS = [".yaml", ".yml", ".json"];

/** True for names editors and tools leave behind while saving: never part of a snapshot. */
export function isIgnoredName(name: string): boolean {
  return (
    name.startsWith(".") || // dotfiles and dot-dirs (.git, vim's .x.swp, emacs' .#lock)
    name.endsWith("~") || // backup files
    name.endsWith(".swp") ||
    name.endsWith(".swx") ||
    name.endsWith(".tmp") ||
    (name.startsWith("#") && name.endsWith("#")) // emacs auto-save
  );
}

/** True for files that hold manifests. */
export function isManifestName(name: string): boolean {
  if (isIgnoredName(name)) return false;
  const lower = name.toLowerCase();
  return MANIFEST_EXTENSIONS.some((ext) => lower.endsWith(ext));
}

/**
 * The content revision of a file list: "sha256:" + hex over (length-prefixed path, sha256 of the
 * content) pairs in the given order (callers pass them sorted). Length prefixes and fixed-size
 * digests make it unambiguous; per-file digests let a watcher hash only the files that changed.
 */
export function contentRevision(files: readonly SnapshotFile[]): string {
  return revisionOf(files.map((f) => [f.path, digestOf(f.content)] as const));
}

function digestOf(content: string): Buffer {
  return createHash("sha256").update(content, "utf8").digest();
}

function revisionOf(files: ReadonlyArray<readonly [string, Buffer]>): string {
  const h = createHash("sha256");
  for (const [file, digest] of files) {
    const p = Buffer.from(file, "utf8");
    h.update(`${p.length}:`).update(p).update(digest);
  }
  return `sha256:${h.digest("hex")}`;
}

/** Byte-wise order, independent of locale. */
function compareCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function isWithin(dir: string, p: string): boolean {
  const rel = path.relative(dir, p);
  return rel === "" || (!rel.startsWith("..") && !path.isAbsolute(rel));
}

function isErrno(err: unknown, code: string): boolean {
  return typeof err === "object" && err !== null && (err as NodeJS.ErrnoException).code === code;
}

/** What a non-regular file is, for the error that refuses it. */
function fileKind(st: { isFIFO(): boolean; isSocket(): boolean; isDirectory(): boolean; isCharacterDevice(): boolean; isBlockDevice(): boolean; isSymbolicLink(): boolean }): string {
  if (st.isFIFO()) return "a FIFO";
  if (st.isSocket()) return "a socket";
  if (st.isDirectory()) return "a directory";
  if (st.isCharacterDevice() || st.isBlockDevice()) return "a device";
  if (st.isSymbolicLink()) return "a symlink";
  return "not a regular file";
}

/**
 * Open one manifest for reading without ever blocking or following a swapped-in link: O_NONBLOCK
 * makes opening a FIFO (or a device) return at once instead of waiting for a writer, O_NOFOLLOW
 * refuses a final component that became a symlink after the walk resolved it. The opened descriptor
 * is fstat'ed and anything but a regular file refused, naming `rel`. Where /proc is mounted, the
 * descriptor's real path must still lie inside `boundary` (an intermediate directory swapped for
 * a symlink). The caller closes the handle.
 */
export async function openManifestFile(rel: string, abs: string, boundary: string): Promise<{ handle: FileHandle; st: BigIntStats }> {
  let handle: FileHandle;
  try {
    handle = await open(abs, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK | fsConstants.O_NOFOLLOW | fsConstants.O_NOCTTY);
  } catch (err) {
    if (isErrno(err, "ELOOP")) throw new SourceError(`${rel}: became a symlink while being read; refusing to follow it`, { cause: err });
    if (isErrno(err, "ENOENT")) throw new SourceError(`${rel}: vanished while being read`, { cause: err });
    throw new SourceError(`${rel}: cannot open it`, { cause: err });
  }
  let opened: string | undefined;
  try {
    opened = await readlink(`/proc/self/fd/${handle.fd}`);
  } catch {
    // No /proc: the walk's own checks stand.
  }
  try {
    if (opened !== undefined && opened.startsWith("/") && !isWithin(boundary, opened)) throw new PathEscapeError(rel, opened, boundary);
    const st = await handle.stat({ bigint: true });
    if (!st.isFile()) throw new SourceError(`${rel}: not a regular file (${fileKind(st)}); refusing to read it`);
    return { handle, st };
  } catch (err) {
    await handle.close();
    throw err;
  }
}

/** Up to `limit` bytes from the start of an opened regular file; `hint` sizes the first read. */
async function readBounded(handle: FileHandle, limit: number, hint: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let got = 0;
  while (got < limit) {
    const buf = Buffer.allocUnsafe(Math.min(chunks.length === 0 ? Math.max(hint, 1) : 64 * 1024, limit - got));
    const { bytesRead } = await handle.read(buf, 0, buf.length, null);
    if (bytesRead === 0) break;
    chunks.push(bytesRead === buf.length ? buf : buf.subarray(0, bytesRead));
    got += bytesRead;
  }
  return Buffer.concat(chunks, got);
}

/**
 * The manifest root of a directory source with `--path SUBDIR`, confined to the source as the git
 * source confines its path: SUBDIR must be relative and must not climb out lexically (`..`), and
 * its real path (symlinks resolved) must lie inside the source's real path. Returns the real root
 * and the boundary symlinks in it may not escape (the source directory itself).
 */
export async function resolveDirSource(source: string, subPath: string | undefined): Promise<{ root: string; boundary: string }> {
  let realSource: string;
  try {
    realSource = await realpath(source);
  } catch (err) {
    throw new SourceError(`source directory ${source}: cannot resolve it`, { cause: err });
  }
  if (subPath === undefined || subPath === "") return { root: realSource, boundary: realSource };
  const norm = path.posix.normalize(subPath.replaceAll("\\", "/"));
  if (path.posix.isAbsolute(norm) || norm === ".." || norm.startsWith("../")) {
    throw new SourceError(`--path ${JSON.stringify(subPath)}: must be a subdirectory inside the source ${source} (expected a relative path without "..", got one that leaves it)`);
  }
  let realRoot: string;
  try {
    realRoot = await realpath(path.join(realSource, norm));
  } catch (err) {
    throw new SourceError(`--path ${JSON.stringify(subPath)}: no such directory in the source ${source}`, { cause: err });
  }
  if (!isWithin(realSource, realRoot)) throw new PathEscapeError(`--path ${subPath}`, realRoot, realSource);
  return { root: realRoot, boundary: realSource };
}

/**
 * Read every manifest file (.yaml, .yml, .json) under `root`, recursively, in stable (byte-wise
 * path) order. Dotfiles, dot-directories and editor temp files are skipped. Symlinks are followed
 * only while they stay inside the boundary; one that escapes is an error naming it.
 */
export async function readDirSnapshot(root: string, opts: DirSnapshotOptions = {}): Promise<Snapshot> {
  const { realRoot, boundary } = await snapshotRoot(root, opts.boundary);
  const tree = new TreeRead(realRoot, boundary, opts);
  await tree.walk(realRoot, "");
  return tree.finish();
}

/** The real path of `root`, which must be a directory inside the (real) boundary. */
async function snapshotRoot(root: string, boundaryOpt: string | undefined): Promise<{ realRoot: string; boundary: string }> {
  let realRoot: string;
  try {
    realRoot = await realpath(root);
  } catch (err) {
    throw new SourceError(`source directory ${root}: cannot resolve it`, { cause: err });
  }
  const boundary = boundaryOpt === undefined ? realRoot : await realpath(boundaryOpt);
  if (!isWithin(boundary, realRoot)) {
    throw new PathEscapeError(root, realRoot, boundary);
  }
  const rootStat = await stat(realRoot);
  if (!rootStat.isDirectory()) throw new SourceError(`source ${root}: not a directory`);
  return { realRoot, boundary };
}

/** One read of a manifest tree: the files found so far and the limits they count against. */
class TreeRead {
  private readonly files: DirFile[] = [];
  private readonly maxFile: number;
  private readonly maxTotal: number;
  private readonly cache: FileCache | undefined;
  /** Absolute paths read this time: the cache forgets the others. */
  private readonly seen = new Set<string>();
  private total = 0;
  /** Real paths of the directories on the current walk path: a symlink back into one is a loop, skipped. */
  private readonly visiting: Set<string>;

  constructor(
    realRoot: string,
    private readonly boundary: string,
    opts: DirSnapshotOptions,
  ) {
    this.maxFile = opts.maxFileBytes ?? DEFAULT_MAX_FILE_BYTES;
    this.maxTotal = opts.maxTotalBytes ?? DEFAULT_MAX_TOTAL_BYTES;
    this.cache = opts.cache;
    this.visiting = new Set([realRoot]);
  }

  /** Read the manifests under `absDir` (a real path), naming them from `relDir`. */
  async walk(absDir: string, relDir: string): Promise<void> {
    let entries;
    try {
      entries = await readdir(absDir, { withFileTypes: true });
    } catch (err) {
      throw new SourceError(`${relDir || "."}: cannot list directory`, { cause: err });
    }
    for (const e of entries) {
      if (isIgnoredName(e.name)) continue;
      const abs = path.join(absDir, e.name);
      const rel = relDir === "" ? e.name : `${relDir}/${e.name}`;
      if (e.isDirectory()) {
        this.visiting.add(abs); // walk() paths are real paths: the root and symlink targets are resolved
        await this.walk(abs, rel);
        this.visiting.delete(abs);
      } else if (e.isFile()) {
        if (isManifestName(e.name)) await this.addFile(rel, abs);
      } else if (e.isSymbolicLink()) {
        await this.followLink(e.name, rel, abs);
      }
      // Sockets, fifos, devices: never manifests.
    }
  }

  /** A symlink in the tree: followed to a directory or a manifest inside the boundary. */
  private async followLink(name: string, rel: string, abs: string): Promise<void> {
    let target: string;
    try {
      target = await realpath(abs);
    } catch (err) {
      if (isErrno(err, "ENOENT") || isErrno(err, "ELOOP")) {
        if (isManifestName(name)) throw new SourceError(`${rel}: dangling symlink`, { cause: err });
        return;
      }
      throw err;
    }
    const tst = await stat(target);
    const wouldFollow = tst.isDirectory() || (tst.isFile() && isManifestName(name));
    if (!wouldFollow) return;
    if (!isWithin(this.boundary, target)) throw new PathEscapeError(rel, target, this.boundary);
    if (tst.isDirectory()) {
      if (this.visiting.has(target)) return; // a loop: already being read through another path
      this.visiting.add(target);
      await this.walk(target, rel);
      this.visiting.delete(target);
    } else {
      await this.addFile(rel, target);
    }
  }

  private async addFile(rel: string, abs: string): Promise<void> {
    const { handle, st } = await openManifestFile(rel, abs, this.boundary);
    try {
      if (st.size > this.maxFile) throw new SizeLimitError(rel, this.maxFile, Number(st.size));
      const stamp = `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
      const cached = this.cache?.get(abs);
      this.seen.add(abs);
      if (reusable(cached, stamp)) {
        this.count(Number(st.size));
        this.files.push(new DirFile(rel, cached.text));
        return;
      }
      const readAtNs = BigInt(Date.now()) * 1_000_000n; // before the read: errs on the racy side
      // The file may have grown between fstat and read: read at most one byte past the limit.
      const buf = await readBounded(handle, this.maxFile + 1, Number(st.size) + 1);
      if (buf.length > this.maxFile) throw new SizeLimitError(rel, this.maxFile, buf.length);
      this.count(buf.length);
      const text = packText(buf); // hashed as the decoded text, as contentRevision() hashes it
      this.files.push(new DirFile(rel, text));
      this.cache?.set(abs, { stamp, mtimeNs: st.mtimeNs, readAtNs, text });
    } finally {
      await handle.close();
    }
  }

  private count(bytes: number): void {
    this.total += bytes;
    if (this.total > this.maxTotal) throw new SizeLimitError("<total>", this.maxTotal, this.total);
  }

  /** The snapshot of the files read, in byte-wise path order; the cache forgets files not seen. */
  finish(): Snapshot {
    if (this.cache) for (const abs of this.cache.keys()) if (!this.seen.has(abs)) this.cache.delete(abs);
    const files = this.files.sort((a, b) => compareCodeUnits(a.path, b.path));
    return { revision: revisionOf(files.map((f) => [f.path, f.digestBytes] as const)), files };
  }
}

export interface WatchDirOptions extends DirSnapshotOptions {
  /** Quiet time after the last file event before the tree is re-read, in ms (default 25: an
   *  editor's save is a burst of events within a few ms, and a tree caught mid-write is read
   *  again anyway until two reads agree). */
  debounceMs?: number;
  /**
   * Longest a continuous stream of events may delay a re-read, in ms (default 10 × debounceMs),
   * so a busy writer cannot starve the watcher.
   */
  maxWaitMs?: number;
  /**
   * Pause between the two reads that must agree before a snapshot is emitted, in ms (default 10).
   * A file being written (truncated, then filled) differs between the reads and is read again.
   */
  settleMs?: number;
  /** Emit the initial tree once the watcher is ready (default true). */
  emitInitial?: boolean;
  /** Reading failed (size limit, escaping symlink, ...). The last emitted snapshot stays current. */
  onError?: (err: Error) => void;
}

/** Stops a watcher; resolves once file handles are released. */
export type WatchCloser = () => Promise<void>;

const MAX_SETTLE_ATTEMPTS = 20;

/**
 * Watch `root` and call `onSnapshot` with the whole tree whenever its content changes. Bursts of
 * events are debounced; the tree is read until two consecutive reads agree (so a file caught
 * mid-write is not emitted); a snapshot whose revision equals the last one emitted is dropped.
 */
export async function watchDir(
  root: string,
  onSnapshot: (snapshot: Snapshot) => void,
  opts: WatchDirOptions = {},
): Promise<WatchCloser> {
  const debounceMs = opts.debounceMs ?? 25;
  const maxWaitMs = opts.maxWaitMs ?? debounceMs * 10;
  const settleMs = opts.settleMs ?? 10;
  const onError = opts.onError ?? (() => {});
  const realRoot = await realpath(root);
  const cache: FileCache = new Map();
  const readOpts: DirSnapshotOptions = { ...opts, cache };

  let lastRevision: string | undefined;
  let timer: NodeJS.Timeout | undefined;
  let firstEventAt: number | undefined;
  let reading = false;
  let dirty = false; // events arrived while reading: read again afterwards
  let closed = false;

  async function rescan(): Promise<void> {
    if (closed) return;
    if (reading) {
      dirty = true;
      return;
    }
    reading = true;
    try {
      do {
        dirty = false;
        try {
          const snap = await readSettled(root, realRoot, readOpts, settleMs);
          if (!closed && !dirty && snap.revision !== lastRevision) {
            lastRevision = snap.revision;
            onSnapshot(snap);
          }
        } catch (err) {
          if (!closed && !dirty) onError(err instanceof Error ? err : new Error(String(err)));
        }
      } while (dirty && !closed);
    } finally {
      reading = false;
    }
  }

  function schedule(): void {
    if (closed) return;
    const now = Date.now();
    firstEventAt ??= now;
    if (timer) clearTimeout(timer);
    const wait = Math.max(0, Math.min(debounceMs, firstEventAt + maxWaitMs - now));
    timer = setTimeout(() => {
      timer = undefined;
      firstEventAt = undefined;
      void rescan();
    }, wait);
  }

  const watcher = await watchTree(realRoot, schedule, onError);

  if (opts.emitInitial ?? true) await rescan();
  else {
    try {
      lastRevision = (await readDirSnapshot(realRoot, readOpts)).revision;
    } catch {
      // An unreadable initial tree: the first good read will be emitted.
    }
  }

  return async () => {
    closed = true;
    if (timer) clearTimeout(timer);
    await watcher.close();
  };
}

/** Read the tree until two consecutive reads, `settleMs` apart, agree (a file caught mid-write
 *  differs between them). */
async function readSettled(root: string, realRoot: string, readOpts: DirSnapshotOptions, settleMs: number): Promise<Snapshot> {
  let prev = await readDirSnapshot(realRoot, readOpts);
  for (let i = 0; i < MAX_SETTLE_ATTEMPTS; i++) {
    await new Promise<void>((r) => setTimeout(r, settleMs));
    const next = await readDirSnapshot(realRoot, readOpts);
    if (next.revision === prev.revision) return next;
    prev = next;
  }
  throw new SourceError(`${root}: files kept changing over ${MAX_SETTLE_ATTEMPTS} reads; will retry on the next event`);
}

/** A chokidar watcher on the tree (ignored names left out) that calls `onEvent` for every file
 *  event, resolved once it is ready. */
async function watchTree(realRoot: string, onEvent: () => void, onError: (err: Error) => void): Promise<FSWatcher> {
  const watcher = chokidarWatch(realRoot, {
    ignoreInitial: true,
    // We re-read the whole tree anyway; chokidar's own unlink/add merging would only add delay.
    atomic: false,
    ignored: (p: string) => {
      const rel = path.relative(realRoot, p);
      if (rel === "") return false;
      return rel.split(path.sep).some((seg) => isIgnoredName(seg));
    },
  });
  watcher.on("all", () => onEvent());
  // chokidar drops a file's "change" when its own stat of the file shows the mtime it saw before
  // (a rewrite within one timestamp tick of an earlier event) and throttles events 5 ms apart: in a
  // loop of 300 saves, 97 went unreported. Every raw inotify event schedules a read as well; the
  // read is cheap (unchanged files are not read again) and emits only a new revision.
  watcher.on("raw", () => onEvent());
  watcher.on("error", (err: unknown) => onError(err instanceof Error ? err : new Error(String(err))));
  await new Promise<void>((resolve) => watcher.once("ready", () => resolve()));
  return watcher;
}
