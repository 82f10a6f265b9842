// `reconcile diff --base A --ref B`: reads both revisions (each a directory, or a git ref of
// --source fetched into a private temporary directory), previews every node asked for, prints.
// No kernel, no root: the plan is between the two desired states.

import { formatProblem, ManifestError } from "../manifest/load.js";
import { IncrementalPipeline } from "../plan/snapshot-to-desired.js";
import { eventSettings } from "./args.js";
import { hasChanges, manifestNodes, previewDocument, previewNodes, type PreviewSide } from "../plan/preview.js";
import { renderPreviewMarkdown, renderPreviewText } from "../plan/render-preview.js";
import type { Command, GlobalOptions } from "./args.js";
import { isDirectory, readSourceAt } from "./source.js";
import { ReconcileError } from "./errors.js";
import type { Io } from "./io.js";

export async function diffCommand(command: Extract<Command, { name: "diff" }>, io: Io): Promise<number> {
  const { opts } = command;
  // The daemon's path from the commit in force to a new one: the ref's files that equal the base's
  // are not parsed again, and the ref is compiled incrementally from the base (previewNodes).
  const pipeline = new IncrementalPipeline();
  const base = await readSide(opts, command.base, "--base", io, pipeline);
  const ref = await readSide(opts, command.ref, "--ref", io, pipeline);
  // Without any node named, every endpoint is on the one node there is: --node (the host name).
  const named = command.allNodes ? manifestNodes(base.model, ref.model) : [];
  const nodes = named.length ? named : [opts.node!];
  const previews = previewNodes(base, ref, nodes, {
    enforcement: opts.enforcement,
    ...eventSettings(opts),
    attachMode: opts.attachMode === "auto" ? "tcx" : opts.attachMode,
  }, pipeline);
  if (command.format === "json") io.stdout.write(JSON.stringify(previewDocument(base, ref, previews), null, 2) + "\n");
  else if (command.format === "markdown") io.stdout.write(renderPreviewMarkdown(base, ref, previews));
  else io.stdout.write(renderPreviewText(base, ref, previews, { colour: io.stdout.isTTY === true && !io.env.NO_COLOR }));
  return hasChanges(previews) ? 2 : 0;
}

/**
 * A side named by a directory that exists is that directory; anything else is a git ref of --source
 * (read as every one-shot command reads a source at a ref: readSourceAt).
 */
async function readSide(opts: GlobalOptions, value: string, flag: string, io: Io, pipeline: IncrementalPipeline): Promise<PreviewSide> {
  let snapshot;
  if (await isDirectory(value)) {
    snapshot = await readSourceAt(opts, value, undefined);
  } else {
    if (!opts.source) throw new ReconcileError(`diff ${flag} ${value}: not a directory, and no --source (RECONCILE_SOURCE) to read it from as a git ref`);
    snapshot = await readSourceAt(opts, opts.source, value, flag);
  }
  try {
    const { model, warnings } = pipeline.load(snapshot);
    for (const w of warnings) io.stderr.write(`${flag} ${value}: ${formatProblem(w)}\n`);
    return { name: value, model, warnings };
  } catch (err) {
    if (err instanceof ManifestError) io.stderr.write(`reconcile: diff ${flag} ${value} (revision ${snapshot.revision}) is invalid:\n`);
    throw err;
  }
}
