// Shared handles for the real targets: the pin root, netlink sockets per namespace, pinned maps,
// the program object. Opened lazily, closed together at the end of a run.

import { existsSync, mkdirSync, readdirSync, rmdirSync, statfsSync } from "node:fs";
import { dirname, join } from "node:path";
import { BpfMap, parseElf, type CollectionSpec } from "../../ebpf-loader/index.js";
import { linkList, netnsExists, openRoute, type Link, type NetlinkSocket } from "../../netlink/index.js";
import type { DesiredState } from "../../datapath/state.js";

/** statfs f_type of a bpf filesystem. */
const BPF_FS_MAGIC = 0xcafe4a11;

export class PinRootError extends Error {
  override name = "PinRootError";
}

/**
 * Refuses a pin root that is not on bpffs. Pins need bpffs, and creating directories elsewhere under
 * /sys can even spin forever (sysfs answers ENOENT for a child of an existing directory, and Node's
 * recursive mkdir retries). `ip netns exec` remounts /sys without bpffs, which is how this happens.
 */
export function checkPinRoot(pinRoot: string): void {
  let probe = pinRoot;
  while (!existsSync(probe) && dirname(probe) !== probe) probe = dirname(probe);
  const type = statfsSync(probe).type;
  if (type !== BPF_FS_MAGIC) {
    throw new PinRootError(
      `pin root ${pinRoot} is not on a bpf filesystem (${probe} has file system type 0x${type.toString(16)}): ` +
        `mount one with "mount -t bpf bpf /sys/fs/bpf"; inside "ip netns exec", /sys is remounted without it, so enter the namespace with "nsenter --net=/run/netns/NAME" instead`,
    );
  }
}

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
  // What one observation reads more than once (devices, addresses, routes and neighbours all look
  // at the owned links of every namespace); dropped when the next observation begins.
  private seenNamespaces: Array<string | undefined> | undefined;
  private readonly seenOwnedLinks = new Map<string, Link[]>();

  /** Fails at once when the pin root is not on bpffs: nothing may be created until that is right. */
  constructor(readonly opts: KernelOptions) {
    checkPinRoot(opts.pinRoot);
  }

  /** Starts a new observation of the kernel: nothing read by an earlier one is reused. */
  beginObservation(): void {
    this.seenNamespaces = undefined;
    this.seenOwnedLinks.clear();
  }

  /** Namespaces to look in: the host's, every namespace the desired state names, and ours. */
  namespaces(desired: DesiredState): Array<string | undefined> {
    if (!this.seenNamespaces) {
      const names = new Set<string>(this.ownedNetns());
      for (const d of desired.devices.values()) if (d.netns) names.add(d.netns);
      this.seenNamespaces = [undefined, ...[...names].filter((n) => netnsExists(n)).sort()];
    }
    return this.seenNamespaces;
  }

  /** The devices reconcile owns (alias "reconcile:…") in a namespace, read once per observation. */
  ownedLinks(netns: string | undefined): Link[] {
    const key = netns ?? "";
    let links = this.seenOwnedLinks.get(key);
    if (!links) {
      links = linkList(this.route(netns)).filter((l) => l.alias?.startsWith(OWNER_ALIAS_PREFIX));
      this.seenOwnedLinks.set(key, links);
    }
    return links;
  }

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

  /** Creates a directory below the pin root (which the constructor found on bpffs). */
  ensureDir(path: string): void {
    mkdirSync(path, { recursive: true });
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
    this.ensureDir(join(this.pinRoot, "netns", netns));
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
