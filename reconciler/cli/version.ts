// `reconcile version`: what this build is (version, commit), what it carries (BPF objects, native
// modules) and what the running kernel supports.

import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { isSingleExecutable, listBpfObjects, nativeModuleStatus, type NativeModuleStatus } from "./assets.js";

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
  /** BPF objects this build carries; tag when the loader can compute one. */
  programs: { name: string; tag?: string }[];
  /** Native modules the binary extracted and loaded (empty from source). */
  native: NativeModuleStatus[];
  /** Kernel features, when they could be probed. */
  features?: Record<string, boolean>;
  /** Why features are missing, if they are. */
  featuresError?: string;
}

/** Optional kernel probe, so callers (and tests) decide whether the kernel is touched. */
export type FeatureProbe = () => Record<string, boolean>;

export function versionInfo(probe?: FeatureProbe): VersionInfo {
  const fromSource = typeof __RECONCILE_VERSION__ === "undefined";
  const info: VersionInfo = {
    version: fromSource ? sourceVersion() : __RECONCILE_VERSION__!,
    commit: typeof __RECONCILE_COMMIT__ === "undefined" ? sourceCommit() : __RECONCILE_COMMIT__,
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    singleExecutable: isSingleExecutable(),
    programs: listBpfObjects().map((name) => ({ name })),
    native: [],
  };
  if (probe) {
    try {
      info.features = probe();
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
    `  programs: ${info.programs.length ? info.programs.map((p) => (p.tag ? `${p.name} (tag ${p.tag})` : p.name)).join(", ") : "none"}`,
  ];
  for (const n of info.native) lines.push(`  native: ${n.module} at ${n.path} (${n.action})`);
  if (info.features) {
    const list = Object.entries(info.features).map(([k, v]) => `${k} ${v ? "yes" : "no"}`);
    lines.push(`  kernel: ${list.join(", ")}`);
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
