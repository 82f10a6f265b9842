// SPDX-License-Identifier: Apache-2.0
// Public API of the eBPF loader: maps, ELF objects, programs, tcx links, feature probes, pins.
export {
  BpfError,
  KeyNotFoundError,
  PinNotFoundError,
  UnsupportedArchitectureError,
  CpuListError,
  numPossibleCpus,
  parsePossibleCpus,
} from "./sys.js";
export {
  BpfMap,
  type BatchScratch,
  MapMismatchError,
  UnsupportedMapTypeError,
  type MapSpec,
  type MapType,
  BPF_F_NO_PREALLOC,
  BPF_F_RDONLY_PROG,
  mapTypeNumbers,
  effectiveFlags,
} from "./map.js";
export {
  parseElf,
  parseBtfMaps,
  programKind,
  ElfError,
  type ProgramSpec,
  type ProgramType,
  type ProgramAttach,
  type CollectionSpec,
  type Relocation,
} from "./elf.js";
export { Btf, BtfError, BtfKind, parseBtf, type BtfType, type BtfMember } from "./btf.js";
export { BpfProgram, VerifierError, patchInstructions, progTypeNumbers, type ProgramInfo } from "./program.js";
export { Collection, loadCollection, type LoadOptions } from "./collection.js";
export { TcxLink, TcxLinkError, queryTcx, type TcxHook, type TcxLinkInfo, type TcxPosition } from "./tcx.js";
export { probeFeatures, requireFeature, FeatureError, minKernel, type Features } from "./features.js";
export { unpin, UnpinError } from "./pin.js";
export { RingBuffer } from "./ringbuf.js";
export { programTag, programTags } from "./tag.js";
