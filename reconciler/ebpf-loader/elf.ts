// SPDX-License-Identifier: Apache-2.0
// ELF reader for clang `-target bpf -g` objects (ELF64 little-endian): programs, BTF-style `.maps`,
// data sections and ld_imm64 map relocations. Pure: turns bytes into a CollectionSpec, no kernel.
import { Btf, BtfKind, btfExtCoreReloCount, parseBtf } from "./btf.js";
import { type MapSpec, type MapType, mapTypeFromNumber, BPF_F_RDONLY_PROG } from "./map.js";

export type ProgramType = "sched_cls" | "socket_filter";
/** How the program is meant to be attached (derived from its section name). */
export type ProgramAttach = "tc" | "tcx_ingress" | "tcx_egress" | "socket";

/** A map reference in a program to patch at load time. */
export interface Relocation {
  /** Index of the ld_imm64 instruction inside the program (8-byte units). */
  insn: number;
  /** "map": load the map's fd (BPF_PSEUDO_MAP_FD); "data": address of a data-section map value (BPF_PSEUDO_MAP_VALUE). */
  kind: "map" | "data";
  /** Name of the map in CollectionSpec.maps. */
  map: string;
  /** For "data": byte offset inside the value. */
  offset: number;
}

export interface ProgramSpec {
  /** Function name (the kernel keeps 15 bytes). */
  name: string;
  /** ELF section, e.g. "tc", "tcx/ingress". */
  section: string;
  type: ProgramType;
  attach: ProgramAttach;
  /** Unpatched instructions. */
  insns: Buffer;
  license: string;
  relocations: Relocation[];
}

export interface CollectionSpec {
  programs: Map<string, ProgramSpec>;
  maps: Map<string, MapSpec>;
  license: string;
}

export class ElfError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(`parse ELF: ${message}`, options);
    this.name = "ElfError";
  }
}

const SHT_PROGBITS = 1;
const SHT_SYMTAB = 2;
const SHT_NOBITS = 8;
const SHT_REL = 9;
const SHF_EXECINSTR = 0x4;
const STT_SECTION = 3;
const STT_FUNC = 2;
const EM_BPF = 247;
const R_BPF_64_64 = 1;
const R_BPF_64_32 = 10;
const BPF_LD_IMM64 = 0x18;
const BPF_CALL = 0x85;
const BPF_PSEUDO_CALL = 1;

interface Section {
  index: number;
  name: string;
  type: number;
  flags: bigint;
  offset: number;
  size: number;
  link: number;
  info: number;
  entsize: number;
}
interface Symbol {
  name: string;
  type: number;
  shndx: number;
  value: number;
  size: number;
}

/** Section name → program type and attach kind; undefined when we do not support it. */
export function programKind(section: string): { type: ProgramType; attach: ProgramAttach } | undefined {
  if (section === "tcx/ingress") return { type: "sched_cls", attach: "tcx_ingress" };
  if (section === "tcx/egress") return { type: "sched_cls", attach: "tcx_egress" };
  if (section === "tc" || section.startsWith("tc/") || section === "classifier" || section.startsWith("classifier/")) {
    return { type: "sched_cls", attach: "tc" };
  }
  if (section === "socket" || section.startsWith("socket/")) return { type: "socket_filter", attach: "socket" };
  return undefined;
}

const DATA_SECTION = /^\.(rodata|data|bss)(\..*)?$/;

/**
 * Parse an object in the order cilium/ebpf's ELF reader does: sections, symbols, license and BTF,
 * maps (BTF `.maps` and data sections), then programs with their relocations.
 */
export function parseElf(object: Buffer): CollectionSpec {
  const elf = readSections(object);
  const symbols = readSymbols(elf);
  const licSec = elf.byName("license");
  const license = licSec ? elf.cstr(licSec.offset, 0) : "";
  const btf = readBtf(elf);
  const maps = loadMaps(elf, btf);
  const programs = loadPrograms(elf, symbols, maps, license);
  return { programs, maps, license };
}

/** An ELF file read as far as its section headers, with helpers over its bytes. */
interface ElfFile {
  object: Buffer;
  sections: Section[];
  /** NUL-terminated string at `off` bytes into the table at file offset `base`. */
  cstr(base: number, off: number): string;
  /** A section's bytes (zeros for SHT_NOBITS). */
  data(s: Section): Buffer;
  byName(name: string): Section | undefined;
}

/** Phase 1: the ELF header and the section headers, with names. */
function readSections(object: Buffer): ElfFile {
  if (object.length < 64 || object.readUInt32BE(0) !== 0x7f454c46) throw new ElfError("not an ELF file");
  if (object[4] !== 2) throw new ElfError("not ELF64");
  if (object[5] !== 1) throw new ElfError("not little-endian");
  const machine = object.readUInt16LE(18);
  if (machine !== EM_BPF) throw new ElfError(`machine ${machine}, expected EM_BPF (${EM_BPF})`);
  const shoff = Number(object.readBigUInt64LE(40));
  const shentsize = object.readUInt16LE(58);
  const shnum = object.readUInt16LE(60);
  const shstrndx = object.readUInt16LE(62);
  if (shoff + shnum * shentsize > object.length) throw new ElfError("section headers past end of file");

  const raw: Omit<Section, "name">[] = [];
  const nameOffs: number[] = [];
  for (let i = 0; i < shnum; i++) {
    const h = shoff + i * shentsize;
    nameOffs.push(object.readUInt32LE(h));
    raw.push({
      index: i,
      type: object.readUInt32LE(h + 4),
      flags: object.readBigUInt64LE(h + 8),
      offset: Number(object.readBigUInt64LE(h + 24)),
      size: Number(object.readBigUInt64LE(h + 32)),
      link: object.readUInt32LE(h + 40),
      info: object.readUInt32LE(h + 44),
      entsize: Number(object.readBigUInt64LE(h + 56)),
    });
  }
  const shstr = raw[shstrndx];
  if (!shstr) throw new ElfError(`section name table index ${shstrndx} out of range`);
  const cstr = (base: number, off: number): string => {
    const end = object.indexOf(0, base + off);
    return object.toString("latin1", base + off, end < 0 ? object.length : end);
  };
  const sections: Section[] = raw.map((s, i) => ({ ...s, name: cstr(shstr.offset, nameOffs[i]!) }));
  return {
    object,
    sections,
    cstr,
    data(s) {
      if (s.type === SHT_NOBITS) return Buffer.alloc(s.size);
      if (s.offset + s.size > object.length) throw new ElfError(`section ${s.name} past end of file`);
      return object.subarray(s.offset, s.offset + s.size);
    },
    byName: (name) => sections.find((s) => s.name === name),
  };
}

/** Phase 2: the symbol table, in its order (relocations refer to symbols by index). */
function readSymbols(elf: ElfFile): Symbol[] {
  const { object, sections } = elf;
  const symtab = sections.find((s) => s.type === SHT_SYMTAB);
  if (!symtab) throw new ElfError("no symbol table");
  const strtab = sections[symtab.link];
  if (!strtab) throw new ElfError("symbol table has no string table");
  const symbols: Symbol[] = [];
  for (let p = symtab.offset; p + 24 <= symtab.offset + symtab.size; p += 24) {
    const info = object[p + 4]!;
    symbols.push({
      name: elf.cstr(strtab.offset, object.readUInt32LE(p)),
      type: info & 0xf,
      shndx: object.readUInt16LE(p + 6),
      value: Number(object.readBigUInt64LE(p + 8)),
      size: Number(object.readBigUInt64LE(p + 16)),
    });
  }
  return symbols;
}

/** The object's BTF, if any; CO-RE relocations in .BTF.ext are refused. */
function readBtf(elf: ElfFile): Btf | undefined {
  const btfSec = elf.byName(".BTF");
  const btf = btfSec ? parseBtf(Buffer.from(elf.data(btfSec))) : undefined;
  const btfExt = elf.byName(".BTF.ext");
  if (btfExt && btfExtCoreReloCount(elf.data(btfExt)) > 0) {
    throw new ElfError("CO-RE relocations (.BTF.ext core_relo) are not supported by this loader");
  }
  return btf;
}

/** Phase 3: maps, from the BTF `.maps` section and then one array map per non-empty data section. */
function loadMaps(elf: ElfFile, btf: Btf | undefined): Map<string, MapSpec> {
  const maps = new Map<string, MapSpec>();
  if (elf.byName(".maps")) {
    if (!btf) throw new ElfError(".maps needs BTF (compile with -g)");
    for (const spec of parseBtfMaps(btf)) maps.set(spec.name, spec);
    if (elf.byName(".rel.maps")) {
      throw new ElfError("static initialisation of map-of-maps / prog_array slots (.rel.maps) is not supported");
    }
  }
  if (elf.byName("maps")) throw new ElfError('legacy "maps" section (struct bpf_map_def) is not supported; use BTF-style .maps');
  for (const s of elf.sections) {
    if (!DATA_SECTION.test(s.name) || s.size === 0 || (s.type !== SHT_PROGBITS && s.type !== SHT_NOBITS)) continue;
    const rodata = s.name.startsWith(".rodata");
    maps.set(s.name, {
      name: s.name,
      type: "array",
      keySize: 4,
      valueSize: s.size,
      maxEntries: 1,
      flags: rodata ? BPF_F_RDONLY_PROG : 0,
      initial: Buffer.from(elf.data(s)),
      freeze: rodata,
    });
  }
  return maps;
}

/** Phase 4: programs, one per function symbol in each executable section, in section order. */
function loadPrograms(elf: ElfFile, symbols: Symbol[], maps: Map<string, MapSpec>, license: string): Map<string, ProgramSpec> {
  const programs = new Map<string, ProgramSpec>();
  for (const s of elf.sections) {
    if (s.type !== SHT_PROGBITS || (s.flags & BigInt(SHF_EXECINSTR)) === 0n || s.size === 0) continue;
    for (const p of sectionPrograms(elf, s, symbols, maps, license)) {
      if (programs.has(p.name)) throw new ElfError(`duplicate program name ${p.name}`);
      programs.set(p.name, p);
    }
  }
  return programs;
}

/** The programs of one executable section, each with the relocations that fall inside it. */
function* sectionPrograms(
  elf: ElfFile,
  s: Section,
  symbols: Symbol[],
  maps: Map<string, MapSpec>,
  license: string,
): Generator<ProgramSpec> {
  const kind = programKind(s.name);
  if (!kind) {
    if (s.name === ".text") {
      throw new ElfError(".text has code: bpf-to-bpf calls to non-inlined functions are not supported (use __always_inline)");
    }
    throw new ElfError(`section ${s.name}: unsupported program section (supported: tc, tcx/ingress, tcx/egress, classifier, socket)`);
  }
  const insns = elf.data(s);
  const funcs = symbols
    .filter((y) => y.shndx === s.index && y.type === STT_FUNC)
    .sort((a, b) => a.value - b.value);
  if (funcs.length === 0) throw new ElfError(`section ${s.name}: no function symbol`);
  const rel = elf.sections.find((r) => r.type === SHT_REL && r.info === s.index);
  const relocs = rel ? readRelocations(elf, rel, symbols, s, insns, maps) : [];
  for (const f of funcs) {
    if (f.value % 8 !== 0 || f.value + f.size > insns.length) throw new ElfError(`function ${f.name}: bad bounds`);
    const progInsns = Buffer.from(insns.subarray(f.value, f.value + f.size));
    checkNoCalls(progInsns, f.name);
    yield {
      name: f.name,
      section: s.name,
      type: kind.type,
      attach: kind.attach,
      insns: progInsns,
      license,
      relocations: relocs
        .filter((r) => r.byteOffset >= f.value && r.byteOffset < f.value + f.size)
        .map((r) => ({ insn: (r.byteOffset - f.value) / 8, kind: r.kind, map: r.map, offset: r.offset })),
    };
  }
}

function checkNoCalls(insns: Buffer, name: string): void {
  for (let i = 0; i < insns.length; i += 8) {
    if (insns[i] === BPF_CALL && (insns[i + 1]! >> 4) === BPF_PSEUDO_CALL) {
      throw new ElfError(`program ${name}: bpf-to-bpf call at insn ${i / 8} is not supported (use __always_inline)`);
    }
  }
}

/** Phase 5: the ld_imm64 map and data-section references of one program section. */
function readRelocations(
  elf: ElfFile,
  rel: Section,
  symbols: Symbol[],
  target: Section,
  insns: Buffer,
  maps: Map<string, MapSpec>,
): Array<{ byteOffset: number; kind: "map" | "data"; map: string; offset: number }> {
  const { object, sections } = elf;
  const out: Array<{ byteOffset: number; kind: "map" | "data"; map: string; offset: number }> = [];
  for (let p = rel.offset; p + 16 <= rel.offset + rel.size; p += 16) {
    const byteOffset = Number(object.readBigUInt64LE(p));
    const info = object.readBigUInt64LE(p + 8);
    const symIdx = Number(info >> 32n);
    const type = Number(info & 0xffffffffn);
    const sym = symbols[symIdx];
    if (!sym) throw new ElfError(`${rel.name}: symbol ${symIdx} out of range`);
    const where = `${target.name}+${byteOffset} (${sym.name || "section symbol"})`;
    if (type === R_BPF_64_32) {
      throw new ElfError(`${where}: bpf-to-bpf call relocation is not supported (use __always_inline)`);
    }
    if (type !== R_BPF_64_64) throw new ElfError(`${where}: relocation type ${type} is not supported`);
    if (byteOffset + 16 > insns.length || insns[byteOffset] !== BPF_LD_IMM64) {
      throw new ElfError(`${where}: relocation does not point at an ld_imm64 instruction`);
    }
    const symSec = sections[sym.shndx];
    if (!symSec) throw new ElfError(`${where}: symbol in unknown section ${sym.shndx}`);
    if (symSec.name === ".maps") {
      if (!maps.has(sym.name)) throw new ElfError(`${where}: map ${sym.name} has no BTF definition in .maps`);
      out.push({ byteOffset, kind: "map", map: sym.name, offset: 0 });
    } else if (DATA_SECTION.test(symSec.name)) {
      // For a section symbol clang puts the offset in imm; for a variable symbol, add its value.
      const addend = insns.readInt32LE(byteOffset + 4);
      const offset = (sym.type === STT_SECTION ? 0 : sym.value) + addend;
      if (!maps.has(symSec.name)) throw new ElfError(`${where}: data section ${symSec.name} is empty`);
      out.push({ byteOffset, kind: "data", map: symSec.name, offset });
    } else {
      throw new ElfError(`${where}: reference into section ${symSec.name} is not supported`);
    }
  }
  return out;
}

/** libbpf map definition member names we understand. */
const MAP_FIELDS = new Set([
  "type",
  "key_size",
  "value_size",
  "max_entries",
  "map_flags",
  "pinning",
  "key",
  "value",
  "values",
  "numa_node",
]);

/** Read the BTF-style map definitions of the `.maps` DATASEC. */
export function parseBtfMaps(btf: Btf): MapSpec[] {
  const sec = btf.types.find((t) => t.kind === BtfKind.DATASEC && t.name === ".maps");
  if (!sec) throw new ElfError(".maps section has no DATASEC in BTF");
  const out: MapSpec[] = [];
  for (const v of sec.vars ?? []) {
    const variable = btf.type(v.type);
    if (variable.kind !== BtfKind.VAR) throw new ElfError(`.maps entry type ${v.type} is not a VAR`);
    out.push(mapFromDef(btf, variable.name, variable.sizeOrType));
  }
  return out;
}

function mapFromDef(btf: Btf, name: string, structId: number): MapSpec {
  const def = btf.resolve(structId);
  if (def.kind !== BtfKind.STRUCT) throw new ElfError(`map ${name}: definition is not a struct`);
  // __uint(x, N) is `int (*x)[N]`: a pointer to an array whose element count is the value.
  const uintOf = (memberType: number, field: string): number => {
    const ptr = btf.resolve(memberType);
    if (ptr.kind !== BtfKind.PTR) throw new ElfError(`map ${name}: ${field} is not __uint()`);
    const arr = btf.resolve(ptr.sizeOrType);
    if (arr.kind !== BtfKind.ARRAY || !arr.array) throw new ElfError(`map ${name}: ${field} is not __uint()`);
    return arr.array.nelems;
  };
  // __type(x, T) is `T *x`.
  const sizeOfPointee = (memberType: number, field: string): number => {
    const ptr = btf.resolve(memberType);
    if (ptr.kind !== BtfKind.PTR) throw new ElfError(`map ${name}: ${field} is not __type()`);
    return btf.sizeOf(ptr.sizeOrType);
  };
  let typeNum: number | undefined;
  let keySize: number | undefined;
  let valueSize: number | undefined;
  let maxEntries: number | undefined;
  let flags = 0;
  let pinning = 0;
  let innerMap: MapSpec | undefined;
  for (const m of def.members) {
    if (!MAP_FIELDS.has(m.name)) throw new ElfError(`map ${name}: unsupported field ${m.name}`);
    switch (m.name) {
      case "type":
        typeNum = uintOf(m.type, m.name);
        break;
      case "key_size":
        keySize = uintOf(m.type, m.name);
        break;
      case "value_size":
        valueSize = uintOf(m.type, m.name);
        break;
      case "max_entries":
        maxEntries = uintOf(m.type, m.name);
        break;
      case "map_flags":
        flags = uintOf(m.type, m.name);
        break;
      case "pinning":
        pinning = uintOf(m.type, m.name);
        break;
      case "numa_node":
        break; // placement hint; ignored
      case "key":
        keySize = sizeOfPointee(m.type, m.name);
        break;
      case "value":
        valueSize = sizeOfPointee(m.type, m.name);
        break;
      case "values": {
        // __array(values, struct inner) is `struct inner *values[]`.
        const arr = btf.resolve(m.type);
        if (arr.kind !== BtfKind.ARRAY || !arr.array) throw new ElfError(`map ${name}: values is not __array()`);
        const ptr = btf.resolve(arr.array.type);
        if (ptr.kind !== BtfKind.PTR) throw new ElfError(`map ${name}: values is not __array()`);
        const pointee = btf.resolve(ptr.sizeOrType);
        if (pointee.kind === BtfKind.STRUCT) innerMap = mapFromDef(btf, `${name}.inner`, pointee.id);
        // FUNC_PROTO: prog_array slots; nothing to describe.
        break;
      }
    }
  }
  if (typeNum === undefined) throw new ElfError(`map ${name}: missing type`);
  const type: MapType | undefined = mapTypeFromNumber(typeNum);
  if (!type) throw new ElfError(`map ${name}: map type ${typeNum} is not supported`);
  if (type === "hash_of_maps" || type === "array_of_maps" || type === "prog_array") {
    valueSize ??= 4; // the value is an fd (libbpf fills it in the same way)
    if (type !== "prog_array" && !innerMap) throw new ElfError(`map ${name}: ${type} needs __array(values, ...)`);
  }
  if (type === "ringbuf") {
    checkRingbufDef(name, keySize, valueSize, maxEntries);
    keySize = 0; // a ring buffer has no elements: the kernel requires key and value size 0
    valueSize = 0;
  }
  if (keySize === undefined) throw new ElfError(`map ${name}: missing key or key_size`);
  if (valueSize === undefined) throw new ElfError(`map ${name}: missing value or value_size`);
  if (maxEntries === undefined) throw new ElfError(`map ${name}: missing max_entries`);
  if (pinning > 1) throw new ElfError(`map ${name}: pinning ${pinning} is not supported (0 none, 1 by_name)`);
  const spec: MapSpec = { name, type, keySize, valueSize, maxEntries, flags, pinning: pinning === 1 ? "by_name" : "none" };
  if (innerMap) spec.innerMap = innerMap;
  return spec;
}

/** Smallest page size Linux uses; a ring buffer's data size must be a multiple of the real one. */
const MIN_PAGE_SIZE = 4096;

/** A BPF_MAP_TYPE_RINGBUF definition: no key or value; max_entries is the data size in bytes, a
 * power of 2 and a multiple of the page size (the kernel refuses anything else with EINVAL). */
function checkRingbufDef(name: string, keySize?: number, valueSize?: number, maxEntries?: number): void {
  if (keySize) throw new ElfError(`map ${name}: ringbuf has no key (got key size ${keySize}, expected none)`);
  if (valueSize) throw new ElfError(`map ${name}: ringbuf has no value (got value size ${valueSize}, expected none)`);
  if (maxEntries === undefined) return; // reported as missing below
  const powerOf2 = maxEntries > 0 && (maxEntries & (maxEntries - 1)) === 0;
  if (!powerOf2 || maxEntries % MIN_PAGE_SIZE !== 0) {
    throw new ElfError(
      `map ${name}: ringbuf max_entries (data size) must be a power of 2 and a multiple of the page size, got ${maxEntries}`,
    );
  }
}
