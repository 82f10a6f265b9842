// Addresses on the devices reconcile owns. Kernel-made addresses (IPv6 link-local autoconfiguration)
// are not ours and are ignored; any other address on an owned device is ours to keep or remove.

import { addressId } from "../../datapath/desired.js";
import type { AddressSpec, DesiredState, StateOf } from "../../datapath/state.js";
import { addrDelete, addrList, addrReplace, constants } from "../../netlink/index.js";
import type { Change } from "../../plan/diff.js";
import type { ObjectResult, Target } from "../target.js";
import type { KernelContext } from "./context.js";
import { eachChange } from "./per-object.js";

export class AddressTarget implements Target<"address"> {
  readonly kind = "address" as const;

  constructor(private readonly ctx: KernelContext) {}

  async observe(desired: DesiredState): Promise<StateOf<"address">> {
    const out = new Map<string, AddressSpec>();
    for (const netns of this.ctx.namespaces(desired)) {
      const sock = this.ctx.route(netns);
      const owned = new Map(this.ctx.ownedLinks(netns).map((l) => [l.index, l.name]));
      if (owned.size === 0) continue;
      for (const a of addrList(sock)) {
        const device = owned.get(a.index);
        if (device === undefined) continue;
        const spec: AddressSpec = { device, address: a.cidr, ...(netns ? { netns } : {}) };
        const id = addressId(spec);
        const linkLocalAuto = a.family === constants.AF_INET6 && a.scope === constants.RT_SCOPE_LINK && !desired.addresses.has(id);
        if (!linkLocalAuto) out.set(id, spec);
      }
    }
    return out;
  }

  async apply(changes: readonly Change<"address">[]): Promise<ObjectResult[]> {
    return eachChange(changes, (c) => {
      const a = c.after ?? c.before;
      const sock = this.ctx.route(a.netns);
      if (c.op === "delete") addrDelete(sock, a.device, a.address);
      // Endpoint addresses must work at once: no duplicate address detection delay for IPv6.
      else addrReplace(sock, a.device, a.address, { noDad: true });
    });
  }
}
