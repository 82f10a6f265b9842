// SPDX-License-Identifier: Apache-2.0
// The loader's named errors against the real kernel: a missing key or pin is its own class (still a
// BpfError with code ENOENT), other failures stay plain BpfErrors.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  BpfError,
  BpfMap,
  KeyNotFoundError,
  PinNotFoundError,
  TcxLink,
} from "../../reconciler/ebpf-loader/index.js";
import { makePinDir } from "./helpers/ebpf-loader.js";

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n, 0);
  return b;
}

test("a missing key: KeyNotFoundError from update(exist) and deleteBatch, none from lookup/delete", (t) => {
  const m = BpfMap.create({ name: "ldr_errs", type: "hash", keySize: 4, valueSize: 4, maxEntries: 8 });
  t.after(() => m.close());
  m.update(u32(1), u32(10));

  assert.equal(m.lookup(u32(2)), undefined, "lookup answers undefined, not an error");
  assert.equal(m.delete(u32(2)), false, "delete answers false, not an error");
  const missing = (syscall: string) => (e: unknown) =>
    e instanceof KeyNotFoundError && e instanceof BpfError && e.code === "ENOENT" && e.syscall === syscall &&
    e.name === "KeyNotFoundError";
  assert.throws(() => m.update(u32(3), u32(30), "exist"), missing("bpf(BPF_MAP_UPDATE_ELEM)"));
  // The batch stops at the missing key (the kernel's ENOENT); key 1 before it is deleted.
  assert.throws(() => m.deleteBatch(Buffer.concat([u32(1), u32(4)]), 2), missing("bpf(BPF_MAP_DELETE_BATCH)"));
  assert.equal(m.lookup(u32(1)), undefined);

  // Another errno is a plain BpfError, not a KeyNotFoundError.
  m.update(u32(5), u32(50));
  assert.throws(
    () => m.update(u32(5), u32(51), "noexist"),
    (e: unknown) => e instanceof BpfError && !(e instanceof KeyNotFoundError) && e.code === "EEXIST",
  );
});

test("a missing pin: PinNotFoundError from BpfMap.openPinned and TcxLink.openPinned", (t) => {
  const pins = makePinDir();
  t.after(pins.cleanup);
  const notPinned = (e: unknown) =>
    e instanceof PinNotFoundError && e instanceof BpfError && e.code === "ENOENT" && e.syscall === "bpf(BPF_OBJ_GET)";
  assert.throws(() => BpfMap.openPinned(`${pins.dir}/nothing`), notPinned);
  assert.throws(() => TcxLink.openPinned(`${pins.dir}/nothing`), notPinned);
});
