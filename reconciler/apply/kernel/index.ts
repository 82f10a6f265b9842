// The real kernel: one target per resource kind, over ebpf-loader and netlink.

import { Targets } from "../executor.js";
import type { Target } from "../target.js";
import type { ActualState, DesiredState, ResourceKind } from "../../datapath/state.js";
import { AddressTarget } from "./address.js";
import { AttachmentTarget } from "./attachment.js";
import type { KernelContext } from "./context.js";
import { DeviceTarget } from "./device.js";
import { endpointsTarget, ipcacheTarget } from "./entries.js";
import { bumpPolicyRevision, MapTarget } from "./maps.js";
import { NeighbourTarget } from "./neighbour.js";
import { NetnsTarget } from "./netns.js";
import { PolicyTarget } from "./policy.js";
import type { RcuKnob } from "./rcu.js";
import { RouteTarget } from "./route.js";
import { SysctlTarget } from "./sysctl.js";

export { KernelContext, OWNER_ALIAS_PREFIX, REVISION_DIR, SUSPENSION_DIR, type KernelOptions } from "./context.js";
export { linkPinPath, tcxChains } from "./attachment.js";
export { programTag } from "../../ebpf-loader/tag.js";

/** The kernel's targets; each observation of them starts from a fresh read of the kernel. */
class KernelTargets extends Targets {
  constructor(
    private readonly ctx: KernelContext,
    targets: ConstructorParameters<typeof Targets>[0],
  ) {
    super(targets);
  }

  override async observe(desired: DesiredState, kinds?: readonly ResourceKind[]): Promise<ActualState> {
    this.ctx.beginObservation();
    return super.observe(desired, kinds);
  }
}

/** The kinds whose entries the programs judge packets by: verdicts cached in conntrack are only
 *  valid for the policy revision they were stored under, which a batch of these moves on. */
const JUDGED_BY: ReadonlySet<ResourceKind> = new Set(["endpoint", "ipcache", "policy"]);

/** A target whose every batch of changes first has the kept namespace sockets checked again, and,
 *  for the entries packets are judged by, bumps the policy revision once the batch is written
 *  (also after a partial failure: whatever was written must not be judged by cached verdicts). */
function freshHandles(ctx: KernelContext, target: Target): Target {
  const bumps = JUDGED_BY.has(target.kind);
  return {
    kind: target.kind,
    observe: (desired) => target.observe(desired),
    apply: async (changes, desired, progress) => {
      ctx.revalidate();
      try {
        return await target.apply(changes, desired, progress);
      } finally {
        if (bumps && changes.length > 0) bumpPolicyRevision(ctx);
      }
    },
  };
}

/** `attachPosition`: where fresh tcx links go among foreign programs (default first);
 *  `expediteRcu`: the knob a batch of fresh tcx links expedites RCU grace periods with (rcu.ts). */
export function kernelTargets(ctx: KernelContext, opts: { attachPosition?: "first" | "last"; expediteRcu?: RcuKnob } = {}): Targets {
  const targets: Target[] = [
    new NetnsTarget(ctx),
    new DeviceTarget(ctx),
    new AddressTarget(ctx),
    new RouteTarget(ctx),
    new NeighbourTarget(ctx),
    new SysctlTarget(),
    new MapTarget(ctx),
    endpointsTarget(ctx),
    ipcacheTarget(ctx),
    new PolicyTarget(ctx),
    new AttachmentTarget(ctx, opts.attachPosition ?? "first", opts.expediteRcu),
  ];
  return new KernelTargets(ctx, targets.map((t) => freshHandles(ctx, t)));
}
