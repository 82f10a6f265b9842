// Devices: veth pairs and macvlans that reconcile creates for endpoints, each marked with the alias
// "reconcile:<endpoint>", and the node's vxlan overlay device (alias "reconcile:"). Only marked devices are ever observed as ours, changed or deleted.

import { deviceId } from "../../datapath/desired.js";
import type { DesiredState, DeviceSpec, VxlanSettings } from "../../datapath/state.js";
import {
  createNetns,
  deleteNetns,
  linkCreate,
  linkDelete,
  linkGet,
  linkList,
  linkSetAlias,
  linkSetMac,
  linkSetMtu,
  linkSetUp,
  netnsExists,
  sysctlWrite,
  type Link,
} from "../../netlink/index.js";
import type { Change } from "../../plan/diff.js";
import type { ObjectResult, Target } from "../target.js";
import { eachChange } from "./per-object.js";
import { OWNER_ALIAS_PREFIX, type KernelContext } from "./context.js";

export class DeviceTarget implements Target {
  readonly kind = "device" as const;
  readonly field = "devices" as const;

  constructor(private readonly ctx: KernelContext) {}

  async observe(desired: DesiredState): Promise<Map<string, unknown>> {
    const out = new Map<string, DeviceSpec>();
    for (const netns of this.ctx.namespaces(desired)) {
      for (const link of this.ctx.ownedLinks(netns)) {
        const spec = observed(link, netns);
        out.set(deviceId(spec.name, netns), spec);
      }
    }
    return out;
  }

  async apply(changes: readonly Change[], desired: DesiredState): Promise<ObjectResult[]> {
    return eachChange(changes, (c) => {
      if (c.op === "delete") this.remove(c.before as DeviceSpec, desired);
      else if (c.op === "create") this.create(c.after as DeviceSpec, desired);
      else this.update(c.after as DeviceSpec, c.before as DeviceSpec, desired);
    });
  }

  private ensureNetns(netns: string): void {
    if (netnsExists(netns)) return;
    createNetns(netns);
    this.ctx.markNetnsOwned(netns);
    linkSetUp(this.ctx.route(netns), "lo");
  }

  private create(d: DeviceSpec, desired: DesiredState): void {
    const alias = `${OWNER_ALIAS_PREFIX}${d.endpoint ?? ""}`;
    if (d.netns) this.ensureNetns(d.netns);
    const sock = this.ctx.route(d.netns);
    const existing = linkGet(sock, d.name);
    if (existing) {
      // The far side of a veth pair appears when the pair is created from the other side: claim it.
      const claimable = d.kind === "veth" && existing.kind === "veth" && (existing.alias === undefined || existing.alias.startsWith(OWNER_ALIAS_PREFIX));
      if (!claimable) {
        throw new Error(`create device ${deviceId(d.name, d.netns)}: a device of that name exists and is not reconcile's (alias ${existing.alias ?? "none"})`);
      }
      linkSetAlias(sock, d.name, alias);
      if (d.mtu !== undefined && existing.mtu !== d.mtu) linkSetMtu(sock, d.name, d.mtu);
    } else if (d.kind === "veth") {
      const peer = d.peer!;
      if (peer.netns) this.ensureNetns(peer.netns);
      linkCreate(sock, {
        kind: "veth",
        name: d.name,
        alias,
        ...(d.mac ? { mac: d.mac } : {}),
        ...(d.mtu ? { mtu: d.mtu } : {}),
        // Both ends of a pair get the same MTU; the peer's own spec only claims it afterwards.
        peer: { name: peer.name, ...(peer.netns ? { netns: peer.netns } : {}), ...(d.mtu ? { mtu: d.mtu } : {}) },
      });
    } else if (d.kind === "macvlan") {
      // Created next to its parent in this namespace, then moved: a macvlan must start on its parent's side.
      linkCreate(this.ctx.route(), {
        kind: "macvlan",
        name: d.name,
        parent: d.parent!,
        mode: "bridge",
        alias,
        ...(d.netns ? { netns: d.netns } : {}),
        ...(d.mac ? { mac: d.mac } : {}),
      });
    } else if (d.kind === "vxlan" && d.vxlan) {
      linkCreate(sock, {
        kind: "vxlan",
        name: d.name,
        alias,
        vni: d.vxlan.vni,
        port: d.vxlan.port,
        local: d.vxlan.local,
        learning: d.vxlan.learning,
        ...(d.mac ? { mac: d.mac } : {}),
        ...(d.mtu ? { mtu: d.mtu } : {}),
      });
    } else {
      throw new Error(`create device ${d.name}: kind ${d.kind} is not created by reconcile`);
    }
    if (d.mac && existing) linkSetMac(sock, d.name, d.mac);
    if (!existing) writeOwnSysctls(d, desired);
    linkSetUp(sock, d.name);
  }

  private update(d: DeviceSpec, before: DeviceSpec, desired: DesiredState): void {
    // The kernel cannot change a vxlan device's VNI or port in place: make it again.
    if (d.kind !== before.kind || (d.kind === "vxlan" && !sameVxlan(d.vxlan, before.vxlan))) {
      this.remove(before, undefined);
      this.create(d, desired);
      return;
    }
    const sock = this.ctx.route(d.netns);
    if (d.mtu !== undefined && d.mtu !== before.mtu) linkSetMtu(sock, d.name, d.mtu);
    if (d.mac !== undefined && d.mac !== before.mac) linkSetMac(sock, d.name, d.mac);
    if (d.up && !before.up) linkSetUp(sock, d.name);
  }

  private remove(d: DeviceSpec, desired: DesiredState | undefined): void {
    // Deleting one end of a veth pair deletes both; a missing device is already what we want.
    linkDelete(this.ctx.route(d.netns), d.name);
    if (!d.netns || !desired || !this.ctx.ownedNetns().includes(d.netns)) return;
    const stillUsed = [...desired.devices.values()].some((x) => x.netns === d.netns || x.peer?.netns === d.netns);
    if (stillUsed) return;
    const others = linkList(this.ctx.route(d.netns)).filter((l) => l.name !== "lo" && l.name !== d.name);
    if (others.length) return; // someone else put devices there: leave the namespace alone
    this.ctx.forgetNetns(d.netns);
    deleteNetns(d.netns);
    this.ctx.unmarkNetnsOwned(d.netns);
  }
}

/**
 * The desired IPv6 sysctls of a new device (net/ipv6/conf/<name>/...), written before it comes up:
 * `addr_gen_mode` decides which link-local the kernel generates when the device goes up, and
 * `disable_ipv6` whether the routes on it (planned before sysctls) can be added in this run.
 * The sysctl target still owns them (reads, corrects drift); this only makes them take effect first.
 */
function writeOwnSysctls(d: DeviceSpec, desired: DesiredState): void {
  const prefix = `net/ipv6/conf/${d.name}/`;
  for (const s of desired.sysctls.values()) {
    if (s.key.startsWith(prefix) && s.netns === d.netns) sysctlWrite(s.key, s.value, d.netns);
  }
}

function sameVxlan(a: VxlanSettings | undefined, b: VxlanSettings | undefined): boolean {
  return a?.vni === b?.vni && a?.port === b?.port && a?.local === b?.local && a?.learning === b?.learning;
}

function observed(link: Link, netns: string | undefined): DeviceSpec {
  const kind = link.kind === "veth" || link.kind === "macvlan" || link.kind === "vxlan" || link.kind === "dummy" ? link.kind : "adopted";
  return {
    name: link.name,
    ...(netns ? { netns } : {}),
    kind,
    ...(link.mac ? { mac: link.mac } : {}),
    mtu: link.mtu,
    up: link.up,
    ...(link.vxlan
      ? { vxlan: { vni: link.vxlan.vni, port: link.vxlan.port ?? 0, local: link.vxlan.local ?? "", learning: link.vxlan.learning ?? false } }
      : {}),
    owned: true,
    endpoint: link.alias!.slice(OWNER_ALIAS_PREFIX.length),
  };
}
