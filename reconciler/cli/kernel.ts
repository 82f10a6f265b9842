// Opening the real kernel for a command: the pin root, the embedded datapath object, the attach
// mode, and the tags of the programs this binary carries.

import { programTag, KernelContext, kernelTargets } from "../apply/kernel/index.js";
import type { Targets } from "../apply/executor.js";
import { probeFeatures } from "../ebpf-loader/index.js";
import type { GlobalOptions } from "./args.js";
import { readAsset } from "./assets.js";

export const DATAPATH_OBJECT = "endpoint.o";

export interface Kernel {
  ctx: KernelContext;
  targets: Targets;
  attachMode: "tcx" | "tc";
  programTags: Map<string, string>;
  close(): void;
}

export function openKernel(opts: GlobalOptions): Kernel {
  const ctx = new KernelContext({ pinRoot: opts.bpffsRoot, datapathObject: readAsset(DATAPATH_OBJECT) });
  const programTags = new Map<string, string>();
  for (const [name, spec] of ctx.collectionSpec().programs) programTags.set(name, programTag(spec));
  return {
    ctx,
    targets: kernelTargets(ctx),
    attachMode: resolveAttachMode(opts.attachMode),
    programTags,
    close: () => ctx.close(),
  };
}

/** auto: tcx where the kernel has it (6.6+), else tc. */
export function resolveAttachMode(mode: GlobalOptions["attachMode"]): "tcx" | "tc" {
  if (mode !== "auto") return mode;
  return probeFeatures().tcx ? "tcx" : "tc";
}
