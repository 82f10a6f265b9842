// Test helpers for the netlink kernel tests: throwaway namespaces made with `ip netns add` (cleanup
// registered first), `ip`/`tc` JSON cross-checks, and a trivial BPF program loaded with a raw
// BPF_PROG_LOAD through koffi (no dependency on the project's loader or on clang).
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import type { TestContext } from "node:test";
import koffi from "koffi";

/** A unique name "nl-<topic>-<hex>" (<= 15 chars when topic is short). */
export function uniqueName(topic: string): string {
  return `nl-${topic}-${randomBytes(3).toString("hex")}`;
}

/** Create a namespace with `ip netns add`; it is deleted after the test even on failure. */
export function makeNetns(t: TestContext, topic: string): string {
  const name = uniqueName(topic);
  t.after(() => {
    try { execFileSync("ip", ["netns", "delete", name], { stdio: "ignore" }); } catch { /* already gone */ }
  });
  execFileSync("ip", ["netns", "add", name]);
  return name;
}

/** Run a command and return stdout. */
export function run(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: "utf8" });
}

/** `ip -j -n NS ...` parsed. */
export function ipJson<T = unknown>(netns: string, args: string[]): T {
  const out = run("ip", ["-j", "-n", netns, ...args]).trim();
  return (out === "" ? [] : JSON.parse(out)) as T;
}

/** `tc -j -n NS ...` parsed. */
export function tcJson<T = unknown>(netns: string, args: string[]): T {
  const out = run("tc", ["-j", "-n", netns, ...args]).trim();
  return (out === "" ? [] : JSON.parse(out)) as T;
}

const libc = koffi.load("libc.so.6");
const BpfProgLoadAttr = koffi.struct("nl_test_bpf_prog_load_attr", {
  prog_type: "uint32",
  insn_cnt: "uint32",
  insns: "void *",
  license: "const char *",
  log_level: "uint32",
  log_size: "uint32",
  log_buf: "void *",
  kern_version: "uint32",
  prog_flags: "uint32",
  prog_name: koffi.array("uint8", 16),
  rest: koffi.array("uint8", 80),
});
const sysBpf = libc.func("long syscall(long nr, long cmd, nl_test_bpf_prog_load_attr *attr, unsigned long size)");
const closeFd = libc.func("int close(int fd)");
const SYS_bpf = 321; // x86_64
const BPF_PROG_LOAD = 5;
const BPF_PROG_TYPE_SCHED_CLS = 3;

/**
 * Load "r0 = retval; exit" as a SCHED_CLS program named `name`; returns its fd. Closed after the
 * test (a tc filter holds its own reference to the program).
 */
export function loadTrivialClassifier(t: TestContext, name: string, retval = 0): number {
  if (process.arch !== "x64") throw new Error("loadTrivialClassifier: only x86_64 syscall numbers are wired");
  const insns = Buffer.alloc(16);
  insns.writeUInt8(0xb7, 0); // BPF_ALU64 | BPF_MOV | BPF_K, dst r0
  insns.writeInt32LE(retval, 4);
  insns.writeUInt8(0x95, 8); // BPF_JMP | BPF_EXIT
  const prog_name = Array.from({ length: 16 }, (_, i) => (i < Math.min(name.length, 15) ? name.charCodeAt(i) : 0));
  const attr = {
    prog_type: BPF_PROG_TYPE_SCHED_CLS, insn_cnt: 2, insns, license: "GPL", log_level: 0, log_size: 0,
    log_buf: null, kern_version: 0, prog_flags: 0, prog_name, rest: new Array(80).fill(0),
  };
  const fd = sysBpf(SYS_bpf, BPF_PROG_LOAD, attr, koffi.sizeof(BpfProgLoadAttr)) as number;
  if (fd < 0) throw new Error(`BPF_PROG_LOAD: errno ${koffi.errno()}`);
  t.after(() => closeFd(fd));
  return fd;
}
