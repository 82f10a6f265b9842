// `reconcile version`: what this build is (version, commit), what it carries (BPF objects, native
// modules) and what the running kernel supports.

import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { Features } from "../apply/kernel/open.js";
import { isSingleExecutable, listBpfObjects, nativeModuleStatus, readAsset, type NativeModuleStatus } from "./assets.js";

// Set at bundle time by tools/build-binary.mjs (esbuild `define`); undeclared when running from source.
declare const __RECONCILE_VERSION__: string | undefined;
declare const __RECONCILE_COMMIT__: string | undefined;

export interface VersionInfo {
  /** package.json version. */
  version: string;
  /** git commit the binary was built from; from source: the checkout's HEAD; "unknown" outside git. */
  commit: string;
  /** Node.js runtime version (embedded in the binary). */
  node: string;
  /** `${process.platform}-${process.arch}`. */
  platform: string;
  /** True for the single executable, false when running from source. */
  singleExecutable: boolean;
  /** Node/V8 flags the process started with (the binary's are built in: tools/build-binary.mjs). */
  execArgv: string[];
  /** BPF objects this build carries (file names, e.g. "policy.o"). */
  objects: string[];
  /** Programs in those objects, read from their ELF sections (not loaded into the kernel). */
  /** Embedded programs; `tag` is the kernel's program tag (SHA-256 form, as kernels ≥ 6.18 show it;
   *  `tagSha1` as older kernels do), so `bpftool prog` output can be matched to this build. */
  programs: { name: string; object: string; section: string; tag: string; tagSha1: string }[];
  /** Objects that could not be read or parsed, with the reason. */
  objectErrors?: { object: string; error: string }[];
  /** Native modules the binary extracted and loaded (empty from source). */
  native: NativeModuleStatus[];
  /** Kernel features, when they could be probed. */
  features?: Features;
  /** Why features are missing, if they are. */
  featuresError?: string;
}

export interface VersionOptions {
  /** Probe the running kernel's features through the eBPF loader (default true). */
  probeKernel?: boolean;
}

/**
 * Build and runtime facts. The kernel layers (and so koffi, which the binary must extract first)
 * are imported only here, lazily, so that commands that never touch the kernel do not load them.
 */
export async function versionInfo(options: VersionOptions = {}): Promise<VersionInfo> {
  const kernel = await import("../apply/kernel/open.js");
  const fromSource = typeof __RECONCILE_VERSION__ === "undefined";
  const info: VersionInfo = {
    version: fromSource ? sourceVersion() : __RECONCILE_VERSION__!,
    commit: typeof __RECONCILE_COMMIT__ === "undefined" ? sourceCommit() : __RECONCILE_COMMIT__,
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    singleExecutable: isSingleExecutable(),
    execArgv: [...process.execArgv],
    objects: listBpfObjects(),
    programs: [],
    native: [],
  };
  for (const object of info.objects) {
    try {
      for (const p of kernel.objectPrograms(readAsset(object))) info.programs.push({ ...p, object });
    } catch (err) {
      (info.objectErrors ??= []).push({ object, error: err instanceof Error ? err.message : String(err) });
    }
  }
  if (options.probeKernel !== false) {
    try {
      info.features = kernel.kernelFeatures();
    } catch (err) {
      info.featuresError = err instanceof Error ? err.message : String(err);
    }
  }
  // Read last: probing the kernel is what loads koffi (and so extracts it) inside the binary.
  info.native = [...nativeModuleStatus()];
  return info;
}

export function renderVersion(info: VersionInfo, format: "text" | "json"): string {
  if (format === "json") return JSON.stringify(info, null, 2) + "\n";
  const lines = [
    `reconcile ${info.version} (commit ${info.commit})`,
    `  runtime: node ${info.node} ${info.platform}${info.singleExecutable ? ", single executable" : ", from source"}`,
    ...(info.execArgv.length ? [`  node flags: ${info.execArgv.join(" ")}`] : []),
    `  objects: ${info.objects.length ? info.objects.join(", ") : "none"}`,
    `  programs: ${info.programs.length ? info.programs.map((p) => `${p.name} (${p.object}, ${p.section}, tag ${p.tag})`).join(", ") : "none"}`,
  ];
  for (const e of info.objectErrors ?? []) lines.push(`  object ${e.object}: ${e.error}`);
  for (const n of info.native) lines.push(`  native: ${n.module} at ${n.path} (${n.action})`);
  if (info.features) {
    const f = info.features;
    lines.push(`  kernel: ${f.kernel}, tcx ${f.tcx ? "yes" : "no"}, batch ops ${f.batchOps ? "yes" : "no"}`);
  } else if (info.featuresError) {
    lines.push(`  kernel: not probed (${info.featuresError})`);
  }
  return lines.join("\n") + "\n";
}

function sourceVersion(): string {
  const pkg = JSON.parse(readFileSync(fileURLToPath(new URL("../../package.json", import.meta.url)), "utf8")) as { version: string };
  return pkg.version;
}

function sourceCommit(): string {
  try {
    const cwd = fileURLToPath(new URL("../../", import.meta.url));
    return execFileSync("git", ["rev-parse", "HEAD"], { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
  } catch {
    return "unknown";
  }
}
