// SPDX-License-Identifier: Apache-2.0
// BPF programs: load (with map fds patched in), verifier log on failure, info, pin, test run.
import * as sys from "./sys.js";
import { BpfError, Errno } from "./sys.js";
import type { BpfMap } from "./map.js";
import type { ProgramAttach, ProgramSpec, ProgramType } from "./elf.js";

/** The verifier rejected a program; `log` is its log (log_level 1). */
export class VerifierError extends BpfError {
  readonly log: string;
  constructor(op: string, errno: number, log: string) {
    super(op, "bpf(BPF_PROG_LOAD)", errno);
    this.name = "VerifierError";
    this.log = log;
    // Keep the message short but useful: the last lines of the log name the failing instruction.
    const tail = log.trimEnd().split("\n").slice(-3).join(" | ");
    if (tail) this.message += `: ${tail}`;
  }
}

export const progTypeNumbers: Record<ProgramType, number> = { socket_filter: 1, sched_cls: 3 };
const expectedAttach: Record<ProgramAttach, number> = {
  tc: 0,
  socket: 0,
  tcx_ingress: sys.AttachType.TCX_INGRESS,
  tcx_egress: sys.AttachType.TCX_EGRESS,
};

const BPF_PSEUDO_MAP_FD = 1;
const BPF_PSEUDO_MAP_VALUE = 2;
const LOG_START = 1 << 20;
const LOG_MAX = 1 << 28;
/** Loads interrupted by a signal (EAGAIN) are tried this many times in all, as libbpf does. */
const PROG_LOAD_ATTEMPTS = 5;

/** Copy of the instructions with each relocation pointing at the given maps (pure apart from reading fds). */
export function patchInstructions(spec: ProgramSpec, maps: ReadonlyMap<string, { fd: number }>): Buffer {
  const insns = Buffer.from(spec.insns);
  for (const r of spec.relocations) {
    const m = maps.get(r.map);
    if (!m) throw new TypeError(`load program ${spec.name}: map ${r.map} is not in the collection`);
    const at = r.insn * 8;
    const src = r.kind === "map" ? BPF_PSEUDO_MAP_FD : BPF_PSEUDO_MAP_VALUE;
    insns[at + 1] = (insns[at + 1]! & 0x0f) | (src << 4);
    insns.writeInt32LE(m.fd, at + 4);
    insns.writeInt32LE(r.kind === "data" ? r.offset : 0, at + 12);
  }
  return insns;
}

export interface ProgramInfo {
  id: number;
  /** 16 hex digits, as bpftool shows it. */
  tag: string;
  /** enum bpf_prog_type number. */
  type: number;
  name: string;
}

export class BpfProgram {
  readonly fd: number;
  readonly name: string;
  private closed = false;

  private constructor(fd: number, name: string) {
    this.fd = fd;
    this.name = name;
    sys.trackFd(this, fd);
  }

  /** Load one program; `maps` resolves its relocations. On rejection throws VerifierError with the log. */
  static load(spec: ProgramSpec, maps: ReadonlyMap<string, BpfMap> = new Map(), opts: { logLevel?: number } = {}): BpfProgram {
    const op = `load program ${spec.name}`;
    const insns = patchInstructions(spec, maps);
    const args: sys.ProgLoadArgs = {
      type: progTypeNumbers[spec.type],
      insns,
      license: spec.license,
      name: spec.name,
      expectedAttachType: expectedAttach[spec.attach],
      logLevel: 0,
      logBuf: null,
    };
    let logLevel = opts.logLevel ?? 0;
    let logSize = logLevel > 0 ? LOG_START : 0;
    let interrupted = 0;
    for (;;) {
      const logBuf = logSize > 0 ? Buffer.alloc(logSize) : null;
      const fd = sys.progLoadRaw({ ...args, logLevel, logBuf });
      if (fd >= 0) return new BpfProgram(fd, spec.name);
      const errno = -fd;
      // The verifier gives up with EAGAIN when a signal is pending for the thread (a profiler's
      // SIGPROF, a SIGHUP arriving mid-load): nothing is wrong with the program, load it again.
      if (errno === Errno.EAGAIN && ++interrupted < PROG_LOAD_ATTEMPTS) continue;
      if (logBuf && errno === Errno.ENOSPC && logSize < LOG_MAX) {
        logSize *= 4; // the log did not fit
        continue;
      }
      if (!logBuf) {
        // Retry once with a verifier log so the error carries it.
        logLevel = 1;
        logSize = LOG_START;
        continue;
      }
      const end = logBuf.indexOf(0);
      const log = logBuf.toString("utf8", 0, end < 0 ? logBuf.length : end);
      // No log means the verifier never ran (e.g. EPERM, bad attributes): a plain BpfError.
      if (log.trim() === "") throw new BpfError(op, "bpf(BPF_PROG_LOAD)", errno);
      throw new VerifierError(op, errno, log);
    }
  }

  static openPinned(path: string): BpfProgram {
    const op = `open pinned program ${path}`;
    return BpfProgram.fromFd(sys.objGet(path, op), op);
  }

  static fromId(id: number): BpfProgram {
    const op = `open program id ${id}`;
    return BpfProgram.fromFd(sys.progGetFdById(id, op), op);
  }

  private static fromFd(fd: number, op: string): BpfProgram {
    try {
      return new BpfProgram(fd, readInfo(fd, op).name);
    } catch (err) {
      sys.closeFd(fd);
      throw err;
    }
  }

  info(): ProgramInfo {
    return readInfo(this.fd, `info program ${this.name}`);
  }

  /** Ids of the maps the loaded program uses (bpf_prog_info.map_ids). */
  mapIds(): number[] {
    const op = `info program ${this.name}`;
    // struct bpf_prog_info: nr_map_ids @52 (u32), map_ids @56 (u64 pointer to u32[]).
    const count = readInfoBuffer(this.fd, op).readUInt32LE(52);
    if (count === 0) return [];
    const ids = Buffer.alloc(4 * count);
    const b = Buffer.alloc(232);
    b.writeUInt32LE(count, 52);
    b.writeBigUInt64LE(sys.addressOf(ids), 56);
    sys.objGetInfoByFd(this.fd, b, op);
    const got = Math.min(count, b.readUInt32LE(52));
    return Array.from({ length: got }, (_, i) => ids.readUInt32LE(4 * i));
  }

  pin(path: string): void {
    sys.objPin(this.fd, path, `pin program ${this.name} at ${path}`);
  }

  /** BPF_PROG_TEST_RUN. For sched_cls `data` is a packet starting with the Ethernet header (>= 14 bytes). */
  testRun(opts: {
    /** Input packet. */
    data: Buffer;
    /** Run this many times (duration is the mean). Default 1. */
    repeat?: number;
    /** Capacity for the output packet. Default data.length + 256. */
    dataOutSize?: number;
  }): { retval: number; data: Buffer; durationNs: number } {
    const out = Buffer.alloc(opts.dataOutSize ?? opts.data.length + 256);
    const r = sys.progTestRun(this.fd, opts.data, out, opts.repeat ?? 1, `test run program ${this.name}`);
    return { retval: r.retval, data: out.subarray(0, Math.min(r.dataSizeOut, out.length)), durationNs: r.durationNs };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    sys.untrackFd(this);
    sys.closeFd(this.fd);
  }
}

// struct bpf_prog_info: type @0, id @4, tag[8] @8, name[16] @64 (232 bytes in 6.x).
function readInfoBuffer(fd: number, op: string): Buffer {
  const b = Buffer.alloc(232);
  sys.objGetInfoByFd(fd, b, op);
  return b;
}

function readInfo(fd: number, op: string): ProgramInfo {
  const b = readInfoBuffer(fd, op);
  const nameEnd = b.indexOf(0, 64);
  return {
    type: b.readUInt32LE(0),
    id: b.readUInt32LE(4),
    tag: b.toString("hex", 8, 16),
    name: b.toString("latin1", 64, nameEnd < 0 || nameEnd > 80 ? 80 : nameEnd),
  };
}
