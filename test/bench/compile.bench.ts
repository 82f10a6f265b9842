// Benchmark: compile + plan at DESIGN §7 scale. A plain script (not a test):
//   node --import tsx test/bench/compile.bench.ts [--small]
// Prints the time of each stage (median of runs) and the peak RSS. The baseline in the same run is
// the cost of merely building a Map of the same number of entries (numeric keys), so the ratios say
// how much the compiler and planner add on top of touching every entry once.

import { performance } from "node:perf_hooks";
import { buildDesiredState } from "../../reconciler/datapath/desired.js";
import { emptyState, type ActualState } from "../../reconciler/datapath/state.js";
import { compile } from "../../reconciler/policy/compile.js";
import { diff } from "../../reconciler/plan/diff.js";
import { DESIGN_SCALE, generateModel, type ScaleOptions } from "./generate.js";
import { tuneHeap } from "../../reconciler/cli/heap.js";
import { printTable } from "./table.js";

// The heap growth policy of the binary, so the figures are those of the product.
tuneHeap();

const small = process.argv.includes("--small");
const scale: ScaleOptions = small ? { endpoints: 100, rules: 200, remoteEndpoints: 1000, apps: 10, groups: 10 } : DESIGN_SCALE;
const RUNS = small ? 5 : 3;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function time<T>(fn: () => T): [T, number] {
  const t0 = performance.now();
  const out = fn();
  return [out, performance.now() - t0];
}

const model = generateModel(scale);
const opts = { node: "bench-node", enforcement: "default" as const };
const stages: Record<string, number[]> = { baseline: [], compile: [], desired: [], "diff-cold": [], "diff-noop": [] };
let entries = 0;
let ipcache = 0;
let peakRss = process.memoryUsage().rss;

for (let run = 0; run < RUNS; run++) {
  const [compiled, tc] = time(() => compile(model, opts));
  const [desired, td] = time(() => buildDesiredState(model, compiled, { attachMode: "tcx" }));
  entries = 0;
  for (const m of desired.policy.values()) entries += m.size;
  ipcache = desired.ipcache.size;
  const [, tb] = time(() => {
    const m = new Map<number, { decision: string }>();
    for (const perEndpoint of desired.policy.values()) for (let i = 0; i < perEndpoint.size; i++) m.set(perEndpoint.key(i), { decision: "allow" });
    return m;
  });
  const [cold, tcold] = time(() => diff(desired, emptyState()));
  const actual: ActualState = { ...emptyState(), ...desired, policy: new Map(desired.policy), ipcache: new Map(desired.ipcache) };
  const [noop, tnoop] = time(() => diff(desired, actual));
  if (noop.changes.length !== 0) throw new Error(`no-op diff planned ${noop.changes.length} changes`);
  if (cold.summary.create === 0) throw new Error("cold diff planned nothing");
  stages.baseline!.push(tb);
  stages.compile!.push(tc);
  stages.desired!.push(td);
  stages["diff-cold"]!.push(tcold);
  stages["diff-noop"]!.push(tnoop);
  peakRss = Math.max(peakRss, process.memoryUsage().rss);
}

const base = median(stages.baseline!);
console.log(`compile+plan benchmark: ${scale.endpoints} local endpoints, ${scale.rules} rules, ${entries} policy entries, ${ipcache} ipcache prefixes, ${RUNS} runs`);
printTable(
  [{}, { align: "right" }, { align: "right" }],
  Object.entries(stages).map(([stage, xs]) => {
    const m = median(xs);
    return [stage, `${m.toFixed(0)} ms`, `${(m / base).toFixed(2)}× baseline`];
  }),
);
const total = median(stages.compile!) + median(stages.desired!) + median(stages["diff-cold"]!);
console.log(`  compile + desired + cold diff: ${total.toFixed(0)} ms; peak RSS ${(peakRss / 2 ** 20).toFixed(0)} MiB`);
