// SPDX-License-Identifier: Apache-2.0
// Programs against the real kernel: load counter.o, tag vs bpftool, test run, verifier errors, pins.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import {
  BpfMap,
  BpfProgram,
  VerifierError,
  loadCollection,
  parseElf,
  probeFeatures,
  MapMismatchError,
  type ProgramSpec,
} from "../../reconciler/ebpf-loader/index.js";
import { makePinDir, sh } from "./helpers/ebpf-loader.js";

const counterObj = new URL("../../bpf/build/counter.o", import.meta.url);
const zeroKey = Buffer.alloc(4);

test("counter.o loads; tag equals bpftool's; testRun returns 0 and increments the counter", (t) => {
  const coll = loadCollection(parseElf(readFileSync(counterObj)));
  t.after(() => coll.close());
  const prog = coll.programs.get("count_packets")!;
  const info = prog.info();
  assert.equal(info.name, "count_packets");
  assert.equal(info.type, 3); // sched_cls
  assert.match(info.tag, /^[0-9a-f]{16}$/);
  const bt = JSON.parse(sh("bpftool", ["prog", "show", "id", String(info.id), "-j"])) as { tag: string; map_ids: number[] };
  assert.equal(bt.tag, info.tag);
  const counter = coll.maps.get("counter")!;
  assert.deepEqual(bt.map_ids, [counter.id], "relocation points the program at our map");

  const before = counter.lookup(zeroKey)!.readBigUInt64LE(0);
  const r = prog.testRun({ data: Buffer.alloc(64), repeat: 3 });
  assert.equal(r.retval, 0);
  assert.equal(r.data.length, 64);
  assert.equal(counter.lookup(zeroKey)!.readBigUInt64LE(0), before + 3n);
});

test("a bad program built in memory fails with VerifierError carrying the log", () => {
  // r0 = r2 (never initialised); exit
  const insns = Buffer.from([0xbf, 0x20, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0]);
  const spec: ProgramSpec = { name: "bad", section: "tc", type: "sched_cls", attach: "tc", insns, license: "GPL", relocations: [] };
  assert.throws(
    () => BpfProgram.load(spec),
    (e: unknown) =>
      e instanceof VerifierError && e.code === "EACCES" && /R2 !read_ok/.test(e.log) && e.message.startsWith("load program bad: bpf(BPF_PROG_LOAD): EACCES"),
  );
});

test("replaceMaps shares a map between collections; pinning by_name reuses pins", (t) => {
  const pins = makePinDir();
  t.after(pins.cleanup);
  const spec = parseElf(readFileSync(counterObj));
  const shared = BpfMap.create(spec.maps.get("counter")!);
  t.after(() => shared.close());
  const c1 = loadCollection(spec, { replaceMaps: new Map([["counter", shared]]) });
  t.after(() => c1.close());
  c1.programs.get("count_packets")!.testRun({ data: Buffer.alloc(64) });
  assert.equal(shared.lookup(zeroKey)!.readBigUInt64LE(0), 1n);
  c1.close();
  assert.equal(shared.lookup(zeroKey)!.readBigUInt64LE(0), 1n, "Collection.close leaves replaced maps open");

  const wrong = BpfMap.create({ name: "ldr_wrong", type: "array", keySize: 4, valueSize: 4, maxEntries: 1 });
  t.after(() => wrong.close());
  assert.throws(() => loadCollection(spec, { replaceMaps: new Map([["counter", wrong]]) }), MapMismatchError);

  const pinned = { ...spec, maps: new Map([["counter", { ...spec.maps.get("counter")!, pinning: "by_name" as const }]]) };
  const a = loadCollection(pinned, { pinRoot: pins.dir });
  t.after(() => a.close());
  a.programs.get("count_packets")!.testRun({ data: Buffer.alloc(64) });
  const b = loadCollection(pinned, { pinRoot: pins.dir });
  t.after(() => b.close());
  assert.equal(b.maps.get("counter")!.id, a.maps.get("counter")!.id);
  b.programs.get("count_packets")!.testRun({ data: Buffer.alloc(64) });
  assert.equal(BpfMap.openPinned(`${pins.dir}/counter`).lookup(zeroKey)!.readBigUInt64LE(0), 2n);
});

test("program pin, openPinned, fromId", (t) => {
  const pins = makePinDir();
  t.after(pins.cleanup);
  const coll = loadCollection(parseElf(readFileSync(counterObj)));
  t.after(() => coll.close());
  const prog = coll.programs.get("count_packets")!;
  prog.pin(`${pins.dir}/prog`);
  const p2 = BpfProgram.openPinned(`${pins.dir}/prog`);
  t.after(() => p2.close());
  assert.equal(p2.info().id, prog.info().id);
  assert.equal(p2.name, "count_packets");
  const p3 = BpfProgram.fromId(prog.info().id);
  t.after(() => p3.close());
  assert.equal(p3.info().tag, prog.info().tag);
});

test("probeFeatures on this kernel: tcx and batch ops present (6.18)", () => {
  const f = probeFeatures();
  assert.match(f.kernel, /^\d+\.\d+/);
  const [maj, min] = f.kernel.split(".").map(Number) as [number, number];
  assert.equal(f.tcx, maj > 6 || (maj === 6 && min >= 6));
  assert.equal(f.batchOps, maj > 5 || (maj === 5 && min >= 6));
  assert.equal(probeFeatures(), f, "cached");
});
