// SPDX-License-Identifier: Apache-2.0
// Runs every benchmark in sequence, each in its own node process (so one's memory and JIT state do
// not colour the next), prints their output as it comes and a summary at the end.
//   npm run bench                      all of them (root; ~9 minutes on 2 cores)
//   npm run bench -- apply datapath    only those
// Exit code: 1 when any benchmark failed to run (a missed target is reported, not a failure).

import { spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO = join(HERE, "../..");
const ALL = ["compile", "incremental", "diff", "maps", "apply", "progress", "daemon", "datapath", "events", "packet", "netlink", "source"] as const;

const wanted = process.argv.slice(2);
const unknown = wanted.filter((w) => !(ALL as readonly string[]).includes(w));
if (unknown.length) console.error(`unknown benchmark(s): ${unknown.join(", ")}; known: ${ALL.join(", ")}`);
const names = unknown.length ? [] : wanted.length ? ALL.filter((n) => wanted.includes(n)) : [...ALL];

const summary: string[] = [];
for (const name of names) {
  console.log(`\n=== ${name} (${new Date().toISOString()}) ===`);
  const t0 = Date.now();
  const r = spawnSync(process.execPath, ["--import", "tsx", join(HERE, `${name}.bench.ts`)], { cwd: REPO, stdio: "inherit" });
  const secs = ((Date.now() - t0) / 1000).toFixed(0);
  const status = r.error ? `could not start: ${r.error.message}` : r.status === 0 ? "ok" : `FAILED (exit ${r.status ?? r.signal})`;
  summary.push(`  ${name.padEnd(9)} ${status}, ${secs} s`);
}
console.log(`\n=== summary ===\n${summary.join("\n")}`);
if (unknown.length || summary.some((s) => !s.includes(" ok,"))) process.exitCode = 1;
