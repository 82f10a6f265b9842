// Minimal reader of the BTF in a BPF ELF object, for the layouts test: struct sizes and member
// offsets, and the BTF-style map definitions of the ".maps" section. Independent of the loader on
// purpose, so the test checks the layouts and not the loader's own BTF reader.

import { readFileSync } from "node:fs";

export interface BtfMember {
  name: string;
  /** Byte offset in the struct. */
  offset: number;
  type: number;
}
export interface BtfStruct {
  name: string;
  size: number;
  members: BtfMember[];
}
/** One `.maps` definition: its numeric fields (type, max_entries, map_flags, pinning, key_size,
 *  value_size) and the byte sizes of its key/value types when given as types. */
export interface BtfMapDef {
  name: string;
  fields: Record<string, number>;
  innerFields?: Record<string, number>;
}

const KIND = { INT: 1, PTR: 2, ARRAY: 3, STRUCT: 4, UNION: 5, ENUM: 6, FWD: 7, TYPEDEF: 8, VOLATILE: 9, CONST: 10, RESTRICT: 11, FUNC: 12, FUNC_PROTO: 13, VAR: 14, DATASEC: 15, FLOAT: 16, DECL_TAG: 17, TYPE_TAG: 18, ENUM64: 19 } as const;

interface RawType {
  kind: number;
  name: string;
  vlen: number;
  kindFlag: boolean;
  sizeOrType: number;
  /** ARRAY: element type and count. */
  array?: { type: number; nelems: number };
  members?: BtfMember[];
  /** DATASEC: variable type ids. */
  vars?: number[];
}

export class BtfReadError extends Error {
  constructor(what: string) {
    super(`read BTF: ${what}`);
    this.name = "BtfReadError";
  }
}

function sectionBtf(elf: Buffer): Buffer {
  if (elf.readUInt32BE(0) !== 0x7f454c46 || elf[4] !== 2 || elf[5] !== 1) throw new BtfReadError("not a little-endian ELF64 file");
  const shoff = Number(elf.readBigUInt64LE(0x28));
  const shentsize = elf.readUInt16LE(0x3a);
  const shnum = elf.readUInt16LE(0x3c);
  const shstrndx = elf.readUInt16LE(0x3e);
  const sh = (i: number) => {
    const o = shoff + i * shentsize;
    return { name: elf.readUInt32LE(o), offset: Number(elf.readBigUInt64LE(o + 0x18)), size: Number(elf.readBigUInt64LE(o + 0x20)) };
  };
  const strtab = sh(shstrndx);
  for (let i = 0; i < shnum; i++) {
    const s = sh(i);
    const nameStart = strtab.offset + s.name;
    const name = elf.toString("latin1", nameStart, elf.indexOf(0, nameStart));
    if (name === ".BTF") return elf.subarray(s.offset, s.offset + s.size);
  }
  throw new BtfReadError("no .BTF section");
}

export class Btf {
  readonly types: RawType[] = [{ kind: 0, name: "void", vlen: 0, kindFlag: false, sizeOrType: 0 }];

  constructor(btf: Buffer) {
    if (btf.readUInt16LE(0) !== 0xeb9f) throw new BtfReadError("bad BTF magic");
    const hdrLen = btf.readUInt32LE(4);
    const typeOff = hdrLen + btf.readUInt32LE(8);
    const typeLen = btf.readUInt32LE(12);
    const strOff = hdrLen + btf.readUInt32LE(16);
    const str = (o: number) => btf.toString("latin1", strOff + o, btf.indexOf(0, strOff + o));
    let p = typeOff;
    while (p < typeOff + typeLen) {
      const info = btf.readUInt32LE(p + 4);
      const t: RawType = { kind: (info >>> 24) & 0x1f, name: str(btf.readUInt32LE(p)), vlen: info & 0xffff, kindFlag: (info >>> 31) === 1, sizeOrType: btf.readUInt32LE(p + 8) };
      p += 12;
      switch (t.kind) {
        case KIND.INT: case KIND.VAR: case KIND.DECL_TAG: p += 4; break;
        case KIND.ARRAY: t.array = { type: btf.readUInt32LE(p), nelems: btf.readUInt32LE(p + 8) }; p += 12; break;
        case KIND.STRUCT: case KIND.UNION:
          t.members = [];
          for (let i = 0; i < t.vlen; i++, p += 12) {
            const raw = btf.readUInt32LE(p + 8);
            const bits = t.kindFlag ? raw & 0xffffff : raw;
            t.members.push({ name: str(btf.readUInt32LE(p)), type: btf.readUInt32LE(p + 4), offset: bits / 8 });
          }
          break;
        case KIND.ENUM: p += 8 * t.vlen; break;
        case KIND.ENUM64: p += 12 * t.vlen; break;
        case KIND.FUNC_PROTO: p += 8 * t.vlen; break;
        case KIND.DATASEC:
          t.vars = [];
          for (let i = 0; i < t.vlen; i++, p += 12) t.vars.push(btf.readUInt32LE(p));
          break;
        default: break;
      }
      this.types.push(t);
    }
  }

  static fromObjectFile(path: string): Btf {
    return new Btf(sectionBtf(readFileSync(path)));
  }

  /** Size in bytes of type id, through typedefs/qualifiers. */
  sizeOf(id: number): number {
    const t = this.types[id];
    switch (t.kind) {
      case KIND.INT: case KIND.STRUCT: case KIND.UNION: case KIND.ENUM: case KIND.ENUM64: case KIND.FLOAT: case KIND.DATASEC: return t.sizeOrType;
      case KIND.PTR: return 8;
      case KIND.ARRAY: return this.sizeOf(t.array!.type) * t.array!.nelems;
      case KIND.TYPEDEF: case KIND.VOLATILE: case KIND.CONST: case KIND.RESTRICT: case KIND.TYPE_TAG: return this.sizeOf(t.sizeOrType);
      default: throw new BtfReadError(`type ${id} (kind ${t.kind}) has no size`);
    }
  }

  /** Every complete named struct. */
  structs(): Map<string, BtfStruct> {
    const out = new Map<string, BtfStruct>();
    for (const t of this.types) {
      if (t.kind === KIND.STRUCT && t.name !== "") out.set(t.name, { name: t.name, size: t.sizeOrType, members: t.members! });
    }
    return out;
  }

  /** Strips typedefs and qualifiers. */
  private resolve(id: number): number {
    let t = this.types[id];
    while (t.kind === KIND.TYPEDEF || t.kind === KIND.CONST || t.kind === KIND.VOLATILE || t.kind === KIND.RESTRICT) {
      id = t.sizeOrType;
      t = this.types[id];
    }
    return id;
  }

  private mapFields(structId: number): Record<string, number> {
    const fields: Record<string, number> = {};
    for (const m of this.types[structId].members!) {
      const mt = this.types[this.resolve(m.type)];
      if (mt.kind !== KIND.PTR) continue; // __array(values, ...) is handled by the caller
      const pointee = this.resolve(mt.sizeOrType);
      const pt = this.types[pointee];
      if (pt.kind === KIND.ARRAY && (m.name === "type" || m.name === "max_entries" || m.name === "map_flags" || m.name === "pinning" || m.name === "key_size" || m.name === "value_size")) {
        fields[m.name] = pt.array!.nelems; // __uint(name, N) is `int (*name)[N]`
      } else if (m.name === "key" || m.name === "value") {
        fields[`${m.name}_size`] = this.sizeOf(pointee);
      }
    }
    return fields;
  }

  /** The BTF-style map definitions of the ".maps" section. */
  maps(): BtfMapDef[] {
    const sec = this.types.find((t) => t.kind === KIND.DATASEC && t.name === ".maps");
    if (!sec) throw new BtfReadError("no .maps section");
    return sec.vars!.map((varId) => {
      const v = this.types[varId];
      const structId = this.resolve(v.sizeOrType);
      const def: BtfMapDef = { name: v.name, fields: this.mapFields(structId) };
      const values = this.types[structId].members!.find((m) => m.name === "values");
      if (values) {
        const arr = this.types[this.resolve(values.type)];
        const ptr = this.types[this.resolve(arr.array!.type)];
        def.innerFields = this.mapFields(this.resolve(ptr.sizeOrType));
      }
      return def;
    });
  }
}
