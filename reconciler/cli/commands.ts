// Each command is a short chain: read → plan → (apply) → render. Output goes to the streams passed in.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { emptyState } from "../datapath/state.js";
import { formatProblem } from "../manifest/load.js";
import { explain } from "../policy/explain.js";
import { diff } from "../plan/diff.js";
import { compileSnapshot, loadModel } from "../plan/pipeline.js";
import { planDocument, renderPlanText } from "../plan/render.js";
import { readDirSnapshot } from "../source/dir.js";
import type { Snapshot } from "../source/snapshot.js";
import type { Command, GlobalOptions } from "./args.js";
import { ReconcileError } from "./errors.js";

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
      io.stdout.write(`reconcile ${packageVersion()}\n`);
      return 0;
    case "validate":
      return validate(command.opts, io);
    case "explain":
      return explainCommand(command, io);
    case "run":
      if (command.mode === "dry-run") return dryRun(command.opts, io);
      throw new ReconcileError(`${command.mode === "once" ? "--once" : "daemon mode"} needs the kernel reconciler, which is not built yet`);
    default:
      throw new ReconcileError(`${command.name} needs the kernel reconciler, which is not built yet`);
  }
}

/** Reads the manifests named by --source (a directory; git URLs are handled by the daemon's git source). */
export async function readSource(opts: GlobalOptions): Promise<Snapshot> {
  const source = opts.source!;
  return readDirSnapshot(opts.path ? join(source, opts.path) : source);
}

async function validate(opts: GlobalOptions, io: Io): Promise<number> {
  const snapshot = await readSource(opts);
  const { model, warnings } = loadModel(snapshot);
  const compiled = compileSnapshot(snapshot, { node: opts.node!, enforcement: opts.enforcement, attachMode: "tcx" });
  const all = [...warnings, ...compiled.policy.warnings];
  if (opts.output === "json") {
    io.stdout.write(
      JSON.stringify({ valid: true, revision: snapshot.revision, files: snapshot.files.length, objects: counts(model), warnings: all }, null, 2) + "\n",
    );
    return 0;
  }
  for (const w of all) io.stderr.write(formatProblem(w) + "\n");
  const c = counts(model);
  io.stdout.write(
    `valid: ${snapshot.files.length} files, ${c.endpoints} endpoints, ${c.identities} identities, ${c.rules} rules, ${c.nodes} nodes (revision ${snapshot.revision})\n`,
  );
  return 0;
}

function counts(model: { endpoints: unknown[]; identities: unknown[]; rules: unknown[]; nodes: unknown[] }) {
  return { endpoints: model.endpoints.length, identities: model.identities.length, rules: model.rules.length, nodes: model.nodes.length };
}

async function dryRun(opts: GlobalOptions, io: Io): Promise<number> {
  const snapshot = await readSource(opts);
  const attachMode = opts.attachMode === "auto" ? "tcx" : opts.attachMode;
  const compiled = compileSnapshot(snapshot, { node: opts.node!, enforcement: opts.enforcement, attachMode });
  for (const w of compiled.warnings) io.stderr.write(formatProblem(w) + "\n");
  const notes = ["the kernel was not read (the kernel readers are not built yet): the plan is against an empty datapath"];
  const plan = diff(compiled.desired, emptyState());
  const ctx = { provenance: compiled.desired.provenance, notes };
  if (opts.output === "json") io.stdout.write(JSON.stringify(planDocument(plan, ctx), null, 2) + "\n");
  else io.stdout.write(renderPlanText(plan, ctx, { colour: io.stdout.isTTY === true && !io.env.NO_COLOR }));
  return plan.changes.length ? 2 : 0;
}

async function explainCommand(command: Extract<Command, { name: "explain" }>, io: Io): Promise<number> {
  const { opts } = command;
  const snapshot = await readSource(opts);
  const { model } = loadModel(snapshot);
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

function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string };
  return pkg.version;
}
