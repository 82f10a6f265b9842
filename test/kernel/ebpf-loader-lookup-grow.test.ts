// lookupBatch starts with small buffers and grows them: every entry must come back exactly once,
// for hash maps (bucket-wise batches, ENOSPC when a bucket does not fit) and LPM tries alike.

import assert from "node:assert/strict";
import { test } from "node:test";
import { BpfMap, BPF_F_NO_PREALLOC } from "../../reconciler/ebpf-loader/index.js";

function fill(m: BpfMap, n: number, keyOf: (i: number, out: Buffer, off: number) => void): void {
  const k = Buffer.alloc(m.spec.keySize * n);
  const v = Buffer.alloc(4 * n);
  for (let i = 0; i < n; i++) {
    keyOf(i, k, i * m.spec.keySize);
    v.writeUInt32LE(i, i * 4);
  }
  m.updateBatch(k, v, n);
}

test("hash map: 70,000 entries read back once each through growing buffers", () => {
  const m = BpfMap.create({ name: "grow_hash", type: "hash", keySize: 4, valueSize: 4, maxEntries: 100_000 });
  try {
    fill(m, 70_000, (i, out, off) => out.writeUInt32LE(i * 7 + 1, off));
    const { keys, values, count } = m.lookupBatch();
    assert.equal(count, 70_000);
    const seen = new Set<number>();
    for (let i = 0; i < count; i++) {
      const key = keys.readUInt32LE(i * 4);
      assert.equal(values.readUInt32LE(i * 4) * 7 + 1, key);
      seen.add(key);
    }
    assert.equal(seen.size, 70_000);
  } finally {
    m.close();
  }
});

test("LPM trie: 5,000 prefixes read back once each", () => {
  const m = BpfMap.create({ name: "grow_lpm", type: "lpm_trie", keySize: 8, valueSize: 4, maxEntries: 16_384, flags: BPF_F_NO_PREALLOC });
  try {
    fill(m, 5_000, (i, out, off) => {
      out.writeUInt32LE(32, off);
      out.writeUInt32BE(0x0a000000 + i, off + 4);
    });
    const { keys, values, count } = m.lookupBatch();
    assert.equal(count, 5_000);
    const seen = new Set<number>();
    for (let i = 0; i < count; i++) {
      assert.equal(keys.readUInt32BE(i * 8 + 4) - 0x0a000000, values.readUInt32LE(i * 4));
      seen.add(values.readUInt32LE(i * 4));
    }
    assert.equal(seen.size, 5_000);
  } finally {
    m.close();
  }
});

test("LPM tries read one after another into one scratch: each read is its own map's entries, the grown buffers kept for the next", () => {
  const mk = (name: string, n: number, base: number): BpfMap => {
    const m = BpfMap.create({ name, type: "lpm_trie", keySize: 8, valueSize: 4, maxEntries: 16_384, flags: BPF_F_NO_PREALLOC });
    fill(m, n, (i, out, off) => {
      out.writeUInt32LE(32, off);
      out.writeUInt32BE(base + i, off + 4);
    });
    return m;
  };
  const maps = [mk("scr_big", 5_000, 0x0a000000), mk("scr_small", 10, 0x0b000000), mk("scr_mid", 2_000, 0x0c000000)];
  try {
    const scratch = { keys: Buffer.alloc(0), values: Buffer.alloc(0) };
    const expected = [[5_000, 0x0a000000], [10, 0x0b000000], [2_000, 0x0c000000]] as const;
    let grown: Buffer | undefined;
    maps.forEach((m, j) => {
      const { keys, values, count } = m.lookupBatch(scratch);
      const [n, base] = expected[j]!;
      assert.equal(count, n);
      const seen = new Set<number>();
      for (let i = 0; i < count; i++) {
        assert.equal(keys.readUInt32BE(i * 8 + 4) - base, values.readUInt32LE(i * 4), `map ${j} entry ${i}`);
        seen.add(values.readUInt32LE(i * 4));
      }
      assert.equal(seen.size, n);
      assert.equal(keys.buffer, scratch.keys.buffer, "the result is a view of the scratch");
      if (j === 0) grown = scratch.keys;
      else assert.equal(scratch.keys, grown, "the first read's grown buffer is reused, not replaced");
    });
    assert.ok(scratch.keys.length >= 5_000 * 8);
  } finally {
    for (const m of maps) m.close();
  }
});
