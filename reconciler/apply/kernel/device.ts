// Devices: veth pairs and macvlans that reconcile creates for endpoints, each marked with the alias
// "reconcile:<endpoint>", and the node's vxlan overlay device (alias "reconcile:"). Only marked devices are ever observed as ours, changed or deleted.

import { deviceId } from "../../datapath/desired.js";
import type { DesiredState, DeviceSpec, StateOf } from "../../datapath/state.js";
import {
  linkCreate,
  linkDelete,
  linkGet,
  linkSetAlias,
  linkSetMac,
  linkSetMtu,
  linkSetUp,
  sysctlWrite,
  type Link,
} from "../../netlink/index.js";
import type { Change } from "../../plan/diff.js";
import type { ObjectResult, StepProgress, Target } from "../target.js";
import { eachChange } from "./per-object.js";
import { OWNER_ALIAS_PREFIX, type KernelContext } from "./context.js";

export class DeviceTarget implements Target<"device"> {
  readonly kind = "device" as const;

  constructor(private readonly ctx: KernelContext) {}

  async observe(desired: DesiredState): Promise<StateOf<"device">> {
    const out = new Map<string, DeviceSpec>();
    const seen: Array<{ link: Link; netns: string | undefined; spec: DeviceSpec }> = [];
    for (const netns of this.ctx.namespaces(desired)) {
      for (const link of this.ctx.ownedLinks(netns)) {
        const spec = observed(link, netns);
        out.set(deviceId(spec.name, netns), spec);
        seen.push({ link, netns, spec });
      }
    }
    // A veth's peer is reported only when the two ends are seen paired (each names the other's
    // ifindex), each in the namespace observed under its name. An end whose peer is elsewhere (in a
    // namespace that was deleted, kept alive by whatever still uses it) has no peer, so the plan
    // makes the pair again rather than trusting a pair that no longer connects the endpoint.
    for (const a of seen) {
      if (a.link.kind !== "veth" || a.link.peerIndex === undefined) continue;
      const b = seen.find((x) => x !== a && x.netns !== a.netns && x.link.kind === "veth" && x.link.index === a.link.peerIndex && x.link.peerIndex === a.link.index);
      if (b) a.spec.peer = { name: b.link.name, ...(b.netns ? { netns: b.netns } : {}) };
    }
    return out;
  }

  async apply(changes: readonly Change<"device">[], desired: DesiredState, progress?: StepProgress): Promise<ObjectResult[]> {
    return eachChange(changes, (c) => {
      if (c.op === "delete") this.remove(c.before);
      else if (c.op === "create") this.create(c.after, desired);
      else if (c.replace) {
        // The plan decided it (REPLACING): the kernel cannot change a vxlan device's VNI or port
        // in place, nor re-pair a veth; what sits on the device was planned again too.
        this.remove(c.before);
        this.create(c.after, desired);
      } else this.update(c.after, c.before);
    }, progress);
  }

  private create(d: DeviceSpec, desired: DesiredState): void {
    const alias = `${OWNER_ALIAS_PREFIX}${d.endpoint ?? ""}`;
    // The namespaces are the plan's own objects, made before any device (netns comes first).
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

  /** What a device changes in place: MTU, MAC, up. */
  private update(d: DeviceSpec, before: DeviceSpec): void {
    const sock = this.ctx.route(d.netns);
    if (d.mtu !== undefined && d.mtu !== before.mtu) linkSetMtu(sock, d.name, d.mtu);
    if (d.mac !== undefined && d.mac !== before.mac) linkSetMac(sock, d.name, d.mac);
    if (d.up && !before.up) linkSetUp(sock, d.name);
  }

  private remove(d: DeviceSpec): void {
    // Deleting one end of a veth pair deletes both; a missing device is already what we want. Its
    // namespace, when reconcile made it, is deleted by the plan's own netns change, after its devices.
    linkDelete(this.ctx.route(d.netns), d.name);
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
