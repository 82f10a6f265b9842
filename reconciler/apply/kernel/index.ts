// The real kernel: one target per resource kind, over ebpf-loader and netlink.

import { Targets } from "../executor.js";
import { AddressTarget } from "./address.js";
import { AttachmentTarget } from "./attachment.js";
import type { KernelContext } from "./context.js";
import { DeviceTarget } from "./device.js";
import { endpointsTarget, ipcacheTarget } from "./entries.js";
import { MapTarget } from "./maps.js";
import { NeighbourTarget } from "./neighbour.js";
import { PolicyTarget } from "./policy.js";
import { RouteTarget } from "./route.js";
import { SysctlTarget } from "./sysctl.js";

export { KernelContext, OWNER_ALIAS_PREFIX, type KernelOptions } from "./context.js";
export { linkPinPath } from "./attachment.js";
export { programTag } from "../../ebpf-loader/tag.js";

export function kernelTargets(ctx: KernelContext): Targets {
  return new Targets([
    new DeviceTarget(ctx),
    new AddressTarget(ctx),
    new RouteTarget(ctx),
    new NeighbourTarget(ctx),
    new SysctlTarget(),
    new MapTarget(ctx),
    endpointsTarget(ctx),
    ipcacheTarget(ctx),
    new PolicyTarget(ctx),
    new AttachmentTarget(ctx),
  ]);
}
