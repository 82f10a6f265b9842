// SPDX-License-Identifier: Apache-2.0
// RingBuffer against the real kernel: ringbuf.o (bpf/test/ringbuf.bpf.c) writes numbered records
// on BPF_PROG_RUN; the reader must see each committed one exactly once, in order, with its exact
// bytes, across wraparounds of the 16 KiB ring, skipping discarded ones; wait() must resolve
// without blocking the event loop.
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { BpfMap, RingBuffer, loadCollection, parseElf, type Collection } from "../../reconciler/ebpf-loader/index.js";
import { makePinDir } from "./helpers/ebpf-loader.js";

const ringbufObj = new URL("../../bpf/build/ringbuf.o", import.meta.url);
const RING_BYTES = 16384;
const zeroKey = Buffer.alloc(4);

function load(): Collection {
  return loadCollection(parseElf(readFileSync(ringbufObj)));
}

function configure(coll: Collection, perRun: number, discardEvery: number): void {
  const v = Buffer.alloc(8);
  v.writeUInt32LE(perRun, 0);
  v.writeUInt32LE(discardEvery, 4);
  coll.maps.get("control")!.update(zeroKey, v);
}

function stats(coll: Collection): { nextSeq: number; failed: number } {
  const v = coll.maps.get("counters")!.lookup(zeroKey)!;
  return { nextSeq: Number(v.readBigUInt64LE(0)), failed: Number(v.readBigUInt64LE(8)) };
}

function run(coll: Collection, times = 1): void {
  coll.programs.get("write_records")!.testRun({ data: Buffer.alloc(64), repeat: times });
}

/** The test program loaded and a reader of its ring, both closed after the test. */
function openRing(t: TestContext): { coll: Collection; rb: RingBuffer } {
  const coll = load();
  t.after(() => coll.close());
  const rb = RingBuffer.open(coll.maps.get("ring")!);
  t.after(() => rb.close());
  return { coll, rb };
}

/** The bytes record seq must hold (see ringbuf.bpf.c). */
function expected(seq: number): Buffer {
  const tail = [4, 12, 36][seq % 3]!;
  const b = Buffer.alloc(8 + tail);
  b.writeBigUInt64LE(BigInt(seq), 0);
  for (let j = 0; j < tail; j++) b[8 + j] = (seq + j) & 0xff;
  return b;
}

/** Drains rb, checking every record against expected(); returns the seqs read. */
function drainChecked(rb: RingBuffer, max?: number): number[] {
  const seqs: number[] = [];
  rb.drain((buf, off, len) => {
    const seq = Number(buf.readBigUInt64LE(off));
    assert.deepEqual(Buffer.from(buf.subarray(off, off + len)), expected(seq), `record ${seq}`);
    seqs.push(seq);
  }, max);
  return seqs;
}

test("the ELF reader takes a ringbuf definition: no key or value, max_entries is the data size", () => {
  const spec = parseElf(readFileSync(ringbufObj)).maps.get("ring")!;
  assert.equal(spec.type, "ringbuf");
  assert.equal(spec.keySize, 0);
  assert.equal(spec.valueSize, 0);
  assert.equal(spec.maxEntries, RING_BYTES);
});

test("ringbuf map: create, pin, open pinned with an expectation", (t) => {
  const pins = makePinDir();
  t.after(pins.cleanup);
  const m = BpfMap.create({ name: "rb_test", type: "ringbuf", keySize: 0, valueSize: 0, maxEntries: RING_BYTES });
  t.after(() => m.close());
  m.pin(`${pins.dir}/rb_test`);
  const again = BpfMap.openPinned(`${pins.dir}/rb_test`, { type: "ringbuf", keySize: 0, valueSize: 0, maxEntries: RING_BYTES });
  t.after(() => again.close());
  assert.equal(again.id, m.id);
  assert.throws(() => BpfMap.openPinned(`${pins.dir}/rb_test`, { maxEntries: 2 * RING_BYTES }), /maxEntries mismatch/);
  assert.throws(() => RingBuffer.open(BpfMap.create({ name: "not_rb", type: "array", keySize: 4, valueSize: 4, maxEntries: 1 })), /not a ringbuf/);
});

test("every committed record is read once, in order, exactly; discarded ones are skipped; across wraparound", (t) => {
  const { coll, rb } = openRing(t);
  configure(coll, 10, 4); // seq 3, 7, 11, ... discarded

  const seen: number[] = [];
  // ~10 records of ~32 bytes per run: 200 runs write ~64 KiB, four times round the ring.
  for (let i = 0; i < 200; i++) {
    run(coll);
    if (i % 5 === 4) seen.push(...drainChecked(rb));
  }
  seen.push(...drainChecked(rb));
  const s = stats(coll);
  assert.equal(s.nextSeq, 2000);
  assert.equal(s.failed, 0, "the reader kept up: no reserve failed");
  const want = Array.from({ length: 2000 }, (_, i) => i).filter((i) => i % 4 !== 3);
  assert.deepEqual(seen, want);
  assert.equal(rb.drain(() => assert.fail("nothing left")), 0);
});

test("drain(max) stops after max records and the rest stay for the next drain", (t) => {
  const { coll, rb } = openRing(t);
  configure(coll, 10, 0);
  run(coll);
  assert.deepEqual(drainChecked(rb, 3), [0, 1, 2]);
  assert.deepEqual(drainChecked(rb), [3, 4, 5, 6, 7, 8, 9]);
});

test("a full ring: reserves fail, the records that fit are all there, then writing resumes", (t) => {
  const { coll, rb } = openRing(t);
  configure(coll, 64, 0);
  run(coll, 20); // 1280 records of 16..48 bytes (+8 header): far more than 16 KiB
  const s = stats(coll);
  assert.ok(s.failed > 0, "some reserves failed");
  const seen = drainChecked(rb);
  assert.equal(seen.length + s.failed, s.nextSeq, "every record is either read or counted as failed");
  // The ring filled from empty: exactly the first records fit (nothing frees space before the read).
  assert.deepEqual(seen, Array.from({ length: seen.length }, (_, i) => i));
  const bytes = seen.reduce((sum, seq) => sum + Math.ceil((expected(seq).length + 8) / 8) * 8, 0);
  assert.ok(bytes <= RING_BYTES && bytes > RING_BYTES - 64, `the records filled the ring (${bytes} bytes)`);
  configure(coll, 1, 0);
  run(coll);
  assert.deepEqual(drainChecked(rb), [s.nextSeq], "after the read there is room again");
});

test("wait: false on timeout without blocking the event loop, true when data arrives", async (t) => {
  const { coll, rb } = openRing(t);
  configure(coll, 1, 0);

  // A timer ticking every 10 ms keeps running while wait() is in epoll_wait on a worker thread.
  let ticks = 0;
  const timer = setInterval(() => ticks++, 10);
  t.after(() => clearInterval(timer));
  const started = Date.now();
  assert.equal(await rb.wait(300), false);
  const elapsed = Date.now() - started;
  assert.ok(elapsed >= 250, `timed out after ${elapsed} ms`);
  assert.ok(ticks >= 10, `the event loop ran meanwhile (${ticks} ticks)`);

  // Data written while wait() is pending wakes it well before its timeout.
  const waiting = rb.wait(5000);
  const writeAt = Date.now();
  setTimeout(() => run(coll), 50);
  assert.equal(await waiting, true);
  assert.ok(Date.now() - writeAt < 2000, "woken by the record, not by the timeout");
  assert.deepEqual(drainChecked(rb), [0]);

  // Data already there: true at once.
  run(coll);
  assert.equal(await rb.wait(0), true);
  assert.deepEqual(drainChecked(rb), [1]);
  assert.equal(await rb.wait(0), false);
});

test("close while a wait is pending: the wait still settles, the map stays usable", async (t) => {
  const coll = load();
  t.after(() => coll.close());
  const rb = RingBuffer.open(coll.maps.get("ring")!);
  const waiting = rb.wait(200);
  rb.close();
  assert.equal(await waiting, false);
  assert.throws(() => rb.drain(() => {}), /closed/);
  const again = RingBuffer.open(coll.maps.get("ring")!);
  t.after(() => again.close());
  configure(coll, 2, 0);
  run(coll);
  assert.deepEqual(drainChecked(again), [0, 1]);
});
