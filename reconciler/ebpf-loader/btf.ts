// SPDX-License-Identifier: Apache-2.0
// A small reader for the .BTF section of clang-built objects (pure). It decodes every kind so the
// type table can be walked, and answers the questions the loader (and layout tests) ask: type sizes,
// struct members, DATASEC variables. It does not load BTF into the kernel.

export const BtfKind = {
  UNKN: 0,
  INT: 1,
  PTR: 2,
  ARRAY: 3,
  STRUCT: 4,
  UNION: 5,
  ENUM: 6,
  FWD: 7,
  TYPEDEF: 8,
  VOLATILE: 9,
  CONST: 10,
  RESTRICT: 11,
  FUNC: 12,
  FUNC_PROTO: 13,
  VAR: 14,
  DATASEC: 15,
  FLOAT: 16,
  DECL_TAG: 17,
  TYPE_TAG: 18,
  ENUM64: 19,
} as const;
export type BtfKindNumber = (typeof BtfKind)[keyof typeof BtfKind];

export interface BtfMember {
  name: string;
  /** Type id of the member. */
  type: number;
  /** Offset in bits from the start of the struct (bitfield size ignored). */
  bitOffset: number;
}

export interface BtfType {
  id: number;
  kind: number;
  name: string;
  /** size for INT/STRUCT/UNION/ENUM/DATASEC/FLOAT/ENUM64; referenced type id for the others. */
  sizeOrType: number;
  /** STRUCT/UNION members, FUNC_PROTO params, DATASEC vars (type, offset in bytes as bitOffset/8 - see vars). */
  members: BtfMember[];
  /** ARRAY: element type, index type, element count. */
  array?: { type: number; indexType: number; nelems: number };
  /** DATASEC: variables with byte offset and size. */
  vars?: Array<{ type: number; offset: number; size: number }>;
}

export class BtfError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(`parse BTF: ${message}`, options);
    this.name = "BtfError";
  }
}

const BTF_MAGIC = 0xeb9f;

export class Btf {
  /** Index = type id; types[0] is the implicit void. */
  readonly types: BtfType[];
  constructor(types: BtfType[]) {
    this.types = types;
  }

  type(id: number): BtfType {
    const t = this.types[id];
    if (!t) throw new BtfError(`type id ${id} out of range (0..${this.types.length - 1})`);
    return t;
  }

  /** First type with this name (and kind, if given). */
  typeByName(name: string, kind?: number): BtfType | undefined {
    return this.types.find((t) => t.name === name && (kind === undefined || t.kind === kind));
  }

  /** Skip typedefs and qualifiers. */
  resolve(id: number): BtfType {
    let t = this.type(id);
    for (let guard = 0; guard < 64; guard++) {
      if (
        t.kind === BtfKind.TYPEDEF ||
        t.kind === BtfKind.VOLATILE ||
        t.kind === BtfKind.CONST ||
        t.kind === BtfKind.RESTRICT ||
        t.kind === BtfKind.TYPE_TAG ||
        t.kind === BtfKind.DECL_TAG
      ) {
        t = this.type(t.sizeOrType);
      } else {
        return t;
      }
    }
    throw new BtfError(`type id ${id}: qualifier chain too long`);
  }

  /** Size in bytes of a type (as the C compiler laid it out). */
  sizeOf(id: number): number {
    const t = this.resolve(id);
    switch (t.kind) {
      case BtfKind.INT:
      case BtfKind.STRUCT:
      case BtfKind.UNION:
      case BtfKind.ENUM:
      case BtfKind.ENUM64:
      case BtfKind.FLOAT:
      case BtfKind.DATASEC:
        return t.sizeOrType;
      case BtfKind.PTR:
        return 8;
      case BtfKind.ARRAY:
        return t.array!.nelems * this.sizeOf(t.array!.type);
      case BtfKind.VAR:
        return this.sizeOf(t.sizeOrType);
      default:
        throw new BtfError(`type id ${id} (${kindName(t.kind)}) has no size`);
    }
  }

  /** Struct/union members with byte offsets, e.g. for checking a C layout against a TS codec. */
  layout(structName: string): Array<{ name: string; offset: number; size: number }> {
    const t = this.types.find((x) => (x.kind === BtfKind.STRUCT || x.kind === BtfKind.UNION) && x.name === structName);
    if (!t) throw new BtfError(`struct ${structName} not found`);
    return t.members.map((m) => ({ name: m.name, offset: m.bitOffset / 8, size: this.sizeOf(m.type) }));
  }
}

export function kindName(kind: number): string {
  const e = Object.entries(BtfKind).find(([, v]) => v === kind);
  return e ? e[0] : `kind ${kind}`;
}

/** Parse a .BTF section (little-endian). */
export function parseBtf(buf: Buffer): Btf {
  if (buf.length < 24) throw new BtfError(`section is ${buf.length} bytes, shorter than the header`);
  const magic = buf.readUInt16LE(0);
  if (magic !== BTF_MAGIC) throw new BtfError(`bad magic 0x${magic.toString(16)} (big-endian objects are not supported)`);
  const hdrLen = buf.readUInt32LE(4);
  const typeOff = buf.readUInt32LE(8);
  const typeLen = buf.readUInt32LE(12);
  const strOff = buf.readUInt32LE(16);
  const strLen = buf.readUInt32LE(20);
  const typesStart = hdrLen + typeOff;
  const typesEnd = typesStart + typeLen;
  const strStart = hdrLen + strOff;
  if (typesEnd > buf.length || strStart + strLen > buf.length) {
    throw new BtfError(`header points past the end of the section (${buf.length} bytes)`);
  }
  const str = (off: number): string => {
    if (off >= strLen) throw new BtfError(`string offset ${off} out of range`);
    const start = strStart + off;
    const end = buf.indexOf(0, start);
    return buf.toString("latin1", start, end < 0 ? strStart + strLen : end);
  };

  const types: BtfType[] = [{ id: 0, kind: BtfKind.UNKN, name: "void", sizeOrType: 0, members: [] }];
  let p = typesStart;
  while (p < typesEnd) {
    if (p + 12 > typesEnd) throw new BtfError(`truncated type at offset ${p - typesStart}`);
    const nameOff = buf.readUInt32LE(p);
    const info = buf.readUInt32LE(p + 4);
    const sizeOrType = buf.readUInt32LE(p + 8);
    p += 12;
    const vlen = info & 0xffff;
    const kind = (info >>> 24) & 0x1f;
    const kindFlag = info >>> 31 === 1;
    const t: BtfType = { id: types.length, kind, name: str(nameOff), sizeOrType, members: [] };
    switch (kind) {
      case BtfKind.INT:
      case BtfKind.VAR:
      case BtfKind.DECL_TAG:
        p += 4;
        break;
      case BtfKind.ARRAY:
        t.array = { type: buf.readUInt32LE(p), indexType: buf.readUInt32LE(p + 4), nelems: buf.readUInt32LE(p + 8) };
        p += 12;
        break;
      case BtfKind.STRUCT:
      case BtfKind.UNION:
        for (let i = 0; i < vlen; i++, p += 12) {
          const off = buf.readUInt32LE(p + 8);
          t.members.push({
            name: str(buf.readUInt32LE(p)),
            type: buf.readUInt32LE(p + 4),
            // With kind_flag the top 8 bits are the bitfield size.
            bitOffset: kindFlag ? off & 0xffffff : off,
          });
        }
        break;
      case BtfKind.ENUM:
        p += 8 * vlen;
        break;
      case BtfKind.ENUM64:
        p += 12 * vlen;
        break;
      case BtfKind.FUNC_PROTO:
        for (let i = 0; i < vlen; i++, p += 8) {
          t.members.push({ name: str(buf.readUInt32LE(p)), type: buf.readUInt32LE(p + 4), bitOffset: 0 });
        }
        break;
      case BtfKind.DATASEC:
        t.vars = [];
        for (let i = 0; i < vlen; i++, p += 12) {
          t.vars.push({ type: buf.readUInt32LE(p), offset: buf.readUInt32LE(p + 4), size: buf.readUInt32LE(p + 8) });
        }
        break;
      case BtfKind.PTR:
      case BtfKind.FWD:
      case BtfKind.TYPEDEF:
      case BtfKind.VOLATILE:
      case BtfKind.CONST:
      case BtfKind.RESTRICT:
      case BtfKind.FUNC:
      case BtfKind.FLOAT:
      case BtfKind.TYPE_TAG:
        break;
      default:
        throw new BtfError(`unknown kind ${kind} for type id ${t.id}`);
    }
    types.push(t);
  }
  return new Btf(types);
}

/** .BTF.ext header fields we check: CO-RE relocations are not supported by this loader. */
export function btfExtCoreReloCount(buf: Buffer): number {
  if (buf.length < 8) throw new BtfError(".BTF.ext shorter than its header");
  if (buf.readUInt16LE(0) !== BTF_MAGIC) throw new BtfError(".BTF.ext bad magic");
  const hdrLen = buf.readUInt32LE(4);
  if (hdrLen < 32) return 0; // no core_relo_off/len fields
  return buf.readUInt32LE(28); // core_relo_len in bytes
}
