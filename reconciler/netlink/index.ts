// Public API of the netlink package: rtnetlink over raw AF_NETLINK sockets (via koffi), named
// network namespaces, sysctls and the legacy clsact/cls_bpf attach path. Everything is synchronous
// except event subscriptions, which poll a non-blocking socket from a timer (see events.ts).
export { NetlinkSocket, NetlinkError, SocketClosedError, rtmName, type SocketOptions, type Request } from "./socket.js";
export { SyscallError, errnoName } from "./libc.js";
export {
  withNetns, openRoute, openRouteIdentified, netnsIdentity, createNetns, deleteNetns, netnsExists, netnsPath, netnsInode, currentNetnsInode,
  openNetnsFd, closeNetnsFd, NetnsError, NETNS_RUN_DIR,
} from "./netns.js";
export {
  linkList, linkGet, linkIndex, linkCreate, linkSetUp, linkSetDown, linkSetMtu, linkSetMac, linkSetAlias,
  linkSetNetns, linkDelete, buildCreateLink, decodeLink, LinkNotFoundError,
  type Link, type LinkRef, type LinkSpec, type VethSpec, type VethPeerSpec, type MacvlanSpec, type MacvlanMode,
  type VxlanSpec, type VxlanInfo, type DummySpec,
} from "./link.js";
export { addrList, addrAdd, addrReplace, addrDelete, buildAddr, decodeAddress, type Address, type AddrOptions } from "./addr.js";
export {
  routeList, routeAdd, routeReplace, routeDelete, buildRoute, decodeRoute, type Route, type RouteSpec, type RouteFilter,
  type RouteType,
} from "./route.js";
export {
  neighList, neighAdd, neighReplace, neighDelete, buildNeigh, decodeNeighbour, type Neighbour, type NeighbourSpec,
} from "./neigh.js";
export { fdbList, fdbReplace, fdbDelete, buildFdb, decodeFdb, FDB_STATE, type FdbEntry, type FdbSpec } from "./fdb.js";
export { sysctlRead, sysctlWrite, sysctlPath, confKey, neighKey, SysctlError, SysctlKeyError } from "./sysctl.js";
export {
  qdiscEnsureClsact, qdiscDeleteClsact, qdiscList, filterList, filterAddBpf, filterReplaceBpf, filterDelete,
  buildBpfFilter, decodeFilter, decodeQdisc, hookParent, CLSACT_HANDLE, QdiscConflictError,
  type TcFilter, type TcDirection, type Qdisc, type BpfFilterSpec, type FilterRef,
} from "./tc.js";
export {
  subscribe, Subscription, decodeEvent, ALL_EVENT_GROUPS, type NetlinkEvent, type EventGroup, type SubscribeOptions,
} from "./events.js";
export {
  parsePrefix, formatPrefix, ipToBytes, bytesToIp, macToBytes, bytesToMac, MessageFormatError, AddressParseError, UnsupportedHostError,
  type Prefix,
} from "./message.js";
export * as constants from "./constants.js";
