// Extraction of embedded native modules to a private, content-addressed path, and asset lookup
// from a source checkout. (The binary itself is exercised in test/e2e/binary.test.ts.)

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import {
  AssetNotFoundError,
  UnsafePathError,
  extractNativeModule,
  isSingleExecutable,
  listBpfObjects,
  nativeDirCandidates,
  readAsset,
} from "../../reconciler/cli/assets.js";

const uid = process.getuid!();
const bytes = Buffer.from("not really a shared object, but bytes are bytes");
const hash = createHash("sha256").update(bytes).digest("hex");

function scratch(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), "cli-assets-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test("extracts to <dir>/<stem>-<sha256><ext>, dir 0700 and file 0500, creating missing parents", (t) => {
  const root = scratch(t);
  const dir = join(root, "a", "b", "native");
  const st = extractNativeModule("koffi.node", bytes, dir);
  assert.deepEqual(st, { module: "koffi.node", path: join(dir, `koffi-${hash}.node`), sha256: hash, action: "written" });
  assert.deepEqual(readFileSync(st.path), bytes);
  assert.equal(statSync(st.path).mode & 0o7777, 0o500);
  for (const d of [join(root, "a"), join(root, "a", "b"), dir]) assert.equal(statSync(d).mode & 0o7777, 0o700, d);
});

test("reuses a matching file without rewriting it, and replaces a tampered one", (t) => {
  const dir = join(scratch(t), "native");
  const first = extractNativeModule("koffi.node", bytes, dir);
  const ino = statSync(first.path).ino;
  const again = extractNativeModule("koffi.node", bytes, dir);
  assert.equal(again.action, "reused");
  assert.equal(again.path, first.path);
  assert.equal(statSync(again.path).ino, ino, "same file, not rewritten");

  chmodSync(first.path, 0o700);
  writeFileSync(first.path, "tampered");
  chmodSync(first.path, 0o500);
  const fixed = extractNativeModule("koffi.node", bytes, dir);
  assert.equal(fixed.action, "replaced");
  assert.deepEqual(readFileSync(fixed.path), bytes);
  assert.equal(statSync(fixed.path).mode & 0o7777, 0o500);
});

test("a different content gets a different path", (t) => {
  const dir = join(scratch(t), "native");
  const a = extractNativeModule("koffi.node", bytes, dir);
  const b = extractNativeModule("koffi.node", Buffer.from("other"), dir);
  assert.notEqual(a.path, b.path);
  assert.deepEqual(readFileSync(a.path), bytes);
});

test("an existing ancestor may be a symlink; the directory itself may not", (t) => {
  const root = scratch(t);
  mkdirSync(join(root, "real"));
  symlinkSync(join(root, "real"), join(root, "link"));
  assert.equal(extractNativeModule("koffi.node", bytes, join(root, "link", "native")).action, "written");
  symlinkSync(join(root, "real", "native"), join(root, "native-link"));
  assert.throws(() => extractNativeModule("koffi.node", bytes, join(root, "native-link")), /refusing .*native-link: not a directory/);
});

test("tightens our own 0755 directory to 0700", (t) => {
  const dir = join(scratch(t), "native");
  mkdirSync(dir, { mode: 0o755 });
  chmodSync(dir, 0o755);
  extractNativeModule("koffi.node", bytes, dir);
  assert.equal(statSync(dir).mode & 0o7777, 0o700);
});

test("refuses a group- or world-writable directory", (t) => {
  for (const mode of [0o770, 0o707]) {
    const dir = join(scratch(t), "native");
    mkdirSync(dir);
    chmodSync(dir, mode);
    assert.throws(() => extractNativeModule("koffi.node", bytes, dir), (err: unknown) => {
      assert.ok(err instanceof UnsafePathError);
      assert.equal(err.path, dir);
      assert.match(err.message, /group or world writable/);
      return true;
    });
  }
});

test("refuses a parent that others may write without the sticky bit, accepts it with the bit", (t) => {
  const parent = join(scratch(t), "shared");
  mkdirSync(parent);
  chmodSync(parent, 0o777);
  assert.throws(() => extractNativeModule("koffi.node", bytes, join(parent, "native")), /without the sticky bit/);
  chmodSync(parent, 0o1777);
  assert.equal(extractNativeModule("koffi.node", bytes, join(parent, "native")).action, "written");
});

test("refuses a directory owned by another user", { skip: uid !== 0 ? "needs root to chown" : false }, (t) => {
  const dir = join(scratch(t), "native");
  mkdirSync(dir, { mode: 0o700 });
  chownSync(dir, 65534, 65534);
  assert.throws(() => extractNativeModule("koffi.node", bytes, dir), /owned by uid 65534 \(expected 0\)/);
});

test("replaces a file in our directory that is owned by someone else", { skip: uid !== 0 ? "needs root to chown" : false }, (t) => {
  const dir = join(scratch(t), "native");
  const first = extractNativeModule("koffi.node", bytes, dir);
  chownSync(first.path, 65534, 65534);
  const again = extractNativeModule("koffi.node", bytes, dir);
  assert.equal(again.action, "replaced");
  assert.equal(statSync(again.path).uid, 0);
});

test("candidate directories: RuntimeDirectory, /run/reconcile, state dir, XDG runtime dir, temp dir", () => {
  assert.deepEqual(
    nativeDirCandidates({ RUNTIME_DIRECTORY: "/run/rc:/run/other", RECONCILE_STATE_DIR: "/srv/rc", XDG_RUNTIME_DIR: "/run/user/7" }, 7, "/tmp"),
    ["/run/rc/native", "/run/reconcile/native", "/srv/rc/native", "/run/user/7/reconcile/native", "/tmp/reconcile-7/native"],
  );
  assert.deepEqual(nativeDirCandidates({}, 0, "/var/tmp"), ["/run/reconcile/native", "/var/lib/reconcile/native", "/var/tmp/reconcile-0/native"]);
  assert.deepEqual(nativeDirCandidates({ RUNTIME_DIRECTORY: "/run/reconcile" }, 0, "/tmp"), ["/run/reconcile/native", "/var/lib/reconcile/native", "/tmp/reconcile-0/native"]);
});

test("from source: not a single executable; BPF objects come from bpf/build", () => {
  assert.equal(isSingleExecutable(), false);
  assert.throws(() => readAsset("no-such-object.o"), (err: unknown) => err instanceof AssetNotFoundError && /bpf\/build\/no-such-object\.o/.test(err.message));
  const objects = listBpfObjects();
  for (const name of objects) {
    assert.match(name, /\.o$/);
    assert.deepEqual([...readAsset(name).subarray(0, 4)], [0x7f, 0x45, 0x4c, 0x46], `${name} is ELF`);
  }
});
