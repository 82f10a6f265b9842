// SPDX-License-Identifier: Apache-2.0
// Load (read + parse + validate) and full compile of the DESIGN-scale manifest tree (manifests.ts),
// through the daemon's entry points, in interleaved rounds; each round in a fresh child process so
// that peak RSS (VmHWM) of a full compile is measured per round.
//
//   node --import tsx test/bench/load.bench.ts [--small] [--rounds=3]
//   node --import tsx test/bench/load.bench.ts --child=load|compile|pipeline DIR   (one measurement, JSON)

import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir, loadavg } from "node:os";
import { dirname, join } from "node:path";
import { tuneHeap } from "../../reconciler/cli/heap.js";
import { compileForNode, IncrementalPipeline, loadModel } from "../../reconciler/plan/snapshot-to-desired.js";
import { readDirSnapshot } from "../../reconciler/source/dir.js";
import { DESIGN_SCALE, generateModel, type ScaleOptions } from "./generate.js";
import { manifestFiles } from "./manifests.js";

tuneHeap();

const NODE = "bench-node";
const child = process.argv.find((a) => a.startsWith("--child="))?.slice(8);

function vmHWM(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync("/proc/self/status", "utf8"));
  return m ? Number(m[1]) / 1024 : process.resourceUsage().maxRSS / 1024;
}

async function runChild(kind: string, dir: string): Promise<void> {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const snapshot = await readDirSnapshot(dir);
  const t1 = performance.now();
  const opts = { node: NODE, enforcement: "default", attachMode: "tcx" } as const;
  if (kind === "load") loadModel(snapshot);
  else if (kind === "pipeline") compileForNode(snapshot, opts, undefined, new IncrementalPipeline()); // the daemon's cold start
  else compileForNode(snapshot, opts);
  const t2 = performance.now();
  const cpu = process.cpuUsage(c0);
  // CPU time (user + system, all threads: GC helpers included) is less disturbed than wall time by other load on the machine.
  process.stdout.write(JSON.stringify({ readMs: t1 - t0, ms: t2 - t0, workMs: t2 - t1, cpuMs: (cpu.user + cpu.system) / 1000, hwmMiB: vmHWM() }) + "\n");
}

const stats = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return `${s[Math.floor(s.length / 2)]!.toFixed(0)} (${s[0]!.toFixed(0)}–${s.at(-1)!.toFixed(0)})`;
};

async function main(): Promise<void> {
  const small = process.argv.includes("--small");
  const rounds = Number(process.argv.find((a) => a.startsWith("--rounds="))?.slice(9) ?? 3);
  const scale: ScaleOptions = small ? { endpoints: 100, rules: 200, remoteEndpoints: 1000, apps: 10, groups: 10 } : DESIGN_SCALE;
  const dir = mkdtempSync(join(tmpdir(), "load-bench-"));
  try {
    for (const [rel, text] of manifestFiles(generateModel(scale), 1000)) {
      mkdirSync(dirname(join(dir, rel)), { recursive: true });
      writeFileSync(join(dir, rel), text);
    }
    const got: Record<string, { ms: number[]; cpu: number[]; hwm: number[] }> = { load: { ms: [], cpu: [], hwm: [] }, compile: { ms: [], cpu: [], hwm: [] }, pipeline: { ms: [], cpu: [], hwm: [] } };
    const loads: number[] = [loadavg()[0]!];
    for (let r = 0; r < rounds; r++) {
      const kinds = ["load", "compile", "pipeline"];
      const order = [...kinds.slice(r % 3), ...kinds.slice(0, r % 3)];
      for (const kind of order) {
        const out = execFileSync(process.execPath, [...process.execArgv, process.argv[1]!, `--child=${kind}`, dir], { encoding: "utf8" });
        const m = JSON.parse(out.trim().split("\n").at(-1)!) as { ms: number; cpuMs: number; hwmMiB: number };
        got[kind]!.ms.push(m.ms);
        got[kind]!.cpu.push(m.cpuMs);
        got[kind]!.hwm.push(m.hwmMiB);
      }
      loads.push(loadavg()[0]!);
    }
    console.log(`load average ${loads.map((l) => l.toFixed(2)).join(" → ")}; ${rounds} rounds, median (min–max)`);
    const what: Record<string, string> = { load: "read+load", compile: "read+load+compile+desired", pipeline: "the same through IncrementalPipeline (daemon cold start)" };
    for (const k of ["load", "compile", "pipeline"]) console.log(`${k.padEnd(8)} ${what[k]}: ${stats(got[k]!.ms)} ms (CPU ${stats(got[k]!.cpu)} ms); VmHWM ${stats(got[k]!.hwm)} MiB`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (child !== undefined) await runChild(child, process.argv.at(-1)!);
else await main();
