// Opening the real kernel for a command: the pin root, the embedded datapath object, the attach
// mode, the tags of the programs this binary carries, and the facts about this machine the
// compiler needs (its addresses, the underlay MTU).

import { programTag, KernelContext, kernelTargets } from "../apply/kernel/index.js";
import type { Targets } from "../apply/executor.js";
import { GATEWAY_V4 } from "../datapath/desired.js";
import { probeFeatures } from "../ebpf-loader/index.js";
import type { Model } from "../manifest/model.js";
import { addrList, constants, linkList, type NetlinkSocket } from "../netlink/index.js";
import type { GlobalOptions } from "./args.js";
import { readAsset } from "./assets.js";

export const DATAPATH_OBJECT = "endpoint.o";

export interface Kernel {
  ctx: KernelContext;
  targets: Targets;
  attachMode: "tcx" | "tc";
  programTags: Map<string, string>;
  /** Reads this machine's addresses and device MTUs (in the namespace reconcile runs in). */
  host(): HostInfo;
  close(): void;
}

export function openKernel(opts: GlobalOptions): Kernel {
  const ctx = new KernelContext({ pinRoot: opts.bpffsRoot, datapathObject: readAsset(DATAPATH_OBJECT) });
  const programTags = new Map<string, string>();
  for (const [name, spec] of ctx.collectionSpec().programs) programTags.set(name, programTag(spec));
  return {
    ctx,
    targets: kernelTargets(ctx),
    attachMode: resolveAttachMode(opts.attachMode),
    programTags,
    host: () => readHostInfo(ctx.route()),
    close: () => ctx.close(),
  };
}

/** auto: tcx where the kernel has it (6.6+), else tc. */
export function resolveAttachMode(mode: GlobalOptions["attachMode"]): "tcx" | "tc" {
  if (mode !== "auto") return mode;
  return probeFeatures().tcx ? "tcx" : "tc";
}

/** What the compiler may need to know about this machine. */
export interface HostInfo {
  /** Global-scope addresses, without prefix length; reconcile's own gateway (169.254.1.1) and IPv6
   *  link-local addresses excluded (they are on every endpoint veth and name no host). */
  addresses: string[];
  /** MTU of the device holding each of those addresses. */
  mtuByAddress: Map<string, number>;
}

export function readHostInfo(sock: NetlinkSocket): HostInfo {
  const mtu = new Map(linkList(sock).map((l) => [l.index, l.mtu]));
  const addresses: string[] = [];
  const mtuByAddress = new Map<string, number>();
  for (const a of addrList(sock)) {
    if (a.scope !== constants.RT_SCOPE_UNIVERSE || a.address === GATEWAY_V4 || /^fe[89ab]/i.test(a.address)) continue;
    if (!mtuByAddress.has(a.address)) addresses.push(a.address);
    const m = mtu.get(a.index);
    if (m !== undefined) mtuByAddress.set(a.address, m);
  }
  return { addresses, mtuByAddress };
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
