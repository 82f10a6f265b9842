// What this machine contributes to a node's plan (host addresses, underlay MTU, attach mode,
// program tags), decided purely from facts the kernel port read. Kept apart from the kernel code so
// that commands that never touch the kernel do not load it.

import type { Model } from "../manifest/model.js";

/** What the compiler may need to know about this machine. */
export interface HostInfo {
  /** Global-scope addresses, without prefix length; reconcile's own gateway (169.254.1.1) and IPv6
   *  link-local addresses excluded (they are on every endpoint veth and name no host). */
  addresses: string[];
  /** MTU of the device holding each of those addresses. */
  mtuByAddress: Map<string, number>;
}

/** What the compiler asks of the machine it runs on; the kernel port (apply/port.ts) provides it. */
export interface MachineFacts {
  /** How programs are attached here (auto already decided). */
  readonly attachMode: "tcx" | "tc";
  /** Tags of the programs this binary carries, by program name. */
  readonly programTags: ReadonlyMap<string, string>;
  host(): HostInfo;
}

/** The node-specific compile options for `node`, and whether that node is this machine. */
export interface NodeFacts {
  /** This machine is `node`: its Node manifest's address is here, or it has no Node manifest. */
  local: boolean;
  /** Host addresses for the compiler (identity 1); only when local. */
  hostAddresses?: string[];
  /** Underlay MTU (the MTU of the device holding the Node address); only when local and known. */
  underlayMtu?: number;
  /** When not local: why this machine is not the node. */
  note?: string;
}

/**
 * Decides which of this machine's facts apply to `node`. Pure. A node whose manifest names an
 * address this machine does not have is another machine: nothing of this kernel describes it, so
 * its plan uses only what the manifests say (Node addresses as host identity, MTU 1500).
 */
export function nodeFacts(host: HostInfo, model: Pick<Model, "nodes">, node: string): NodeFacts {
  const manifest = model.nodes.find((n) => n.name === node);
  if (manifest && !host.addresses.includes(manifest.address)) {
    return {
      local: false,
      note: `node ${node} is not this machine (its address ${manifest.address} is not here)`,
    };
  }
  const mtu = manifest ? host.mtuByAddress.get(manifest.address) : undefined;
  return { local: true, hostAddresses: host.addresses, ...(mtu !== undefined ? { underlayMtu: mtu } : {}) };
}
