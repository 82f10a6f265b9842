// SPDX-License-Identifier: Apache-2.0
// BpfMap against the real kernel: every map type, element/batch/iteration ops, pins, mismatch errors.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { BpfMap, BpfError, MapMismatchError, numPossibleCpus, unpin, type MapSpec, type MapType } from "../../reconciler/ebpf-loader/index.js";
import { makePinDir, sh } from "./helpers/ebpf-loader.js";

function key(keySize: number, i: number, lpm: boolean): Buffer {
  const k = Buffer.alloc(keySize);
  if (lpm) {
    k.writeUInt32LE(32, 0); // prefix length
    k.writeUInt32BE(0x0a000000 + i, 4); // 10.0.0.i/32
  } else {
    k.writeUInt32LE(i, 0);
  }
  return k;
}

const types: Array<{ type: MapType; keySize: number }> = [
  { type: "hash", keySize: 12 },
  { type: "lru_hash", keySize: 12 },
  { type: "lpm_trie", keySize: 8 },
  { type: "array", keySize: 4 },
  { type: "percpu_hash", keySize: 12 },
  { type: "percpu_array", keySize: 4 },
];

for (const { type, keySize } of types) {
  test(`map ${type}: create, update, lookup, delete, batch, iterate, pin, openPinned, mismatch`, (t) => {
    const pins = makePinDir();
    t.after(pins.cleanup);
    const lpm = type === "lpm_trie";
    const isArray = type === "array" || type === "percpu_array";
    const spec: MapSpec = { name: `ldr_${type}`, type, keySize, valueSize: 8, maxEntries: 64 };
    const m = BpfMap.create(spec);
    t.after(() => m.close());
    assert.ok(m.id > 0);
    const perCpu = type.startsWith("percpu");
    assert.equal(m.valueBytes, perCpu ? 8 * numPossibleCpus() : 8);
    if (lpm) assert.equal(m.spec.flags, 1, "lpm_trie gets BPF_F_NO_PREALLOC");

    // single ops
    const v = Buffer.alloc(m.valueBytes);
    v.writeBigUInt64LE(42n, 0);
    m.update(key(keySize, 1, lpm), v);
    assert.equal(m.lookup(key(keySize, 1, lpm))?.readBigUInt64LE(0), 42n);
    if (!isArray) {
      assert.equal(m.lookup(key(keySize, 2, lpm)), undefined);
      assert.equal(m.delete(key(keySize, 1, lpm)), true);
      assert.equal(m.delete(key(keySize, 1, lpm)), false);
      assert.throws(() => m.update(key(keySize, 3, lpm), v, "exist"), (e: unknown) => e instanceof BpfError && e.code === "ENOENT");
    }

    // batch update of 10 entries, then lookupBatch and keys()
    const n = 10;
    const keys = Buffer.concat(Array.from({ length: n }, (_, i) => key(keySize, i, lpm)));
    const values = Buffer.alloc(n * m.valueBytes);
    for (let i = 0; i < n; i++) values.writeBigUInt64LE(BigInt(100 + i), i * m.valueBytes);
    m.updateBatch(keys, values, n);
    for (let i = 0; i < n; i++) assert.equal(m.lookup(key(keySize, i, lpm))?.readBigUInt64LE(0), BigInt(100 + i));
    const all = m.lookupBatch();
    assert.equal(all.count, isArray ? 64 : n);
    const seen = new Map<string, bigint>();
    for (let i = 0; i < all.count; i++) {
      seen.set(all.keys.subarray(i * keySize, (i + 1) * keySize).toString("hex"), all.values.readBigUInt64LE(i * m.valueBytes));
    }
    for (let i = 0; i < n; i++) assert.equal(seen.get(key(keySize, i, lpm).toString("hex")), BigInt(100 + i));
    assert.equal([...m.keys()].length, isArray ? 64 : n);

    if (!isArray) {
      m.deleteBatch(keys, 5);
      assert.equal([...m.keys()].length, n - 5);
    } else {
      // 6.18 answers ENOTSUPP to delete batch on arrays; the fallback's single delete says EINVAL.
      assert.throws(
        () => m.deleteBatch(keys, 1),
        (e: unknown) => e instanceof BpfError && e.syscall === "bpf(BPF_MAP_DELETE_ELEM)" && e.code === "EINVAL",
      );
    }

    // pin, openPinned, expect checks
    const path = `${pins.dir}/${type}`;
    m.pin(path);
    const again = BpfMap.openPinned(path, { type, keySize, valueSize: 8, maxEntries: 64 });
    t.after(() => again.close());
    assert.equal(again.id, m.id);
    assert.equal(again.lookup(key(keySize, 9, lpm))?.readBigUInt64LE(0), 109n);
    assert.throws(
      () => BpfMap.openPinned(path, { maxEntries: 65 }),
      (e: unknown) => e instanceof MapMismatchError && e.field === "maxEntries" && e.expected === 65 && e.got === 64,
    );
    assert.throws(() => BpfMap.openPinned(path, { type: type === "hash" ? "lru_hash" : "hash" }), MapMismatchError);
    const byId = BpfMap.fromId(m.id);
    t.after(() => byId.close());
    assert.equal(byId.spec.type, type);
    assert.equal(byId.spec.name, `ldr_${type}`.slice(0, 15));
    unpin(path);
    unpin(path); // missing is fine
    assert.equal(existsSync(path), false);
  });
}

test("map-of-maps: hash_of_maps and array_of_maps with inner template, updateInner, innerId", (t) => {
  const inner: MapSpec = { name: "ldr_inner", type: "hash", keySize: 4, valueSize: 4, maxEntries: 8 };
  const a = BpfMap.create(inner);
  const b = BpfMap.create(inner);
  t.after(() => {
    a.close();
    b.close();
  });
  for (const type of ["hash_of_maps", "array_of_maps"] as const) {
    const outer = BpfMap.create({ name: `ldr_${type}`.slice(0, 15), type, keySize: 4, valueSize: 4, maxEntries: 4, innerMap: inner });
    t.after(() => outer.close());
    const k = Buffer.alloc(4);
    k.writeUInt32LE(1);
    outer.updateInner(k, a);
    assert.equal(outer.innerId(k), a.id);
    outer.updateInner(k, b);
    assert.equal(outer.innerId(k), b.id);
    const k2 = Buffer.alloc(4);
    k2.writeUInt32LE(2);
    if (type === "hash_of_maps") assert.equal(outer.innerId(k2), undefined);
    // an incompatible inner map is refused by the kernel
    const wrong = BpfMap.create({ name: "ldr_wrong", type: "hash", keySize: 8, valueSize: 4, maxEntries: 8 });
    t.after(() => wrong.close());
    assert.throws(() => outer.updateInner(k, wrong), BpfError);
  }
  // explicit template argument
  const tmpl = BpfMap.create(inner);
  const outer2 = BpfMap.create({ name: "ldr_hom2", type: "hash_of_maps", keySize: 4, valueSize: 4, maxEntries: 4 }, tmpl);
  tmpl.close();
  t.after(() => outer2.close());
  outer2.updateInner(Buffer.alloc(4), a);
  assert.equal(outer2.innerId(Buffer.alloc(4)), a.id);
});

test("map update errors name the map and errno (E2BIG when full)", (t) => {
  const m = BpfMap.create({ name: "ldr_full", type: "hash", keySize: 4, valueSize: 8, maxEntries: 1 });
  t.after(() => m.close());
  m.update(Buffer.from([1, 0, 0, 0]), Buffer.alloc(8));
  assert.throws(
    () => m.update(Buffer.from([2, 0, 0, 0]), Buffer.alloc(8)),
    (e: unknown) => e instanceof BpfError && e.message === "update map ldr_full: bpf(BPF_MAP_UPDATE_ELEM): E2BIG",
  );
});

test("pinned map is visible to bpftool with the same id", (t) => {
  const pins = makePinDir();
  t.after(pins.cleanup);
  const m = BpfMap.create({ name: "ldr_bt", type: "hash", keySize: 4, valueSize: 8, maxEntries: 4 });
  t.after(() => m.close());
  m.pin(`${pins.dir}/m`);
  const info = JSON.parse(sh("bpftool", ["map", "show", "pinned", `${pins.dir}/m`, "-j"])) as { id: number; type: string; bytes_key: number };
  assert.equal(info.id, m.id);
  assert.equal(info.type, "hash");
  assert.equal(info.bytes_key, 4);
});
