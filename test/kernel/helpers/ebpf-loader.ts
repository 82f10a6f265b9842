// SPDX-License-Identifier: Apache-2.0
// Helpers for the ebpf-loader kernel tests: private pin dirs, network namespaces, entering a netns.
import { execFileSync } from "node:child_process";
import { closeSync, mkdirSync, openSync, rmSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { setns } from "../../../reconciler/ebpf-loader/sys.js";

const CLONE_NEWNET = 0x40000000;

export function suffix(): string {
  return randomBytes(3).toString("hex");
}

/** A fresh pin dir /sys/fs/bpf/test-ldr-<random>; returns it and a cleanup. */
export function makePinDir(): { dir: string; cleanup: () => void } {
  const dir = `/sys/fs/bpf/test-ldr-${suffix()}`;
  mkdirSync(dir);
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

/** Create a netns; cleanup deletes only it. */
export function makeNetns(name: string): () => void {
  sh("ip", ["netns", "add", name]);
  return () => {
    try {
      sh("ip", ["netns", "del", name]);
    } catch {
      // already gone
    }
  };
}

/** Run fn with the calling (main JS) thread inside netns `name`, then restore the original netns. */
export function withNetns<T>(name: string, fn: () => T): T {
  const orig = openSync("/proc/thread-self/ns/net", "r");
  try {
    const target = openSync(`/run/netns/${name}`, "r");
    try {
      setns(target, CLONE_NEWNET, `enter netns ${name}`);
    } finally {
      closeSync(target);
    }
    try {
      return fn();
    } finally {
      setns(orig, CLONE_NEWNET, "restore original netns");
    }
  } finally {
    closeSync(orig);
  }
}

export function ifindexIn(netns: string, ifname: string): number {
  const j = JSON.parse(sh("ip", ["-n", netns, "-j", "link", "show", ifname])) as Array<{ ifindex: number }>;
  return j[0]!.ifindex;
}
