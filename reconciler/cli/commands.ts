// Each command is a short chain: read → plan → (apply) → render. Output goes to the streams passed in.

import { readFile, writeFile } from "node:fs/promises";
import { reconcileOnce, type ApplyReport } from "../apply/executor.js";
import { foreignPrograms, type KernelPort } from "../apply/port.js";
import { emptyDesired, emptyState, type ActualState } from "../datapath/state.js";
import { DEFAULT_UNDERLAY_MTU } from "../datapath/desired.js";
import { ReconcileService } from "../daemon/service.js";
import { formatProblem } from "../manifest/load.js";
import { explain } from "../policy/explain.js";
import { HOST_ENDPOINT } from "../policy/host.js";
import { peerNames, type PeerNames } from "../policy/peer-names.js";
import { diff, type Plan } from "../plan/diff.js";
import { checkSavedPlan, parseSavedPlan, savePlan } from "../plan/saved.js";
import { compileForNode, loadModel, refuseEmpty, type CompiledForNode } from "../plan/snapshot-to-desired.js";
import { planDocument, renderPlanText } from "../plan/render.js";
import { eventSettings, type Command, type GlobalOptions } from "./args.js";
import { readAsset } from "./assets.js";
import { readSource } from "./source.js";
import { knowKernelErrors, ReconcileError } from "./errors.js";
import type { Io } from "./io.js";
import { progressFor, type ProgressOutput } from "./progress.js";
import { renderVersion, versionInfo } from "./version.js";

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
    case "diff":
      return (await import("./diff.js")).diffCommand(command, io);
    case "run":
      if (command.mode === "dry-run") return dryRun(command.opts, io, command.plan?.out);
      if (command.mode === "once") return once(command.opts, io, command.plan?.apply);
      return daemon(command.opts, io);
    case "teardown":
      return teardown(command.opts, io);
    case "inspect":
      return withKernel(command.opts, async (kernel) => (await import("./inspect.js")).inspect(command, kernel, io, (opts) => compileFor(opts, kernel)));
    case "monitor":
      return monitorCommand(command, io);
    case "status":
      return status(command.opts, io);
    case "completion":
      return completion(command, io);
    case "suspend":
    case "resume":
      return suspendOrResume(command, io);
  }
}

/**
 * The kernel layers (koffi and its native module, bpf(2), netlink) load only for the commands that
 * use them: --help, version, validate and explain never touch the kernel.
 */
async function openKernel(opts: GlobalOptions): Promise<KernelPort> {
  const kernel = await import("../apply/kernel/open.js");
  knowKernelErrors(kernel.KERNEL_ERRORS);
  return kernel.openKernel({ pinRoot: opts.bpffsRoot, attachMode: opts.attachMode, attachPosition: opts.attachPosition, expediteAttach: opts.expediteAttach, readObject: readAsset });
}

async function withKernel<T>(opts: GlobalOptions, fn: (kernel: KernelPort) => Promise<T>): Promise<T> {
  const kernel = await openKernel(opts);
  try {
    return await fn(kernel);
  } finally {
    kernel.close();
  }
}

/** Reads --source and compiles it for --node, with this machine's facts when there is a kernel. */
export async function compileFor(opts: GlobalOptions, kernel: KernelPort | undefined): Promise<CompiledForNode> {
  return compileForNode(await readSource(opts), nodeOptions(opts), kernel);
}

function nodeOptions(opts: GlobalOptions) {
  return { node: opts.node!, enforcement: opts.enforcement, ...eventSettings(opts), attachMode: opts.attachMode, allowEmpty: opts.allowEmpty };
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

/** --dry-run; with `out`, the plan is saved there for --once --plan (only a plan against this kernel). */
async function dryRun(opts: GlobalOptions, io: Io, out?: string): Promise<number> {
  const notes: string[] = [];
  let observed = false;
  let kernel: KernelPort | undefined;
  try {
    kernel = await openKernel(opts);
  } catch (err) {
    notes.push(`the kernel could not be read (${(err as Error).message}): the plan is against an empty datapath`);
  }
  try {
    const compiled = await compileFor(opts, kernel);
    for (const w of compiled.warnings) io.stderr.write(formatProblem(w) + "\n");
    let actual: ActualState = emptyState();
    // Another node's plan (previewed from here) is made against nothing: this kernel is not its.
    if (compiled.facts?.local === false) {
      notes.push(`${compiled.facts.note}: previewed from the manifests alone (no host addresses of this machine, underlay MTU ${DEFAULT_UNDERLAY_MTU}), against an empty datapath`);
    }
    if (kernel && compiled.facts?.local !== false) {
      try {
        actual = await kernel.targets.observe(compiled.desired);
        observed = true;
      } catch (err) {
        notes.push(`the kernel could not be read (${(err as Error).message}): the plan is against an empty datapath`);
      }
    }
    refuseEmpty(opts.allowEmpty, compiled, actual.endpoints.size);
    if (kernel && compiled.facts?.local !== false && kernel.attachMode === "tcx") notes.push(...foreignAheadNotes(kernel, opts));
    const plan = diff(compiled.desired, actual);
    if (out !== undefined) {
      if (!observed) throw new ReconcileError(`--out ${out}: the plan is not against this node's datapath (${notes.join("; ")}); no plan was saved`);
      await writeFile(out, JSON.stringify(savePlan(plan, actual, new Date()), null, 2) + "\n");
      io.stderr.write(`Saved the plan to ${out}. To apply exactly these changes: reconcile --once --plan ${out} (with the same --source, --ref and --node).\n`);
    }
    const ctx = { notes, peers: peerNames(compiled.policy) };
    if (opts.output === "json") io.stdout.write(JSON.stringify(planDocument(plan, ctx), null, 2) + "\n");
    else io.stdout.write(renderPlanText(plan, ctx, { colour: io.stdout.isTTY === true && !io.env.NO_COLOR }));
    return plan.size ? 2 : 0;
  } finally {
    kernel?.close();
  }
}

/**
 * A note per foreign tcx program that runs ahead of one of ours. The plan never reorders an
 * existing attachment: --attach-position places fresh attaches only; to move ours to the front,
 * delete its link pin and let the next run attach it afresh (docs/operations.md).
 */
function foreignAheadNotes(kernel: KernelPort, opts: GlobalOptions): string[] {
  let found;
  try {
    found = foreignPrograms(kernel.tcxChains());
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
        `to put reconcile's first, remove ${kernel.linkPin(p)} and run again`
      );
    });
}

/** One run of the daemon's reconcile service; with `planFile`, only if it applies exactly that saved plan. */
async function once(opts: GlobalOptions, io: Io, planFile?: string): Promise<number> {
  const saved = planFile === undefined ? undefined : parseSavedPlan(await readFile(planFile, "utf8"), planFile);
  const snapshot = await readSource(opts);
  const expect = saved && ((plan: Plan, observed: ActualState) => checkSavedPlan(saved, planFile!, plan, observed));
  return withKernel(opts, async (kernel) => {
    // The suspension is the daemon's: an operator who runs --once means it, and is told.
    const suspended = kernel.recordedSuspension();
    if (suspended) io.stderr.write(`reconcile: note: the daemon is suspended (since ${new Date(suspended.since).toISOString()}${suspended.reason ? `: ${suspended.reason}` : ""}); --once applies all the same, and the daemon stays suspended\n`);
    const { report, compiled } = await withProgress(progressFor(io, opts), (sink) => new ReconcileService(kernel, nodeOptions(opts)).run(snapshot, "manual", expect, sink));
    for (const w of compiled.warnings) io.stderr.write(formatProblem(w) + "\n");
    writeReport(report, opts, io, peerNames(compiled.policy));
    return report.failed.length ? 1 : 0;
  });
}

async function daemon(opts: GlobalOptions, io: Io): Promise<number> {
  const { runDaemon } = await import("../daemon/run.js");
  const kernel = await openKernel(opts);
  const { NOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID } = io.env;
  return runDaemon({ ...opts, source: opts.source!, node: opts.node! }, kernel, { writeLog: (line) => io.stderr.write(`${line}\n`), systemd: { NOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID } });
}

/** Removes everything reconcile owns: plans against an empty desired state, then unpins the maps. */
async function teardown(opts: GlobalOptions, io: Io): Promise<number> {
  return withKernel(opts, async (kernel) => {
    const nothing = emptyDesired("teardown", opts.node!);
    const report = await withProgress(progressFor(io, opts), (sink) => reconcileOnce(kernel.targets, nothing, undefined, sink));
    writeReport(report, opts, io);
    if (report.failed.length) return 1;
    kernel.prune();
    return 0;
  });
}

/** Runs `fn` with the progress output's sink (if any), and ends the output however `fn` ends. */
async function withProgress<T>(progress: ProgressOutput | undefined, fn: (sink: ProgressOutput["sink"] | undefined) => Promise<T>): Promise<T> {
  let result: T;
  try {
    result = await fn(progress?.sink);
  } catch (err) {
    progress?.finish(false); // the error says what happened; a "done" line would not be true
    throw err;
  }
  progress?.finish(true);
  return result;
}

function writeReport(report: ApplyReport, opts: GlobalOptions, io: Io, peers?: PeerNames): void {
  const ok = report.applied;
  if (opts.output === "json") {
    const doc = planDocument(report.plan, { notes: [], ...(peers ? { peers } : {}) });
    io.stdout.write(JSON.stringify({ ...doc, applied: ok, failed: report.failed }, null, 2) + "\n");
    return;
  }
  if (report.plan.size === 0) {
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
    { node: opts.node!, enforcement: opts.enforcement, ...(opts.enforcementMode === "audit" ? { audit: true as const } : {}) },
    { from: command.from, to: command.to, port: command.port, protocol: command.protocol },
  );
  if (opts.output === "json") {
    io.stdout.write(JSON.stringify({ verdict: answer.verdict, ...(answer.audit ? { audit: true } : {}), reason: answer.reason, rules: answer.rules }, null, 2) + "\n");
  } else {
    const verdict = answer.audit ? "DENY (audit: would be allowed through)" : answer.verdict.toUpperCase();
    io.stdout.write(`${verdict}: ${command.from} → ${command.to} ${command.port}/${command.protocolName}\n  ${answer.reason}\n`);
    for (const r of answer.rules) io.stdout.write(`  rule ${r.name} at ${r.file}:${r.line}\n`);
  }
  return 0;
}

/** monitor until Ctrl-C (SIGINT) or SIGTERM, which end it with its summary and exit code 0. */
async function monitorCommand(command: Extract<Command, { name: "monitor" }>, io: Io): Promise<number> {
  const { monitor } = await import("./monitor.js");
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  process.on("SIGINT", onSignal).on("SIGTERM", onSignal);
  try {
    return await monitor(command, io, { signal: stop.signal, openKernel: () => openKernel(command.opts), compile: (kernel) => compileFor(command.opts, kernel) });
  } finally {
    process.off("SIGINT", onSignal).off("SIGTERM", onSignal);
  }
}

async function completion(command: Extract<Command, { name: "completion" }>, io: Io): Promise<number> {
  const { completionScript, endpointNames } = await import("./completion.js");
  if (command.shell !== "endpoints") {
    io.stdout.write(completionScript(command.shell));
    return 0;
  }
  // Asked by a completing shell: names if the source is a readable directory of valid manifests, else nothing.
  if (!command.opts.source) return 0;
  try {
    const names = endpointNames(loadModel(await readSource(command.opts)).model);
    io.stdout.write(names.map((n) => `${n}\n`).join(""));
  } catch {
    /* nothing to offer */
  }
  return 0;
}

/** Asks the daemon over its socket to suspend or resume, and says what it answered. */
async function suspendOrResume(command: Extract<Command, { name: "suspend" | "resume" }>, io: Io): Promise<number> {
  const { requestAction } = await import("../daemon/status.js");
  let answer: { suspended?: { since: number; reason?: string } | null; alreadySuspended?: boolean; wasSuspended?: boolean };
  try {
    answer = (await requestAction(command.opts.socket, command.name, command.name === "suspend" && command.reason ? { reason: command.reason } : {})) as typeof answer;
  } catch (err) {
    throw new ReconcileError((err as Error).message);
  }
  if (command.opts.output === "json") {
    io.stdout.write(JSON.stringify(answer, null, 2) + "\n");
    return 0;
  }
  const s = answer.suspended;
  if (command.name === "suspend") {
    const since = s ? new Date(s.since).toISOString() : "?";
    io.stdout.write(
      `${answer.alreadySuspended ? "Already suspended" : "Suspended"} since ${since}${s?.reason ? ` (${s.reason})` : ""}: the daemon keeps fetching and observing, ` +
        `reports drift and pending changes in reconcile status, and applies nothing until reconcile resume.\n`,
    );
  } else {
    io.stdout.write(answer.wasSuspended ? "Resumed: the daemon applies the pending changes now.\n" : "Not suspended: nothing to resume.\n");
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

