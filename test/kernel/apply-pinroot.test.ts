// The pin root must be on bpffs; anything else is refused before reconcile creates a single object.

import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { checkPinRoot, KernelContext, PinRootError } from "../../reconciler/apply/kernel/context.js";

test("a pin root below a mounted bpffs is accepted, even before it exists", () => {
  const root = join("/sys/fs/bpf", `pinroot-${process.pid}`, "nested");
  checkPinRoot(root);
  assert.equal(existsSync(root), false, "checking creates nothing");
});

test("a pin root on another file system is refused with a message that says what to do", () => {
  const dir = mkdtempSync(join(tmpdir(), "pinroot-"));
  try {
    assert.throws(() => checkPinRoot(join(dir, "reconcile")), (err: unknown) => {
      assert.ok(err instanceof PinRootError);
      assert.match(err.message, /is not on a bpf filesystem .*mount -t bpf bpf \/sys\/fs\/bpf.*nsenter --net=/);
      return true;
    });
    assert.throws(() => new KernelContext({ pinRoot: join(dir, "reconcile"), datapathObject: Buffer.alloc(0) }), PinRootError);
    assert.equal(existsSync(join(dir, "reconcile")), false);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
