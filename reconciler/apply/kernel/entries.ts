// Entries of the endpoints and ipcache maps: read with one batch lookup, written with batch updates
// and deletes (the kernel has batch operations for hash maps and LPM tries).

import {
  ENDPOINT_INFO,
  ENDPOINT_KEY,
  IPCACHE_KEY,
  IPCACHE_VALUE,
  decodeEndpointInfo,
  decodeEndpointKey,
  decodeIpcacheKey,
  decodeIpcacheValue,
  encodeEndpointInfo,
  encodeEndpointKey,
  encodeIpcacheKey,
  encodeIpcacheValue,
} from "../../datapath/layouts.js";
import { isUndecodable, RESOURCES, type DesiredState, type EndpointEntry, type IpcacheMapEntry, type ResourceSpecs, type UndecodableEntry } from "../../datapath/state.js";
import type { Change } from "../../plan/diff.js";
import { errorText, failuresOf, type ObjectResult, type Target } from "../target.js";
import type { KernelContext } from "./context.js";

interface Codec<T> {
  keySize: number;
  valueSize: number;
  encodeKey(id: string, spec: T, out: Buffer, offset: number): void;
  encodeValue(spec: T, out: Buffer, offset: number): void;
  /** id and spec from a key and value (throws on a key no id names). */
  decode(keys: Buffer, values: Buffer, i: number): [string, T];
  /** Whether `key` and `encoded` (the encoding of the id decoded from `key`) are the same kernel
   *  key. When not, the id names another entry than the one in the kernel. */
  sameKey(key: Buffer, encoded: Buffer): boolean;
}

/** LPM trie keys (u32 prefixlen, then data) are the same entry when prefixlen and its leading
 *  bits of data are: the trie ignores the bits after the prefix. */
export function sameLpmKey(a: Buffer, b: Buffer): boolean {
  const bits = a.readUInt32LE(0);
  if (bits !== b.readUInt32LE(0) || bits > (a.length - 4) * 8) return false;
  const whole = bits >> 3;
  if (!a.subarray(4, 4 + whole).equals(b.subarray(4, 4 + whole))) return false;
  const rest = bits & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (a[4 + whole]! & mask) === (b[4 + whole]! & mask);
}

/** The flags and event settings of endpoint_info, which EndpointEntry and EndpointInfo name alike. */
function endpointFlagsOf(e: Omit<EndpointEntry, "address" | "endpointId" | "identity" | "endpoint">): Omit<EndpointEntry, "address" | "endpointId" | "identity" | "endpoint"> {
  const { enforceIngress, enforceEgress, auditIngress, auditEgress, verdictAllow, verdictDeny, hostPolicy, eventRate } = e;
  return { enforceIngress, enforceEgress, auditIngress, auditEgress, verdictAllow, verdictDeny, hostPolicy, eventRate };
}

const endpointCodec: Codec<EndpointEntry> = {
  keySize: ENDPOINT_KEY.size,
  valueSize: ENDPOINT_INFO.size,
  encodeKey: (id, _s, out, off) => void encodeEndpointKey(id, out, off),
  encodeValue: (s, out, off) =>
    // The programs never read endpoint_info.ifindex: reconcile writes 0 and does not compare it.
    encodeEndpointInfo({ ifindex: 0, epId: s.endpointId, identity: s.identity, ...endpointFlagsOf(s) }, out, off),
  decode: (keys, values, i) => {
    const address = decodeEndpointKey(keys, i * ENDPOINT_KEY.size);
    const v = decodeEndpointInfo(values, i * ENDPOINT_INFO.size);
    // The kernel does not know endpoint names; the planner does not compare them.
    return [address, { address, endpointId: v.epId, identity: v.identity, ...endpointFlagsOf(v), endpoint: "" }];
  },
  // A hash map: every byte of the key counts (padding and an IPv4 address's unused 12 bytes too).
  sameKey: (key, encoded) => key.equals(encoded),
};

const ipcacheCodec: Codec<IpcacheMapEntry> = {
  keySize: IPCACHE_KEY.size,
  valueSize: IPCACHE_VALUE.size,
  encodeKey: (id, _s, out, off) => void encodeIpcacheKey(id, out, off),
  encodeValue: (s, out, off) => encodeIpcacheValue({ identity: s.identity, ...(s.tunnelEndpoint ? { tunnelEndpoint: s.tunnelEndpoint } : {}) }, out, off),
  decode: (keys, values, i) => {
    const { prefix } = decodeIpcacheKey(keys, i * IPCACHE_KEY.size);
    const v = decodeIpcacheValue(values, i * IPCACHE_VALUE.size);
    return [prefix, { prefix, identity: v.identity, ...(v.tunnelEndpoint ? { tunnelEndpoint: v.tunnelEndpoint } : {}) }];
  },
  sameKey: sameLpmKey,
};

function hex(b: Buffer, from: number, to: number): string {
  return b.toString("hex", from, to);
}

/** The kinds kept as entries of a hash map or LPM trie reconcile owns. */
type EntryKind = "endpoint" | "ipcache";

/** A Target<K> (checked where each is made, with K and T concrete). */
class MapEntriesTarget<K extends EntryKind, T extends ResourceSpecs[K]> {
  /** The kernel's bytes when they last matched a desired entry map: the next resync that reads the
   *  same bytes (an unchanged map is walked in the same order) recognises them with one compare. */
  private verified: { wanted: Map<string, T>; keys: Buffer; values: Buffer } | undefined;

  constructor(
    readonly kind: K,
    private readonly mapName: string,
    private readonly codec: Codec<T>,
    private readonly ctx: KernelContext,
  ) {}

  async observe(desired: DesiredState): Promise<Map<string, T | UndecodableEntry>> {
    const out = new Map<string, T | UndecodableEntry>();
    const m = this.ctx.map(this.mapName);
    if (!m) return out;
    const { keys, values, count } = m.lookupBatch();
    // A resync usually finds the map exactly as it was left: when the kernel's bytes are the
    // desired entries' bytes, hand back the desired entries themselves (the plan then skips them)
    // instead of decoding 100,000 prefixes into objects and comparing them field by field.
    const wanted = desired[RESOURCES[this.kind].field] as Map<string, T>;
    if (count === wanted.size) {
      const k = keys.subarray(0, count * this.codec.keySize);
      const v = values.subarray(0, count * this.codec.valueSize);
      const last = this.verified;
      if (last?.wanted === wanted && k.equals(last.keys) && v.equals(last.values)) return wanted;
      if (this.holdsExactly(wanted, keys, values, count)) {
        this.verified = { wanted, keys: Buffer.from(k), values: Buffer.from(v) };
        return wanted;
      }
    }
    const scratch = Buffer.alloc(this.codec.keySize);
    for (let i = 0; i < count; i++) {
      const [id, spec] = this.decodeRecord(keys, values, i, scratch);
      out.set(id, spec);
    }
    return out;
  }

  /**
   * Record i as its id and spec, or, when its key names no id (it does not decode, or its id
   * encodes to another kernel key), as an UndecodableEntry under the hex of its key: the plan
   * deletes it by those bytes, and one malformed entry stops nothing else.
   */
  private decodeRecord(keys: Buffer, values: Buffer, i: number, scratch: Buffer): [string, T | UndecodableEntry] {
    const { keySize, valueSize } = this.codec;
    const key = keys.subarray(i * keySize, (i + 1) * keySize);
    let why: string;
    try {
      const [id, spec] = this.codec.decode(keys, values, i);
      this.codec.encodeKey(id, spec, scratch, 0);
      if (this.codec.sameKey(key, scratch)) return [id, spec];
      why = `key reads as ${id}, which is another key (${scratch.toString("hex")})`;
    } catch (err) {
      why = errorText(err);
    }
    const id = hex(keys, i * keySize, (i + 1) * keySize);
    return [id, { undecodable: why, key: id, value: hex(values, i * valueSize, (i + 1) * valueSize) }];
  }

  /** Whether the kernel's `count` records are exactly the encodings of `wanted`. */
  private holdsExactly(wanted: Map<string, T>, keys: Buffer, values: Buffer, count: number): boolean {
    const records = this.encodings(wanted);
    if (!records) return false;
    const { keySize, valueSize } = this.codec;
    for (let i = 0; i < count; i++) {
      const key = keys.toString("latin1", i * keySize, (i + 1) * keySize);
      if (records.get(key) !== values.toString("latin1", i * valueSize, (i + 1) * valueSize)) return false;
    }
    return true;
  }

  /** Key bytes → value bytes of every desired entry (as latin1 strings); undefined when an entry
   *  does not encode (then the entries are compared one by one). Made when needed, not kept: once
   *  verified, the kernel's own bytes are remembered instead (a third of the memory). */
  private encodings(wanted: Map<string, T>): Map<string, string> | undefined {
    const { keySize, valueSize } = this.codec;
    const key = Buffer.alloc(keySize);
    const value = Buffer.alloc(valueSize);
    const records = new Map<string, string>();
    try {
      for (const [id, spec] of wanted) {
        this.codec.encodeKey(id, spec, key, 0);
        this.codec.encodeValue(spec, value, 0);
        records.set(key.toString("latin1"), value.toString("latin1"));
      }
    } catch {
      return undefined;
    }
    return records;
  }

  async apply(changes: readonly Change<K>[]): Promise<ObjectResult[]> {
    const m = this.ctx.map(this.mapName);
    if (!m) return failuresOf(changes, new Error(`map ${this.mapName} is not pinned at ${this.ctx.mapPath(this.mapName)}`));
    const { keySize, valueSize } = this.codec;
    const keys = Buffer.alloc(changes.length * keySize);
    try {
      if (changes[0]!.op === "delete") {
        changes.forEach((c, i) => {
          // An undecodable entry is deleted by its own bytes.
          if (c.op !== "delete") throw new Error(`a ${c.op} in a batch of deletes`);
          if (isUndecodable(c.before)) Buffer.from(c.before.key, "hex").copy(keys, i * keySize);
          else this.codec.encodeKey(c.id, c.before as T, keys, i * keySize);
        });
        m.deleteBatch(keys, changes.length);
      } else {
        const values = Buffer.alloc(changes.length * valueSize);
        changes.forEach((c, i) => {
          if (c.op === "delete") throw new Error("a delete in a batch of writes");
          this.codec.encodeKey(c.id, c.after as T, keys, i * keySize);
          this.codec.encodeValue(c.after as T, values, i * valueSize);
        });
        m.updateBatch(keys, values, changes.length);
      }
    } catch (err) {
      return failuresOf(changes, err);
    }
    return [];
  }
}

export function endpointsTarget(ctx: KernelContext): Target<"endpoint"> {
  return new MapEntriesTarget<"endpoint", EndpointEntry>("endpoint", "endpoints", endpointCodec, ctx);
}

export function ipcacheTarget(ctx: KernelContext): Target<"ipcache"> {
  return new MapEntriesTarget<"ipcache", IpcacheMapEntry>("ipcache", "ipcache", ipcacheCodec, ctx);
}
