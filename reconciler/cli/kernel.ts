// Opening the real kernel for a command: the pin root, the embedded datapath object, the attach
// mode, the tags of the programs this binary carries, and the facts about this machine the
// compiler needs (its addresses, the underlay MTU).

import { programTag, KernelContext, kernelTargets } from "../apply/kernel/index.js";
import type { Targets } from "../apply/executor.js";
import { GATEWAY_V4 } from "../datapath/desired.js";
import { probeFeatures } from "../ebpf-loader/index.js";
import { addrList, constants, linkGet, type NetlinkSocket } from "../netlink/index.js";
import type { GlobalOptions } from "./args.js";
import { readAsset } from "./assets.js";
import type { HostInfo } from "./facts.js";

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
    targets: kernelTargets(ctx, { attachPosition: opts.attachPosition }),
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

/**
 * The host's global addresses and the MTU of the device each is on. Read on every daemon run: only
 * the devices that carry such an address are asked for their MTU, since dumping every link cost
 * ≈ 100 ms per run with the 2,000 veth ends of 1,000 endpoints (test/bench/daemon.bench.ts).
 */
export function readHostInfo(sock: NetlinkSocket): HostInfo {
  const addresses: string[] = [];
  const seen: Array<{ address: string; index: number }> = [];
  for (const a of addrList(sock)) {
    if (a.scope !== constants.RT_SCOPE_UNIVERSE || a.address === GATEWAY_V4 || /^fe[89ab]/i.test(a.address)) continue;
    if (!addresses.includes(a.address)) addresses.push(a.address); // a handful: the host's own addresses
    seen.push({ address: a.address, index: a.index });
  }
  const mtu = new Map<number, number | undefined>();
  for (const { index } of seen) if (!mtu.has(index)) mtu.set(index, linkGet(sock, index)?.mtu); // undefined: gone meanwhile
  const mtuByAddress = new Map<string, number>();
  for (const { address, index } of seen) {
    const m = mtu.get(index);
    if (m !== undefined) mtuByAddress.set(address, m);
  }
  return { addresses, mtuByAddress };
}
