// Named network namespaces, compatible with `ip netns` (/run/netns/NAME bind mounts).
//
// Threading: setns(2) and unshare(2) change the namespace of the calling THREAD only. Everything
// here runs synchronously on Node's main JS thread, and every switch is undone before returning,
// so no other JS (timers, promises, callbacks) ever runs while the main thread is in a foreign
// namespace. libuv's thread pool and V8's helper threads stay in the original namespace throughout;
// this is why `fn` in withNetns must be synchronous and must not rely on async fs/dns/net calls.
// (libuv opens every file O_CLOEXEC.)
// Sockets keep the namespace they were created in, so openRoute(ns) creates the socket inside and
// returns at once; the socket then works from the original namespace.
import { closeSync, constants as fsConstants, existsSync, fstatSync, mkdirSync, openSync, statSync, unlinkSync } from "node:fs";
import * as libc from "./libc.js";
import { NetlinkSocket, type SocketOptions } from "./socket.js";

export const NETNS_RUN_DIR = "/run/netns";
/** The calling thread's own namespace (not the thread group leader's, which /proc/self would give). */
const THREAD_NETNS = "/proc/thread-self/ns/net";

/** A namespace operation failed (bad name, missing namespace, failed switch). */
export class NetnsError extends Error {
  override readonly name = "NetnsError";
  constructor(readonly netns: string, message: string, options?: ErrorOptions) {
    super(`netns ${netns}: ${message}`, options);
  }
}

/** Validates a namespace name the way `ip netns` does: one path component. */
export function netnsPath(name: string): string {
  if (name === "" || name === "." || name === ".." || name.includes("/") || name.includes("\0")) {
    throw new NetnsError(name, `invalid name (expected a single path component, got ${JSON.stringify(name)})`);
  }
  return `${NETNS_RUN_DIR}/${name}`;
}

export function netnsExists(name: string): boolean {
  return existsSync(netnsPath(name));
}

/** Inode of the calling thread's network namespace (identifies a namespace, as `ip netns identify`). */
export function currentNetnsInode(): number {
  return statSync(THREAD_NETNS).ino;
}

/** Inode of a named namespace. */
export function netnsInode(name: string): number {
  return statSync(netnsPath(name)).ino;
}

/**
 * Identity of a named namespace as "dev:inode" of /run/netns/NAME (the nsfs inode of the namespace
 * bound there), or undefined when nothing is bound there. A namespace deleted and made again under
 * the same name (`ip netns del X; ip netns add X`) has another identity: handles opened in the old
 * one (sockets) still work, but on the old namespace.
 */
export function netnsIdentity(name: string): string | undefined {
  try {
    const st = statSync(netnsPath(name));
    return `${st.dev}:${st.ino}`;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw e;
  }
}

/**
 * Run `fn` with the calling thread inside network namespace `name` and ALWAYS switch back, even if
 * `fn` throws. `fn` must be synchronous (a returned promise is refused: its continuation would run
 * in the original namespace). Nested calls work as a stack. `name` undefined runs fn in place.
 * `fn` receives the identity (netnsIdentity) of the namespace it runs in, read from the very
 * descriptor entered, so it names that namespace even if the name is rebound meanwhile.
 */
export function withNetns<T>(name: string | undefined, fn: (identity: string | undefined) => T): T {
  if (name === undefined) return fn(undefined);
  const path = netnsPath(name);
  let target: number;
  try {
    target = openSync(path, fsConstants.O_RDONLY);
  } catch (e) {
    throw new NetnsError(name, `open ${path}: ${(e as NodeJS.ErrnoException).code ?? e}`, { cause: e });
  }
  let orig: number;
  try {
    orig = openSync(THREAD_NETNS, fsConstants.O_RDONLY);
  } catch (e) {
    closeSync(target);
    throw e;
  }
  try {
    const st = fstatSync(target);
    libc.setns(target, libc.CLONE_NEWNET, `enter netns ${name}`);
    let result: T;
    try {
      result = fn(`${st.dev}:${st.ino}`);
    } finally {
      restore(orig, name);
    }
    if (isThenable(result)) {
      throw new NetnsError(name, "withNetns callback returned a promise; it must be synchronous");
    }
    return result;
  } finally {
    closeSync(target);
    closeSync(orig);
  }
}

function restore(orig: number, name: string): void {
  try {
    libc.setns(orig, libc.CLONE_NEWNET, `return from netns ${name}`);
  } catch (e) {
    // The main thread is stuck in a foreign namespace; continuing would act on the wrong
    // namespace. This cannot happen for a valid namespace fd we opened ourselves.
    throw new NetnsError(name, "FATAL: could not restore the original network namespace", { cause: e });
  }
}

function isThenable(v: unknown): boolean {
  return typeof v === "object" && v !== null && typeof (v as { then?: unknown }).then === "function";
}

/** Open a NETLINK_ROUTE socket bound to namespace `netns` (or the current one if undefined). */
export function openRoute(netns?: string, opts: SocketOptions = {}): NetlinkSocket {
  return withNetns(netns, () => new NetlinkSocket(opts));
}

/** openRoute, also naming the namespace the socket lives in (netnsIdentity; undefined: the current one). */
export function openRouteIdentified(netns?: string, opts: SocketOptions = {}): { socket: NetlinkSocket; identity: string | undefined } {
  return withNetns(netns, (identity) => ({ socket: new NetlinkSocket(opts), identity }));
}

/**
 * Create a named namespace like `ip netns add NAME`: make /run/netns a shared mount point (so the
 * mount propagates to other mount namespaces), create the empty file /run/netns/NAME, unshare a new
 * network namespace on this thread, bind-mount /proc/thread-self/ns/net onto the file (the mount
 * keeps the namespace alive), and switch this thread back to the original namespace.
 * Throws NetnsError if it already exists.
 */
export function createNetns(name: string): void {
  const path = netnsPath(name);
  mkdirSync(NETNS_RUN_DIR, { recursive: true, mode: 0o755 });
  ensureSharedRunDir();
  let fd: number;
  try {
    fd = openSync(path, fsConstants.O_RDONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, 0o000);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new NetnsError(name, code === "EEXIST" ? "already exists" : `create ${path}: ${code ?? e}`, { cause: e });
  }
  closeSync(fd);
  const orig = openSync(THREAD_NETNS, fsConstants.O_RDONLY);
  try {
    try {
      libc.unshare(libc.CLONE_NEWNET, `create netns ${name}`);
      try {
        libc.mount(THREAD_NETNS, path, "none", libc.MS_BIND, `bind netns ${name} to ${path}`);
      } finally {
        restore(orig, name);
      }
    } catch (e) {
      try { unlinkSync(path); } catch { /* best effort: leave no empty file behind */ }
      throw new NetnsError(name, "create failed", { cause: e });
    }
  } finally {
    closeSync(orig);
  }
}

/** Make /run/netns a shared mount point, bind-mounting it onto itself first if it is not a mount. */
function ensureSharedRunDir(): void {
  try {
    libc.mount("", NETNS_RUN_DIR, "none", libc.MS_SHARED | libc.MS_REC, "share /run/netns");
    return;
  } catch (e) {
    if (!(e instanceof libc.SyscallError) || e.code !== "EINVAL") throw e;
  }
  libc.mount(NETNS_RUN_DIR, NETNS_RUN_DIR, "none", libc.MS_BIND | libc.MS_REC, "bind /run/netns onto itself");
  libc.mount("", NETNS_RUN_DIR, "none", libc.MS_SHARED | libc.MS_REC, "share /run/netns");
}

/**
 * Delete a named namespace like `ip netns delete`: lazy-unmount and remove the file. The namespace
 * itself disappears when its last user (process, open fd, socket) is gone. Returns false if it did
 * not exist (missing counts as success).
 */
export function deleteNetns(name: string): boolean {
  const path = netnsPath(name);
  if (!existsSync(path)) return false;
  try {
    libc.umount2(path, libc.MNT_DETACH, `unmount ${path}`);
  } catch (e) {
    // EINVAL: not a mount point (a stale empty file); still remove the file below.
    if (!(e instanceof libc.SyscallError) || e.code !== "EINVAL") throw new NetnsError(name, "delete failed", { cause: e });
  }
  unlinkSync(path);
  return true;
}

/** Open a namespace file for IFLA_NET_NS_FD; the caller must closeNetnsFd it. */
export function openNetnsFd(name: string): number {
  const path = netnsPath(name);
  try {
    return openSync(path, fsConstants.O_RDONLY);
  } catch (e) {
    throw new NetnsError(name, `open ${path}: ${(e as NodeJS.ErrnoException).code ?? e}`, { cause: e });
  }
}

export function closeNetnsFd(fd: number): void {
  closeSync(fd);
}
