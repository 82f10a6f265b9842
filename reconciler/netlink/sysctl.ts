// Network sysctls under /proc/sys/net, read and written inside a namespace. /proc/sys/net resolves
// to the namespace of the thread that opens the file, so reads and writes are synchronous calls made
// from inside withNetns (Node's sync fs calls run on the calling thread).
import { readFileSync, writeFileSync } from "node:fs";
import { withNetns } from "./netns.js";

export class SysctlKeyError extends Error {
  override readonly name = "SysctlKeyError";
}

/** A failed sysctl read or write, with the namespace and key. */
export class SysctlError extends Error {
  override readonly name = "SysctlError";
}

/**
 * Key "net/ipv4/conf/eth0/proxy_arp" → "/proc/sys/net/ipv4/conf/eth0/proxy_arp". Slash-separated
 * only (device names may contain dots, which makes the dotted form ambiguous). Pure.
 */
export function sysctlPath(key: string): string {
  const parts = key.split("/");
  if (parts[0] !== "net" || parts.length < 2 || parts.some((p) => p === "" || p === "." || p === "..")) {
    throw new SysctlKeyError(`sysctl key: expected net/<path> with no empty, "." or ".." parts, got ${JSON.stringify(key)}`);
  }
  return `/proc/sys/${key}`;
}

/** Per-device key: confKey(4, "lxc1", "proxy_arp") → "net/ipv4/conf/lxc1/proxy_arp". Pure. */
export function confKey(family: 4 | 6, dev: string, name: string): string {
  return `net/ipv${family}/conf/${dev}/${name}`;
}

/** Per-device neighbour key: neighKey(4, "lxc1", "base_reachable_time_ms"). Pure. */
export function neighKey(family: 4 | 6, dev: string, name: string): string {
  return `net/ipv${family}/neigh/${dev}/${name}`;
}

/** Read a sysctl (trimmed), inside namespace `netns` if given. */
export function sysctlRead(key: string, netns?: string): string {
  const path = sysctlPath(key);
  try {
    return withNetns(netns, () => readFileSync(path, "utf8")).trim();
  } catch (e) {
    throw new SysctlError(`read sysctl ${key}${netns ? ` in netns ${netns}` : ""}: ${(e as NodeJS.ErrnoException).code ?? e}`, { cause: e });
  }
}

/** Write a sysctl, inside namespace `netns` if given. */
export function sysctlWrite(key: string, value: string | number, netns?: string): void {
  const path = sysctlPath(key);
  try {
    withNetns(netns, () => writeFileSync(path, `${value}\n`));
  } catch (e) {
    throw new SysctlError(`write sysctl ${key}=${value}${netns ? ` in netns ${netns}` : ""}: ${(e as NodeJS.ErrnoException).code ?? e}`, { cause: e });
  }
}
