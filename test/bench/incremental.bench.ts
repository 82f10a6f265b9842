// SPDX-License-Identifier: Apache-2.0
// Benchmark: the daemon's path from a new snapshot to the plan for a ONE-RULE change at DESIGN §7
// scale, stage by stage, incremental against full in the same run. A plain script (not a test):
//   node --import tsx test/bench/incremental.bench.ts [--small] [--rounds=7] [--manifests-to=DIR]
//
// The generated model (generate.ts) is written as manifest files into a temporary directory, since
// the daemon parses files: endpoints and rules spread over files under the loader's per-file limits.
// Each round edits one rule in one file (its port, alternately two values), takes the snapshot the
// daemon's directory source emits for it (watchDir; timed: file saved → snapshot), and takes it
// through both paths:
//   full:        loadModel → compile → buildDesiredState → diff against the state in force
//   incremental: IncrementalPipeline (load cache, compileIncremental, desired reuse) → the same diff
// "The state in force" is the desired state of the previous round's run, as in the daemon (a commit
// is planned against what its last successful run left, without reading the kernel). Both paths
// must plan the same changes; the benchmark fails otherwise. Writes only its own temporary directory.

import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { performance } from "node:perf_hooks";
import { buildDesiredState } from "../../reconciler/datapath/desired.js";
import { emptyDesired, type DesiredState } from "../../reconciler/datapath/state.js";
import type { EndpointManifest, Model, RuleManifest, Selector } from "../../reconciler/manifest/model.js";
import { diff, type Plan } from "../../reconciler/plan/diff.js";
import { IncrementalPipeline, loadModel, type PipelineOptions, type PipelineStage } from "../../reconciler/plan/snapshot-to-desired.js";
import { compile } from "../../reconciler/policy/compile.js";
import { watchDir } from "../../reconciler/source/dir.js";
import type { Snapshot } from "../../reconciler/source/snapshot.js";
import { DESIGN_SCALE, generateModel, type ScaleOptions } from "./generate.js";
import { tuneHeap } from "../../reconciler/cli/heap.js";
import { printTable } from "./table.js";

// The heap growth policy of the binary, so the figures are those of the product.
tuneHeap();

const small = process.argv.includes("--small");
const ROUNDS = Number(process.argv.find((a) => a.startsWith("--rounds="))?.slice(9) ?? 7);
const scale: ScaleOptions = small ? { endpoints: 100, rules: 200, remoteEndpoints: 1000, apps: 10, groups: 10 } : DESIGN_SCALE;
const TARGET_MS = 200;
const OPTS: PipelineOptions = { node: "bench-node", enforcement: "default", attachMode: "tcx" };
/** Documents per generated file: under the loader's limits (1,000 documents, 1 MiB per file). */
const DOCS_PER_FILE = 500;

const now = (): number => performance.now();
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

// ---- manifest files ------------------------------------------------------------------------------

function labelsYaml(ep: EndpointManifest, indent: string): string {
  return ep.labels.map((l) => `${indent}${l.source === "k8s" ? "" : `${l.source}:`}${l.key}: ${l.value}\n`).join("");
}

function endpointYaml(ep: EndpointManifest): string {
  return (
    `---\napiVersion: reconcile/v1\nkind: Endpoint\nmetadata:\n  name: ${ep.name}\n  labels:\n${labelsYaml(ep, "    ")}` +
    `spec:\n${ep.node !== undefined ? `  node: ${ep.node}\n` : ""}  ipv4: ${ep.ipv4}\n  interface:\n    name: ${ep.interfaceName}\n`
  );
}

/** generate.ts writes selectors of single-value In requirements of source "any": matchLabels. */
function matchLabelsYaml(sel: Selector, indent: string): string {
  return sel.requirements.map((r) => `${indent}${r.key}: ${r.values[0]}\n`).join("");
}

function ruleYaml(r: RuleManifest, port: number): string {
  const peer = r.rule.ingress[0]!;
  return (
    `---\napiVersion: reconcile/v1\nkind: Rule\nmetadata:\n  name: ${r.name}\nspec:\n` +
    `  endpointSelector:\n    matchLabels:\n${matchLabelsYaml(r.rule.endpointSelector!, "      ")}` +
    `  ingress:\n    - fromEndpoints:\n        - matchLabels:\n${matchLabelsYaml(peer.endpoints![0]!, "            ")}` +
    `      toPorts:\n        - ports:\n            - port: "${port}"\n              protocol: TCP\n`
  );
}

/** Writes the model as manifest files; returns the path of the file holding rule0 and its text. */
function writeManifests(model: Model, dir: string): { ruleFile: string } {
  const write = (rel: string, text: string): void => {
    mkdirSync(dirname(join(dir, rel)), { recursive: true });
    writeFileSync(join(dir, rel), text);
  };
  const local = model.endpoints.filter((e) => e.node === undefined);
  const remote = model.endpoints.filter((e) => e.node !== undefined);
  for (const [name, list] of [["local", local], ["remote", remote]] as const) {
    for (let i = 0; i * DOCS_PER_FILE < list.length; i++) {
      write(`endpoints/${name}-${String(i).padStart(3, "0")}.yaml`, list.slice(i * DOCS_PER_FILE, (i + 1) * DOCS_PER_FILE).map(endpointYaml).join(""));
    }
  }
  const perFile = 100;
  for (let i = 0; i * perFile < model.rules.length; i++) {
    const rules = model.rules.slice(i * perFile, (i + 1) * perFile);
    write(`rules/r${String(i).padStart(3, "0")}.yaml`, rules.map((r) => ruleYaml(r, r.rule.ingress[0]!.ports![0]!.port)).join(""));
  }
  return { ruleFile: join(dir, "rules/r000.yaml") };
}

// ---- the two paths ---------------------------------------------------------------------------------

interface Stages {
  load: number;
  compile: number;
  desired: number;
  diff: number;
}

interface PathResult {
  stages: Stages;
  desired: DesiredState;
  plan: Plan;
}

function fullPath(snapshot: Snapshot, inForce: DesiredState): PathResult {
  const t0 = now();
  const { model } = loadModel(snapshot);
  const t1 = now();
  const policy = compile(model, { node: OPTS.node, enforcement: OPTS.enforcement });
  const t2 = now();
  const desired = buildDesiredState(model, policy, { attachMode: OPTS.attachMode });
  const t3 = now();
  const plan = diff(desired, inForce);
  const t4 = now();
  return { stages: { load: t1 - t0, compile: t2 - t1, desired: t3 - t2, diff: t4 - t3 }, desired, plan };
}

function incrementalPath(pipeline: IncrementalPipeline, snapshot: Snapshot, inForce: DesiredState): PathResult & { note: string } {
  const t0 = now();
  const loaded = pipeline.load(snapshot);
  const t1 = now();
  const marks: Partial<Record<PipelineStage, number>> = {};
  const { desired } = pipeline.compileModel(loaded.model, loaded.warnings, OPTS, (stage) => (marks[stage] = now()));
  const t3 = now();
  const plan = diff(desired, inForce);
  const t4 = now();
  const stages = { load: t1 - t0, compile: marks.compile! - t1, desired: t3 - marks.compile!, diff: t4 - t3 };
  return { stages, desired, plan, note: pipeline.describeLast() };
}

function planKey(p: Plan): string {
  return p.changes.map((c) => `${c.op} ${c.resource} ${c.id}`).sort().join("\n");
}

// ---- run -------------------------------------------------------------------------------------------

// --manifests-to=DIR: only write the generated manifests into DIR (e.g. to profile the daemon on them).
const manifestsTo = process.argv.find((a) => a.startsWith("--manifests-to="))?.slice(15);
if (manifestsTo !== undefined) {
  writeManifests(generateModel(scale), manifestsTo);
  process.exit(0);
}

const dir = mkdtempSync(join(tmpdir(), "incremental-bench-"));
const closers: Array<() => Promise<void>> = [];
try {
  const model = generateModel(scale);
  const { ruleFile } = writeManifests(model, dir);
  const original = readFileSync(ruleFile, "utf8");
  // The daemon's source: the snapshots watchDir emits (its first one is the initial tree).
  const emitted: Snapshot[] = [];
  let wake: (() => void) | undefined;
  const closeWatch = await watchDir(dir, (snap) => {
    emitted.push(snap);
    wake?.();
  });
  const nextSnapshot = async (): Promise<Snapshot> => {
    while (emitted.length === 0) await new Promise<void>((r) => (wake = r));
    return emitted.shift()!;
  };
  closers.push(closeWatch);
  const first = await nextSnapshot();
  const bytes = first.files.reduce((n, f) => n + f.content.length, 0);
  console.log(
    `one-rule change, snapshot → plan: ${scale.endpoints} local endpoints, ${scale.remoteEndpoints} remote, ${scale.rules} rules, ` +
      `${first.files.length} files (${(bytes / 2 ** 20).toFixed(1)} MiB); ${ROUNDS} rounds; ${cpus().length} CPUs, load ${loadavg().map((l) => l.toFixed(2)).join(" ")}`,
  );

  // Round 0: the cold start of both (the daemon's first run is a full compile in either case).
  const t0 = now();
  const cold = fullPath(first, emptyDesired("", OPTS.node));
  const coldMs = now() - t0;
  let entries = 0;
  for (const m of cold.desired.policy.values()) entries += m.size;
  console.log(`  cold full path ${coldMs.toFixed(0)} ms: ${entries} policy entries, ${cold.desired.ipcache.size} ipcache prefixes`);
  const pipeline = new IncrementalPipeline();
  const warm = incrementalPath(pipeline, first, cold.desired);
  if (warm.plan.changes.length !== 0) throw new Error(`incremental cold start planned ${warm.plan.changes.length} changes against the full path's state`);
  let fullInForce = cold.desired;
  let incInForce = warm.desired;

  const full: Stages[] = [];
  const inc: Stages[] = [];
  const notes = new Set<string>();
  const saves: number[] = [];
  let changes = "";
  for (let round = 1; round <= ROUNDS; round++) {
    // rule0 (first rule of the first rule file) alternates between two ports.
    const port = round % 2 === 1 ? 9999 : 1000;
    const saved = now();
    writeFileSync(ruleFile, original.replace(/port: "1000"/, `port: "${port}"`));
    const snapshot = await nextSnapshot();
    saves.push(now() - saved);
    // Alternate which path runs first, so neither always meets a warmer heap.
    const runFull = (): PathResult => fullPath(snapshot, fullInForce);
    const runInc = (): PathResult & { note: string } => incrementalPath(pipeline, snapshot, incInForce);
    let f: PathResult;
    let i: PathResult & { note: string };
    if (round % 2 === 0) {
      f = runFull();
      i = runInc();
    } else {
      i = runInc();
      f = runFull();
    }
    if (planKey(f.plan) !== planKey(i.plan)) throw new Error(`round ${round}: incremental plan differs from the full plan (${i.plan.changes.length} vs ${f.plan.changes.length} changes)`);
    if (f.plan.changes.length === 0) throw new Error(`round ${round}: the edit planned nothing`);
    full.push(f.stages);
    inc.push(i.stages);
    notes.add(i.note);
    changes = `${f.plan.summary.create} create, ${f.plan.summary.update} update, ${f.plan.summary.delete} delete`;
    fullInForce = f.desired;
    incInForce = i.desired;
  }

  const row = (name: string, pick: (s: Stages) => number): string[] => {
    const fm = median(full.map(pick));
    const im = median(inc.map(pick));
    return [name, `${fm.toFixed(1)} ms`, `${im.toFixed(1)} ms`, `${(fm / Math.max(im, 0.01)).toFixed(1)}×`];
  };
  console.log(`  planned per round: ${changes}; incremental: ${[...notes].join("; ")}`);
  const total = (s: Stages): number => s.load + s.compile + s.desired + s.diff;
  printTable(
    [{ title: "stage (median)" }, { title: "full", align: "right" }, { title: "incremental", align: "right" }, { title: "speed-up", align: "right" }],
    [
      row("load (parse + validate)", (s) => s.load),
      row("compile", (s) => s.compile),
      row("desired state", (s) => s.desired),
      row("diff against state in force", (s) => s.diff),
      row("snapshot → plan", total),
    ],
  );
  const incTotal = median(inc.map(total));
  console.log(
    `  one-rule change, snapshot → plan: ${incTotal.toFixed(0)} ms incremental vs ${median(full.map(total)).toFixed(0)} ms full: ` +
      `${incTotal <= TARGET_MS ? "MET" : "MISSED"} (target ≤ ${TARGET_MS} ms file saved → enforced; reading the directory and applying come on top)`,
  );
  const save = median(saves);
  console.log(
    `  file saved → snapshot (watchDir: 25 ms debounce, then reads until two agree; unchanged files are not read again): median ${save.toFixed(0)} ms; ` +
      `file saved → plan ≈ ${(save + incTotal).toFixed(0)} ms (applying the planned entries comes on top); load now ${loadavg().map((l) => l.toFixed(2)).join(" ")}`,
  );
} finally {
  for (const close of closers) await close();
  rmSync(dir, { recursive: true, force: true });
}
