// SPDX-License-Identifier: Apache-2.0
// Benchmark: `reconcile diff --base A --ref B` at DESIGN §7 scale (1,000 endpoints, 2,000 rules,
// 99,000 remote endpoints) for a ONE-RULE change, against a baseline measured in the same run: two
// full compiles (read + load + compile + desired state) of the two sides, what diff did before it
// compiled the ref incrementally from the base (plan/preview.ts). Its floor is now one full
// compile plus the ref's changed files. Target: diff ≤ 2 s.
//   node --import tsx test/bench/diff.bench.ts [--small] [--rounds=5]
// Rounds interleave diff and the two compiles; medians with min and max and the load average are
// printed. No root needed; writes only its own temporary directory.

import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { performance } from "node:perf_hooks";
import { Writable } from "node:stream";
import { parseArgs } from "../../reconciler/cli/args.js";
import { runCommand } from "../../reconciler/cli/commands.js";
import { tuneHeap } from "../../reconciler/cli/heap.js";
import { compileForNode } from "../../reconciler/plan/snapshot-to-desired.js";
import { readDirSnapshot } from "../../reconciler/source/dir.js";
import { Cleanups, runBench } from "./cleanups.js";
import { DESIGN_SCALE, generateModel, type ScaleOptions } from "./generate.js";
import { manifestFiles } from "./manifests.js";
import { Results } from "./table.js";

// The heap growth policy of the binary, so the figures are those of the product.
tuneHeap();

const small = process.argv.includes("--small");
const ROUNDS = Number(process.argv.find((a) => a.startsWith("--rounds="))?.slice(9) ?? 5);
const scale: ScaleOptions = small ? { endpoints: 100, rules: 200, remoteEndpoints: 1000, apps: 10, groups: 10 } : DESIGN_SCALE;
const TARGET_MS = 2000;
const NODE = "bench-node";
const cleanups = new Cleanups();

const now = (): number => performance.now();
const stats = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return { median: s[Math.floor(s.length / 2)]!, min: s[0]!, max: s.at(-1)! };
};
const fmt = (ms: { median: number; min: number; max: number }) => `${(ms.median / 1000).toFixed(2)} s (min ${(ms.min / 1000).toFixed(2)}, max ${(ms.max / 1000).toFixed(2)})`;

function writeSide(dir: string, files: Map<string, string>): void {
  for (const [rel, text] of files) {
    mkdirSync(dirname(join(dir, rel)), { recursive: true });
    writeFileSync(join(dir, rel), text);
  }
}

async function timeDiff(base: string, ref: string): Promise<{ ms: number; code: number; out: string }> {
  let out = "";
  const sink = new Writable({ write: (c, _e, cb) => ((out += String(c)), cb()) });
  const t0 = now();
  const code = await runCommand(parseArgs(["diff", "--base", base, "--ref", ref, "--node", NODE, "--output", "json"], {}, { node: NODE }), { stdout: sink, stderr: sink, env: {} });
  return { ms: now() - t0, code, out };
}

async function timeTwoCompiles(base: string, ref: string): Promise<number> {
  const t0 = now();
  for (const dir of [base, ref]) compileForNode(await readDirSnapshot(dir), { node: NODE, enforcement: "default", attachMode: "tcx" });
  return now() - t0;
}

async function main(): Promise<void> {
  const root = mkdtempSync(join(tmpdir(), "reconcile-diff-bench-"));
  cleanups.push(() => rmSync(root, { recursive: true, force: true }));
  const model = generateModel(scale);
  const base = join(root, "base");
  const ref = join(root, "ref");
  // rule0 moves from port 8080 to 8081: one rule's entries change on the endpoints it selects.
  writeSide(base, manifestFiles(model, 8080));
  writeSide(ref, manifestFiles(model, 8081));
  console.log(`scale: ${scale.endpoints} endpoints, ${scale.rules} rules, ${scale.remoteEndpoints} remote endpoints; ${cpus().length} CPUs; ${ROUNDS} rounds`);

  const diffs: number[] = [];
  const floors: number[] = [];
  let lines = 0;
  for (let round = 0; round < ROUNDS; round++) {
    // Interleaved, alternating which goes first, so drift in machine load falls on both.
    const runDiff = async () => {
      const d = await timeDiff(base, ref);
      if (d.code !== 2) throw new Error(`diff exited ${d.code} (expected 2, changes): ${d.out.slice(0, 500)}`);
      const doc = JSON.parse(d.out) as { nodes: Array<{ policyImpact: { newlyAllowed: unknown[]; newlyDenied: unknown[] } }> };
      lines = doc.nodes.reduce((n, p) => n + p.policyImpact.newlyAllowed.length + p.policyImpact.newlyDenied.length, 0);
      diffs.push(d.ms);
    };
    const runFloor = async () => void floors.push(await timeTwoCompiles(base, ref));
    if (round % 2 === 0) {
      await runDiff();
      await runFloor();
    } else {
      await runFloor();
      await runDiff();
    }
    console.log(`round ${round + 1}: diff ${(diffs.at(-1)! / 1000).toFixed(2)} s, two compiles ${(floors.at(-1)! / 1000).toFixed(2)} s`);
  }
  const d = stats(diffs);
  const f = stats(floors);
  const ratios = stats(diffs.map((x, i) => x / floors[i]!));
  const results = new Results();
  results.row("diff (one-rule change)", fmt(d), `≤ ${TARGET_MS / 1000} s`, d.median <= TARGET_MS);
  results.row("two full compiles (baseline)", fmt(f));
  results.row("diff / two compiles", `${ratios.median.toFixed(2)}× (min ${ratios.min.toFixed(2)}, max ${ratios.max.toFixed(2)})`);
  results.row("policy impact lines", String(lines));
  results.row("load average (1/5/15 min)", loadavg().map((x) => x.toFixed(2)).join(" / "));
  results.print();
}

await runBench("diff", main, cleanups);
