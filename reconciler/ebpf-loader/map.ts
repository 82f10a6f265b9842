// SPDX-License-Identifier: Apache-2.0
// BPF maps: create, pin/open, element and batch operations, iteration, map-of-maps.
import * as sys from "./sys.js";
import { Errno, KeyNotFoundError } from "./sys.js";

export type MapType =
  | "hash"
  | "array"
  | "lru_hash"
  | "lpm_trie"
  | "percpu_hash"
  | "percpu_array"
  | "hash_of_maps"
  | "array_of_maps"
  | "prog_array"
  | "ringbuf";

/** What a map should be. Also what an ELF `.maps` definition describes. */
export interface MapSpec {
  /** Map name (the kernel keeps the first 15 bytes). */
  name: string;
  type: MapType;
  /** Key size in bytes. */
  keySize: number;
  /** Value size in bytes; for per-CPU maps the size of ONE CPU's value. */
  valueSize: number;
  maxEntries: number;
  /** BPF_F_* flags; lpm_trie always gets BPF_F_NO_PREALLOC (the kernel requires it). */
  flags?: number;
  /** Inner map template for hash_of_maps / array_of_maps. */
  innerMap?: MapSpec;
  /** "by_name": loadCollection pins it as <pinRoot>/<name> and reuses an existing pin. */
  pinning?: "none" | "by_name";
  /** Initial contents written at key 0 after creation (data sections .rodata/.data/.bss). */
  initial?: Buffer;
  /** Freeze after writing `initial` (read-only for user space; .rodata). */
  freeze?: boolean;
}

/** enum bpf_map_type numbers. */
export const mapTypeNumbers: Record<MapType, number> = {
  hash: 1,
  array: 2,
  prog_array: 3,
  percpu_hash: 5,
  percpu_array: 6,
  lru_hash: 9,
  lpm_trie: 11,
  array_of_maps: 12,
  hash_of_maps: 13,
  ringbuf: 27,
};
const mapTypeByNumber = new Map<number, MapType>(
  Object.entries(mapTypeNumbers).map(([k, v]) => [v, k as MapType]),
);
export function mapTypeFromNumber(n: number): MapType | undefined {
  return mapTypeByNumber.get(n);
}

export const BPF_F_NO_PREALLOC = 1;
export const BPF_F_RDONLY_PROG = 1 << 7;

/** Flags as the kernel will report them for this spec. */
export function effectiveFlags(spec: Pick<MapSpec, "type" | "flags">): number {
  const flags = spec.flags ?? 0;
  return spec.type === "lpm_trie" ? flags | BPF_F_NO_PREALLOC : flags;
}

export function isPerCpu(type: MapType): boolean {
  return type === "percpu_hash" || type === "percpu_array";
}
export function isMapOfMaps(type: MapType): boolean {
  return type === "hash_of_maps" || type === "array_of_maps";
}

/** A pinned map differs from what the caller expects. */
export class MapMismatchError extends Error {
  readonly path: string;
  readonly field: string;
  readonly expected: unknown;
  readonly got: unknown;
  constructor(path: string, field: string, expected: unknown, got: unknown) {
    super(`open pinned map ${path}: ${field} mismatch: expected ${String(expected)}, got ${String(got)}`);
    this.name = "MapMismatchError";
    this.path = path;
    this.field = field;
    this.expected = expected;
    this.got = got;
  }
}

/** An existing map (pinned, or found by id) is of a type this loader does not handle. */
export class UnsupportedMapTypeError extends Error {
  /** The enum bpf_map_type number the kernel reported. */
  readonly type: number;
  constructor(op: string, type: number) {
    super(`${op}: unsupported map type ${type}`);
    this.name = "UnsupportedMapTypeError";
    this.type = type;
  }
}

interface MapInfo {
  type: number;
  id: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
  name: string;
}

// struct bpf_map_info: type @0, id @4, key_size @8, value_size @12, max_entries @16, map_flags @20,
// name[16] @24 (104 bytes in 6.x; older kernels fill less, which is fine).
function mapInfo(fd: number, op: string): MapInfo {
  const b = Buffer.alloc(104);
  sys.objGetInfoByFd(fd, b, op);
  const nameEnd = b.indexOf(0, 24);
  return {
    type: b.readUInt32LE(0),
    id: b.readUInt32LE(4),
    keySize: b.readUInt32LE(8),
    valueSize: b.readUInt32LE(12),
    maxEntries: b.readUInt32LE(16),
    flags: b.readUInt32LE(20),
    name: b.toString("latin1", 24, nameEnd < 0 || nameEnd > 40 ? 40 : nameEnd),
  };
}

const updateFlags = { any: 0, noexist: 1, exist: 2 } as const;

/** Reasons to give up on batch commands for one map and use single-element commands instead. */
// ENOTSUPP comes before the kernel touches `count` (it still holds our input), so it means "nothing
// done"; EINVAL only counts when nothing was processed. Measured on 6.18: hash, lru_hash, lpm_trie,
// percpu_hash support update/lookup/delete batch; array and percpu_array support update/lookup and
// answer ENOTSUPP to delete batch (arrays cannot delete elements at all).
function batchUnsupported(errno: number, processed: number): boolean {
  if (errno === Errno.ENOTSUPP || errno === Errno.EOPNOTSUPP) return true;
  return errno === Errno.EINVAL && processed === 0;
}

/** Buffers lookupBatch() may read into and reuse (see there); start with empty ones. */
export interface BatchScratch {
  keys: Buffer;
  values: Buffer;
}

export class BpfMap {
  readonly fd: number;
  readonly spec: MapSpec;
  readonly id: number;
  /** Bytes of one value buffer as user space sees it (per-CPU: roundup8(valueSize) * possible CPUs). */
  readonly valueBytes: number;
  private closed = false;
  /** Set once a batch command failed as unsupported for this map: use single commands from then on. */
  private noBatch = false;
  private scratchValue: Buffer | undefined;

  private constructor(fd: number, spec: MapSpec, id: number) {
    this.fd = fd;
    this.spec = spec;
    this.id = id;
    this.valueBytes = isPerCpu(spec.type) ? Math.ceil(spec.valueSize / 8) * 8 * sys.numPossibleCpus() : spec.valueSize;
    sys.trackFd(this, fd);
  }

  private op(what: string): string {
    return `${what} map ${this.spec.name}`;
  }

  /** Create a map. `inner` is the template for *_of_maps; without it one is made from spec.innerMap. */
  static create(spec: MapSpec, inner?: BpfMap): BpfMap {
    const op = `create map ${spec.name}`;
    let template = inner;
    let ownTemplate = false;
    if (isMapOfMaps(spec.type) && !template) {
      if (!spec.innerMap) throw new TypeError(`${op}: ${spec.type} needs an inner map template (innerMap or inner)`);
      template = BpfMap.create(spec.innerMap);
      ownTemplate = true;
    }
    const normalized: MapSpec = { ...spec, flags: effectiveFlags(spec) };
    if (isMapOfMaps(spec.type) && template && !normalized.innerMap) normalized.innerMap = template.spec;
    try {
      const fd = sys.mapCreate(
        {
          type: mapTypeNumbers[spec.type],
          keySize: spec.keySize,
          valueSize: spec.valueSize,
          maxEntries: spec.maxEntries,
          flags: normalized.flags ?? 0,
          innerMapFd: template ? template.fd : 0,
          name: spec.name,
        },
        op,
      );
      let info: MapInfo;
      try {
        info = mapInfo(fd, op);
      } catch (err) {
        sys.closeFd(fd);
        throw err;
      }
      const m = new BpfMap(fd, normalized, info.id);
      try {
        if (spec.initial) {
          const v = Buffer.alloc(m.valueBytes);
          spec.initial.copy(v);
          m.update(Buffer.alloc(4), v);
        }
        if (spec.freeze) sys.mapFreeze(fd, `freeze map ${spec.name}`);
      } catch (err) {
        m.close();
        throw err;
      }
      return m;
    } finally {
      if (ownTemplate) template?.close();
    }
  }

  /** Open a pinned map; with `expect`, every given field must match (MapMismatchError). */
  static openPinned(path: string, expect?: Partial<MapSpec>): BpfMap {
    const op = `open pinned map ${path}`;
    const fd = sys.objGet(path, op);
    let m: BpfMap;
    try {
      m = BpfMap.fromFd(fd, op);
    } catch (err) {
      sys.closeFd(fd);
      throw err;
    }
    try {
      if (expect) checkExpect(path, m.spec, expect);
    } catch (err) {
      m.close();
      throw err;
    }
    return m;
  }

  static fromId(id: number): BpfMap {
    const op = `open map id ${id}`;
    const fd = sys.mapGetFdById(id, op);
    try {
      return BpfMap.fromFd(fd, op);
    } catch (err) {
      sys.closeFd(fd);
      throw err;
    }
  }

  private static fromFd(fd: number, op: string): BpfMap {
    const info = mapInfo(fd, op);
    const type = mapTypeFromNumber(info.type);
    if (!type) throw new UnsupportedMapTypeError(op, info.type);
    const spec: MapSpec = {
      name: info.name,
      type,
      keySize: info.keySize,
      valueSize: info.valueSize,
      maxEntries: info.maxEntries,
      flags: info.flags,
    };
    return new BpfMap(fd, spec, info.id);
  }

  pin(path: string): void {
    sys.objPin(this.fd, path, `pin map ${this.spec.name} at ${path}`);
  }

  /** The value for key, or undefined. `out` (valueBytes long) avoids an allocation. */
  lookup(key: Buffer, out?: Buffer): Buffer | undefined {
    const v = out ?? Buffer.alloc(this.valueBytes);
    this.checkValue(v, "lookup");
    return sys.mapLookupElem(this.fd, key, v, this.op("lookup")) ? v : undefined;
  }

  update(key: Buffer, value: Buffer, flags: "any" | "noexist" | "exist" = "any"): void {
    this.checkValue(value, "update");
    sys.mapUpdateElem(this.fd, key, value, updateFlags[flags], this.op("update"));
  }

  /** False when the key was missing. */
  delete(key: Buffer): boolean {
    return sys.mapDeleteElem(this.fd, key, this.op("delete"));
  }

  /** Write `count` packed keys/values; falls back to single updates where batch is unsupported. */
  updateBatch(keys: Buffer, values: Buffer, count: number): void {
    this.checkBatch(keys, values, count, "update");
    if (count === 0) return;
    if (!this.noBatch) {
      const r = sys.mapUpdateBatch(this.fd, keys, values, count, 0);
      if (r.errno === 0) return;
      if (!batchUnsupported(r.errno, r.count)) throw sys.batchError(this.op("update"), "UPDATE", r.errno);
      this.noBatch = true; // nothing was written (see batchUnsupported): redo all with single updates
    }
    const ks = this.spec.keySize;
    const vs = this.valueBytes;
    for (let i = 0; i < count; i++) {
      this.update(keys.subarray(i * ks, (i + 1) * ks), values.subarray(i * vs, (i + 1) * vs));
    }
  }

  /** Delete `count` packed keys (missing keys are an error in batch mode, as in the kernel: ENOENT). */
  deleteBatch(keys: Buffer, count: number): void {
    this.checkBatch(keys, undefined, count, "delete");
    if (count === 0) return;
    if (!this.noBatch) {
      const r = sys.mapDeleteBatch(this.fd, keys, count);
      if (r.errno === 0) return;
      if (!batchUnsupported(r.errno, r.count)) throw sys.batchError(this.op("delete"), "DELETE", r.errno);
      this.noBatch = true;
    }
    const ks = this.spec.keySize;
    for (let i = 0; i < count; i++) {
      if (!this.delete(keys.subarray(i * ks, (i + 1) * ks))) {
        throw new KeyNotFoundError(this.op("delete"), "bpf(BPF_MAP_DELETE_ELEM)");
      }
    }
  }

  /**
   * The whole map, keys and values packed; batch lookup where supported, else iteration. With a
   * `scratch`, the batch read goes into its buffers (grown as needed, and kept in it for the next
   * call) and the result is a view of them, valid until the next call with the same scratch: a
   * resync reads 1,000 policy tries one after another and keeps none of the bytes.
   */
  lookupBatch(scratch?: BatchScratch): { keys: Buffer; values: Buffer; count: number } {
    const ks = this.spec.keySize;
    const vs = this.valueBytes;
    if (!this.noBatch) {
      const cap = this.spec.maxEntries;
      // Start small and grow: sizing for max_entries up front costs more than the read itself
      // for the mostly-empty maps this reads (an endpoint's policy trie holds 16,384 at most).
      const reusable = scratch !== undefined && ks > 0 && vs > 0 ? Math.min(Math.floor(scratch.keys.length / ks), Math.floor(scratch.values.length / vs)) : 0;
      let slots = Math.min(cap, Math.max(1024, reusable));
      let keys = reusable >= slots ? scratch!.keys : Buffer.allocUnsafe(slots * ks);
      let values = reusable >= slots ? scratch!.values : Buffer.allocUnsafe(slots * vs);
      const grow = () => {
        slots = Math.min(cap, slots * 4);
        const k = Buffer.allocUnsafe(slots * ks);
        const v = Buffer.allocUnsafe(slots * vs);
        keys.copy(k, 0, 0, total * ks);
        values.copy(v, 0, 0, total * vs);
        keys = k;
        values = v;
      };
      // Batch tokens are opaque; hash maps use a u32 bucket, array-like maps a key.
      const tokA = Buffer.alloc(Math.max(ks, 8));
      const tokB = Buffer.alloc(Math.max(ks, 8));
      let total = 0;
      let inTok: Buffer | null = null;
      let outTok = tokA;
      for (;;) {
        if (total === slots) {
          if (slots === cap) break;
          grow();
        }
        const room = slots - total;
        const r = sys.mapLookupBatch(
          this.fd,
          inTok,
          outTok,
          keys.subarray(total * ks),
          values.subarray(total * vs),
          room,
        );
        // A hash bucket that does not fit is ENOSPC with nothing copied: grow and ask again.
        if (r.errno === Errno.ENOSPC && slots < cap) {
          grow();
          continue;
        }
        // `count` is only meaningful on success or ENOENT (ENOTSUPP leaves our input in it).
        if (r.errno === 0 || r.errno === Errno.ENOENT) total += r.count;
        if (r.errno === Errno.ENOENT) break; // no more elements
        if (r.errno !== 0) {
          if (total === 0 && batchUnsupported(r.errno, 0)) {
            this.noBatch = true;
            break;
          }
          throw sys.batchError(this.op("lookup"), "LOOKUP", r.errno);
        }
        inTok = outTok;
        outTok = outTok === tokA ? tokB : tokA;
      }
      if (!this.noBatch) {
        if (scratch !== undefined && keys.length > scratch.keys.length) {
          scratch.keys = keys;
          scratch.values = values;
        }
        return { keys: keys.subarray(0, total * ks), values: values.subarray(0, total * vs), count: total };
      }
    }
    const keyList: Buffer[] = [];
    const valueList: Buffer[] = [];
    for (const k of this.keys()) {
      const v = this.lookup(k);
      if (!v) continue; // deleted while iterating
      keyList.push(k);
      valueList.push(v);
    }
    return { keys: Buffer.concat(keyList), values: Buffer.concat(valueList), count: keyList.length };
  }

  /** Every key (BPF_MAP_GET_NEXT_KEY); each yielded Buffer is fresh. */
  *keys(): Generator<Buffer> {
    let prev: Buffer | null = null;
    for (;;) {
      const next = Buffer.alloc(this.spec.keySize);
      if (!sys.mapGetNextKey(this.fd, prev, next, this.op("iterate"))) return;
      yield next;
      prev = next;
    }
  }

  /** Map-of-maps: point slot `key` at `inner`. */
  updateInner(key: Buffer, inner: BpfMap): void {
    this.requireMapOfMaps("update inner");
    const v = Buffer.alloc(4);
    v.writeUInt32LE(inner.fd, 0);
    sys.mapUpdateElem(this.fd, key, v, 0, this.op("update inner"));
  }

  /** Map-of-maps: the id of the inner map in slot `key`, or undefined. */
  innerId(key: Buffer): number | undefined {
    this.requireMapOfMaps("lookup inner");
    const v = (this.scratchValue ??= Buffer.alloc(4));
    return sys.mapLookupElem(this.fd, key, v, this.op("lookup inner")) ? v.readUInt32LE(0) : undefined;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    sys.untrackFd(this);
    sys.closeFd(this.fd);
  }

  private requireMapOfMaps(what: string): void {
    if (!isMapOfMaps(this.spec.type)) throw new TypeError(`${this.op(what)}: not a map-of-maps (${this.spec.type})`);
  }

  private checkValue(v: Buffer, what: string): void {
    if (v.length < this.valueBytes) {
      throw new RangeError(`${this.op(what)}: value buffer is ${v.length} bytes, need ${this.valueBytes}`);
    }
  }

  private checkBatch(keys: Buffer, values: Buffer | undefined, count: number, what: string): void {
    if (keys.length < count * this.spec.keySize) {
      throw new RangeError(`${this.op(what)}: keys buffer is ${keys.length} bytes, need ${count * this.spec.keySize}`);
    }
    if (values && values.length < count * this.valueBytes) {
      throw new RangeError(`${this.op(what)}: values buffer is ${values.length} bytes, need ${count * this.valueBytes}`);
    }
  }
}

function checkExpect(path: string, got: MapSpec, expect: Partial<MapSpec>): void {
  const fields: Array<[string, unknown, unknown]> = [];
  if (expect.type !== undefined) fields.push(["type", expect.type, got.type]);
  if (expect.keySize !== undefined) fields.push(["keySize", expect.keySize, got.keySize]);
  if (expect.valueSize !== undefined) fields.push(["valueSize", expect.valueSize, got.valueSize]);
  if (expect.maxEntries !== undefined) fields.push(["maxEntries", expect.maxEntries, got.maxEntries]);
  if (expect.flags !== undefined || expect.type === "lpm_trie") {
    fields.push(["flags", effectiveFlags({ type: expect.type ?? got.type, flags: expect.flags }), got.flags]);
  }
  for (const [field, e, g] of fields) {
    if (e !== g) throw new MapMismatchError(path, field, e, g);
  }
}
