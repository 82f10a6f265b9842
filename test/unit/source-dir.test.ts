import { test } from "node:test";
import assert from "node:assert/strict";
import { constants as fsConstants } from "node:fs";
import { execFileSync } from "node:child_process";
import { mkdtemp, mkdir, rm, writeFile, symlink, rename, open, utimes, unlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { createHash } from "node:crypto";
import v8 from "node:v8";
import vm from "node:vm";
import { contentRevision, openManifestFile, readDirSnapshot, watchDir, type FileCache } from "../../reconciler/source/dir.js";
import { PathEscapeError, SizeLimitError, SourceError } from "../../reconciler/source/errors.js";
import type { Snapshot } from "../../reconciler/source/snapshot.js";

async function tempDir(t: { after: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), "source-dir-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
/** A snapshot's files as plain path and text (a directory snapshot's files unpack their text on read). */
const texts = (snap: Snapshot) => snap.files.map((f) => ({ path: f.path, content: f.content }));

test("readDirSnapshot: manifests only, sorted, editor junk and dotfiles skipped", async (t) => {
  const root = await tempDir(t);
  await mkdir(path.join(root, "b/nested"), { recursive: true });
  await mkdir(path.join(root, ".git"));
  await mkdir(path.join(root, ".hidden"));
  await writeFile(path.join(root, "b/nested/z.yml"), "kind: Z\n");
  await writeFile(path.join(root, "a.yaml"), "kind: A\n");
  await writeFile(path.join(root, "B.json"), "[]");
  await writeFile(path.join(root, "README.md"), "no");
  await writeFile(path.join(root, ".git/config.yaml"), "no");
  await writeFile(path.join(root, ".hidden/x.yaml"), "no");
  await writeFile(path.join(root, ".a.yaml.swp"), "no");
  await writeFile(path.join(root, "a.yaml~"), "no");
  await writeFile(path.join(root, "#a.yaml#"), "no");
  await writeFile(path.join(root, "c.yaml.tmp"), "no");
  await writeFile(path.join(root, "d.swp"), "no");
  const snap = await readDirSnapshot(root);
  assert.deepEqual(
    snap.files.map((f) => f.path),
    ["B.json", "a.yaml", "b/nested/z.yml"],
  );
  assert.equal(snap.files[1]!.content, "kind: A\n");
  assert.match(snap.revision, /^sha256:[0-9a-f]{64}$/);
  assert.equal(snap.revision, contentRevision(snap.files));
});

test("readDirSnapshot: revision depends on paths and contents only", async (t) => {
  const r1 = await tempDir(t);
  const r2 = await tempDir(t);
  // Created in different orders: same tree, same revision.
  await writeFile(path.join(r1, "x.yaml"), "1");
  await writeFile(path.join(r1, "y.yaml"), "2");
  await writeFile(path.join(r2, "y.yaml"), "2");
  await writeFile(path.join(r2, "x.yaml"), "1");
  const s1 = await readDirSnapshot(r1);
  const s2 = await readDirSnapshot(r2);
  assert.equal(s1.revision, s2.revision);
  await writeFile(path.join(r2, "x.yaml"), "1 ");
  assert.notEqual((await readDirSnapshot(r2)).revision, s1.revision);
  // A rename with the same content changes the revision too.
  await rm(path.join(r1, "x.yaml"));
  await writeFile(path.join(r1, "w.yaml"), "1");
  assert.notEqual((await readDirSnapshot(r1)).revision, s2.revision);
  // Path/content boundary is unambiguous.
  assert.notEqual(
    contentRevision([{ path: "a", content: "bc" }]),
    contentRevision([{ path: "ab", content: "c" }]),
  );
});

test("readDirSnapshot: symlinks inside the root are followed, escaping ones rejected by name", async (t) => {
  const root = await tempDir(t);
  const outside = await tempDir(t);
  await writeFile(path.join(outside, "secret.yaml"), "secret: 1\n");
  await mkdir(path.join(root, "real"));
  await writeFile(path.join(root, "real/a.yaml"), "a: 1\n");
  await symlink("real/a.yaml", path.join(root, "link.yaml"));
  await symlink("real", path.join(root, "linkdir"));
  await symlink(".", path.join(root, "real/loop")); // a loop must not hang
  const snap = await readDirSnapshot(root);
  assert.deepEqual(snap.files.map((f) => f.path), ["link.yaml", "linkdir/a.yaml", "real/a.yaml"]);

  await symlink(path.join(outside, "secret.yaml"), path.join(root, "evil.yaml"));
  await assert.rejects(readDirSnapshot(root), (err: unknown) => {
    assert.ok(err instanceof PathEscapeError);
    assert.equal(err.path, "evil.yaml");
    assert.match(err.message, /evil\.yaml/);
    return true;
  });
  await rm(path.join(root, "evil.yaml"));
  await symlink(outside, path.join(root, "evildir"));
  await assert.rejects(readDirSnapshot(root), PathEscapeError);
});

test("readDirSnapshot: boundary lets a subdirectory link to siblings but not beyond", async (t) => {
  const checkout = await tempDir(t);
  await mkdir(path.join(checkout, "env/prod"), { recursive: true });
  await mkdir(path.join(checkout, "common"));
  await writeFile(path.join(checkout, "common/c.yaml"), "c: 1\n");
  await symlink("../../common/c.yaml", path.join(checkout, "env/prod/c.yaml"));
  await assert.rejects(readDirSnapshot(path.join(checkout, "env/prod")), PathEscapeError);
  const snap = await readDirSnapshot(path.join(checkout, "env/prod"), { boundary: checkout });
  assert.deepEqual(snap.files.map((f) => f.path), ["c.yaml"]);
});

test("readDirSnapshot: file and total size limits", async (t) => {
  const root = await tempDir(t);
  await writeFile(path.join(root, "a.yaml"), "x".repeat(600));
  await writeFile(path.join(root, "b.yaml"), "x".repeat(600));
  await assert.rejects(readDirSnapshot(root, { maxFileBytes: 500 }), (err: unknown) => {
    assert.ok(err instanceof SizeLimitError);
    assert.equal(err.path, "a.yaml");
    assert.equal(err.actual, 600);
    return true;
  });
  await assert.rejects(readDirSnapshot(root, { maxTotalBytes: 1000 }), (err: unknown) => {
    assert.ok(err instanceof SizeLimitError);
    assert.equal(err.path, "<total>");
    return true;
  });
  // Default limit: 1 MiB per file.
  await writeFile(path.join(root, "big.yaml"), Buffer.alloc(1024 * 1024 + 1, 0x61));
  await assert.rejects(readDirSnapshot(root), SizeLimitError);
  // Large non-manifest files do not count.
  await rm(path.join(root, "big.yaml"));
  await writeFile(path.join(root, "big.bin"), Buffer.alloc(2 * 1024 * 1024));
  assert.equal((await readDirSnapshot(root)).files.length, 2);
});

function mkfifo(p: string): void {
  execFileSync("mkfifo", [p]);
}

/** A reader blocked on a FIFO (the bug) is released by a writer opening and closing it. */
async function releaseFifo(p: string): Promise<void> {
  try {
    const w = await open(p, fsConstants.O_WRONLY | fsConstants.O_NONBLOCK);
    await w.close();
  } catch {
    // no reader waiting (ENXIO) or no FIFO there any more
  }
}

test("openManifestFile: a FIFO is refused at once, naming the path; a symlink is not followed", async (t) => {
  const root = await tempDir(t);
  const fifo = path.join(root, "a.yaml");
  mkfifo(fifo);
  t.after(() => releaseFifo(fifo));
  // No writer ever opens it: a blocking open or read would never return.
  await assert.rejects(openManifestFile("a.yaml", fifo, root), (err: unknown) => {
    assert.ok(err instanceof SourceError, String(err));
    assert.equal(err.message, "a.yaml: not a regular file (a FIFO); refusing to read it");
    return true;
  });
  await writeFile(path.join(root, "real.yaml"), "a: 1\n");
  await symlink("real.yaml", path.join(root, "link.yaml"));
  await assert.rejects(openManifestFile("link.yaml", path.join(root, "link.yaml"), root), (err: unknown) => {
    assert.ok(err instanceof SourceError, String(err));
    assert.match(err.message, /^link\.yaml: became a symlink while being read; refusing to follow it$/);
    return true;
  });
  await mkdir(path.join(root, "dir.yaml"));
  await assert.rejects(openManifestFile("dir.yaml", path.join(root, "dir.yaml"), root), /dir\.yaml: not a regular file \(a directory\)/);
  const { handle, st } = await openManifestFile("real.yaml", path.join(root, "real.yaml"), root);
  await handle.close();
  assert.equal(st.size, 5n);
  // Opened through a directory that resolves outside the boundary: refused by the descriptor's real path.
  const outside = await tempDir(t);
  await writeFile(path.join(outside, "s.yaml"), "s: 1\n");
  await symlink(outside, path.join(root, "out"));
  await assert.rejects(openManifestFile("out/s.yaml", path.join(root, "out/s.yaml"), root), PathEscapeError);
});

test("readDirSnapshot: a manifest swapped for a FIFO while the tree is read never hangs the read", { timeout: 60_000 }, async (t) => {
  const root = await tempDir(t);
  await writeFile(path.join(root, "b.yaml"), "b: 1\n");
  const target = path.join(root, "a.yaml");
  t.after(() => releaseFifo(target));
  // Swap a.yaml between a regular file and a FIFO while snapshots are read; every read must end
  // (a snapshot, or a SourceError naming a.yaml). Before the fix a read that opened the FIFO
  // blocked forever (the test's timeout turns that into a failure).
  let swapping = true;
  let swaps = 0;
  const swapper = (async () => {
    while (swapping) {
      await unlink(target).catch(() => {});
      if (swaps++ % 2 === 0) mkfifo(target);
      else await writeFile(target, "a: 1\n");
      await new Promise<void>((r) => setImmediate(r));
    }
  })();
  let ok = 0;
  let refused = 0;
  try {
    for (let i = 0; i < 150; i++) {
      try {
        const snap = await readDirSnapshot(root);
        assert.ok(snap.files.some((f) => f.path === "b.yaml"));
        ok++;
      } catch (err) {
        assert.ok(err instanceof SourceError, String(err));
        assert.match(err.message, /^a\.yaml: /);
        refused++;
      }
    }
  } finally {
    swapping = false;
    await swapper;
  }
  t.diagnostic(`${ok} reads gave a snapshot, ${refused} refused a.yaml, ${swaps} swaps`);
  assert.equal(ok + refused, 150);
});

/** Collects emitted snapshots; `next()` waits for the next one. */
function collector() {
  const seen: { snap: Snapshot; at: number }[] = [];
  let waiter: (() => void) | undefined;
  return {
    seen,
    on(snap: Snapshot) {
      seen.push({ snap, at: performance.now() });
      waiter?.();
    },
    async waitFor(count: number, timeoutMs = 3000): Promise<void> {
      const deadline = Date.now() + timeoutMs;
      while (seen.length < count) {
        if (Date.now() > deadline) throw new Error(`expected ${count} snapshots, got ${seen.length}`);
        await new Promise<void>((r) => {
          waiter = r;
          setTimeout(r, 20);
        });
      }
    },
  };
}

test("watchDir: initial snapshot, a burst of writes gives one snapshot, reaction time reported", async (t) => {
  const root = await tempDir(t);
  await writeFile(path.join(root, "a.yaml"), "a: 0\n");
  const c = collector();
  const close = await watchDir(root, (s) => c.on(s), { debounceMs: 50 });
  t.after(close);
  await c.waitFor(1);
  assert.deepEqual(c.seen[0]!.snap.files.map((f) => f.path), ["a.yaml"]);

  // A burst: ten writes over two files, 5 ms apart.
  const start = performance.now();
  for (let i = 1; i <= 10; i++) {
    await writeFile(path.join(root, i % 2 ? "a.yaml" : "b.yaml"), `v: ${i}\n`);
    await sleep(5);
  }
  const lastWrite = performance.now();
  await c.waitFor(2);
  await sleep(300); // anything else would show up now
  assert.equal(c.seen.length, 2, "the burst produced exactly one snapshot");
  const final = c.seen[1]!.snap;
  assert.deepEqual(texts(final), [
    { path: "a.yaml", content: "v: 9\n" },
    { path: "b.yaml", content: "v: 10\n" },
  ]);
  t.diagnostic(`burst of 10 writes: ${(lastWrite - start).toFixed(0)} ms; snapshot ${(c.seen[1]!.at - lastWrite).toFixed(1)} ms after the last write`);

  // Content unchanged (rewritten with the same bytes) → nothing emitted.
  await writeFile(path.join(root, "a.yaml"), "v: 9\n");
  await sleep(300);
  assert.equal(c.seen.length, 2);

  // Editor temp files and a write-then-rename save.
  const t0 = performance.now();
  await writeFile(path.join(root, ".a.yaml.swp"), "junk");
  await writeFile(path.join(root, "a.yaml.tmp"), "v: renamed\n");
  await rename(path.join(root, "a.yaml.tmp"), path.join(root, "a.yaml"));
  await c.waitFor(3);
  t.diagnostic(`write-then-rename save → snapshot in ${(c.seen[2]!.at - t0).toFixed(1)} ms`);
  assert.deepEqual(c.seen[2]!.snap.files.map((f) => f.content), ["v: renamed\n", "v: 10\n"]);
});

test("watchDir: a file being written in pieces never shows half-written", async (t) => {
  const root = await tempDir(t);
  const c = collector();
  const close = await watchDir(root, (s) => c.on(s), { debounceMs: 50 });
  t.after(close);
  await c.waitFor(1);
  const full = Array.from({ length: 40 }, (_, i) => `line${i}: ${"x".repeat(50)}\n`).join("");
  for (let round = 0; round < 3; round++) {
    const fh = await open(path.join(root, "slow.yaml"), "w"); // truncates
    for (let off = 0; off < full.length; off += 256) {
      await fh.write(full.slice(off, off + 256));
      await sleep(8); // slower than the filesystem, faster than the debounce
    }
    await fh.close();
    await sleep(200);
  }
  assert.ok(c.seen.length >= 2);
  for (const { snap } of c.seen.slice(1)) {
    assert.deepEqual(texts(snap), [{ path: "slow.yaml", content: full }], "only the complete file is ever emitted");
  }
});

test("watchDir: a read error is reported and the next good tree is emitted", async (t) => {
  const root = await tempDir(t);
  const c = collector();
  const errors: Error[] = [];
  const close = await watchDir(root, (s) => c.on(s), { debounceMs: 20, maxFileBytes: 100, onError: (e) => errors.push(e) });
  t.after(close);
  await c.waitFor(1);
  await writeFile(path.join(root, "big.yaml"), "x".repeat(200));
  const deadline = Date.now() + 3000;
  while (errors.length === 0 && Date.now() < deadline) await sleep(20);
  assert.ok(errors[0] instanceof SizeLimitError);
  assert.equal(c.seen.length, 1);
  await writeFile(path.join(root, "big.yaml"), "small: 1\n");
  await c.waitFor(2);
  assert.equal(c.seen[1]!.snap.files[0]!.content, "small: 1\n");
});

test("readDirSnapshot with a watcher's cache: same snapshot as without, and every change is seen", async (t) => {
  const root = await tempDir(t);
  const old = new Date(Date.now() - 3600_000);
  for (const name of ["a.yaml", "b.yaml", "c.yaml"]) {
    await writeFile(path.join(root, name), `kind: ${name}\n`);
    await utimes(path.join(root, name), old, old); // old enough to be trusted by its stamp
  }
  const cache: FileCache = new Map();
  const first = await readDirSnapshot(root, { cache });
  assert.deepEqual(first, await readDirSnapshot(root));
  assert.equal(first.revision, contentRevision(first.files));
  assert.equal(cache.size, 3);

  // A same-size rewrite right after the read: its stamp changes (mtime, ctime), so it is read again.
  // (The racy rule, a rewrite the stamp cannot show, cannot be staged from user space: ctime is set by the kernel.)
  await writeFile(path.join(root, "a.yaml"), "kind: A.yaml\n");
  const second = await readDirSnapshot(root, { cache });
  assert.equal(second.files[0]!.content, "kind: A.yaml\n");
  assert.deepEqual(second, await readDirSnapshot(root));

  // A rewrite whose mtime is set back to the old time still changes ctime: seen.
  await writeFile(path.join(root, "b.yaml"), "kind: B.yaml\n");
  await utimes(path.join(root, "b.yaml"), old, old);
  const third = await readDirSnapshot(root, { cache });
  assert.equal(third.files[1]!.content, "kind: B.yaml\n");

  // A removed file leaves the snapshot and the cache; a file moved over another is read anew.
  await rm(path.join(root, "c.yaml"));
  await writeFile(path.join(root, "d.tmp"), "kind: moved\n");
  await utimes(path.join(root, "d.tmp"), old, old);
  await rename(path.join(root, "d.tmp"), path.join(root, "a.yaml"));
  const fourth = await readDirSnapshot(root, { cache });
  assert.deepEqual(fourth.files.map((f) => [f.path, f.content]), [["a.yaml", "kind: moved\n"], ["b.yaml", "kind: B.yaml\n"]]);
  assert.deepEqual([...cache.keys()].map((p) => path.basename(p)).sort(), ["a.yaml", "b.yaml"]);
  assert.deepEqual(fourth, await readDirSnapshot(root));
});

test("watchDir: every save of a file rewritten in place is seen, however quickly the saves follow", async (t) => {
  // chokidar alone dropped about a third of these "change" events; the watcher must not miss one.
  const root = await tempDir(t);
  await writeFile(path.join(root, "rule.json"), "[]\n");
  const latest: string[] = [];
  const close = await watchDir(root, (s) => latest.push(s.files[0]!.content));
  t.after(close);
  for (let i = 0; i < 80; i++) {
    const want = i % 2 === 0 ? `[{"port": "8080"}]\n` : `[{"port": "80"}]\n`;
    await writeFile(path.join(root, "rule.json"), want);
    const started = Date.now();
    while (latest.at(-1) !== want && Date.now() - started < 3000) await sleep(2);
    assert.equal(latest.at(-1), want, `save ${i} was not seen within 3 s`);
    await sleep(i % 7); // 0–6 ms between a snapshot and the next save
  }
});

test("a directory snapshot's files give their text as read, its SHA-256 and its size, and the revision is made of those digests", async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), "rc-dir-text-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const yaml = Array.from({ length: 2000 }, (_, i) => `- name: ep${i}\n  labels: {app: "caf\u00e9", tier: "\u2603"}\n`).join("");
  await writeFile(path.join(dir, "big.yaml"), yaml);
  // Invalid UTF-8 reads as U+FFFD, as Buffer#toString gives it; digest and size are of that text.
  await writeFile(path.join(dir, "odd.yaml"), Buffer.from([0x61, 0x3a, 0x20, 0xff, 0xfe, 0x0a]));
  const snap = await readDirSnapshot(dir);
  const want = [
    { path: "big.yaml", content: yaml },
    { path: "odd.yaml", content: "a: \ufffd\ufffd\n" },
  ];
  assert.deepEqual(texts(snap), want);
  for (const f of snap.files) {
    const bytes = Buffer.from(f.content, "utf8");
    assert.equal(f.digest, createHash("sha256").update(bytes).digest("hex"), f.path);
    assert.equal(f.size, bytes.length, f.path);
    assert.equal(f.content, f.content, "every read gives the same text");
  }
  assert.equal(snap.revision, contentRevision(want), "the revision is what contentRevision gives for the texts");
});

test("a directory snapshot holds its files' packed bytes, not a 64 KiB zlib chunk for each", async (t) => {
  const root = await mkdtemp(path.join(tmpdir(), "rc-dir-packed-"));
  t.after(() => rm(root, { recursive: true, force: true }));
  const tree = async (name: string, files: number): Promise<string> => {
    const dir = path.join(root, name);
    await mkdir(dir);
    for (let i = 0; i < files; i++) await writeFile(path.join(dir, `f${i}.yaml`), `kind: Endpoint\nname: ${name}${i}\n`.repeat(50));
    return dir;
  };
  const [small, large] = [await tree("small", 100), await tree("large", 300)];
  v8.setFlagsFromString("--expose-gc");
  const gc = vm.runInNewContext("gc") as () => void;
  const buffers = async (): Promise<number> => {
    gc();
    await sleep(50); // backing stores are freed by a task after the collection
    return process.memoryUsage().arrayBuffers;
  };
  // What each file adds (the difference between trees of 100 and 300 files), not the process's noise.
  const m0 = await buffers();
  const a = await readDirSnapshot(small);
  const m1 = await buffers();
  const b = await readDirSnapshot(large);
  const m2 = await buffers();
  assert.equal(a.files.length + b.files.length, 400);
  const perFile = (m2 - m1 - (m1 - m0)) / 200;
  assert.ok(perFile < 8 * 1024, `buffers held per file: ${perFile.toFixed(0)} bytes (a zlib chunk is 65536)`);
});
