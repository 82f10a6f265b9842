// The datapath as a set of typed resources. DesiredState is compiled from a Model; ActualState is
// read from the kernel by observe/; plan/ diffs the two. Both use these same shapes so the diff is a
// plain comparison of resource ids and specs.

import type { PolicyEntrySet } from "../policy/entry-set.js";
import type { Decision, Direction, RuleRef } from "../policy/types.js";

/** Resource kinds, in the order they are created (deleted in reverse). */
export const RESOURCE_KINDS = [
  "netns",
  "device",
  "address",
  "route",
  "neighbour",
  "sysctl",
  "map",
  "endpoint",
  "ipcache",
  "policy",
  "attachment",
] as const;
export type ResourceKind = (typeof RESOURCE_KINDS)[number];

/**
 * A named network namespace (/run/netns/NAME) that endpoint devices live in. reconcile creates one
 * that is missing and marks it as its own (a directory under <pin root>/netns/); only a marked one
 * is ever deleted. A namespace that already existed is used, never claimed.
 */
export interface NetnsSpec {
  name: string;
  /** Marked as created by reconcile (observed); desired namespaces say true. */
  owned: boolean;
  /** Observed only: false for a mark whose namespace is gone (a stale mark, deleted with the plan). */
  present?: boolean;
}

/** A network device reconcile creates or adopts. */
export interface DeviceSpec {
  /** Device name in its namespace. */
  name: string;
  /** Network namespace name; undefined = the host namespace. */
  netns?: string;
  kind: "veth" | "macvlan" | "vxlan" | "dummy" | "adopted";
  /** veth: peer name and namespace. */
  peer?: { name: string; netns?: string };
  /** macvlan: parent device (host namespace). */
  parent?: string;
  mac?: string;
  mtu?: number;
  /** Administratively up. Reconcile keeps the devices it owns up; undefined = don't care. */
  up?: boolean;
  /** vxlan: the tunnel settings (compared as a whole; a change recreates the device). */
  vxlan?: VxlanSettings;
  /** Whether reconcile owns it (created it); adopted devices are only attached to. */
  owned: boolean;
  /** Endpoint this device belongs to. */
  endpoint?: string;
}

/** Settings of a vxlan device reconcile owns. */
export interface VxlanSettings {
  /** VXLAN network identifier. */
  vni: number;
  /** UDP destination port (and the port the device listens on). */
  port: number;
  /** Local underlay address: the source of encapsulated packets. */
  local: string;
  /** FDB learning from received packets; always false: reconcile writes the FDB itself. */
  learning: boolean;
}

export interface AddressSpec {
  device: string;
  netns?: string;
  /** "10.11.255.104/32" */
  address: string;
}

export interface RouteSpec {
  netns?: string;
  /** "10.11.255.104/32" or "default". */
  destination: string;
  device: string;
  /** Gateway address, when routed via one. */
  gateway?: string;
  /** Link-scope route (no gateway). */
  scope?: "link" | "universe";
  /** The gateway is on-link on `device` although no prefix there covers it (RTNH_F_ONLINK): the
   *  overlay routes a remote pod CIDR via the remote node's underlay address on the vxlan device. */
  onlink?: boolean;
}

/**
 * A neighbour (ARP/NDP) entry and, for a tunnel device, the FDB entry of the same MAC, as one object:
 * `address lladdr mac dev device` (permanent) and `mac dst fdbDst dev device self permanent`.
 */
export interface NeighbourSpec {
  device: string;
  /** Network namespace name; undefined = the host namespace. */
  netns?: string;
  /** The neighbour's IP address (for the overlay: the remote node's underlay address). */
  address: string;
  /** Its link-layer address (for the overlay: the remote node's vxlan device MAC). */
  mac: string;
  /** Underlay address frames to `mac` are encapsulated to; undefined = no FDB entry. */
  fdbDst?: string;
}

export interface SysctlSpec {
  netns?: string;
  /** e.g. "net/ipv4/conf/lxc123/proxy_arp" */
  key: string;
  value: string;
}

/** A pinned BPF map reconcile owns. */
export interface MapSpec {
  /** Logical name: "ipcache", "endpoints", "policy", "conntrack", "policy_stats", "drops". */
  name: string;
  type: string;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
}

/** A program attached to a device hook. */
export interface AttachmentSpec {
  device: string;
  netns?: string;
  hook: "ingress" | "egress";
  /** Program name in bpf/build (e.g. "to_endpoint"). */
  program: string;
  /** Program tag (sha of instructions) when known; a changed tag means "replace in place". */
  tag?: string;
  /** tcx or tc (cls_bpf). */
  mode: "tcx" | "tc";
}

/** endpoints map: endpoint address → where it lives and what it enforces. */
export interface EndpointEntry {
  /** Endpoint address without prefix length. */
  address: string;
  /** Stable endpoint number: the key of its inner policy map in the policy map-of-maps. */
  endpointId: number;
  /** Security identity of the endpoint. */
  identity: number;
  enforceIngress: boolean;
  enforceEgress: boolean;
  /** That direction's default deny is audited (EP_AUDIT_*): a packet no entry decides passes and is
   *  reported as AUDIT. */
  auditIngress: boolean;
  auditEgress: boolean;
  /** Report a VERDICT event for each new flow policy allows (EP_VERDICT_ALLOW) / each packet it
   *  denies (EP_VERDICT_DENY); drops are reported regardless. */
  verdictAllow: boolean;
  verdictDeny: boolean;
  /** The host endpoint enforces a direction (EP_HOST_POLICY): the endpoint's programs look peers up
   *  as host addresses and apply host policy. False while no host policy enforces, so that every
   *  packet skips that lookup; set and cleared as host policy appears and goes (a changed entry). */
  hostPolicy: boolean;
  /** Events per second per CPU the endpoint may report (0 = none). */
  eventRate: number;
  /** Endpoint name (not stored in the kernel; observe/ reports "" for entries it cannot name). */
  endpoint: string;
}

/** ipcache map: prefix → identity. */
export interface IpcacheMapEntry {
  prefix: string;
  identity: number;
  /** Underlay IPv4 of the remote node, or undefined. */
  tunnelEndpoint?: string;
}

/** One entry of one endpoint's policy map. */
export interface PolicyMapEntry {
  endpoint: string;
  direction: Direction;
  identity: number;
  protocol: number;
  port: number;
  portPrefixLen: number;
  decision: Decision;
  /** An audited deny (POLICY_AUDIT); absent = false. */
  audit?: boolean;
}

export interface DatapathState {
  /** Keyed by name. */
  namespaces: Map<string, NetnsSpec>;
  devices: Map<string, DeviceSpec>;
  addresses: Map<string, AddressSpec>;
  routes: Map<string, RouteSpec>;
  /** Keyed by neighbourId(). */
  neighbours: Map<string, NeighbourSpec>;
  sysctls: Map<string, SysctlSpec>;
  maps: Map<string, MapSpec>;
  attachments: Map<string, AttachmentSpec>;
  /** Keyed by address. */
  endpoints: Map<string, EndpointEntry>;
  /** Keyed by prefix. */
  ipcache: Map<string, IpcacheMapEntry>;
  /** Endpoint name → its policy entries, packed and sorted (see policy/entry-set.ts). */
  policy: Map<string, PolicyEntrySet>;
}

/** The spec of one object of each kind (a policy change's spec is one entry of an endpoint's map). */
export interface ResourceSpecs {
  netns: NetnsSpec;
  device: DeviceSpec;
  address: AddressSpec;
  route: RouteSpec;
  neighbour: NeighbourSpec;
  sysctl: SysctlSpec;
  map: MapSpec;
  endpoint: EndpointEntry;
  ipcache: IpcacheMapEntry;
  policy: PolicyMapEntry;
  attachment: AttachmentSpec;
}

/** The state field holding each kind. */
export interface ResourceFields {
  netns: "namespaces";
  device: "devices";
  address: "addresses";
  route: "routes";
  neighbour: "neighbours";
  sysctl: "sysctls";
  map: "maps";
  endpoint: "endpoints";
  ipcache: "ipcache";
  policy: "policy";
  attachment: "attachments";
}

/** What an observation holds for kind K: a Map from id to spec (for policy: endpoint to its entry set). */
export type StateOf<K extends ResourceKind> = ActualState[ResourceFields[K]];

/** The desired spec of an object of kind K. */
export type DesiredSpec<K extends ResourceKind> = K extends "policy" ? DesiredPolicyEntry : ResourceSpecs[K];

/** The observed spec of an object of kind K: the kernel may hold endpoints and ipcache keys no id names. */
export type ObservedSpec<K extends ResourceKind> = K extends "endpoint" | "ipcache" ? ResourceSpecs[K] | UndecodableEntry : ResourceSpecs[K];

interface ResourceInfo<K extends ResourceKind> {
  field: ResourceFields[K];
  /**
   * The fields that live in the kernel. A difference in any of them is an update; other fields
   * (names, provenance) are bookkeeping.
   */
  compared: ReadonlyArray<keyof ResourceSpecs[K] & string>;
}

/**
 * The resource registry: what diff and the targets need to know of each kind. A new kind is a
 * spec interface, its entry in ResourceSpecs/ResourceFields and its line here (and a target).
 */
export const RESOURCES: { readonly [K in ResourceKind]: ResourceInfo<K> } = {
  // A namespace is there or not; a foreign one the desired state names is used as it is.
  netns: { field: "namespaces", compared: [] },
  // A veth's peer is observed only when both ends are seen paired where the desired state puts them.
  device: { field: "devices", compared: ["kind", "mac", "mtu", "up", "vxlan", "peer"] },
  address: { field: "addresses", compared: [] },
  // Scope follows from the gateway (link without one, universe with one), as `ip route` does.
  route: { field: "routes", compared: ["device", "gateway", "onlink"] },
  neighbour: { field: "neighbours", compared: ["mac", "fdbDst"] },
  sysctl: { field: "sysctls", compared: ["value"] },
  map: { field: "maps", compared: ["type", "keySize", "valueSize", "maxEntries", "flags"] },
  endpoint: { field: "endpoints", compared: ["endpointId", "identity", "enforceIngress", "enforceEgress", "auditIngress", "auditEgress", "verdictAllow", "verdictDeny", "hostPolicy", "eventRate"] },
  ipcache: { field: "ipcache", compared: ["identity", "tunnelEndpoint"] },
  policy: { field: "policy", compared: ["decision", "audit"] },
  attachment: { field: "attachments", compared: ["program", "mode", "tag"] },
};

/** A desired policy entry also knows its port range and the rules that produced it (not stored in
 *  the kernel). */
export interface DesiredPolicyEntry extends PolicyMapEntry {
  endPort: number;
  rules: RuleRef[];
}

export interface DesiredState extends DatapathState {
  revision: string;
  node: string;
}

/**
 * What observe/ read from the kernel. Its endpoints and ipcache maps may also hold
 * UndecodableEntry values (see isUndecodable): kernel entries whose key no desired entry can name.
 */
export interface ActualState extends Omit<DatapathState, "endpoints" | "ipcache"> {
  endpoints: Map<string, EndpointEntry | UndecodableEntry>;
  ipcache: Map<string, IpcacheMapEntry | UndecodableEntry>;
}

/**
 * A kernel map entry whose key does not decode to an id the desired state could have (a family
 * byte that is neither 4 nor 6, a prefix length out of range, non-zero padding: written by someone
 * else). Observed under the hex of its key, so the plan deletes it as drift and names it
 * ("- ipcache 000000000000…"); the delete writes these very bytes back as the key.
 */
export interface UndecodableEntry {
  /** Why the key does not decode, e.g. "encode ipcache_key.family: expected 4 or 6, got 0". */
  undecodable: string;
  /** Key bytes, hex (also the entry's id). */
  key: string;
  /** Value bytes, hex. */
  value: string;
}

export function isUndecodable(spec: unknown): spec is UndecodableEntry {
  return typeof spec === "object" && spec !== null && typeof (spec as UndecodableEntry).undecodable === "string";
}

export { PolicyEntrySet } from "../policy/entry-set.js";

/** Stable id of a policy entry: "app1/ingress/36895/6/80/16". */
export function policyEntryId(e: Pick<PolicyMapEntry, "endpoint" | "direction" | "identity" | "protocol" | "port" | "portPrefixLen">): string {
  return `${e.endpoint}/${e.direction}/${e.identity}/${e.protocol}/${e.port}/${e.portPrefixLen}`;
}

export function emptyState(): DatapathState {
  return {
    namespaces: new Map(),
    devices: new Map(),
    addresses: new Map(),
    routes: new Map(),
    neighbours: new Map(),
    sysctls: new Map(),
    maps: new Map(),
    attachments: new Map(),
    endpoints: new Map(),
    ipcache: new Map(),
    policy: new Map(),
  };
}

/** A desired state with nothing in it (teardown wants exactly this). */
export function emptyDesired(revision: string, node: string): DesiredState {
  return { ...emptyState(), revision, node };
}
