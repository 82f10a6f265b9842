// SPDX-License-Identifier: Apache-2.0
// What progress costs a large run: a cold apply of the DESIGN §7 desired state (1,000,000 policy
// entries, 100,002 ipcache prefixes, 1,000 endpoints) through the real map targets (MapTarget,
// endpoints, ipcache, PolicyTarget) and reconcileOnce, as `reconcile --once` runs it, then its
// teardown (reconcileOnce of an empty desired state, as `reconcile teardown`), with:
//   off       no sink: `--no-progress`, the baseline;
//   off again the same, as a control: its ratio to the baseline is the run's noise;
//   events    a sink that does nothing: the executor's events and its pauses for the event loop
//             alone (what every output pays before it renders anything);
//   plain     the plain lines of a pipe or the journal (PlainProgress);
//   terminal  the redrawn terminal line (TerminalProgress, with its redraw timer);
// both renderers writing to nothing, so the cost is the events, the tracker, the formatting and the
// executor's pauses for the event loop, not the terminal's. Every round runs each variant once, in
// an order rotated from round to round, into a fresh pin root; each variant's time is set against
// the baseline of the same round, and the median of those ratios is the figure.
// No devices: the desired state's devices/addresses/routes/sysctls/attachments are emptied (their
// tcx attaches take ≈ 8 ms each in the kernel and would bury a per-event cost in noise).
// Run (root): node --import tsx test/bench/progress.bench.ts [--small] [--rounds=9]
// Uses its own pin root /sys/fs/bpf/prb-<random>, removed at the end, also on failure or Ctrl-C.

import { randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, rmSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { reconcileOnce, Targets } from "../../reconciler/apply/executor.js";
import { KernelContext } from "../../reconciler/apply/kernel/context.js";
import { endpointsTarget, ipcacheTarget } from "../../reconciler/apply/kernel/entries.js";
import { MapTarget } from "../../reconciler/apply/kernel/maps.js";
import { PolicyTarget } from "../../reconciler/apply/kernel/policy.js";
import { PlainProgress, realClock, TerminalProgress, type ProgressOutput } from "../../reconciler/cli/progress.js";
import { tuneHeap } from "../../reconciler/cli/heap.js";
import { buildDesiredState } from "../../reconciler/datapath/desired.js";
import { emptyDesired, type DesiredState } from "../../reconciler/datapath/state.js";
import { compile } from "../../reconciler/policy/compile.js";
import { Cleanups, runBench } from "./cleanups.js";
import { DESIGN_SCALE, generateModel, type ScaleOptions } from "./generate.js";
import { printTable, Results } from "./table.js";

// The heap growth policy of the binary, so the figures are those of the product.
tuneHeap();

const small = process.argv.includes("--small");
const ROUNDS = Number(process.argv.find((a) => a.startsWith("--rounds="))?.slice(9) ?? 9);
const scale: ScaleOptions = small ? { endpoints: 100, rules: 200, remoteEndpoints: 1000, apps: 10, groups: 10 } : DESIGN_SCALE;
const NODE = "bench-node";
const pinRoot = `/sys/fs/bpf/prb-${randomBytes(3).toString("hex")}`;
const now = (): number => performance.now();
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const load = (): string => loadavg().map((l) => l.toFixed(2)).join(" ");

/** The progress outputs of the CLI, writing to nothing; undefined is `--no-progress`. */
const VARIANTS: Record<string, () => ProgressOutput | undefined> = {
  off: () => undefined,
  "off again": () => undefined,
  events: () => ({ sink: () => {}, finish: () => {} }),
  plain: () => new PlainProgress(() => {}, realClock.now),
  // The CLI's own clock, with its redraw timer (every REDRAW_MS while nothing reports), as on a terminal.
  terminal: () => new TerminalProgress(() => {}, realClock, () => 120),
};
const NAMES = Object.keys(VARIANTS);

interface Times {
  apply: number;
  teardown: number;
}

const cleanups = new Cleanups();

/** One cold apply and its teardown into a fresh pin root, with one variant's progress output. */
async function round(dir: string, desired: DesiredState, progress: () => ProgressOutput | undefined): Promise<Times & { changes: number; deletes: number }> {
  mkdirSync(dir);
  const ctx = new KernelContext({ pinRoot: dir, datapathObject: readFileSync("bpf/build/endpoint.o") });
  try {
    const targets = new Targets([new MapTarget(ctx), endpointsTarget(ctx), ipcacheTarget(ctx), new PolicyTarget(ctx)]);
    const output = progress();
    const t0 = now();
    const applied = await reconcileOnce(targets, desired, undefined, output?.sink);
    output?.finish(true);
    const t1 = now();
    if (applied.failed.length) throw new Error(`cold apply: ${applied.failed.length} failed, first: ${applied.failed[0]!.id}: ${applied.failed[0]!.error}`);
    // Teardown reports to a fresh output, as `reconcile teardown` is a run of its own.
    const out2 = progress();
    const t2 = now();
    const removed = await reconcileOnce(targets, emptyDesired("teardown", NODE), undefined, out2?.sink);
    out2?.finish(true);
    const t3 = now();
    if (removed.failed.length) throw new Error(`teardown: ${removed.failed.length} failed, first: ${removed.failed[0]!.id}: ${removed.failed[0]!.error}`);
    return { apply: t1 - t0, teardown: t3 - t2, changes: applied.plan.changes.length, deletes: removed.plan.changes.length };
  } finally {
    ctx.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  mkdirSync(pinRoot);
  cleanups.push(() => rmSync(pinRoot, { recursive: true, force: true }));
  const model = generateModel(scale);
  const policy = compile(model, { node: NODE, enforcement: "default" });
  const full = buildDesiredState(model, policy, { attachMode: "tcx" });
  const desired: DesiredState = { ...full, devices: new Map(), addresses: new Map(), routes: new Map(), sysctls: new Map(), attachments: new Map() };
  let entries = 0;
  for (const s of desired.policy.values()) entries += s.size;

  console.log(`progress benchmark: cold apply + teardown of ${entries.toLocaleString("en")} policy entries, ${desired.ipcache.size.toLocaleString("en")} ipcache prefixes, ${desired.endpoints.size} endpoints (no devices), ${ROUNDS} rounds`);
  console.log(`  ${cpus().length} CPUs, load ${load()} at the start`);

  const times = new Map<string, Times[]>(NAMES.map((n) => [n, []]));
  let changes = 0;
  let deletes = 0;
  for (let r = 0; r < ROUNDS; r++) {
    // Rotated, so no variant always runs first (cold caches) or last.
    const order = NAMES.map((_, i) => NAMES[(i + r) % NAMES.length]!);
    const line: string[] = [];
    for (const name of order) {
      const t = await round(join(pinRoot, `r${r}-${name}`), desired, VARIANTS[name]!);
      times.get(name)!.push({ apply: t.apply, teardown: t.teardown });
      ({ changes, deletes } = t);
      line.push(`${name} ${t.apply.toFixed(0)}+${t.teardown.toFixed(0)}`);
    }
    console.log(`  round ${r + 1}: ${line.join(", ")} ms (apply+teardown), load ${load()}`);
  }

  const base = times.get("off")!;
  const rows: string[][] = [];
  const results = new Results();
  for (const phase of ["apply", "teardown"] as const) {
    for (const name of NAMES) {
      const xs = times.get(name)!.map((t) => t[phase]);
      const ratios = times.get(name)!.map((t, i) => t[phase] / base[i]![phase]);
      rows.push([phase, name, `${median(xs).toFixed(0)} ms`, `min ${Math.min(...xs).toFixed(0)}`, `max ${Math.max(...xs).toFixed(0)}`, `${median(ratios).toFixed(3)}× off`, `(ratios ${Math.min(...ratios).toFixed(3)}–${Math.max(...ratios).toFixed(3)})`]);
      if (name !== "off") results.row(`${phase}: ${name} ÷ off (median of the rounds' ratios)`, `${median(ratios).toFixed(3)}`, "(info)");
    }
  }
  console.log(`  ${changes.toLocaleString("en")} changes applied, ${deletes.toLocaleString("en")} deleted per round; load ${load()} at the end`);
  printTable([{}, {}, { align: "right" }, { align: "right" }, { align: "right" }, { align: "right" }, {}], rows);
  results.print();
}

await runBench("progress", main, cleanups);
