// SPDX-License-Identifier: Apache-2.0
// ELF/BTF reading of clang objects (pure), cross-checked with bpftool and llvm-objdump.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { ElfError, parseBtf, parseElf, parsePossibleCpus, patchInstructions, programKind } from "../../reconciler/ebpf-loader/index.js";

const counterPath = fileURLToPath(new URL("../../bpf/build/counter.o", import.meta.url));
const counter = readFileSync(counterPath);
const run = (cmd: string, args: string[]): string => execFileSync(cmd, args, { encoding: "utf8" });

test("counter.o: map, program, license, relocation agree with bpftool and llvm-objdump", () => {
  const spec = parseElf(counter);
  assert.equal(spec.license, "GPL");
  assert.deepEqual(spec.maps.get("counter"), {
    name: "counter",
    type: "array",
    keySize: 4,
    valueSize: 8,
    maxEntries: 1,
    flags: 0,
    pinning: "none",
  });
  // bpftool's view of the same BTF: the map struct has type, key, value, max_entries.
  const btfDump = run("bpftool", ["btf", "dump", "file", counterPath]);
  assert.match(btfDump, /VAR 'counter' type_id=(\d+), linkage=global/);
  assert.match(btfDump, /DATASEC '\.maps' size=0 vlen=1/);

  const prog = spec.programs.get("count_packets")!;
  assert.equal(prog.section, "tc");
  assert.equal(prog.type, "sched_cls");
  // llvm-objdump: instruction count and the R_BPF_64_64 relocation against `counter`.
  const dis = run("llvm-objdump-14", ["-d", "-r", counterPath]);
  const insnLines = dis.split("\n").filter((l) => /^\s+\d+:\s+([0-9a-f]{2}\s){8}/.test(l));
  const wide = insnLines.filter((l) => /^\s+\d+:\s+18 /.test(l)).length; // ld_imm64 takes two slots
  assert.equal(prog.insns.length / 8, insnLines.length + wide);
  const relo = /([0-9a-f]{16}):\s+R_BPF_64_64\s+counter/.exec(dis);
  assert.ok(relo, "objdump shows the map relocation");
  assert.deepEqual(prog.relocations, [{ insn: parseInt(relo[1]!, 16) / 8, kind: "map", map: "counter", offset: 0 }]);

  const patched = patchInstructions(prog, new Map([["counter", { fd: 77 }]]));
  const at = prog.relocations[0]!.insn * 8;
  assert.equal(patched[at], 0x18);
  assert.equal(patched[at + 1]! >> 4, 1, "src_reg = BPF_PSEUDO_MAP_FD");
  assert.equal(patched.readInt32LE(at + 4), 77);
  assert.equal(prog.insns.readInt32LE(at + 4), 0, "spec stays unpatched");
});

test("BTF layout of the map definition struct", () => {
  const o = counter;
  // Locate the .BTF section by hand so parseBtf is tested on its own.
  const shoff = Number(o.readBigUInt64LE(40));
  const shnum = o.readUInt16LE(60);
  const strSec = shoff + o.readUInt16LE(62) * 64;
  const strOff = Number(o.readBigUInt64LE(strSec + 24));
  let btfBuf: Buffer | undefined;
  for (let i = 0; i < shnum; i++) {
    const h = shoff + i * 64;
    const nameStart = strOff + o.readUInt32LE(h);
    if (o.toString("latin1", nameStart, o.indexOf(0, nameStart)) === ".BTF") {
      const off = Number(o.readBigUInt64LE(h + 24));
      btfBuf = o.subarray(off, off + Number(o.readBigUInt64LE(h + 32)));
    }
  }
  const btf = parseBtf(btfBuf!);
  const skb = btf.layout("__sk_buff");
  assert.deepEqual(skb.find((m) => m.name === "data"), { name: "data", offset: 76, size: 4 });
  assert.equal(btf.sizeOf(btf.typeByName("__sk_buff")!.id), 192);
});

test("section names map to program types", () => {
  assert.deepEqual(programKind("tcx/ingress"), { type: "sched_cls", attach: "tcx_ingress" });
  assert.deepEqual(programKind("tcx/egress"), { type: "sched_cls", attach: "tcx_egress" });
  assert.deepEqual(programKind("classifier"), { type: "sched_cls", attach: "tc" });
  assert.deepEqual(programKind("socket"), { type: "socket_filter", attach: "socket" });
  assert.equal(programKind("xdp"), undefined);
});

test("unsupported constructs are rejected with clear errors", (t) => {
  assert.throws(() => parseElf(Buffer.from("not an elf at all, really not, padding padding padding padding")), ElfError);
  const dir = mkdtempSync(join(tmpdir(), "ldr-elf-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const build = (name: string, src: string): Buffer => {
    writeFileSync(join(dir, `${name}.c`), src);
    run("clang-14", ["-O2", "-g", "-target", "bpf", "-I/usr/include/x86_64-linux-gnu", "-c", join(dir, `${name}.c`), "-o", join(dir, `${name}.o`)]);
    return readFileSync(join(dir, `${name}.o`));
  };
  const hdr = '#include <linux/bpf.h>\n#include <bpf/bpf_helpers.h>\nchar _l[] SEC("license") = "GPL";\n';
  const call = build(
    "call",
    hdr + '__attribute__((noinline)) int f(int x) { return x + 1; }\nSEC("tc") int p(struct __sk_buff *s) { return f(s->len) & 1; }\n',
  );
  assert.throws(() => parseElf(call), (e: unknown) => e instanceof ElfError && /bpf-to-bpf/.test(e.message));
  const xdp = build("xdp", hdr + 'SEC("xdp") int p(struct xdp_md *c) { return 2; }\n');
  assert.throws(() => parseElf(xdp), (e: unknown) => e instanceof ElfError && /unsupported program section/.test(e.message));
  const rodata = build(
    "rodata",
    hdr + 'const volatile int setting = 7;\nSEC("tc") int p(struct __sk_buff *s) { return setting; }\n',
  );
  const spec = parseElf(rodata);
  const ro = spec.maps.get(".rodata")!;
  assert.equal(ro.type, "array");
  assert.equal(ro.initial!.readInt32LE(0), 7);
  assert.deepEqual(spec.programs.get("p")!.relocations.map((r) => [r.kind, r.map, r.offset]), [["data", ".rodata", 0]]);
});

test("possible CPU list parsing", () => {
  assert.equal(parsePossibleCpus("0-1\n"), 2);
  assert.equal(parsePossibleCpus("0-3,5,7-8"), 9);
  assert.equal(parsePossibleCpus("0"), 1);
  assert.throws(() => parsePossibleCpus(""));
});
