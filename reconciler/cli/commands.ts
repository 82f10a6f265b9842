// Each command is a short chain: read → plan → (apply) → render. Output goes to the streams passed in.

import { rmdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { reconcileOnce, type ApplyReport } from "../apply/executor.js";
import { emptyDesired, emptyState } from "../datapath/state.js";
import { MAP_SPECS } from "../datapath/maps.js";
import { DEFAULT_UNDERLAY_MTU } from "../datapath/desired.js";
import { formatProblem } from "../manifest/load.js";
import { explain } from "../policy/explain.js";
import { HOST_ENDPOINT } from "../policy/host.js";
import { diff } from "../plan/diff.js";
import { compileModel, EmptySnapshotError, isEmptyModel, loadModel, type Compiled, type IncrementalPipeline } from "../plan/pipeline.js";
import { planDocument, renderPlanText } from "../plan/render.js";
import { readDirSnapshot, resolveDirSource } from "../source/dir.js";
import type { Snapshot } from "../source/snapshot.js";
import type { Command, GlobalOptions } from "./args.js";
import { ReconcileError } from "./errors.js";
import { nodeFacts, type NodeFacts } from "./facts.js";
import type { Kernel } from "./kernel.js";
import { renderVersion, versionInfo } from "./version.js";

export interface Io {
  stdout: NodeJS.WritableStream & { isTTY?: boolean };
  stderr: NodeJS.WritableStream;
  env: Readonly<Record<string, string | undefined>>;
}

export async function runCommand(command: Command, io: Io): Promise<number> {
  switch (command.name) {
    case "help":
      io.stdout.write(command.text);
      return 0;
    case "version":
      io.stdout.write(renderVersion(await versionInfo(), command.opts.output));
      return 0;
    case "validate":
      return validate(command.opts, io);
    case "explain":
      return explainCommand(command, io);
    case "run":
      if (command.mode === "dry-run") return dryRun(command.opts, io);
      if (command.mode === "once") return once(command.opts, io);
      return (await import("./daemon.js")).runDaemon(command.opts, io);
    case "teardown":
      return teardown(command.opts, io);
    case "inspect":
      return withKernel(command.opts, async (kernel) => (await import("./inspect.js")).inspect(command, kernel, io, (opts) => compileFor(opts, kernel)));
    case "status":
      return status(command.opts, io);
  }
}

/** Reads the manifests named by --source (a directory; the daemon also follows git URLs). */
export async function readSource(opts: GlobalOptions): Promise<Snapshot> {
  const source = opts.source!;
  if (isGitUrl(source)) {
    throw new ReconcileError(`--source ${source} is a git repository: one-shot commands read a directory; run the daemon for git sources, or clone it and pass the directory`);
  }
  const { root, boundary } = await resolveDirSource(source, opts.path);
  return readDirSnapshot(root, { boundary });
}

export function isGitUrl(source: string): boolean {
  return /^(https?|ssh|git|file):\/\//.test(source) || /^[\w.-]+@[\w.-]+:/.test(source);
}

/**
 * The kernel layers (koffi and its native module, bpf(2), netlink) load only for the commands that
 * use them: --help, version, validate and explain never touch the kernel.
 */
async function openKernel(opts: GlobalOptions): Promise<Kernel> {
  return (await import("./kernel.js")).openKernel(opts);
}

async function withKernel<T>(opts: GlobalOptions, fn: (kernel: Kernel) => Promise<T>): Promise<T> {
  const kernel = await openKernel(opts);
  try {
    return await fn(kernel);
  } finally {
    kernel.close();
  }
}

/**
 * Compiles the source for --node. With a kernel: its attach mode and program tags, and, when the
 * node is this machine, this machine's host addresses and underlay MTU (see nodeFacts).
 */
export async function compileFor(
  opts: GlobalOptions,
  kernel: Pick<Kernel, "attachMode" | "programTags" | "host"> | undefined,
): Promise<Compiled & { snapshot: Snapshot; facts?: NodeFacts }> {
  return compileSnapshotFor(await readSource(opts), opts, kernel);
}

/**
 * compileFor on a snapshot already read (the daemon's sources deliver snapshots). With a
 * `pipeline` (the daemon's, kept across commits), it loads and compiles incrementally from the
 * pipeline's previous snapshot; the result is the same.
 */
export function compileSnapshotFor(
  snapshot: Snapshot,
  opts: GlobalOptions,
  kernel: Pick<Kernel, "attachMode" | "programTags" | "host"> | undefined,
  pipeline?: IncrementalPipeline,
): Compiled & { snapshot: Snapshot; facts?: NodeFacts } {
  const { model, warnings } = pipeline ? pipeline.load(snapshot) : loadModel(snapshot);
  const facts = kernel ? nodeFacts(kernel.host(), model, opts.node!) : undefined;
  const compileWith: typeof compileModel = pipeline ? (m, w, o) => pipeline.compileModel(m, w, o) : compileModel;
  const compiled = compileWith(model, warnings, {
    node: opts.node!,
    enforcement: opts.enforcement,
    attachMode: kernel?.attachMode ?? (opts.attachMode === "auto" ? "tcx" : opts.attachMode),
    ...(kernel ? { programTags: kernel.programTags } : {}),
    ...(facts?.hostAddresses ? { hostAddresses: facts.hostAddresses } : {}),
    ...(facts?.underlayMtu !== undefined ? { underlayMtu: facts.underlayMtu } : {}),
  });
  return { ...compiled, snapshot, ...(facts ? { facts } : {}) };
}

async function validate(opts: GlobalOptions, io: Io): Promise<number> {
  const { model, policy, warnings, snapshot } = await compileFor(opts, undefined);
  const c = { endpoints: model.endpoints.length, identities: model.identities.length, rules: model.rules.length, nodes: model.nodes.length };
  if (opts.output === "json") {
    io.stdout.write(JSON.stringify({ valid: true, revision: snapshot.revision, files: snapshot.files.length, objects: c, warnings }, null, 2) + "\n");
    return 0;
  }
  for (const w of warnings) io.stderr.write(formatProblem(w) + "\n");
  io.stdout.write(
    `valid: ${snapshot.files.length} files, ${c.endpoints} endpoints, ${c.identities} identities, ${c.rules} rules, ${c.nodes} nodes; ` +
      `${policy.endpoints.filter((e) => e.endpoint !== HOST_ENDPOINT).length} local endpoints on node ${policy.node}` +
      `${policy.endpoints.some((e) => e.endpoint === HOST_ENDPOINT) ? " and its host endpoint (host policies)" : ""} (revision ${snapshot.revision})\n`,
  );
  return 0;
}

async function dryRun(opts: GlobalOptions, io: Io): Promise<number> {
  const notes: string[] = [];
  let kernel: Kernel | undefined;
  try {
    kernel = await openKernel(opts);
  } catch (err) {
    notes.push(`the kernel could not be read (${(err as Error).message}): the plan is against an empty datapath`);
  }
  try {
    const compiled = await compileFor(opts, kernel);
    for (const w of compiled.warnings) io.stderr.write(formatProblem(w) + "\n");
    let actual = emptyState();
    // Another node's plan (previewed from here) is made against nothing: this kernel is not its.
    if (compiled.facts?.local === false) {
      notes.push(`${compiled.facts.note}: previewed from the manifests alone (no host addresses of this machine, underlay MTU ${DEFAULT_UNDERLAY_MTU}), against an empty datapath`);
    }
    if (kernel && compiled.facts?.local !== false) {
      try {
        actual = await kernel.targets.observe(compiled.desired);
      } catch (err) {
        notes.push(`the kernel could not be read (${(err as Error).message}): the plan is against an empty datapath`);
      }
    }
    refuseEmpty(opts, compiled, actual.endpoints.size);
    if (kernel && compiled.facts?.local !== false && kernel.attachMode === "tcx") notes.push(...(await foreignAheadNotes(kernel, opts)));
    const plan = diff(compiled.desired, actual);
    const ctx = { notes };
    if (opts.output === "json") io.stdout.write(JSON.stringify(planDocument(plan, ctx), null, 2) + "\n");
    else io.stdout.write(renderPlanText(plan, ctx, { colour: io.stdout.isTTY === true && !io.env.NO_COLOR }));
    return plan.changes.length ? 2 : 0;
  } finally {
    kernel?.close();
  }
}

/**
 * A note per foreign tcx program that runs ahead of one of ours. The plan never reorders an
 * existing attachment: --attach-position places fresh attaches only; to move ours to the front,
 * delete its link pin and let the next run attach it afresh (docs/operations.md).
 */
async function foreignAheadNotes(kernel: Kernel, opts: GlobalOptions): Promise<string[]> {
  // Loaded with the kernel, as openKernel() is: an unprivileged dry-run never needs it.
  const { foreignPrograms, linkPinPath, tcxChains } = await import("../apply/kernel/index.js");
  let found;
  try {
    found = foreignPrograms(tcxChains(kernel.ctx));
  } catch (err) {
    return [`the programs on reconcile's tcx hooks could not be read (${(err as Error).message})`];
  }
  return found
    .filter((p) => p.position === "before")
    .map((p) => {
      const where = `${p.netns ? `${p.netns}/` : ""}${p.device}/${p.hook}`;
      return (
        `foreign tcx program ${p.progId}${p.program ? ` (${p.program})` : ""} runs ahead of reconcile's on ${where}: if it returns pass, traffic bypasses the policy. ` +
        `It is not reconcile's and stays; an existing attachment is never reordered (--attach-position ${opts.attachPosition} places fresh attaches only): ` +
        `to put reconcile's first, remove ${linkPinPath(opts.bpffsRoot, { device: p.device, hook: p.hook, ...(p.netns ? { netns: p.netns } : {}) })} and run again`
      );
    });
}

async function once(opts: GlobalOptions, io: Io): Promise<number> {
  return withKernel(opts, async (kernel) => {
    const compiled = await compileFor(opts, kernel);
    for (const w of compiled.warnings) io.stderr.write(formatProblem(w) + "\n");
    if (compiled.facts?.local === false) {
      throw new ReconcileError(`refusing to apply: ${compiled.facts.note}; run it on that node, or preview it with --dry-run`);
    }
    if (!opts.allowEmpty && isEmptyModel(compiled.model)) {
      refuseEmpty(opts, compiled, (await kernel.targets.get("endpoint")?.observe(compiled.desired))?.size ?? 0);
    }
    const report = await reconcileOnce(kernel.targets, compiled.desired);
    // What the pins enforce from now on (a daemon started later while its source is invalid reports it).
    if (report.failed.length === 0) kernel.ctx.recordRevision(compiled.desired.revision);
    writeReport(report, opts, io);
    return report.failed.length ? 1 : 0;
  });
}

/**
 * An empty snapshot where the kernel holds endpoints of ours is refused (EmptySnapshotError, exit 1)
 * unless --allow-empty: the revision in force for a one-shot command is what the kernel holds.
 */
export function refuseEmpty(opts: Pick<GlobalOptions, "allowEmpty">, compiled: Pick<Compiled, "model"> & { snapshot: Snapshot }, endpointsInForce: number): void {
  if (opts.allowEmpty || !isEmptyModel(compiled.model) || endpointsInForce === 0) return;
  throw new EmptySnapshotError(compiled.snapshot.revision, endpointsInForce);
}

/** Removes everything reconcile owns: plans against an empty desired state, then unpins the maps. */
async function teardown(opts: GlobalOptions, io: Io): Promise<number> {
  return withKernel(opts, async (kernel) => {
    const nothing = emptyDesired("teardown", opts.node!);
    const report = await reconcileOnce(kernel.targets, nothing);
    writeReport(report, opts, io);
    if (report.failed.length) return 1;
    kernel.ctx.close();
    const { unpin } = await import("../ebpf-loader/index.js");
    const { REVISION_DIR } = await import("../apply/kernel/context.js");
    for (const m of MAP_SPECS) unpin(join(opts.bpffsRoot, m.name));
    // Only now-empty directories remain (links/, netns/ marks, the revision record); anything else
    // there is not ours to remove.
    for (const dir of ["links", "netns", REVISION_DIR]) rmSync(join(opts.bpffsRoot, dir), { recursive: true, force: true });
    rmEmptyDir(opts.bpffsRoot);
    return 0;
  });
}

function rmEmptyDir(dir: string): void {
  try {
    rmdirSync(dir);
  } catch {
    /* not empty (foreign pins stay) or already gone */
  }
}

function writeReport(report: ApplyReport, opts: GlobalOptions, io: Io): void {
  const ok = report.applied;
  if (opts.output === "json") {
    const doc = planDocument(report.plan, { notes: [] });
    io.stdout.write(JSON.stringify({ ...doc, applied: ok, failed: report.failed }, null, 2) + "\n");
    return;
  }
  if (report.plan.changes.length === 0) {
    io.stdout.write(`No changes. The datapath of node ${report.plan.node} matches revision ${report.plan.revision}.\n`);
    return;
  }
  const s = report.plan.summary;
  io.stdout.write(`Applied revision ${report.plan.revision}: ${s.create} created, ${s.update} updated, ${s.delete} deleted; ${ok} ok, ${report.failed.length} failed.\n`);
  for (const f of report.failed) io.stderr.write(`failed: ${f.resource} ${f.id}: ${f.error}\n`);
}

async function explainCommand(command: Extract<Command, { name: "explain" }>, io: Io): Promise<number> {
  const { opts } = command;
  const { model } = loadModel(await readSource(opts));
  const answer = explain(
    model,
    { node: opts.node!, enforcement: opts.enforcement },
    { from: command.from, to: command.to, port: command.port, protocol: command.protocol },
  );
  if (opts.output === "json") {
    io.stdout.write(JSON.stringify({ verdict: answer.verdict, reason: answer.reason, rules: answer.rules }, null, 2) + "\n");
  } else {
    io.stdout.write(`${answer.verdict.toUpperCase()}: ${command.from} → ${command.to} ${command.port}/${command.protocolName}\n  ${answer.reason}\n`);
    for (const r of answer.rules) io.stdout.write(`  rule ${r.name} at ${r.file}:${r.line}\n`);
  }
  return 0;
}

async function status(opts: GlobalOptions, io: Io): Promise<number> {
  const { fetchStatus } = await import("../daemon/status.js");
  let s: unknown;
  try {
    s = await fetchStatus(opts.socket);
  } catch (err) {
    throw new ReconcileError((err as Error).message); // it names the socket and asks whether the daemon runs
  }
  io.stdout.write(opts.output === "json" ? JSON.stringify(s, null, 2) + "\n" : renderStatus(s));
  return 0;
}

function renderStatus(s: unknown): string {
  return Object.entries(s as Record<string, unknown>)
    .map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : String(v)}`)
    .join("\n") + "\n";
}

