// SPDX-License-Identifier: Apache-2.0
// Load a CollectionSpec: maps first (created, reused from pins, or replaced), then programs.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { BpfMap, MapMismatchError, type MapSpec, effectiveFlags } from "./map.js";
import { BpfProgram } from "./program.js";
import type { CollectionSpec } from "./elf.js";

export interface LoadOptions {
  /** Use these maps instead of creating the spec's maps of the same name (not closed by Collection.close). */
  replaceMaps?: Map<string, BpfMap>;
  /** Verifier log level for the first attempt (0 default; a failure always retries with 1). */
  logLevel?: number;
  /** Directory on bpffs for maps with pinning "by_name": reused when present (checked), else created and pinned. */
  pinRoot?: string;
}

export class Collection {
  readonly programs: Map<string, BpfProgram>;
  readonly maps: Map<string, BpfMap>;
  private readonly owned: BpfMap[];
  constructor(programs: Map<string, BpfProgram>, maps: Map<string, BpfMap>, owned: BpfMap[]) {
    this.programs = programs;
    this.maps = maps;
    this.owned = owned;
  }
  /** Close every program and every map the collection created (pins keep objects alive). */
  close(): void {
    for (const p of this.programs.values()) p.close();
    for (const m of this.owned) m.close();
  }
}

export function loadCollection(spec: CollectionSpec, opts: LoadOptions = {}): Collection {
  const maps = new Map<string, BpfMap>();
  const owned: BpfMap[] = [];
  const programs = new Map<string, BpfProgram>();
  try {
    for (const [name, ms] of spec.maps) {
      const replacement = opts.replaceMaps?.get(name);
      if (replacement) {
        checkCompatible(`replaceMaps[${name}]`, ms, replacement.spec);
        maps.set(name, replacement);
        continue;
      }
      const m = openOrCreate(ms, opts.pinRoot);
      owned.push(m);
      maps.set(name, m);
    }
    for (const [name, ps] of spec.programs) {
      programs.set(name, BpfProgram.load(ps, maps, { logLevel: opts.logLevel ?? 0 }));
    }
  } catch (err) {
    for (const p of programs.values()) p.close();
    for (const m of owned) m.close();
    throw err;
  }
  return new Collection(programs, maps, owned);
}

function openOrCreate(ms: MapSpec, pinRoot: string | undefined): BpfMap {
  if (ms.pinning !== "by_name" || !pinRoot) return BpfMap.create(ms);
  const path = join(pinRoot, ms.name);
  if (existsSync(path)) {
    return BpfMap.openPinned(path, {
      type: ms.type,
      keySize: ms.keySize,
      valueSize: ms.valueSize,
      maxEntries: ms.maxEntries,
      flags: effectiveFlags(ms),
    });
  }
  const m = BpfMap.create(ms);
  try {
    m.pin(path);
  } catch (err) {
    m.close();
    throw err;
  }
  return m;
}

function checkCompatible(where: string, want: MapSpec, got: MapSpec): void {
  const pairs: Array<[string, unknown, unknown]> = [
    ["type", want.type, got.type],
    ["keySize", want.keySize, got.keySize],
    ["valueSize", want.valueSize, got.valueSize],
    ["maxEntries", want.maxEntries, got.maxEntries],
  ];
  for (const [field, e, g] of pairs) if (e !== g) throw new MapMismatchError(where, field, e, g);
}
