// Neighbour entries on the devices reconcile owns, each with the FDB entry of its MAC where it has
// one: on the vxlan overlay device, "remote node address → its vxlan MAC" (ARP) and "that MAC →
// the remote underlay address" (FDB), written and removed together; "remote link-local → its vxlan
// MAC" (NDP) for IPv6 next hops, with the FDB entry when the underlay is IPv6. Only permanent entries are
// ours; the kernel's own (learned, multicast NOARP) entries are never observed or touched.

import { deviceId, neighbourId } from "../../datapath/desired.js";
import type { DesiredState, NeighbourSpec, StateOf } from "../../datapath/state.js";
import {
  constants,
  fdbDelete,
  fdbList,
  fdbReplace,
  LinkNotFoundError,
  neighDelete,
  neighList,
  neighReplace,
  type FdbEntry,
} from "../../netlink/index.js";
import type { Change } from "../../plan/diff.js";
import type { ObjectResult, Target } from "../target.js";
import type { KernelContext } from "./context.js";
import { eachChange } from "./per-object.js";

export class NeighbourTarget implements Target<"neighbour"> {
  readonly kind = "neighbour" as const;

  constructor(private readonly ctx: KernelContext) {}

  async observe(desired: DesiredState): Promise<StateOf<"neighbour">> {
    const out = new Map<string, NeighbourSpec>();
    for (const netns of this.ctx.namespaces(desired)) {
      const sock = this.ctx.route(netns);
      const owned = this.ctx.ownedLinks(netns);
      if (owned.length === 0) continue;
      const names = new Map(owned.map((l) => [l.index, l.name]));
      // FDB entries only exist on tunnel devices: MAC → remote, per device.
      const fdb = new Map<string, FdbEntry>();
      for (const l of owned) {
        if (l.kind !== "vxlan") continue;
        for (const e of fdbList(sock, l.index)) if (e.dst !== undefined && e.state & constants.NUD_PERMANENT) fdb.set(`${l.index}/${e.mac}`, e);
      }
      const paired = new Set<string>();
      for (const n of neighList(sock)) {
        const device = names.get(n.index);
        if (device === undefined || !(n.state & constants.NUD_PERMANENT) || n.mac === undefined) continue;
        // A MAC can have two neighbour entries (the remote node's underlay IPv4 and its link-local
        // IPv6 next hop) but one FDB entry: it belongs to the entry of the underlay's family.
        const f = pairedFdb(fdb.get(`${n.index}/${n.mac}`), n.address);
        const spec: NeighbourSpec = { device, address: n.address, mac: n.mac, ...(netns ? { netns } : {}), ...(f ? { fdbDst: f.dst! } : {}) };
        if (f) paired.add(`${n.index}/${n.mac}`);
        out.set(neighbourId(spec), spec);
      }
      // An FDB entry whose ARP entry is gone is still ours: observed without an address, so it is
      // either written again with its pair or pruned.
      for (const [key, f] of fdb) {
        if (paired.has(key)) continue;
        const spec: NeighbourSpec = { device: names.get(f.index)!, address: `fdb:${f.mac}`, mac: f.mac, fdbDst: f.dst!, ...(netns ? { netns } : {}) };
        out.set(neighbourId(spec), spec);
      }
    }
    return out;
  }

  async apply(changes: readonly Change<"neighbour">[], desired: DesiredState): Promise<ObjectResult[]> {
    // MACs whose FDB entry the desired state keeps, per device: an orphan FDB entry of such a MAC
    // (its neighbour entry was removed by hand) is rewritten with its pair, not deleted.
    const keptFdb = new Set([...desired.neighbours.values()].filter((n) => n.fdbDst !== undefined).map((n) => `${deviceId(n.device, n.netns)}/${n.mac}`));
    return eachChange(changes, (c) => {
      const n = c.after ?? c.before;
      const sock = this.ctx.route(n.netns);
      if (c.op === "delete") {
        const before = c.before;
        const orphanKept = before.address.startsWith("fdb:") && keptFdb.has(`${deviceId(before.device, before.netns)}/${before.mac}`);
        if (!orphanKept) remove(before, sock);
        return;
      }
      const before = c.before;
      // A changed MAC leaves the old MAC's FDB entry behind unless it is removed.
      if (before?.fdbDst !== undefined && before.mac !== n.mac) fdbDelete(sock, { dev: n.device, mac: before.mac });
      if (n.fdbDst !== undefined) fdbReplace(sock, { dev: n.device, mac: n.mac, dst: n.fdbDst });
      else if (before?.fdbDst !== undefined) fdbDelete(sock, { dev: n.device, mac: n.mac });
      neighReplace(sock, { dev: n.device, address: n.address, mac: n.mac, state: constants.NUD_PERMANENT });
    });
  }
}

function pairedFdb(f: FdbEntry | undefined, address: string): FdbEntry | undefined {
  return f !== undefined && f.dst!.includes(":") === address.includes(":") ? f : undefined;
}

/** Removes the ARP entry first (nothing routes to the MAC any more), then its FDB entry. A missing
 *  device means both are gone already. */
function remove(n: NeighbourSpec, sock: ReturnType<KernelContext["route"]>): void {
  try {
    if (!n.address.startsWith("fdb:")) neighDelete(sock, n.device, n.address);
    if (n.fdbDst !== undefined) fdbDelete(sock, { dev: n.device, mac: n.mac });
  } catch (err) {
    if (err instanceof LinkNotFoundError) return;
    throw err;
  }
}
