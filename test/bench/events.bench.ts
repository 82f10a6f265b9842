// SPDX-License-Identifier: Apache-2.0
// What events cost the datapath, and whether `reconcile monitor` keeps up with them (issue 13).
//
// (1) BPF_PROG_RUN ns/packet of endpoint.o's to_endpoint, in three event settings, each in its own
//     private pin root with the same endpoint, ipcache and policy, measured in interleaved rounds
//     (the order rotates per round):
//       suppressed:   event_rate 0: every event stops at the per-CPU budget (the event path's floor);
//       drops only:   the default (no verdict flags, 1,000 events/s): what every endpoint runs;
//       all verdicts: --monitor-verdicts all, a rate nothing reaches: every verdict is written.
//     Packets: an allowed packet of an established flow (repeat 100,000), the first packet of a
//     new allowed flow (single runs, a fresh source port each, so timer-granular), and a denied
//     packet (repeat 10,000, the ring drained after each call so that it never fills: all verdicts
//     write two records for it).
//     Target: a new-flow packet with all verdicts ≤ 1.10 × drops only.
// (2) `reconcile monitor` (the single binary if RECONCILE_BIN is set, else the CLI through tsx)
//     reading the ring of a pin root a producer process floods with denied packets
//     (BPF_PROG_RUN in a loop, one DROP event each, no rate limit), --output json to /dev/null,
//     numbers only and with names from --source: paced at 250,000 events/s, and flat out. Every
//     event the producer caused must be read, suppressed or counted lost (the monitor's summary
//     line against the producer's count). Target: ≥ 200,000 events/s read with loss counted.
//
// Run (root): node --import tsx test/bench/events.bench.ts [--rounds=7] [--seconds=3]
// The pin roots are /sys/fs/bpf/test-dp-* (the kernel tests' Datapath), removed at the end.

import { spawn, type ChildProcess } from "node:child_process";
import { loadavg } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createInterface } from "node:readline";
import { Datapath, readEvents, tcp, v4, type EndpointDef } from "../kernel/helpers/datapath.js";
import { MAX_EVENT_RATE } from "../../reconciler/datapath/desired.js";
import type { RingBuffer } from "../../reconciler/ebpf-loader/index.js";
import { median, medianRange, printTable, Results, Samples, whole as fmt } from "./table.js";

const arg = (name: string, dflt: number): number => Number(process.argv.find((a) => a.startsWith(`--${name}=`))?.split("=")[1] ?? dflt);
const ROUNDS = arg("rounds", 7);
const SECONDS = arg("seconds", 3);
const REPO = resolve(fileURLToPath(import.meta.url), "../../..");
/** Names for (2): the seed's app1 is endpoint 1, identities as below. */
const SEED = join(REPO, "examples/seed");

// The seed's addresses and identities: app1 (ep 1, identity 1001) allows app2 (36895) on TCP/80.
const APP = "10.11.255.104";
const PEER = "10.11.90.17";
const TCP = 6;
const SYN = 0x02;
const ACK = 0x10;
const toApp = (sport: number, dport: number, flags = SYN) => v4({ src: PEER, dst: APP, proto: TCP }, tcp(sport, dport, flags));

const load = () => loadavg()[0]!.toFixed(2);

/** A private datapath with app1, app2 and app1's ingress policy: allow 80 from app2, deny 25 from all. */
function datapath(events: Pick<EndpointDef, "verdictAllow" | "verdictDeny" | "eventRate">): Datapath {
  const dp = new Datapath();
  dp.addEndpoint({ addresses: [APP], epId: 1, identity: 1001, enforceIngress: true, enforceEgress: false, ...events });
  dp.addIpcache(`${APP}/32`, 1001);
  dp.addIpcache(`${PEER}/32`, 36895);
  dp.addRules(1, [
    { direction: "ingress", identity: 36895, protocol: TCP, port: 80, portPrefixLen: 16, decision: "allow" },
    { direction: "ingress", identity: 0, protocol: TCP, port: 25, portPrefixLen: 16, decision: "deny" },
  ]);
  return dp;
}

// ---- (2)'s producer: a child process that floods its own pin root ------------------------------------

/** Child mode: prints the pin root, waits for "go <pace>" on stdin (events/s, 0 = flat out), floods
 *  for SECONDS, waits for the reader to drain, prints what it caused as JSON, waits for "close". */
async function produce(): Promise<void> {
  const dp = datapath({ eventRate: MAX_EVENT_RATE * 1000 });
  const lines = createInterface({ input: process.stdin });
  try {
    const next = (() => {
      const it = lines[Symbol.asyncIterator]();
      return async () => ((await it.next()).value as string | undefined) ?? "close";
    })();
    console.log(`ready ${dp.pinDir}`);
    const prog = dp.coll.programs.get("to_endpoint")!;
    const frame = toApp(40001, 25);
    for (let cmd = await next(); cmd !== "close"; cmd = await next()) {
      const pace = Number(cmd.split(" ")[1]);
      const chunk = pace ? Math.max(1, Math.round(pace / 200)) : 20_000; // paced: every 5 ms
      const t0 = process.hrtime.bigint();
      const end = t0 + BigInt(SECONDS * 1e9);
      let caused = 0;
      for (let now = t0; now < end; now = process.hrtime.bigint()) {
        if (pace) {
          const due = Math.floor((Number(now - t0) / 1e9) * pace);
          if (caused >= due) {
            await new Promise((r) => setTimeout(r, 1));
            continue;
          }
        }
        prog.testRun({ data: frame, repeat: chunk });
        caused += chunk;
      }
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      await new Promise((r) => setTimeout(r, 500));
      const b = dp.eventBudget(1)!;
      console.log(JSON.stringify({ caused, seconds, suppressed: Number(b.suppressed), lost: Number(b.lost) }));
    }
  } finally {
    lines.close(); // else stdin keeps the process alive
    dp.close();
  }
}

// ---- (1) ns/packet -------------------------------------------------------------------------------------

const SETTINGS = {
  suppressed: { eventRate: 0 },
  "drops only": {},
  "all verdicts": { verdictAllow: true, verdictDeny: true, eventRate: MAX_EVENT_RATE * 1000 },
} as const;
type Setting = keyof typeof SETTINGS;
const PACKETS = ["allowed, established", "allowed, new flow", "denied"] as const;
type Packet = (typeof PACKETS)[number];

function nsPerPacket(results: Results): void {
  const names = Object.keys(SETTINGS) as Setting[];
  const paths = new Map<Setting, { dp: Datapath; rb: RingBuffer }>();
  const samples = new Samples();
  const add = (s: Setting, p: Packet, v: number) => samples.add(`${s}|${p}`, v);
  const loads: string[] = [load()];
  try {
    for (const s of names) {
      const dp = datapath(SETTINGS[s]);
      paths.set(s, { dp, rb: dp.openEvents() });
    }
    let sport = 10_000;
    for (let round = 0; round < ROUNDS; round++) {
      const order = names.map((_, i) => names[(i + round) % names.length]!);
      for (const s of order) {
        const { dp, rb } = paths.get(s)!;
        const prog = dp.coll.programs.get("to_endpoint")!;
        dp.run("to_endpoint", toApp(5000, 80));
        add(s, "allowed, established", prog.testRun({ data: toApp(5000, 80, ACK), repeat: 100_000 }).durationNs);
        let total = 0;
        const fresh = 2000;
        for (let i = 0; i < fresh; i++) total += prog.testRun({ data: toApp(sport++ % 60_000 + 1024, 80) }).durationNs;
        add(s, "allowed, new flow", total / fresh);
        readEvents(rb);
        let denied = 0;
        for (let i = 0; i < 5; i++) {
          denied += prog.testRun({ data: toApp(6000, 25), repeat: 10_000 }).durationNs;
          readEvents(rb);
        }
        add(s, "denied", denied / 5);
        dp.clearConntrack();
      }
      loads.push(load());
    }
    const lost = names.map((s) => Number(paths.get(s)!.dp.eventBudget(1)?.lost ?? 0n));
    if (lost.some((n) => n > 0)) throw new Error(`the ring filled during the ns/packet rounds (lost ${lost.join(", ")}): the figures would include failed reserves`);
  } finally {
    for (const { dp, rb } of paths.values()) {
      rb.close();
      dp.close();
    }
  }

  console.log(`\n(1) BPF_PROG_RUN ns/packet, to_endpoint, ${ROUNDS} interleaved rounds; median (min–max); load ${loads.join(" → ")}`);
  const stat = (s: Setting, p: Packet) => samples.get(`${s}|${p}`);
  const ratio = (s: Setting, p: Packet) => median(stat(s, p).map((v, i) => v / stat("drops only", p)[i]!));
  printTable(
    [{ title: "packet" }, ...names.map((s) => ({ title: s, align: "right" as const })), { title: "all ÷ drops only", align: "right" }, { title: "suppressed ÷ drops only", align: "right" }],
    PACKETS.map((p) => [p, ...names.map((s) => medianRange(stat(s, p))), ratio("all verdicts", p).toFixed(3), ratio("suppressed", p).toFixed(3)]),
  );
  const newFlow = ratio("all verdicts", "allowed, new flow");
  results.row("new-flow packet, all verdicts ÷ drops only (median of per-round ratios)", newFlow.toFixed(3), "≤ 1.10", newFlow <= 1.1);
  const established = ratio("all verdicts", "allowed, established");
  results.row("established packet, all verdicts ÷ drops only", established.toFixed(3), "(info: no event on this path)");
  const deniedWritten = median(stat("all verdicts", "denied").map((v, i) => v / stat("suppressed", "denied")[i]!));
  results.row("denied packet, all verdicts (a VERDICT and a DROP written) ÷ suppressed (none)", deniedWritten.toFixed(3), "(info)");
  results.row("established packet, drops only ÷ suppressed (the event path's floor)", (1 / ratio("suppressed", "allowed, established")).toFixed(3), "(info: no visible cost expected)");
}

// ---- (2) the monitor's throughput --------------------------------------------------------------------

interface Produced {
  caused: number;
  seconds: number;
  suppressed: number;
  lost: number;
}

function reconcileCommand(): [string, string[]] {
  const bin = process.env.RECONCILE_BIN;
  return bin ? [bin, []] : [process.execPath, ["--import", "tsx", join(REPO, "reconciler/cli/main.ts")]];
}

/** Starts `reconcile monitor` on the pin root and resolves once it reads the ring. */
function startMonitor(pinRoot: string, extra: string[]): Promise<{ child: ChildProcess; summary: Promise<string> }> {
  const [cmd, pre] = reconcileCommand();
  const child = spawn(cmd, [...pre, "monitor", "--bpffs-root", pinRoot, "--output", "json", ...extra], { cwd: REPO, stdio: ["ignore", "ignore", "pipe"] });
  let err = "";
  return new Promise((resolveStart, reject) => {
    const summary = new Promise<string>((res) => child.on("exit", () => res(err)));
    child.stderr!.on("data", (c: Buffer) => {
      err += c.toString();
      if (err.includes("reading the ring buffer")) resolveStart({ child, summary });
    });
    child.on("exit", (code) => reject(new Error(`monitor exited ${code} before reading: ${err}`)));
  });
}

/** "N events shown, N read; the datapath suppressed S (rate limit) and lost L (ring full)". */
function parseSummary(text: string): { read: number; suppressed: number; lost: number } {
  const m = /monitor: (\d+) events shown, (\d+) read; the datapath suppressed (\d+) \(rate limit\) and lost (\d+)/.exec(text);
  if (!m) throw new Error(`no summary line from monitor: ${text}`);
  return { read: Number(m[2]), suppressed: Number(m[3]), lost: Number(m[4]) };
}

async function monitorThroughput(results: Results): Promise<void> {
  const producer = spawn(process.execPath, ["--import", "tsx", fileURLToPath(import.meta.url), "--produce", `--seconds=${SECONDS}`], { cwd: REPO, stdio: ["pipe", "pipe", "inherit"] });
  const out = createInterface({ input: producer.stdout! })[Symbol.asyncIterator]();
  const line = async () => {
    const r = await out.next();
    if (r.done) throw new Error("the producer ended early");
    return r.value as string;
  };
  try {
    const ready = await line();
    const pinRoot = /^ready (\S+)$/.exec(ready)?.[1];
    if (!pinRoot) throw new Error(`producer said ${ready}`);
    const rows: string[][] = [];
    const byCase = new Samples();
    const loads: string[] = [load()];
    const cases = [
      { name: "paced 250,000/s, numbers only", pace: 250_000, extra: [] as string[] },
      { name: "paced 250,000/s, names from --source", pace: 250_000, extra: ["--source", SEED] },
      { name: "flat out, numbers only", pace: 0, extra: [] },
      { name: "flat out, names from --source", pace: 0, extra: ["--source", SEED] },
    ];
    const rounds = Math.max(1, Math.floor(ROUNDS / 2));
    for (let round = 0; round < rounds; round++) {
      for (const c of cases) {
        const mon = await startMonitor(pinRoot, c.extra);
        producer.stdin!.write(`go ${c.pace}\n`);
        const p = JSON.parse(await line()) as Produced;
        mon.child.kill("SIGINT");
        const seen = parseSummary(await mon.summary);
        const accounted = seen.read + seen.suppressed + seen.lost;
        if (accounted !== p.caused) throw new Error(`${c.name}: the producer caused ${p.caused} events, monitor accounts for ${accounted} (read ${seen.read}, suppressed ${seen.suppressed}, lost ${seen.lost})`);
        const rate = seen.read / p.seconds;
        byCase.add(c.name, rate);
        rows.push([c.name, `${round + 1}`, fmt(p.caused / p.seconds), fmt(rate), fmt(seen.lost), fmt(seen.suppressed)]);
        loads.push(load());
      }
    }
    console.log(`\n(2) reconcile monitor --output json > /dev/null reading a flooded ring (${SECONDS} s each); load ${loads.join(" → ")}`);
    printTable(
      [{ title: "case" }, { title: "round", align: "right" }, { title: "caused/s", align: "right" }, { title: "read/s", align: "right" }, { title: "lost", align: "right" }, { title: "suppressed", align: "right" }],
      rows,
    );
    for (const c of cases) {
      const xs = byCase.get(c.name);
      results.row(`monitor read/s, ${c.name}; every event read or counted`, medianRange(xs), "≥ 200,000", median(xs) >= 200_000);
    }
  } finally {
    producer.stdin!.write("close\n");
    await new Promise((r) => producer.once("exit", r));
  }
}

async function main(): Promise<void> {
  if (process.argv.includes("--produce")) return produce();
  const results = new Results();
  nsPerPacket(results);
  await monitorThroughput(results);
  console.log("\nResults");
  results.print();
}

await main();
