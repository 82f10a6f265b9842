// SPDX-License-Identifier: Apache-2.0
// The kernel's program tag, computed from a ProgramSpec without loading it. Pure (no koffi), so
// `reconcile version` can show tags without touching the kernel.
import { createHash } from "node:crypto";
import type { ProgramSpec } from "./elf.js";

/**
 * Tags of a program as the kernel computes them: a digest of the instructions with map references
 * (ld_imm64 of a map fd or map value) zeroed, so it is the same however maps are numbered; the first
 * 8 bytes, in hex. Kernels from 6.18 digest with SHA-256, older ones with SHA-1.
 */
export function programTags(spec: Pick<ProgramSpec, "insns" | "relocations">): [sha256: string, sha1: string] {
  const insns = Buffer.from(spec.insns);
  for (const r of spec.relocations) {
    insns.writeInt32LE(0, r.insn * 8 + 4);
    insns.writeInt32LE(0, r.insn * 8 + 12);
    insns[r.insn * 8 + 1] = (insns[r.insn * 8 + 1]! & 0x0f) | ((r.kind === "map" ? 1 : 2) << 4);
  }
  const digest = (algo: string) => createHash(algo).update(insns).digest("hex").slice(0, 16);
  return [digest("sha256"), digest("sha1")];
}

/** The SHA-256 form: what reconcile records as a program's tag. */
export function programTag(spec: Pick<ProgramSpec, "insns" | "relocations">): string {
  return programTags(spec)[0];
}
