// Shared handles for the real targets: the pin root, netlink sockets per namespace, pinned maps,
// the program object. Opened lazily, closed together at the end of a run.

import { existsSync, mkdirSync, readdirSync, renameSync, rmdirSync, statfsSync } from "node:fs";
import { dirname, join } from "node:path";
import { BpfMap, parseElf, type CollectionSpec, type TcxLinkInfo } from "../../ebpf-loader/index.js";
import { linkList, netnsExists, netnsIdentity, openRouteIdentified, type Link, type NetlinkSocket } from "../../netlink/index.js";
import type { DesiredState } from "../../datapath/state.js";
import type { Suspension } from "../port.js";

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

/** Directory below the pin root whose one entry names the revision in force (recordRevision). */
export const REVISION_DIR = "revision";

/** Directory below the pin root whose one entry records a suspension (recordSuspension). */
export const SUSPENSION_DIR = "suspended";

/** A directory name is at most 255 bytes: the reason is cut to fit. */
const NAME_MAX = 255;

/** Alias that marks a device as created by reconcile (and for which endpoint). */
export const OWNER_ALIAS_PREFIX = "reconcile:";

/** A tcx link pinned under <pin root>/links/<netns|host>/<device>/<hook>, as BPF_OBJ_GET_INFO_BY_FD
 *  reported it (ifindex 0: its device is gone, the link attaches nothing). */
export interface PinnedTcxLink extends TcxLinkInfo {
  device: string;
  netns?: string;
}

export interface KernelOptions {
  /** bpffs directory holding reconcile's pins (maps, links, ownership marks). */
  pinRoot: string;
  /** The compiled datapath object (bpf/build/endpoint.o), as embedded in the binary. */
  datapathObject: Buffer;
}

export class KernelContext {
  /** Per namespace name: the socket and the identity (netnsIdentity) of the namespace it lives in. */
  private readonly sockets = new Map<string, { socket: NetlinkSocket; identity: string | undefined }>();
  /** Namespaces whose kept socket was checked since the last revalidate(). */
  private readonly checked = new Set<string>();
  private readonly maps = new Map<string, BpfMap>();
  private spec: CollectionSpec | undefined;
  // What one observation reads more than once (devices, addresses, routes and neighbours all look
  // at the owned links of every namespace); dropped when the next observation begins.
  private seenNamespaces: Array<string | undefined> | undefined;
  private readonly seenOwnedLinks = new Map<string, Link[]>();
  // The pinned tcx links the last observation read, kept until attachments are applied or the next
  // observation begins: the foreign-program check after a run that changed nothing reads the hooks
  // of these links instead of opening every pinned link a second time.
  private seenTcxLinks: PinnedTcxLink[] | undefined;

  /** Fails at once when the pin root is not on bpffs: nothing may be created until that is right. */
  constructor(readonly opts: KernelOptions) {
    checkPinRoot(opts.pinRoot);
  }

  /** Starts a new observation of the kernel: nothing read by an earlier one is reused. */
  beginObservation(): void {
    this.revalidate();
    this.seenNamespaces = undefined;
    this.seenOwnedLinks.clear();
    this.seenTcxLinks = undefined;
  }

  /** Attachments are about to be applied: the tcx links the last observation read may no longer be so. */
  forgetObservedTcxLinks(): void {
    this.seenTcxLinks = undefined;
  }

  /** The pinned tcx links an observation read (the attachment target reports them). */
  notePinnedTcxLinks(links: PinnedTcxLink[]): void {
    this.seenTcxLinks = links;
  }

  /** The pinned tcx links as the last observation read them, if nothing was applied since. */
  observedTcxLinks(): readonly PinnedTcxLink[] | undefined {
    return this.seenTcxLinks;
  }

  /** Namespaces to look in: the host's, every namespace the desired state names, and ours. */
  namespaces(desired: DesiredState): Array<string | undefined> {
    if (!this.seenNamespaces) {
      const names = new Set<string>(this.ownedNetns());
      for (const d of desired.devices.values()) if (d.netns) names.add(d.netns);
      for (const n of desired.namespaces.keys()) names.add(n);
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

  /**
   * Starts a new use of the kept sockets (an observation, or one batch of changes): each is checked
   * again, once, before it is used.
   */
  revalidate(): void {
    this.checked.clear();
  }

  /**
   * A NETLINK_ROUTE socket in namespace `netns` (undefined = the namespace reconcile runs in). A
   * socket kept from earlier is used only while /run/netns/NAME still names the namespace it was
   * opened in, checked (one stat) the first time it is used after revalidate(): a namespace
   * deleted and made again under the same name (`ip netns del`, then reconcile's own repair) gets a
   * new socket, rather than the daemon writing into the old namespace, which the kept socket alone
   * holds alive. A name bound to nothing fails here (NetnsError ENOENT), instead of acting on a
   * namespace that no longer has a name.
   */
  route(netns?: string): NetlinkSocket {
    const key = netns ?? "";
    const kept = this.sockets.get(key);
    if (kept) {
      if (netns === undefined || this.checked.has(key)) return kept.socket;
      if (kept.identity === netnsIdentity(netns)) {
        this.checked.add(key);
        return kept.socket;
      }
      kept.socket.close(); // releases the old namespace
      this.sockets.delete(key);
    }
    const opened = openRouteIdentified(netns);
    this.sockets.set(key, opened);
    this.checked.add(key);
    return opened.socket;
  }

  /** Drops a cached socket, e.g. before its namespace is deleted (so nothing of ours keeps it alive). */
  forgetNetns(netns: string): void {
    this.sockets.get(netns)?.socket.close();
    this.sockets.delete(netns);
    this.checked.delete(netns);
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

  /**
   * The revision the last fully successful apply put in force, as recorded under the pin root
   * (recordRevision), or undefined. It lives with the pins, so it says what the pinned datapath
   * enforces: teardown removes it with them, and a daemon restarted while its source is invalid
   * knows which revision is in force.
   */
  recordedRevision(): string | undefined {
    let names: string[];
    try {
      names = readdirSync(join(this.pinRoot, REVISION_DIR));
    } catch {
      return undefined;
    }
    // One entry; two only if a rename was interrupted in a way rename(2) does not allow, so take none.
    return names.length === 1 ? decodeURIComponent(names[0]!) : undefined;
  }

  /**
   * Records `revision` as the one in force. bpffs holds no regular files, so the revision is the name
   * of the one directory in <pin root>/revision/; a change renames it, which is atomic: a reader sees
   * the old name or the new one, never none or both.
   */
  recordRevision(revision: string): void {
    const dir = join(this.pinRoot, REVISION_DIR);
    const name = encodeURIComponent(revision);
    let names: string[] = [];
    try {
      names = readdirSync(dir);
    } catch {
      this.ensureDir(dir);
    }
    if (names.length === 1 && names[0] === name) return;
    if (names.length === 1) {
      renameSync(join(dir, names[0]!), join(dir, name));
      return;
    }
    for (const n of names) rmdirSync(join(dir, n));
    mkdirSync(join(dir, name));
  }

  /** The suspension recorded with the pins (recordSuspension), or undefined. */
  recordedSuspension(): Suspension | undefined {
    let names: string[];
    try {
      names = readdirSync(join(this.pinRoot, SUSPENSION_DIR));
    } catch {
      return undefined;
    }
    if (names.length !== 1) return names.length ? { since: 0, reason: "(unreadable suspension record)" } : undefined;
    const m = /^(\d+)(?:-(.*))?$/.exec(names[0]!);
    if (!m) return { since: 0, reason: "(unreadable suspension record)" }; // still suspended: an odd name is no reason to apply
    let reason: string | undefined;
    try {
      reason = m[2] !== undefined ? decodeURIComponent(m[2]) : undefined;
    } catch {
      reason = m[2];
    }
    return { since: Number(m[1]), ...(reason ? { reason } : {}) };
  }

  /**
   * Records a suspension as the name of the one directory in <pin root>/suspended/ ("<since>-<reason,
   * URI-encoded>", bpffs holds no regular files), or removes the record. Made before the old one is
   * removed, so a crash in between leaves the daemon suspended, never resumed.
   */
  recordSuspension(suspension: Suspension | undefined): void {
    const dir = join(this.pinRoot, SUSPENSION_DIR);
    let old: string[] = [];
    try {
      old = readdirSync(dir);
    } catch {
      /* none yet */
    }
    let name: string | undefined;
    if (suspension) {
      let reason = suspension.reason ?? "";
      const head = `${Math.trunc(suspension.since)}`;
      while (reason && Buffer.byteLength(`${head}-${encodeURIComponent(reason)}`) > NAME_MAX) reason = reason.slice(0, -1);
      name = reason ? `${head}-${encodeURIComponent(reason)}` : head;
      this.ensureDir(join(dir, name));
    }
    for (const n of old) if (n !== name) rmdirSync(join(dir, n));
    if (!suspension && old.length) rmdirSync(dir);
  }

  close(): void {
    for (const s of this.sockets.values()) s.socket.close();
    for (const m of this.maps.values()) m.close();
    this.sockets.clear();
    this.checked.clear();
    this.maps.clear();
  }
}
