// SPDX-License-Identifier: Apache-2.0
// The only place that talks to bpf(2). One thin typed wrapper per command; callers never see raw
// pointers or bare errno numbers. Attribute layouts follow include/uapi/linux/bpf.h (union bpf_attr),
// offsets checked against the upstream header by compiling it (see the report of this folder).
//
// Performance notes (measured on this machine, kernel 6.18, koffi 3.3.4):
//  - a koffi call costs ~150-200 ns on top of the syscall (getpid() through koffi: ~200 ns);
//  - an array-map lookup through this layer costs ~1.1 us, most of it the syscall itself;
//  - koffi.address(buffer) costs ~50 ns; Node Buffers do not move once their address is taken.
// So every command owns one preallocated attribute buffer whose address is taken once, and element
// commands write the caller's key/value addresses into it: no Buffer allocation per call.
import koffi from "koffi";
import { readFileSync } from "node:fs";

/** bpf(2) command numbers (enum bpf_cmd). */
export const Cmd = {
  MAP_CREATE: 0,
  MAP_LOOKUP_ELEM: 1,
  MAP_UPDATE_ELEM: 2,
  MAP_DELETE_ELEM: 3,
  MAP_GET_NEXT_KEY: 4,
  PROG_LOAD: 5,
  OBJ_PIN: 6,
  OBJ_GET: 7,
  PROG_TEST_RUN: 10,
  PROG_GET_FD_BY_ID: 13,
  MAP_GET_FD_BY_ID: 14,
  OBJ_GET_INFO_BY_FD: 15,
  PROG_QUERY: 16,
  MAP_FREEZE: 22,
  MAP_LOOKUP_BATCH: 24,
  MAP_UPDATE_BATCH: 26,
  MAP_DELETE_BATCH: 27,
  LINK_CREATE: 28,
  LINK_UPDATE: 29,
  LINK_GET_FD_BY_ID: 30,
  LINK_DETACH: 34,
} as const;
export type CmdNumber = (typeof Cmd)[keyof typeof Cmd];

const cmdNames = new Map<number, string>(Object.entries(Cmd).map(([k, v]) => [v, `BPF_${k}`]));

/** Attach types used here (enum bpf_attach_type). */
export const AttachType = { TCX_INGRESS: 46, TCX_EGRESS: 47 } as const;

/** ENOTSUPP is kernel-internal (524) but leaks to user space, e.g. for map types without batch ops. */
export const ENOTSUPP = 524;

const errnoNames = new Map<number, string>();
for (const [name, num] of Object.entries(koffi.os.errno)) {
  if (!errnoNames.has(num)) errnoNames.set(num, name);
}
errnoNames.set(ENOTSUPP, "ENOTSUPP");
// Prefer the names the kernel sources use for aliased numbers.
errnoNames.set(koffi.os.errno.EOPNOTSUPP ?? 95, "EOPNOTSUPP");
errnoNames.set(koffi.os.errno.EAGAIN ?? 11, "EAGAIN");

export const Errno = {
  ENOENT: 2,
  E2BIG: 7,
  EBADF: 9,
  EAGAIN: 11,
  EACCES: 13,
  EEXIST: 17,
  EINVAL: 22,
  ENOSPC: 28,
  EOPNOTSUPP: 95,
  ENOTSUPP,
} as const;

export function errnoName(errno: number): string {
  return errnoNames.get(errno) ?? `errno ${errno}`;
}

/** A failed bpf(2) call: `update map ipcache: bpf(BPF_MAP_UPDATE_ELEM): E2BIG`. */
export class BpfError extends Error {
  /** What we were doing, e.g. "update map ipcache". */
  readonly op: string;
  /** The raw errno value. */
  readonly errno: number;
  /** The errno name, e.g. "EPERM". */
  readonly code: string;
  /** The bpf command name, e.g. "BPF_MAP_UPDATE_ELEM" (or the libc call for non-bpf syscalls). */
  readonly syscall: string;
  constructor(op: string, syscall: string, errno: number, options?: { cause?: unknown }) {
    super(`${op}: ${syscall}: ${errnoName(errno)}`, options);
    this.name = "BpfError";
    this.op = op;
    this.errno = errno;
    this.code = errnoName(errno);
    this.syscall = syscall;
  }
}

/**
 * A map element command met ENOENT: the key is not in the map (or, for an update with "exist",
 * not there to replace). Still a BpfError with code "ENOENT".
 */
export class KeyNotFoundError extends BpfError {
  constructor(op: string, syscall: string, options?: { cause?: unknown }) {
    super(op, syscall, Errno.ENOENT, options);
    this.name = "KeyNotFoundError";
  }
}

/** BPF_OBJ_GET met ENOENT: nothing is pinned at that path. Still a BpfError with code "ENOENT". */
export class PinNotFoundError extends BpfError {
  constructor(op: string, syscall: string, options?: { cause?: unknown }) {
    super(op, syscall, Errno.ENOENT, options);
    this.name = "PinNotFoundError";
  }
}

/** This machine's architecture has no known bpf(2) syscall number. */
export class UnsupportedArchitectureError extends Error {
  readonly arch: string;
  constructor(arch: string) {
    super(`ebpf-loader: unsupported architecture ${arch}`);
    this.name = "UnsupportedArchitectureError";
    this.arch = arch;
  }
}

/** A kernel CPU list (`/sys/devices/system/cpu/possible`) that does not parse. */
export class CpuListError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CpuListError";
  }
}

/** Commands whose ENOENT means "no such key" (as cilium/ebpf's ErrKeyNotExist). */
const keyCommands = new Set<string>([
  "BPF_MAP_LOOKUP_ELEM",
  "BPF_MAP_UPDATE_ELEM",
  "BPF_MAP_DELETE_ELEM",
  "BPF_MAP_GET_NEXT_KEY",
  "BPF_MAP_UPDATE_BATCH",
  "BPF_MAP_DELETE_BATCH",
]);

/** The error for a failed bpf command: KeyNotFoundError or PinNotFoundError for their ENOENT, else BpfError. */
export function bpfError(op: string, command: string, errno: number): BpfError {
  const syscall = `bpf(${command})`;
  if (errno === Errno.ENOENT && keyCommands.has(command)) return new KeyNotFoundError(op, syscall);
  if (errno === Errno.ENOENT && command === "BPF_OBJ_GET") return new PinNotFoundError(op, syscall);
  return new BpfError(op, syscall, errno);
}

// ---- libc bindings -------------------------------------------------------------------------

function sysBpfNumber(): number {
  if (process.arch === "x64") return 321;
  if (process.arch === "arm64") return 280;
  throw new UnsupportedArchitectureError(process.arch);
}
const SYS_bpf = sysBpfNumber();

const libc = koffi.load("libc.so.6");
// syscall(2) is variadic; all our arguments are integers passed in registers, so a fixed prototype
// is ABI-compatible on x86_64/arm64 and much cheaper than koffi's variadic calling. Declare it ONCE:
// declaring `syscall` again with a different prototype made node segfault at exit (koffi 3.3.4).
const rawSyscall = libc.func("long syscall(long nr, long cmd, uint64_t attr, long size)") as unknown as (
  nr: number,
  cmd: number,
  attr: bigint,
  size: number,
) => number;
const rawClose = libc.func("int close(int fd)") as unknown as (fd: number) => number;
const rawSetns = libc.func("int setns(int fd, int nstype)") as unknown as (fd: number, nstype: number) => number;

/** Address of a Buffer's bytes (0 for null). The Buffer must stay referenced during the call. */
export function addressOf(buf: Buffer | null | undefined): bigint {
  if (!buf || buf.length === 0) return 0n;
  return koffi.address(buf);
}

/** A preallocated attribute buffer whose address is computed once. */
class Attr {
  readonly buf: Buffer;
  readonly addr: bigint;
  constructor(readonly size: number) {
    this.buf = Buffer.alloc(size);
    this.addr = koffi.address(this.buf);
  }
  /** Zero the buffer: the kernel rejects non-zero bytes past the fields a command uses. */
  clear(): Buffer {
    this.buf.fill(0);
    return this.buf;
  }
}

/** Run bpf(cmd); returns the result or -errno. */
function bpfRaw(cmd: CmdNumber, attr: Attr): number {
  const r = rawSyscall(SYS_bpf, cmd, attr.addr, attr.size);
  return r < 0 ? -koffi.errno() : r;
}

/** Run bpf(cmd); throws BpfError naming `op` on failure. */
function bpf(cmd: CmdNumber, attr: Attr, op: string): number {
  const r = rawSyscall(SYS_bpf, cmd, attr.addr, attr.size);
  if (r < 0) throw bpfError(op, cmdNames.get(cmd)!, koffi.errno());
  return r;
}

export function closeFd(fd: number): void {
  if (fd >= 0) rawClose(fd);
}

/** setns(2) on the calling thread (used by tests to enter a network namespace). */
export function setns(fd: number, nstype: number, op: string): void {
  if (rawSetns(fd, nstype) < 0) throw new BpfError(op, "setns", koffi.errno());
}

/** NUL-terminated copy of a string, for pathname / license pointers. */
export function cString(s: string): Buffer {
  return Buffer.from(`${s}\0`, "utf8");
}

// ---- fd safety net -------------------------------------------------------------------------

// Objects close their fds explicitly; this only catches the ones that were dropped unclosed.
const fdRegistry = new FinalizationRegistry<number>((fd) => closeFd(fd));
export function trackFd(owner: object, fd: number): void {
  fdRegistry.register(owner, fd, owner);
}
export function untrackFd(owner: object): void {
  fdRegistry.unregister(owner);
}

// ---- maps ----------------------------------------------------------------------------------

const createAttr = new Attr(72); // up to map_extra (64..72)
export interface MapCreateArgs {
  /** enum bpf_map_type number. */
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  /** BPF_F_* map flags. */
  flags: number;
  /** Inner map template fd for *_of_maps, else 0. */
  innerMapFd: number;
  /** Object name (truncated to 15 bytes). */
  name: string;
}
export function mapCreate(a: MapCreateArgs, op: string): number {
  const b = createAttr.clear();
  b.writeUInt32LE(a.type, 0); // map_type
  b.writeUInt32LE(a.keySize, 4); // key_size
  b.writeUInt32LE(a.valueSize, 8); // value_size
  b.writeUInt32LE(a.maxEntries, 12); // max_entries
  b.writeUInt32LE(a.flags >>> 0, 16); // map_flags
  b.writeUInt32LE(a.innerMapFd, 20); // inner_map_fd
  writeObjName(b, 28, a.name); // map_name[16]
  return bpf(Cmd.MAP_CREATE, createAttr, op);
}

/** Kernel object names: at most 15 bytes of [A-Za-z0-9_.], NUL-terminated. */
export function objName(name: string): string {
  return name.replace(/[^A-Za-z0-9_.]/g, "_").slice(0, 15);
}
function writeObjName(b: Buffer, off: number, name: string): void {
  b.write(objName(name), off, 15, "latin1");
}

// MAP_*_ELEM and GET_NEXT_KEY share { map_fd u32 @0, key u64 @8, value|next_key u64 @16, flags u64 @24 }.
const elemAttr = new Attr(32);
let lastKey: Buffer | null = null;
let lastKeyAddr = 0n;
let lastVal: Buffer | null = null;
let lastValAddr = 0n;
// Callers usually reuse the same scratch buffers; remembering the last address skips koffi.address.
function keyAddr(k: Buffer): bigint {
  if (k !== lastKey) {
    lastKey = k;
    lastKeyAddr = addressOf(k);
  }
  return lastKeyAddr;
}
function valAddr(v: Buffer): bigint {
  if (v !== lastVal) {
    lastVal = v;
    lastValAddr = addressOf(v);
  }
  return lastValAddr;
}
function fillElem(fd: number, key: Buffer | null, value: Buffer | null, flags: number): void {
  const b = elemAttr.buf;
  b.writeUInt32LE(fd, 0);
  b.writeUInt32LE(0, 4);
  b.writeBigUInt64LE(key ? keyAddr(key) : 0n, 8);
  b.writeBigUInt64LE(value ? valAddr(value) : 0n, 16);
  b.writeUInt32LE(flags, 24);
  b.writeUInt32LE(0, 28);
}

/** Returns false when the key is missing (ENOENT). */
export function mapLookupElem(fd: number, key: Buffer, value: Buffer, op: string): boolean {
  fillElem(fd, key, value, 0);
  const r = bpfRaw(Cmd.MAP_LOOKUP_ELEM, elemAttr);
  if (r === -Errno.ENOENT) return false;
  if (r < 0) throw bpfError(op, "BPF_MAP_LOOKUP_ELEM", -r);
  return true;
}

export function mapUpdateElem(fd: number, key: Buffer, value: Buffer, flags: number, op: string): void {
  fillElem(fd, key, value, flags);
  bpf(Cmd.MAP_UPDATE_ELEM, elemAttr, op);
}

/** Returns false when the key is missing (ENOENT). */
export function mapDeleteElem(fd: number, key: Buffer, op: string): boolean {
  fillElem(fd, key, null, 0);
  const r = bpfRaw(Cmd.MAP_DELETE_ELEM, elemAttr);
  if (r === -Errno.ENOENT) return false;
  if (r < 0) throw bpfError(op, "BPF_MAP_DELETE_ELEM", -r);
  return true;
}

/** Writes the key after `key` (or the first key for null) into nextKey; false at the end. */
export function mapGetNextKey(fd: number, key: Buffer | null, nextKey: Buffer, op: string): boolean {
  fillElem(fd, key, nextKey, 0);
  const r = bpfRaw(Cmd.MAP_GET_NEXT_KEY, elemAttr);
  if (r === -Errno.ENOENT) return false;
  if (r < 0) throw bpfError(op, "BPF_MAP_GET_NEXT_KEY", -r);
  return true;
}

export function mapFreeze(fd: number, op: string): void {
  const b = elemAttr.clear();
  b.writeUInt32LE(fd, 0);
  bpf(Cmd.MAP_FREEZE, elemAttr, op);
}

// MAP_*_BATCH: { in_batch @0, out_batch @8, keys @16, values @24, count u32 @32, map_fd u32 @36,
// elem_flags u64 @40, flags u64 @48 }.
const batchAttr = new Attr(56);
export interface BatchResult {
  /** Elements processed (the kernel writes it back even on failure). */
  count: number;
  /** 0 on success, else the errno. */
  errno: number;
}
function batchCall(
  cmd: CmdNumber,
  fd: number,
  inBatch: Buffer | null,
  outBatch: Buffer | null,
  keys: Buffer | null,
  values: Buffer | null,
  count: number,
  elemFlags: number,
): BatchResult {
  const b = batchAttr.buf;
  b.writeBigUInt64LE(addressOf(inBatch), 0);
  b.writeBigUInt64LE(addressOf(outBatch), 8);
  b.writeBigUInt64LE(addressOf(keys), 16);
  b.writeBigUInt64LE(addressOf(values), 24);
  b.writeUInt32LE(count, 32);
  b.writeUInt32LE(fd, 36);
  b.writeBigUInt64LE(BigInt(elemFlags), 40);
  b.writeBigUInt64LE(0n, 48);
  const r = bpfRaw(cmd, batchAttr);
  return { count: b.readUInt32LE(32), errno: r < 0 ? -r : 0 };
}

/** BPF_MAP_UPDATE_BATCH over packed keys/values; reports errno instead of throwing (callers fall back). */
export function mapUpdateBatch(fd: number, keys: Buffer, values: Buffer, count: number, elemFlags: number): BatchResult {
  return batchCall(Cmd.MAP_UPDATE_BATCH, fd, null, null, keys, values, count, elemFlags);
}
export function mapDeleteBatch(fd: number, keys: Buffer, count: number): BatchResult {
  return batchCall(Cmd.MAP_DELETE_BATCH, fd, null, null, keys, null, count, 0);
}
/** One BPF_MAP_LOOKUP_BATCH step; ENOENT in the result means "no more elements". */
export function mapLookupBatch(
  fd: number,
  inBatch: Buffer | null,
  outBatch: Buffer,
  keys: Buffer,
  values: Buffer,
  count: number,
): BatchResult {
  return batchCall(Cmd.MAP_LOOKUP_BATCH, fd, inBatch, outBatch, keys, values, count, 0);
}

export function batchError(op: string, cmd: "UPDATE" | "LOOKUP" | "DELETE", errno: number): BpfError {
  return bpfError(op, `BPF_MAP_${cmd}_BATCH`, errno);
}

// ---- programs ------------------------------------------------------------------------------

const progLoadAttr = new Attr(148); // up to log_true_size (140..144) + fd_array_cnt
export interface ProgLoadArgs {
  /** enum bpf_prog_type number. */
  type: number;
  /** Instructions, 8 bytes each, already patched with map fds. */
  insns: Buffer;
  license: string;
  name: string;
  /** enum bpf_attach_type, 0 when none. */
  expectedAttachType: number;
  /** 0: no log; 1/2: verifier log into logBuf. */
  logLevel: number;
  logBuf: Buffer | null;
}
/** Returns fd or -errno (the caller decides whether to retry with a log). */
export function progLoadRaw(a: ProgLoadArgs): number {
  const b = progLoadAttr.clear();
  const license = cString(a.license);
  b.writeUInt32LE(a.type, 0); // prog_type
  b.writeUInt32LE(a.insns.length / 8, 4); // insn_cnt
  b.writeBigUInt64LE(addressOf(a.insns), 8); // insns
  b.writeBigUInt64LE(addressOf(license), 16); // license
  b.writeUInt32LE(a.logLevel, 24); // log_level
  b.writeUInt32LE(a.logBuf ? a.logBuf.length : 0, 28); // log_size
  b.writeBigUInt64LE(addressOf(a.logBuf), 32); // log_buf
  b.writeUInt32LE(0, 40); // kern_version: ignored for these program types
  writeObjName(b, 48, a.name); // prog_name[16]
  b.writeUInt32LE(a.expectedAttachType, 68); // expected_attach_type
  const r = bpfRaw(Cmd.PROG_LOAD, progLoadAttr);
  // Keep `license` alive until after the call (it is referenced only through its address).
  void license.length;
  return r;
}

const testRunAttr = new Attr(80);
export interface TestRunResult {
  retval: number;
  dataSizeOut: number;
  durationNs: number;
}
export function progTestRun(fd: number, dataIn: Buffer, dataOut: Buffer, repeat: number, op: string): TestRunResult {
  const b = testRunAttr.clear();
  b.writeUInt32LE(fd, 0); // prog_fd
  b.writeUInt32LE(dataIn.length, 8); // data_size_in
  b.writeUInt32LE(dataOut.length, 12); // data_size_out (capacity in, size out)
  b.writeBigUInt64LE(addressOf(dataIn), 16); // data_in
  b.writeBigUInt64LE(addressOf(dataOut), 24); // data_out
  b.writeUInt32LE(repeat, 32); // repeat
  bpf(Cmd.PROG_TEST_RUN, testRunAttr, op);
  return { retval: b.readUInt32LE(4), dataSizeOut: b.readUInt32LE(12), durationNs: b.readUInt32LE(36) };
}

// ---- objects: pin, get, info, ids -----------------------------------------------------------

const objAttr = new Attr(24); // pathname @0, bpf_fd @8, file_flags @12, path_fd @16
export function objPin(fd: number, path: string, op: string): void {
  const b = objAttr.clear();
  const p = cString(path);
  b.writeBigUInt64LE(addressOf(p), 0);
  b.writeUInt32LE(fd, 8);
  bpf(Cmd.OBJ_PIN, objAttr, op);
  void p.length;
}
export function objGet(path: string, op: string): number {
  const b = objAttr.clear();
  const p = cString(path);
  b.writeBigUInt64LE(addressOf(p), 0);
  const fd = bpf(Cmd.OBJ_GET, objAttr, op);
  void p.length;
  return fd;
}

const infoAttr = new Attr(16); // info.bpf_fd @0, info.info_len @4, info.info @8
/** Fills `info` (struct bpf_{map,prog,link}_info) for fd; returns the length the kernel wrote. */
export function objGetInfoByFd(fd: number, info: Buffer, op: string): number {
  const b = infoAttr.clear();
  b.writeUInt32LE(fd, 0);
  b.writeUInt32LE(info.length, 4);
  b.writeBigUInt64LE(addressOf(info), 8);
  bpf(Cmd.OBJ_GET_INFO_BY_FD, infoAttr, op);
  return b.readUInt32LE(4);
}

const idAttr = new Attr(12); // {map,prog,link}_id @0, next_id @4, open_flags @8
function getFdById(cmd: CmdNumber, id: number, op: string): number {
  const b = idAttr.clear();
  b.writeUInt32LE(id, 0);
  return bpf(cmd, idAttr, op);
}
export const mapGetFdById = (id: number, op: string): number => getFdById(Cmd.MAP_GET_FD_BY_ID, id, op);
export const progGetFdById = (id: number, op: string): number => getFdById(Cmd.PROG_GET_FD_BY_ID, id, op);
export const linkGetFdById = (id: number, op: string): number => getFdById(Cmd.LINK_GET_FD_BY_ID, id, op);

// ---- links ---------------------------------------------------------------------------------

// link_create: prog_fd @0, target_ifindex @4, attach_type @8, flags @12, tcx.relative_fd @16,
// tcx.expected_revision @24.
const linkCreateAttr = new Attr(32);
/** bpf_mprog attach flags (tcx): place the new program before / after the relative one, or, with
 *  no relative fd or id, first / last on the hook. */
export const BPF_F_BEFORE = 1 << 3;
export const BPF_F_AFTER = 1 << 4;

// link_create: prog_fd @0, target_ifindex @4, attach_type @8, flags @12, tcx.relative_fd @16,
// tcx.expected_revision @24.
export function linkCreateTcx(progFd: number, ifindex: number, attachType: number, op: string, flags = 0): number {
  const b = linkCreateAttr.clear();
  b.writeUInt32LE(progFd, 0);
  b.writeUInt32LE(ifindex, 4);
  b.writeUInt32LE(attachType, 8);
  b.writeUInt32LE(flags, 12);
  return bpf(Cmd.LINK_CREATE, linkCreateAttr, op);
}

const linkUpdateAttr = new Attr(16); // link_fd @0, new_prog_fd @4, flags @8, old_prog_fd @12
export function linkUpdate(linkFd: number, newProgFd: number, op: string): void {
  const b = linkUpdateAttr.clear();
  b.writeUInt32LE(linkFd, 0);
  b.writeUInt32LE(newProgFd, 4);
  bpf(Cmd.LINK_UPDATE, linkUpdateAttr, op);
}

const linkDetachAttr = new Attr(4); // link_detach.link_fd @0
export function linkDetach(linkFd: number, op: string): void {
  linkDetachAttr.clear().writeUInt32LE(linkFd, 0);
  bpf(Cmd.LINK_DETACH, linkDetachAttr, op);
}

// query: target_ifindex @0, attach_type @4, query_flags @8, attach_flags @12, prog_ids @16,
// prog_cnt/count @24, prog_attach_flags @32, link_ids @40, link_attach_flags @48, revision @56.
const queryAttr = new Attr(64);
export interface QueryResult {
  /** Number of attached programs (also when ENOSPC said the buffers were too small). */
  count: number;
  revision: bigint;
  /** 0 on success, else errno (ENOSPC: grow the buffers and retry). */
  errno: number;
}
export function progQueryRaw(ifindex: number, attachType: number, progIds: Buffer, linkIds: Buffer): QueryResult {
  const b = queryAttr.clear();
  b.writeUInt32LE(ifindex, 0);
  b.writeUInt32LE(attachType, 4);
  b.writeBigUInt64LE(addressOf(progIds), 16);
  b.writeUInt32LE(progIds.length / 4, 24);
  b.writeBigUInt64LE(addressOf(linkIds), 40);
  const r = bpfRaw(Cmd.PROG_QUERY, queryAttr);
  return { count: b.readUInt32LE(24), revision: b.readBigUInt64LE(56), errno: r < 0 ? -r : 0 };
}

// ---- memory maps and epoll (ring buffers) ------------------------------------------------

export const PROT_READ = 1;
export const PROT_WRITE = 2;
const MAP_SHARED = 1;
const MAP_FAILED = 0xffffffffffffffffn;
const EPOLL_CLOEXEC = 0o2000000;
const EPOLL_CTL_ADD = 1;
const EPOLLIN = 1;
const SC_PAGESIZE = 30;

const rawMmap = libc.func("void *mmap(void *addr, size_t length, int prot, int flags, int fd, int64_t offset)") as unknown as (
  addr: null,
  length: number,
  prot: number,
  flags: number,
  fd: number,
  offset: number,
) => unknown;
const rawMunmap = libc.func("int munmap(void *addr, size_t length)") as unknown as (addr: unknown, length: number) => number;
const rawSysconf = libc.func("long sysconf(int name)") as unknown as (name: number) => number;
const rawEpollCreate1 = libc.func("int epoll_create1(int flags)") as unknown as (flags: number) => number;
const rawEpollCtl = libc.func("int epoll_ctl(int epfd, int op, int fd, void *event)") as unknown as (
  epfd: number,
  op: number,
  fd: number,
  event: Buffer,
) => number;
const rawEpollWait = libc.func("int epoll_wait(int epfd, void *events, int maxevents, int timeout)") as unknown as {
  async: (epfd: number, events: Buffer, maxevents: number, timeout: number, cb: (err: unknown, res: number) => void) => void;
};

/** A shared mapping of a BPF map's memory; `memory` views it without copying (valid until unmapped). */
export interface Mapping {
  readonly ptr: unknown;
  readonly length: number;
  readonly memory: ArrayBuffer;
}

/** mmap(2) MAP_SHARED of `length` bytes of fd at `offset`. */
export function mmapShared(fd: number, length: number, prot: number, offset: number, op: string): Mapping {
  const ptr = rawMmap(null, length, prot, MAP_SHARED, fd, offset);
  if (ptr === null || koffi.address(ptr) === MAP_FAILED) throw new BpfError(op, "mmap", koffi.errno());
  return { ptr, length, memory: koffi.view(ptr, length) };
}

export function munmap(m: Mapping): void {
  rawMunmap(m.ptr, m.length);
}

let pageSize: number | undefined;
export function systemPageSize(): number {
  return (pageSize ??= rawSysconf(SC_PAGESIZE));
}

/** A close-on-exec epoll instance watching fd for EPOLLIN. */
export function epollFor(fd: number, op: string): number {
  const epfd = rawEpollCreate1(EPOLL_CLOEXEC);
  if (epfd < 0) throw new BpfError(op, "epoll_create1", koffi.errno());
  const ev = Buffer.alloc(16); // struct epoll_event: u32 events, u64 data (12 bytes packed on x86_64)
  ev.writeUInt32LE(EPOLLIN, 0);
  if (rawEpollCtl(epfd, EPOLL_CTL_ADD, fd, ev) < 0) {
    const errno = koffi.errno();
    closeFd(epfd);
    throw new BpfError(op, "epoll_ctl", errno);
  }
  return epfd;
}

/** epoll_wait(2) on a koffi worker thread: resolves with the number of ready fds (0 on timeout). */
export function epollWaitAsync(epfd: number, events: Buffer, timeoutMs: number, op: string): Promise<number> {
  return new Promise((resolve, reject) => {
    rawEpollWait.async(epfd, events, Math.floor(events.length / 16), timeoutMs, (err, res) => {
      if (err) reject(err);
      // errno is per thread and the call ran on another one, so the failure has no errno here.
      else if (res < 0) reject(new Error(`${op}: epoll_wait failed`));
      else resolve(res);
    });
  });
}

// ---- system facts --------------------------------------------------------------------------

let possibleCpus: number | undefined;
/** Number of possible CPUs (highest id in /sys/devices/system/cpu/possible + 1), as the kernel sizes per-CPU values. */
export function numPossibleCpus(): number {
  if (possibleCpus === undefined) {
    possibleCpus = parsePossibleCpus(readFileSync("/sys/devices/system/cpu/possible", "utf8"));
  }
  return possibleCpus;
}
/** "0-3,5,7-8" → 9 (pure). */
export function parsePossibleCpus(text: string): number {
  let max = -1;
  for (const part of text.trim().split(",")) {
    if (part === "") continue;
    const [lo, hi] = part.split("-");
    const n = Number(hi ?? lo);
    if (!Number.isInteger(n)) throw new CpuListError(`parse cpu list ${JSON.stringify(text)}: bad part ${part}`);
    max = Math.max(max, n);
  }
  if (max < 0) throw new CpuListError(`parse cpu list ${JSON.stringify(text)}: empty`);
  return max + 1;
}
