// Routes through the devices reconcile owns: host routes to endpoints, the gateway and default
// routes inside endpoint namespaces, and remote pod CIDRs via the vxlan device (onlink). Routes the kernel makes (connected prefixes) are not ours.

import { routeId } from "../../datapath/desired.js";
import type { DesiredState, RouteSpec, StateOf } from "../../datapath/state.js";
import { routeDelete, routeList, routeReplace, constants, type Route } from "../../netlink/index.js";
import type { Change } from "../../plan/diff.js";
import type { ObjectResult, Target } from "../target.js";
import type { KernelContext } from "./context.js";
import { eachChange } from "./per-object.js";

export class RouteTarget implements Target<"route"> {
  readonly kind = "route" as const;

  constructor(private readonly ctx: KernelContext) {}

  async observe(desired: DesiredState): Promise<StateOf<"route">> {
    const out = new Map<string, RouteSpec>();
    for (const netns of this.ctx.namespaces(desired)) {
      const sock = this.ctx.route(netns);
      const owned = new Map(this.ctx.ownedLinks(netns).map((l) => [l.index, l.name]));
      if (owned.size === 0) continue;
      for (const r of routeList(sock, {})) {
        const device = r.oif === undefined ? undefined : owned.get(r.oif);
        if (device === undefined || r.table !== constants.RT_TABLE_MAIN || r.protocol === constants.RTPROT_KERNEL) continue;
        if (r.type !== constants.RTN_UNICAST) continue;
        const spec = fromKernel(r, device, netns);
        out.set(routeId(spec), spec);
      }
    }
    return out;
  }

  async apply(changes: readonly Change<"route">[]): Promise<ObjectResult[]> {
    return eachChange(changes, (c) => {
      const r = c.after ?? c.before;
      const sock = this.ctx.route(r.netns);
      const spec = {
        dst: r.destination === "::/0" ? "default6" : r.destination,
        dev: r.device,
        ...(r.gateway ? { gateway: r.gateway } : {}),
        ...(r.scope ? { scope: r.scope } : {}),
        ...(r.onlink ? { onlink: true } : {}),
      };
      if (c.op === "delete") routeDelete(sock, spec);
      else routeReplace(sock, spec);
    });
  }
}

function fromKernel(r: Route, device: string, netns: string | undefined): RouteSpec {
  const destination = r.dst === "0.0.0.0/0" ? "default" : r.dst;
  return {
    destination,
    device,
    ...(netns ? { netns } : {}),
    ...(r.gateway ? { gateway: r.gateway } : {}),
    scope: r.scope === constants.RT_SCOPE_LINK ? "link" : "universe",
    ...(r.onlink ? { onlink: true } : {}),
  };
}
