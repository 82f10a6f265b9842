// Named network namespaces as objects of the plan. A missing namespace that an endpoint names is
// created and marked as reconcile's (a directory <pin root>/netns/<name>); only a marked one is ever
// deleted, and only once no device is left in it. One that existed already is used, never claimed.

import type { DesiredState, NetnsSpec, StateOf } from "../../datapath/state.js";
import { createNetns, deleteNetns, linkList, linkSetUp, netnsExists } from "../../netlink/index.js";
import type { Change } from "../../plan/diff.js";
import type { ObjectResult, Target } from "../target.js";
import type { KernelContext } from "./context.js";
import { eachChange } from "./per-object.js";

export class NetnsTarget implements Target<"netns"> {
  readonly kind = "netns" as const;

  constructor(private readonly ctx: KernelContext) {}

  /**
   * Reconcile's namespaces (marked), and the desired ones that exist without a mark (foreign: used
   * as they are). A mark whose namespace is gone and that nothing desires is reported as not
   * present, so the plan removes it: a namespace made later under that name by someone else must
   * not be taken for reconcile's.
   */
  async observe(desired: DesiredState): Promise<StateOf<"netns">> {
    const out = new Map<string, NetnsSpec>();
    for (const name of this.ctx.ownedNetns()) {
      if (netnsExists(name)) out.set(name, { name, owned: true });
      else if (!desired.namespaces.has(name)) out.set(name, { name, owned: true, present: false });
    }
    for (const name of desired.namespaces.keys()) {
      if (!out.has(name) && netnsExists(name)) out.set(name, { name, owned: false });
    }
    return out;
  }

  async apply(changes: readonly Change<"netns">[]): Promise<ObjectResult[]> {
    return eachChange(changes, (c) => {
      if (c.op === "delete") this.remove(c.before);
      else if (c.op === "create") this.create(c.after);
      // no update: a namespace has nothing to change in place
    });
  }

  private create(n: NetnsSpec): void {
    if (netnsExists(n.name)) {
      // Made by someone else since the observation: use it, do not claim it.
      this.ctx.unmarkNetnsOwned(n.name);
      return;
    }
    // Mark first: a crash between the two leaves a mark without a namespace (removed by the next
    // plan), never a namespace of ours without its mark (which would leak).
    this.ctx.forgetNetns(n.name); // a socket kept on an earlier namespace of that name
    this.ctx.markNetnsOwned(n.name);
    try {
      createNetns(n.name);
    } catch (err) {
      this.ctx.unmarkNetnsOwned(n.name);
      throw err;
    }
    linkSetUp(this.ctx.route(n.name), "lo");
  }

  private remove(n: NetnsSpec): void {
    if (!n.owned) throw new Error(`netns ${n.name} is not reconcile's: it is never deleted (this is a bug)`);
    if (n.present !== false && netnsExists(n.name)) {
      const left = linkList(this.ctx.route(n.name)).filter((l) => l.name !== "lo");
      if (left.length) {
        throw new Error(`delete netns ${n.name}: it still holds ${left.map((l) => l.name).join(", ")}, not deleted with the plan; left in place`);
      }
      this.ctx.forgetNetns(n.name); // our socket must not keep the namespace alive
      deleteNetns(n.name);
    }
    this.ctx.unmarkNetnsOwned(n.name);
  }
}
