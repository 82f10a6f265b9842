// Shared handles for the real targets: the pin root, netlink sockets per namespace, pinned maps,
// the program object. Opened lazily, closed together at the end of a run.

import { mkdirSync, readdirSync, rmdirSync } from "node:fs";
import { join } from "node:path";
import { BpfMap, parseElf, type CollectionSpec } from "../../ebpf-loader/index.js";
import { openRoute, type NetlinkSocket } from "../../netlink/index.js";

/** Alias that marks a device as created by reconcile (and for which endpoint). */
export const OWNER_ALIAS_PREFIX = "reconcile:";

export interface KernelOptions {
  /** bpffs directory holding reconcile's pins (maps, links, ownership marks). */
  pinRoot: string;
  /** The compiled datapath object (bpf/build/endpoint.o), as embedded in the binary. */
  datapathObject: Buffer;
}

export class KernelContext {
  private readonly sockets = new Map<string, NetlinkSocket>();
  private readonly maps = new Map<string, BpfMap>();
  private spec: CollectionSpec | undefined;

  constructor(readonly opts: KernelOptions) {}

  get pinRoot(): string {
    return this.opts.pinRoot;
  }

  /** A NETLINK_ROUTE socket in namespace `netns` (undefined = the namespace reconcile runs in). */
  route(netns?: string): NetlinkSocket {
    const key = netns ?? "";
    let sock = this.sockets.get(key);
    if (!sock) {
      sock = openRoute(netns);
      this.sockets.set(key, sock);
    }
    return sock;
  }

  /** Drops a cached socket, e.g. after its namespace was deleted. */
  forgetNetns(netns: string): void {
    this.sockets.get(netns)?.close();
    this.sockets.delete(netns);
  }

  mapPath(name: string): string {
    return join(this.pinRoot, name);
  }

  /** The pinned map `name`, or undefined when it is not pinned (yet). */
  map(name: string): BpfMap | undefined {
    let m = this.maps.get(name);
    if (m) return m;
    try {
      m = BpfMap.openPinned(this.mapPath(name));
    } catch (err) {
      if ((err as { code?: string }).code === "ENOENT") return undefined;
      throw err;
    }
    this.maps.set(name, m);
    return m;
  }

  /** Registers a map just created and pinned, so later targets in the run reuse its fd. */
  adoptMap(name: string, m: BpfMap): void {
    this.maps.get(name)?.close();
    this.maps.set(name, m);
  }

  forgetMap(name: string): void {
    this.maps.get(name)?.close();
    this.maps.delete(name);
  }

  collectionSpec(): CollectionSpec {
    this.spec ??= parseElf(this.opts.datapathObject);
    return this.spec;
  }

  /** Namespaces reconcile created (and so may delete): marker directories under the pin root. */
  ownedNetns(): string[] {
    try {
      return readdirSync(join(this.pinRoot, "netns"));
    } catch {
      return [];
    }
  }

  markNetnsOwned(netns: string): void {
    mkdirSync(join(this.pinRoot, "netns", netns), { recursive: true });
  }

  unmarkNetnsOwned(netns: string): void {
    try {
      rmdirSync(join(this.pinRoot, "netns", netns));
    } catch {
      /* not marked */
    }
  }

  close(): void {
    for (const s of this.sockets.values()) s.close();
    for (const m of this.maps.values()) m.close();
    this.sockets.clear();
    this.maps.clear();
  }
}
