// Model + compiled policy → DesiredState: every device, address, route, sysctl, map, map entry and
// program attachment the local node should have. Pure.

import { createHash } from "node:crypto";
import type { EndpointManifest, ManifestProblem, Model, NodeManifest } from "../manifest/model.js";
import { formatAddress } from "../manifest/ip.js";
import { GATEWAY_V4, GATEWAY_V6, HOST_ENDPOINT } from "../policy/host.js";
import { ReservedIdentity, type CompiledPolicy, type EndpointPolicy } from "../policy/types.js";
import { DEFAULT_EVENT_RATE } from "./layouts.js";
import { MAP_SPECS } from "./maps.js";
import {
  emptyState,
  type AddressSpec,
  type AttachmentSpec,
  type DesiredState,
  type DeviceSpec,
  type EndpointEntry,
  type NeighbourSpec,
  type RouteSpec,
  type SysctlSpec,
} from "./state.js";

/** The program that enforces an endpoint's ingress policy and the one for its egress policy. */
export const PROGRAM_TO_ENDPOINT = "to_endpoint";
export const PROGRAM_FROM_ENDPOINT = "from_endpoint";
/** The host firewall programs on the host's devices: traffic into the host (tc ingress) and out of
 *  it (tc egress), judged by the local host endpoint's policy. */
export const PROGRAM_FROM_NETDEV = "from_netdev";
export const PROGRAM_TO_NETDEV = "to_netdev";

/** Endpoint number of the local host endpoint (host policies): its inner map in `policy` and its
 *  counters. Endpoint numbers of endpoints are 1..65535 (endpointIds), so this one never collides. */
export const HOST_ENDPOINT_ID = 65536;

/** The overlay device reconcile creates on a node whose Node manifest has a tunnel. */
export const VXLAN_DEVICE = "rc-vxlan";
/** Bytes VXLAN over IPv4 adds to an inner frame: outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14. */
export const VXLAN_OVERHEAD = 50;
/** Bytes VXLAN over IPv6 adds: outer IPv6 40 + UDP 8 + VXLAN 8 + inner Ethernet 14. */
export const VXLAN6_OVERHEAD = 70;
/** Underlay MTU assumed when the caller does not know it. */
export const DEFAULT_UNDERLAY_MTU = 1500;

export interface DesiredOptions {
  /** How programs attach: tcx links or legacy tc (cls_bpf). */
  attachMode: "tcx" | "tc";
  /** Tags of the programs this binary carries, by program name: an attached program with another
   *  tag is replaced in place. Without it, any program of the right name is accepted. */
  programTags?: ReadonlyMap<string, string>;
  /** MTU of the local node's underlay device (the one holding its Node address); default 1500.
   *  The overlay device and, on a tunnelled node, every endpoint veth get this minus VXLAN_OVERHEAD
   *  (VXLAN6_OVERHEAD on an IPv6 underlay). */
  underlayMtu?: number;
  /** Receives non-fatal findings (e.g. a remote node the overlay cannot reach). */
  onWarning?: (p: ManifestProblem) => void;
  /** --monitor-verdicts: which policy verdicts every endpoint reports as events (drops always are);
   *  default none. */
  monitorVerdicts?: MonitorVerdicts;
  /** --event-rate: events per second per CPU each endpoint may report; default DEFAULT_EVENT_RATE. */
  eventRate?: number;
}

export const MONITOR_VERDICTS = ["none", "allow", "deny", "all"] as const;
export type MonitorVerdicts = (typeof MONITOR_VERDICTS)[number];
/** The largest --event-rate (events/s per CPU per endpoint). */
export const MAX_EVENT_RATE = 1_000_000;

/** An endpoint entry's flags and event settings: enforcement and audit from its compiled policy,
 *  verdict events and the rate from the options. They live in each endpoint's entry (rather than a
 *  config map) so that they are planned, applied and drift-corrected like everything else. */
function endpointFlags(policy: EndpointPolicy, opts: DesiredOptions, hostPolicy = false): Pick<EndpointEntry, "enforceIngress" | "enforceEgress" | "auditIngress" | "auditEgress" | "verdictAllow" | "verdictDeny" | "hostPolicy" | "eventRate"> {
  const verdicts = opts.monitorVerdicts ?? "none";
  return {
    enforceIngress: policy.enforce.ingress,
    enforceEgress: policy.enforce.egress,
    auditIngress: policy.audit.ingress,
    auditEgress: policy.audit.egress,
    verdictAllow: verdicts === "allow" || verdicts === "all",
    verdictDeny: verdicts === "deny" || verdicts === "all",
    hostPolicy,
    eventRate: opts.eventRate ?? DEFAULT_EVENT_RATE,
  };
}

export function deviceId(name: string, netns?: string): string {
  return netns ? `${netns}/${name}` : name;
}

export function routeId(r: Pick<RouteSpec, "netns" | "destination">): string {
  return r.netns ? `${r.netns}/${r.destination}` : r.destination;
}

export function addressId(a: AddressSpec): string {
  return `${deviceId(a.device, a.netns)}/${a.address}`;
}

export function neighbourId(n: Pick<NeighbourSpec, "netns" | "device" | "address">): string {
  return `${deviceId(n.device, n.netns)}/${n.address}`;
}

export function sysctlId(s: Pick<SysctlSpec, "netns" | "key">): string {
  return s.netns ? `${s.netns}/${s.key}` : s.key;
}

export function attachmentId(a: Pick<AttachmentSpec, "device" | "netns" | "hook">): string {
  return `${deviceId(a.device, a.netns)}/${a.hook}`;
}

/**
 * Stable endpoint numbers (the key of an endpoint's inner policy map): a hash of the endpoint name
 * in 1..65535, probing upwards on collision in name order. The same manifests give the same numbers
 * on every run, and adding an endpoint renumbers another only when their hashes collide.
 */
export function endpointIds(names: readonly string[]): Map<string, number> {
  const ids = new Map<string, number>();
  const used = new Set<number>();
  for (const name of [...names].sort()) {
    let id = (fnv1a(name) % 65535) + 1;
    while (used.has(id)) id = (id % 65535) + 1;
    used.add(id);
    ids.set(name, id);
  }
  return ids;
}

/**
 * MAC of a node's vxlan device: locally administered unicast (first byte 0x02) and five bytes of
 * sha256(node name), so every node knows every other node's MAC from the manifests alone.
 */
export function vxlanMac(nodeName: string): string {
  const h = createHash("sha256").update(nodeName).digest();
  return [0x02, ...h.subarray(0, 5)].map((b) => b.toString(16).padStart(2, "0")).join(":");
}

/**
 * The IPv6 link-local address the kernel gives a device with this MAC (modified EUI-64, RFC 4291
 * appendix A: flip the universal/local bit, put ff:fe in the middle), in canonical text form.
 * A node's rc-vxlan MAC is vxlanMac(name), so this is every node's overlay next hop, known from the
 * manifests alone.
 */
export function eui64LinkLocal(mac: string): string {
  const m = mac.split(":").map((x) => parseInt(x, 16));
  if (m.length !== 6 || m.some((b) => !(b >= 0 && b <= 255))) throw new RangeError(`link-local of MAC: expected aa:bb:cc:dd:ee:ff, got ${mac}`);
  const bytes = Uint8Array.of(0xfe, 0x80, 0, 0, 0, 0, 0, 0, m[0]! ^ 0x02, m[1]!, m[2]!, 0xff, 0xfe, m[3]!, m[4]!, m[5]!);
  return formatAddress(bytes, 0, 6);
}

function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/**
 * A previous build to reuse from: its compiled policy and the desired state built from it. An
 * ipcache array that is the previous one gets the previous ipcache Map (by reference; never
 * modified once built). Per-endpoint policy needs nothing here: it is the EndpointPolicy's own
 * entry set, so an EndpointPolicy an incremental compile reused brings its previous set along.
 */
export interface PreviousBuild {
  /** The compiled policy the previous desired state was built from. */
  compiled: CompiledPolicy;
  /** That desired state. */
  desired: DesiredState;
}

export function buildDesiredState(model: Model, compiled: CompiledPolicy, opts: DesiredOptions, previous?: PreviousBuild): DesiredState {
  const state: DesiredState = { revision: compiled.revision, node: compiled.node, ...emptyState(), maps: new Map(MAP_SPECS.map((m) => [m.name, m])) };

  const local = model.endpoints.filter((e) => e.node === undefined || e.node === compiled.node);
  const ids = endpointIds(local.map((e) => e.name));
  const policyByEndpoint = new Map(compiled.endpoints.map((p) => [p.endpoint, p]));

  const localNode = model.nodes.find((n) => n.name === compiled.node);
  const overhead = localNode?.address.includes(":") ? VXLAN6_OVERHEAD : VXLAN_OVERHEAD;
  const overlayMtu = localNode?.tunnel ? (opts.underlayMtu ?? DEFAULT_UNDERLAY_MTU) - overhead : undefined;
  if (localNode?.tunnel) addOverlay(state, localNode, model.nodes, overlayMtu!, opts);

  // While the host endpoint enforces a direction, every endpoint's entry says so (EP_HOST_POLICY) and
  // its programs look peers up as host addresses; otherwise they skip that lookup. Planned as data:
  // host policy appearing or going changes every endpoint entry, so the diff rewrites them.
  const hostPolicy = policyByEndpoint.get(HOST_ENDPOINT);
  const hostEnforces = hostPolicy !== undefined && (hostPolicy.enforce.ingress || hostPolicy.enforce.egress);

  let anyV4 = localNode?.tunnel !== undefined;
  let anyV6 = false;
  for (const ep of local) {
    addEndpointDevices(state, ep, opts, overlayMtu);
    anyV4 ||= ep.ipv4 !== undefined && ep.create?.kind === "veth";
    anyV6 ||= ep.ipv6 !== undefined && ep.create?.kind === "veth";

    const policy = policyByEndpoint.get(ep.name);
    if (!policy) throw new Error(`no compiled policy for local endpoint ${ep.name}: this is a bug`);
    for (const address of [ep.ipv4, ep.ipv6]) {
      if (address === undefined) continue;
      state.endpoints.set(address, {
        address,
        endpointId: ids.get(ep.name)!,
        identity: policy.identity,
        ...endpointFlags(policy, opts, hostEnforces),
        endpoint: ep.name,
      });
    }
    // The compiled set itself: an EndpointPolicy an incremental compile reused brings the very set
    // the previous desired state (and so the known state) holds, which the diff skips.
    state.policy.set(ep.name, policy.entrySet);
  }

  if (hostPolicy) addHostEndpoint(state, hostPolicy, compiled, localNode, opts);

  // Routing between endpoints on this host goes through the host namespace.
  if (anyV4) addSysctl(state, { key: "net/ipv4/ip_forward", value: "1" });
  if (anyV6) addSysctl(state, { key: "net/ipv6/conf/all/forwarding", value: "1" });

  if (previous !== undefined && compiled.ipcache === previous.compiled.ipcache) state.ipcache = previous.desired.ipcache;
  else {
    for (const entry of compiled.ipcache) {
      // The map's tunnel endpoint field holds an IPv4 address (bpf/include/ipcache.h). It is
      // informational (the vxlan FDB does the encapsulation), so an IPv6 underlay address is left out.
      const tunnel = entry.tunnelEndpoint !== undefined && !entry.tunnelEndpoint.includes(":") ? { tunnelEndpoint: entry.tunnelEndpoint } : {};
      state.ipcache.set(entry.prefix, { prefix: entry.prefix, identity: entry.identity, ...tunnel });
    }
  }
  return state;
}

/**
 * The VXLAN overlay of a node with a tunnel: one device, and for every other node with pod CIDRs
 * routes to each of them over that device, permanent neighbour entries for their next hops and an
 * FDB entry sending frames for the node's vxlan MAC to its underlay address. Decapsulated packets
 * are routed by the endpoints' /32 and /128 routes to their veths, where to_endpoint enforces
 * ingress policy as for local traffic (the ipcache holds remote endpoints with their identities).
 *
 * Next hops (docs/multinode.md): on an IPv4 underlay an IPv4 pod CIDR goes via the remote node's
 * underlay address (on-link), resolved by a permanent ARP entry to its vxlan MAC. Every IPv6 pod
 * CIDR, and on an IPv6 underlay every pod CIDR (an IPv4 route with an IPv6 gateway, RTA_VIA), goes
 * via the remote rc-vxlan's EUI-64 link-local address, resolved by a permanent NDP entry. The FDB
 * entry rides with the neighbour entry of the underlay's family.
 */
function addOverlay(state: DesiredState, local: NodeManifest, nodes: readonly NodeManifest[], mtu: number, opts: DesiredOptions): void {
  const tunnel = local.tunnel!;
  const warn = (n: NodeManifest, path: string, message: string): void =>
    opts.onWarning?.({ file: n.at.file, line: n.at.line, object: `Node/${n.name}`, path, message, severity: "warning" });
  const underlay6 = local.address.includes(":");
  addDevice(state, {
    name: VXLAN_DEVICE,
    kind: "vxlan",
    mac: vxlanMac(local.name),
    mtu,
    vxlan: { vni: tunnel.vni, port: tunnel.port, local: local.address, learning: false },
    owned: true,
  });
  // IPv6 pod CIDRs anywhere on this overlay (the local node's receive, the remote ones are sent to).
  let podV6 = local.podCIDRs.some((c) => c.includes(":"));
  for (const remote of nodes) {
    if (remote.name === local.name || remote.podCIDRs.length === 0) continue;
    if (remote.address.includes(":") !== underlay6) {
      const want = underlay6 ? "IPv6" : "IPv4";
      warn(remote, "spec.address", `expected an ${want} underlay address like node ${local.name} (${local.address}), got ${remote.address}; one vxlan device encapsulates in one address family, so its pod CIDRs get no overlay route`);
      continue;
    }
    if (!remote.tunnel || remote.tunnel.vni !== tunnel.vni || remote.tunnel.port !== tunnel.port) {
      const got = remote.tunnel ? `vni ${remote.tunnel.vni} port ${remote.tunnel.port}` : "no tunnel";
      warn(remote, "spec.tunnel", `expected vxlan vni ${tunnel.vni} port ${tunnel.port} like node ${local.name}, got ${got}; its pod CIDRs get no overlay route`);
      continue;
    }
    const mac = vxlanMac(remote.name);
    const linkLocal = eui64LinkLocal(mac);
    const v6CIDRs = remote.podCIDRs.filter((c) => c.includes(":"));
    if (underlay6) {
      addNeighbour(state, { device: VXLAN_DEVICE, address: linkLocal, mac, fdbDst: remote.address });
    } else {
      addNeighbour(state, { device: VXLAN_DEVICE, address: remote.address, mac, fdbDst: remote.address });
      if (v6CIDRs.length > 0) addNeighbour(state, { device: VXLAN_DEVICE, address: linkLocal, mac });
    }
    podV6 ||= v6CIDRs.length > 0;
    for (const cidr of remote.podCIDRs) {
      const viaLinkLocal = underlay6 || cidr.includes(":");
      addRoute(state, viaLinkLocal
        ? { destination: cidr, device: VXLAN_DEVICE, gateway: linkLocal, scope: "universe" }
        : { destination: cidr, device: VXLAN_DEVICE, gateway: remote.address, onlink: true, scope: "universe" });
    }
  }
  if (underlay6 || podV6) {
    // The device must take IPv6 (decapsulated IPv6 packets, NDP next hops) and carry the EUI-64
    // link-local that the other nodes' NDP entries name, whatever the host's defaults are; IPv6
    // packets from the overlay are forwarded to the endpoints' veths.
    addSysctl(state, { key: `net/ipv6/conf/${VXLAN_DEVICE}/disable_ipv6`, value: "0" });
    addSysctl(state, { key: `net/ipv6/conf/${VXLAN_DEVICE}/addr_gen_mode`, value: "0" });
    if (podV6) addSysctl(state, { key: "net/ipv6/conf/all/forwarding", value: "1" });
  }
}

/**
 * The local host endpoint (host policies, policy/host.ts), stored like an endpoint: an `endpoints`
 * entry per local host address (the ipcache's host /32 and /128 entries: the local Node address and
 * this machine's addresses, plus the endpoints' gateway addresses when veth endpoints have them),
 * all with endpoint number HOST_ENDPOINT_ID and identity host, and its policy under HOST_ENDPOINT. The endpoint programs check it when an endpoint talks to a host
 * address and the reverse; the host firewall programs on the Node's `spec.hostFirewall.devices`
 * (adopted: only the links are reconcile's) and, when the overlay exists, on rc-vxlan, check it for
 * traffic between the host and everything else.
 */
function addHostEndpoint(state: DesiredState, policy: EndpointPolicy, compiled: CompiledPolicy, localNode: NodeManifest | undefined, opts: DesiredOptions): void {
  for (const entry of compiled.ipcache) {
    if (entry.origin !== "host" || entry.identity !== ReservedIdentity.host) continue;
    const [address, bits] = entry.prefix.split("/");
    if (address === undefined || bits !== (address.includes(":") ? "128" : "32")) continue;
    if (state.endpoints.has(address)) continue; // an endpoint's own address stays the endpoint's
    state.endpoints.set(address, {
      address,
      endpointId: HOST_ENDPOINT_ID,
      identity: ReservedIdentity.host,
      ...endpointFlags(policy, opts),
      endpoint: HOST_ENDPOINT,
    });
  }
  // The gateway addresses on the host-side veths are the host's too: the host's packets to its
  // endpoints usually leave with them as source, and an endpoint's packets to them are for the host.
  // (They stay out of the ipcache, so endpoint policies keep seeing them as world.)
  const gateways = new Set([...state.addresses.values()].map((a) => a.address));
  for (const [gw, plen] of [[GATEWAY_V4, 32], [GATEWAY_V6, 64]] as const) {
    if (!gateways.has(`${gw}/${plen}`) || state.endpoints.has(gw)) continue;
    state.endpoints.set(gw, {
      address: gw,
      endpointId: HOST_ENDPOINT_ID,
      identity: ReservedIdentity.host,
      ...endpointFlags(policy, opts),
      endpoint: HOST_ENDPOINT,
    });
  }
  state.policy.set(HOST_ENDPOINT, policy.entrySet);

  const devices = localNode?.hostFirewall?.devices;
  if (devices === undefined) return;
  for (const device of devices) {
    const existing = state.devices.get(deviceId(device));
    if (existing !== undefined && (existing.endpoint !== undefined || (existing.owned && device !== VXLAN_DEVICE))) {
      // Its hooks already run an endpoint's programs; the host firewall would replace them.
      opts.onWarning?.({
        file: localNode!.at.file,
        line: localNode!.at.line,
        object: `Node/${localNode!.name}`,
        path: "spec.hostFirewall.devices",
        message: `device ${device} is ${existing.endpoint !== undefined ? `endpoint ${existing.endpoint}'s interface` : "a device reconcile creates"}, not a host device; no host firewall on it`,
        severity: "warning",
      });
      continue;
    }
    if (existing === undefined) addDevice(state, { name: device, kind: "adopted", owned: false });
    addHostFirewall(state, device, opts);
  }
  if (state.devices.has(VXLAN_DEVICE) && !devices.includes(VXLAN_DEVICE)) addHostFirewall(state, VXLAN_DEVICE, opts);
}

/** Host firewall programs on a host device: from_netdev on ingress, to_netdev on egress. */
function addHostFirewall(state: DesiredState, device: string, opts: DesiredOptions): void {
  for (const [hook, program] of [
    ["ingress", PROGRAM_FROM_NETDEV],
    ["egress", PROGRAM_TO_NETDEV],
  ] as const) {
    const tag = opts.programTags?.get(program);
    const a: AttachmentSpec = { device, hook, program, mode: opts.attachMode, ...(tag !== undefined ? { tag } : {}) };
    state.attachments.set(attachmentId(a), a);
  }
}

function addEndpointDevices(state: DesiredState, ep: EndpointManifest, opts: DesiredOptions, mtu: number | undefined): void {
  const create = ep.create;
  if (!create) {
    // Adopted: the interface exists; reconcile only attaches programs to it.
    addDevice(state, { name: ep.interfaceName, kind: "adopted", owned: false, endpoint: ep.name });
    addAttachments(state, ep.interfaceName, undefined, "host-veth", opts);
    return;
  }

  const netns = create.netns;
  state.namespaces.set(netns, { name: netns, owned: true });
  if (create.kind === "macvlan") {
    addDevice(state, {
      name: create.ifname,
      netns,
      kind: "macvlan",
      parent: create.parent!,
      ...(ep.mac !== undefined ? { mac: ep.mac } : {}),
      owned: true,
      endpoint: ep.name,
    });
    for (const [address, bits] of addresses(ep)) addAddress(state, { device: create.ifname, netns, address: `${address}/${bits}` });
    // Bridge-mode macvlans reach each other on the parent's segment: everything is on-link.
    if (ep.ipv4) addRoute(state, { netns, destination: "default", device: create.ifname, scope: "link" });
    if (ep.ipv6) addRoute(state, { netns, destination: "::/0", device: create.ifname, scope: "link" });
    addAttachments(state, create.ifname, netns, "in-namespace", opts);
    return;
  }

  const host = ep.interfaceName;
  // On a tunnelled node both ends get the overlay MTU, so TCP to remote endpoints negotiates a
  // segment size that still fits once encapsulated.
  const withMtu = mtu !== undefined ? { mtu } : {};
  addDevice(state, { name: host, kind: "veth", peer: { name: create.ifname, netns }, ...withMtu, owned: true, endpoint: ep.name });
  addDevice(state, {
    name: create.ifname,
    netns,
    kind: "veth",
    peer: { name: host },
    ...(ep.mac !== undefined ? { mac: ep.mac } : {}),
    ...withMtu,
    owned: true,
    endpoint: ep.name,
  });
  for (const [address, bits] of addresses(ep)) {
    addAddress(state, { device: create.ifname, netns, address: `${address}/${bits}` });
    addRoute(state, { destination: `${address}/${bits}`, device: host, scope: "link" });
  }
  if (ep.ipv4) {
    // The gateway lives on every host-side veth, so the host answers the endpoint's ARP for it
    // whatever the host's own routing looks like (proxy ARP would need a host route to it).
    addAddress(state, { device: host, address: `${GATEWAY_V4}/32` });
    addRoute(state, { netns, destination: `${GATEWAY_V4}/32`, device: create.ifname, scope: "link" });
    addRoute(state, { netns, destination: "default", device: create.ifname, gateway: GATEWAY_V4 });
  }
  if (ep.ipv6) {
    addAddress(state, { device: host, address: `${GATEWAY_V6}/64` });
    addRoute(state, { netns, destination: "::/0", device: create.ifname, gateway: GATEWAY_V6 });
  }
  addAttachments(state, host, undefined, "host-veth", opts);
}

function addresses(ep: EndpointManifest): Array<[string, number]> {
  const out: Array<[string, number]> = [];
  if (ep.ipv4) out.push([ep.ipv4, 32]);
  if (ep.ipv6) out.push([ep.ipv6, 128]);
  return out;
}

/**
 * On a host-side veth, packets towards the endpoint leave through the device's egress hook and its
 * own packets arrive on the ingress hook. Inside the endpoint's namespace (macvlan) it is the reverse.
 */
function addAttachments(
  state: DesiredState,
  device: string,
  netns: string | undefined,
  where: "host-veth" | "in-namespace",
  opts: DesiredOptions,
): void {
  const towards = where === "host-veth" ? "egress" : "ingress";
  const from = where === "host-veth" ? "ingress" : "egress";
  for (const [hook, program] of [
    [towards, PROGRAM_TO_ENDPOINT],
    [from, PROGRAM_FROM_ENDPOINT],
  ] as const) {
    const tag = opts.programTags?.get(program);
    const a: AttachmentSpec = {
      device,
      hook,
      program,
      mode: opts.attachMode,
      ...(netns !== undefined ? { netns } : {}),
      ...(tag !== undefined ? { tag } : {}),
    };
    state.attachments.set(attachmentId(a), a);
  }
}

function addDevice(state: DesiredState, d: DeviceSpec): void {
  state.devices.set(deviceId(d.name, d.netns), d.owned ? { ...d, up: true } : d);
}
function addAddress(state: DesiredState, a: AddressSpec): void {
  state.addresses.set(addressId(a), a);
}
function addRoute(state: DesiredState, r: RouteSpec): void {
  state.routes.set(routeId(r), r);
}
function addNeighbour(state: DesiredState, n: NeighbourSpec): void {
  state.neighbours.set(neighbourId(n), n);
}
function addSysctl(state: DesiredState, s: SysctlSpec): void {
  state.sysctls.set(sysctlId(s), s);
}
