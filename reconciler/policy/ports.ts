// toPorts → policy key port parts. A port range becomes the minimal list of aligned power-of-two
// blocks, each one LPM prefix over the 16-bit destination port.

import type { NamedPort, PortRule } from "../manifest/model.js";
import { Protocol } from "./types.js";

/** The protocol/port part of a policy key. */
export interface PortKey {
  /** IANA protocol, 0 = any protocol (then port 0, endPort 65535, portPrefixLen 0). */
  protocol: number;
  /** First port of the block. */
  port: number;
  /** Last port of the block, inclusive. */
  endPort: number;
  /** Significant leading bits of the port: 16 = one port, 0 = all ports. */
  portPrefixLen: number;
}

/** The L3-only key part: every protocol, every port. */
export const ANY_PORT_KEY: PortKey = Object.freeze({ protocol: 0, port: 0, endPort: 65535, portPrefixLen: 0 });

/** Split [start, end] (inclusive, within 0..65535) into aligned power-of-two blocks. */
export function portRangeBlocks(start: number, end: number): Array<{ port: number; endPort: number; portPrefixLen: number }> {
  const out: Array<{ port: number; endPort: number; portPrefixLen: number }> = [];
  let p = start;
  while (p <= end) {
    // Largest block aligned at p that does not pass `end`.
    let size = p === 0 ? 65536 : p & -p;
    while (p + size - 1 > end) size >>= 1;
    const bits = Math.log2(size);
    out.push({ port: p, endPort: p + size - 1, portPrefixLen: 16 - bits });
    p += size;
  }
  return out;
}

/** Protocol numbers a PortRule protocol name stands for (ANY = TCP, UDP and SCTP, as in Cilium). */
export function protocolsOf(name: PortRule["protocol"]): number[] {
  switch (name) {
    case "TCP":
      return [Protocol.TCP];
    case "UDP":
      return [Protocol.UDP];
    case "SCTP":
      return [Protocol.SCTP];
    case "ANY":
      return [Protocol.TCP, Protocol.UDP, Protocol.SCTP];
    case "ICMP":
      return [Protocol.ICMP];
    case "ICMPv6":
      return [Protocol.ICMPV6];
  }
}

/** Whether a protocol's policy key "port" is the ICMP type (as in Cilium's policy key). */
export function isICMP(protocol: number): boolean {
  return protocol === Protocol.ICMP || protocol === Protocol.ICMPV6;
}

/**
 * The numeric ports a named port rule stands for, given the named ports the destination
 * declares: every declaration of that name whose protocol the rule admits (ANY admits all), with
 * the declared protocol. A name the destination does not declare stands for nothing.
 */
export function resolveNamedPort(pr: PortRule, declared: readonly NamedPort[] | undefined): PortRule[] {
  if (pr.name === undefined) return [pr];
  const out: PortRule[] = [];
  for (const d of declared ?? []) {
    if (d.name !== pr.name) continue;
    if (pr.protocol !== "ANY" && pr.protocol !== d.protocol) continue;
    out.push({ port: d.port, endPort: d.port, protocol: d.protocol });
  }
  return out;
}

/** Whether a PortRule list names a port. */
export function hasNamedPorts(ports: readonly PortRule[] | undefined): boolean {
  return ports !== undefined && ports.some((p) => p.name !== undefined);
}

/** Keys for a PeerRule's ports; `undefined` ports (no toPorts) = L3-only = one any-port key. */
export function portKeys(ports: readonly PortRule[] | undefined, declared?: readonly NamedPort[]): PortKey[] {
  if (ports === undefined) return [ANY_PORT_KEY];
  const out: PortKey[] = [];
  const seen = new Set<string>();
  const add = (k: PortKey): void => {
    const id = `${k.protocol}/${k.port}/${k.portPrefixLen}`;
    if (seen.has(id)) return;
    seen.add(id);
    out.push(k);
  };
  for (const pr of ports.flatMap((p) => resolveNamedPort(p, declared))) {
    if (pr.protocol === "ICMP" || pr.protocol === "ICMPv6") {
      // The ICMP type takes the place of the port, exactly (Cilium: dport = type).
      add({ protocol: protocolsOf(pr.protocol)[0]!, port: pr.port, endPort: pr.port, portPrefixLen: 16 });
      continue;
    }
    const start = pr.port === 0 ? 0 : pr.port;
    const end = pr.port === 0 ? 65535 : Math.max(pr.port, pr.endPort);
    const blocks = portRangeBlocks(start, end);
    for (const protocol of protocolsOf(pr.protocol)) for (const b of blocks) add({ protocol, ...b });
  }
  return out;
}

/** Whether a PortRule list (undefined = all) admits a packet's protocol and destination port. */
export function portsAdmit(ports: readonly PortRule[] | undefined, protocol: number, port: number, declared?: readonly NamedPort[]): boolean {
  if (ports === undefined) return true;
  for (const pr of ports.flatMap((p) => resolveNamedPort(p, declared))) {
    if (!protocolsOf(pr.protocol).includes(protocol)) continue;
    if (isICMP(protocol)) {
      if (port === pr.port) return true;
      continue;
    }
    if (pr.port === 0) return true;
    if (port >= pr.port && port <= Math.max(pr.port, pr.endPort)) return true;
  }
  return false;
}

/** Display form of a protocol number: TCP, UDP, SCTP, ICMP, ICMPv6 or the number. */
export function protocolName(protocol: number): string {
  switch (protocol) {
    case Protocol.ANY:
      return "any";
    case Protocol.TCP:
      return "TCP";
    case Protocol.UDP:
      return "UDP";
    case Protocol.SCTP:
      return "SCTP";
    case Protocol.ICMP:
      return "ICMP";
    case Protocol.ICMPV6:
      return "ICMPv6";
    default:
      return String(protocol);
  }
}
