// SPDX-License-Identifier: Apache-2.0
// Datapath cost over the seed's veth path app2 → app1, four workloads in four configurations, all
// measured in the same interleaved rounds (each round runs every configuration once, the order
// rotating; within a configuration every workload once):
//   workloads: tcp  iperf3 TCP bulk throughput (port 5201, 64 KiB GSO segments hide per-packet cost);
//              udp  64-byte UDP datagrams sent flat out (port 5204), packets/s the server received;
//              rr   request/response on one TCP connection, 64 bytes each way, one outstanding,
//                   TCP_NODELAY (port 5202), transactions/s;
//              crr  a new TCP connection per transaction (connect, 64 bytes each way, the server
//                   closes, the client reads EOF and closes; port 5203), connections/s.
//   configs:   bpf    as `reconcile --once` sets it up (programs on every host-side veth, the policy
//                     allowing app2 → app1 on the workloads' ports);
//              bare   the same path with the programs detached (pinned links unlinked);
//              nft    bare + the nftables rule set an operator would write for the seed policy: a
//                     stateful forward filter (ct state established,related accept; app2 → app1 on
//                     the ports accept; anything else to app1 drop);
//              nftset bare + a stateless forward filter looking every packet up in a 100,000-element
//                     set (the comparison point of DESIGN §7's bulk target).
// udp, rr and crr use test/bench/rr.c, compiled at start with clang-14 -O2 into the temp dir;
// the servers run pinned to CPU 0 and the clients to CPU 1 (`taskset`; --no-pin to let them float).
// Reports the medians (min–max) and bpf/bare, nft/bare (targets: bpf ≥ 90% of bare on udp, rr and
// crr, ≥ 95% on tcp (DESIGN §7); bpf not behind nft).
// Run (root): node --import tsx test/bench/datapath.bench.ts [rounds=5] [seconds=5]
//               [--workloads=tcp,udp,rr,crr] [--configs=bpf,bare,nft,nftset] [--no-pin]
// Everything is private and unique (host netns dpb-h-<tag>, endpoint netns dpb-aN-<tag>, host veths
// dpbN<tag>, pin root /sys/fs/bpf/dpb-<tag>); reconcile runs through `nsenter --net=` (not
// `ip netns exec`, which would hide bpffs) and everything is removed at the end, also on failure.
// No traffic leaves the namespaces: every address is an endpoint's in the private netns.

import { execFileSync, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { queryTcx } from "../../reconciler/ebpf-loader/index.js";
import { withNetns } from "../../reconciler/netlink/index.js";
import { median, Results } from "./table.js";

type Workload = "tcp" | "udp" | "rr" | "crr";
type Config = "bpf" | "bare" | "nft" | "nftset";
const ALL_WORKLOADS: Workload[] = ["tcp", "udp", "rr", "crr"];
const ALL_CONFIGS: Config[] = ["bpf", "bare", "nft", "nftset"];

const positional = process.argv.slice(2).filter((a) => !a.startsWith("--"));
const flag = (name: string): string | undefined => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const ROUNDS = Number(positional[0] ?? 5);
const SECONDS = Number(positional[1] ?? 5);
const WORKLOADS = (flag("workloads")?.split(",") ?? ALL_WORKLOADS) as Workload[];
const CONFIGS = (flag("configs")?.split(",") ?? ALL_CONFIGS) as Config[];
for (const w of WORKLOADS) if (!ALL_WORKLOADS.includes(w)) throw new Error(`unknown workload ${w} (${ALL_WORKLOADS.join(",")})`);
for (const c of CONFIGS) if (!ALL_CONFIGS.includes(c)) throw new Error(`unknown configuration ${c} (${ALL_CONFIGS.join(",")})`);
if (!CONFIGS.includes("bare")) throw new Error("--configs must include bare (every ratio is to it)");
const PIN = !process.argv.includes("--no-pin");
const NFT_ELEMENTS = 100_000;
const PORTS: Record<Workload, { port: number; protocol: "TCP" | "UDP" }> = {
  tcp: { port: 5201, protocol: "TCP" },
  rr: { port: 5202, protocol: "TCP" },
  crr: { port: 5203, protocol: "TCP" },
  udp: { port: 5204, protocol: "UDP" },
};
const REPO = resolve(fileURLToPath(import.meta.url), "../../..");
const SEED = join(REPO, "examples/seed");
const APP1_IP = "10.11.255.104";
const APP2_IP = "10.11.90.17";

const tag = randomBytes(3).toString("hex");
const hostNs = `dpb-h-${tag}`;
const netns = { app1: `dpb-a1-${tag}`, app2: `dpb-a2-${tag}`, app3: `dpb-a3-${tag}` };
const hostIf = { app1: `dpb1${tag}`, app2: `dpb2${tag}`, app3: `dpb3${tag}` };
const pinRoot = `/sys/fs/bpf/dpb-${tag}`;
const node = `dpb-${tag}`;
const tmp = mkdtempSync(join(tmpdir(), "datapath-bench-"));
const manifests = join(tmp, "manifests");
const rrBin = join(tmp, "rr");

const children: ChildProcess[] = [];
const inNs = (ns: string, cmd: string, args: string[]): string[] => [`--net=/run/netns/${ns}`, cmd, ...args];
/** argv that runs CMD in NS, pinned to CPU (server 0, client 1) unless --no-pin. */
const pinned = (cpu: 0 | 1, ns: string, cmd: string, args: string[]): [string, string[]] =>
  PIN ? ["taskset", ["-c", String(cpu), "nsenter", ...inNs(ns, cmd, args)]] : ["nsenter", inNs(ns, cmd, args)];

function run(cmd: string, args: string[], input?: string): string {
  return execFileSync(cmd, args, { encoding: "utf8", stdio: [input === undefined ? "ignore" : "pipe", "pipe", "pipe"], ...(input !== undefined ? { input } : {}), maxBuffer: 1 << 28 });
}

/** `reconcile ARGS` in the private host netns, with this run's pin root and node. */
function reconcile(...args: string[]): string {
  const cli = [process.execPath, "--import", "tsx", join(REPO, "reconciler/cli/main.ts"), ...args, "--bpffs-root", pinRoot, "--node", node];
  const r = spawnSync("nsenter", inNs(hostNs, cli[0]!, cli.slice(1)), { encoding: "utf8", cwd: REPO });
  if (r.status !== 0) throw new Error(`reconcile ${args.join(" ")} exited ${r.status}: ${r.stderr || r.stdout}`);
  return r.stdout;
}

/** The seed with unique names, its rule allowing every workload's port instead of TCP/80. */
function writeManifests(): void {
  mkdirSync(manifests, { recursive: true });
  for (const f of ["endpoints.yaml", "identities.yaml", "l3-rule.json"]) {
    let text = readFileSync(join(SEED, f), "utf8");
    for (const n of [1, 2, 3] as const) {
      const app = `app${n}` as const;
      text = text.replaceAll(`rc-app${n}`, netns[app]).replaceAll(`lxc-app${n}`, hostIf[app]);
    }
    if (f === "l3-rule.json") {
      const rules = JSON.parse(text) as Array<{ ingress: Array<{ toPorts: Array<{ ports: Array<{ port: string; protocol: string }> }> }> }>;
      const toPorts = rules[0]?.ingress[0]?.toPorts[0];
      if (rules.length !== 1 || !toPorts || toPorts.ports.length !== 1 || toPorts.ports[0]!.port !== "80") throw new Error("the seed rule is not the one this benchmark rewrites (one rule, one port 80)");
      toPorts.ports = ALL_WORKLOADS.map((w) => ({ port: String(PORTS[w].port), protocol: PORTS[w].protocol }));
      text = JSON.stringify(rules, null, 2) + "\n";
    }
    writeFileSync(join(manifests, f), text);
  }
}

/** rr.c into the temp dir. */
function compileRr(): void {
  run("clang-14", ["-O2", "-Wall", "-o", rrBin, join(REPO, "test/bench/rr.c")]);
}

/** Programs attached with tcx to the host-side veths (BPF_PROG_QUERY in the host netns). */
function attachedPrograms(): number {
  let n = 0;
  for (const dev of Object.values(hostIf)) {
    const ifindex = (JSON.parse(run("ip", ["-n", hostNs, "-j", "link", "show", "dev", dev])) as Array<{ ifindex: number }>)[0]!.ifindex;
    for (const hook of ["ingress", "egress"] as const) n += withNetns(hostNs, () => queryTcx(ifindex, hook).progIds.length);
  }
  return n;
}

function attach(): void {
  reconcile("--once", "--source", manifests);
  const n = attachedPrograms();
  if (n < 6) throw new Error(`expected 6 tcx programs (2 per endpoint) after --once, bpftool shows ${n}`);
}

function detach(): void {
  rmSync(join(pinRoot, "links"), { recursive: true, force: true }); // unlinking the pins detaches the links
  const n = attachedPrograms();
  if (n !== 0) throw new Error(`programs still attached after unlinking the pinned links: ${n}`);
}

const nftTable = `dpb_${tag}`;
const tcpPorts = ALL_WORKLOADS.filter((w) => PORTS[w].protocol === "TCP").map((w) => PORTS[w].port);
const udpPorts = ALL_WORKLOADS.filter((w) => PORTS[w].protocol === "UDP").map((w) => PORTS[w].port);
/** The seed policy as an operator writes it in nftables: stateful, then the allow, then drop to app1. */
function nftStatefulOn(): void {
  const file = join(tmp, "stateful.nft");
  writeFileSync(
    file,
    `table inet ${nftTable} {\n  chain filter_fwd {\n    type filter hook forward priority 0; policy accept;\n` +
      `    ct state established,related accept\n` +
      `    ip saddr ${APP2_IP} ip daddr ${APP1_IP} tcp dport { ${tcpPorts.join(", ")} } accept\n` +
      `    ip saddr ${APP2_IP} ip daddr ${APP1_IP} udp dport { ${udpPorts.join(", ")} } accept\n` +
      `    ip daddr ${APP1_IP} drop\n  }\n}\n`,
  );
  run("nsenter", inNs(hostNs, "nft", ["-f", file]));
}
/** Every forwarded packet is looked up in the set (no conntrack shortcut); the flows' own tuples are in it. */
function nftSetOn(): void {
  const file = join(tmp, "filter.nft");
  if (!existsSync(file)) {
    const elements: string[] = [...tcpPorts, ...udpPorts].map((p) => `${APP2_IP} . ${APP1_IP} . ${p}`);
    for (let i = 1; elements.length < NFT_ELEMENTS; i++) elements.push(`10.${100 + (i >> 16)}.${(i >> 8) & 255}.${i & 255} . 10.20.${(i >> 8) & 255}.${i & 255} . ${1000 + (i % 2000)}`);
    writeFileSync(
      file,
      `table inet ${nftTable} {\n  set allow {\n    type ipv4_addr . ipv4_addr . inet_service\n    size ${NFT_ELEMENTS * 2}\n    elements = { ${elements.join(",\n")} }\n  }\n` +
        `  chain filter_fwd {\n    type filter hook forward priority 0; policy accept;\n    ip saddr . ip daddr . tcp dport @allow accept\n    ip saddr . ip daddr . udp dport @allow accept\n    ip daddr ${APP1_IP} drop\n  }\n}\n`,
    );
  }
  run("nsenter", inNs(hostNs, "nft", ["-f", file]));
}
function nftOff(): void {
  spawnSync("nsenter", inNs(hostNs, "nft", ["delete", "table", "inet", nftTable]), { stdio: "ignore" });
}

/** rr.c MODE ARGS in NS on CPU; resolves once it printed "ready" (servers, the UDP sink); `out` is its stdout at exit. */
function startRr(ns: string, cpu: 0 | 1, mode: string, args: string[]): Promise<{ child: ChildProcess; out: Promise<string> }> {
  const [cmd, argv] = pinned(cpu, ns, rrBin, [mode, ...args]);
  const child = spawn(cmd, argv, { stdio: ["ignore", "pipe", "pipe"] });
  children.push(child);
  let stdout = "";
  let stderr = "";
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  const out = new Promise<string>((ok, fail) =>
    child.on("exit", (code) => (code === 0 ? ok(stdout) : fail(new Error(`rr ${mode} exited ${code}: ${stderr}`)))),
  );
  out.catch(() => undefined);
  return new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`rr ${mode} did not start`)), 10_000);
    child.stdout!.on("data", (d: Buffer) => {
      stdout += d.toString();
      if (stdout.startsWith("ready\n")) {
        clearTimeout(timer);
        stdout = stdout.slice(6);
        ok({ child, out });
      }
    });
    out.catch((err: Error) => fail(err));
  });
}

/** rr.c MODE ARGS in NS on CPU 1 (a client), to completion; its stdout's numbers. */
function rrClient(ns: string, mode: string, args: string[]): number[] {
  const [cmd, argv] = pinned(1, ns, rrBin, [mode, ...args]);
  return run(cmd, argv).trim().split(/\s+/).map(Number);
}

function startIperfServer(): Promise<void> {
  const [cmd, argv] = pinned(0, netns.app1, "iperf3", ["-s", "--forceflush", "-B", APP1_IP, "-p", String(PORTS.tcp.port)]);
  const child = spawn(cmd, argv, { stdio: ["ignore", "pipe", "pipe"] });
  children.push(child);
  return new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error("iperf3 server did not start")), 10_000);
    child.stdout!.on("data", (d: Buffer) => {
      if (d.toString().includes("listening")) {
        clearTimeout(timer);
        ok();
      }
    });
    child.on("exit", (code) => fail(new Error(`iperf3 server exited ${code}`)));
  });
}

/** One iperf3 run app2 → app1; received bits/s. */
function throughput(): number {
  const [cmd, argv] = pinned(1, netns.app2, "iperf3", ["-c", APP1_IP, "-p", String(PORTS.tcp.port), "-t", String(SECONDS), "-J"]);
  const doc = JSON.parse(run(cmd, argv)) as { end?: { sum_received?: { bits_per_second?: number } }; error?: string };
  const bps = doc.end?.sum_received?.bits_per_second;
  if (!bps) throw new Error(`iperf3: ${doc.error ?? "no result"}`);
  return bps;
}

/** FROM floods app1's UDP port for SECONDS; [received, sent] datagrams per second. */
async function udp(from: string, seconds: number): Promise<[number, number]> {
  const sink = await startRr(netns.app1, 0, "udp-sink", [APP1_IP, String(PORTS.udp.port), "3"]);
  const [sent] = rrClient(from, "udp-flood", [APP1_IP, String(PORTS.udp.port), String(seconds)]);
  const received = Number((await sink.out).trim());
  return [received / seconds, sent! / seconds];
}

const measure: Record<Workload, () => Promise<{ value: number; note: string }>> = {
  tcp: async () => {
    const bps = throughput();
    return { value: bps, note: `${(bps / 1e9).toFixed(2)} Gbit/s` };
  },
  udp: async () => {
    const [rx, tx] = await udp(netns.app2, SECONDS);
    if (rx === 0) throw new Error("udp: the sink received nothing");
    sentPps.push(tx);
    return { value: rx, note: `${(rx / 1e3).toFixed(0)}k pps (sent ${(tx / 1e3).toFixed(0)}k)` };
  },
  rr: async () => {
    const [n] = rrClient(netns.app2, "rr-client", [APP1_IP, String(PORTS.rr.port), String(SECONDS)]);
    return { value: n! / SECONDS, note: `${(n! / SECONDS).toFixed(0)} tr/s` };
  },
  crr: async () => {
    const [n, failed] = rrClient(netns.app2, "crr-client", [APP1_IP, String(PORTS.crr.port), String(SECONDS)]);
    if (!n) throw new Error(`crr: no connection completed (${failed} failed)`);
    crrFailed += failed!;
    return { value: n / SECONDS, note: `${(n / SECONDS).toFixed(0)} conn/s${failed ? ` (${failed} failed)` : ""}` };
  },
};
const sentPps: number[] = [];
let crrFailed = 0;

/** With the programs attached: app2 reaches app1 on every workload's port, app3 on none (the rule allows app2 only). */
async function checkEnforced(): Promise<void> {
  for (const w of WORKLOADS) {
    const { port } = PORTS[w];
    if (w === "udp") {
      const [fromApp3] = await udp(netns.app3, 1);
      if (fromApp3 !== 0) throw new Error(`app3 reached app1 udp/${port} with the programs attached: ${fromApp3} datagrams/s`);
      const [fromApp2] = await udp(netns.app2, 1);
      if (fromApp2 === 0) throw new Error(`app2 did not reach app1 udp/${port} with the programs attached`);
      continue;
    }
    const probe = (ns: string): number => spawnSync("nsenter", inNs(ns, rrBin, ["tcp-probe", APP1_IP, String(port)]), { timeout: 10_000 }).status ?? -1;
    if (probe(netns.app3) !== 1) throw new Error(`app3 reached app1 tcp/${port} with the programs attached (the rule allows app2 only)`);
    if (probe(netns.app2) !== 0) throw new Error(`app2 did not reach app1 tcp/${port} with the programs attached`);
  }
}

function cleanup(): void {
  for (const c of children) c.kill("SIGKILL");
  nftOff();
  if (existsSync(`/run/netns/${hostNs}`) && existsSync(pinRoot)) {
    try {
      reconcile("teardown");
    } catch (err) {
      console.error(`teardown: ${(err as Error).message}`);
    }
  }
  for (const ns of [...Object.values(netns), hostNs]) spawnSync("ip", ["netns", "del", ns], { stdio: "ignore" });
  rmSync(pinRoot, { recursive: true, force: true });
  rmSync(tmp, { recursive: true, force: true });
}
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.once(sig, () => {
    cleanup();
    process.exit(130);
  });
}

const load = (): string => loadavg().map((l) => l.toFixed(2)).join(" ");
const results = new Map<string, number[]>();
const key = (w: Workload, c: Config): string => `${w}/${c}`;

try {
  console.log(
    `datapath benchmark: app2 -> app1, workloads ${WORKLOADS.join(",")}, configurations ${CONFIGS.join(",")}, ${ROUNDS} rounds x ${SECONDS} s per workload and configuration; ` +
      `${cpus().length} CPUs, ${PIN ? "servers on CPU 0, clients on CPU 1" : "not pinned"}; load at the start ${load()}`,
  );
  compileRr();
  execFileSync("ip", ["netns", "add", hostNs]);
  writeManifests();
  attach();
  if (WORKLOADS.includes("tcp")) await startIperfServer();
  if (WORKLOADS.includes("rr")) await startRr(netns.app1, 0, "rr-server", [APP1_IP, String(PORTS.rr.port)]);
  if (WORKLOADS.includes("crr")) await startRr(netns.app1, 0, "crr-server", [APP1_IP, String(PORTS.crr.port)]);
  await checkEnforced();
  const steps: Record<Config, { setup: () => void; teardown: () => void }> = {
    bpf: { setup: attach, teardown: detach },
    bare: { setup: () => undefined, teardown: () => undefined },
    nft: { setup: nftStatefulOn, teardown: nftOff },
    nftset: { setup: nftSetOn, teardown: nftOff },
  };
  detach();
  for (let round = 0; round < ROUNDS; round++) {
    // Rotate the order so that drift in the machine's load does not favour one configuration.
    const order = CONFIGS.map((_, i) => CONFIGS[(i + round) % CONFIGS.length]!);
    const line: string[] = [];
    for (const c of order) {
      steps[c].setup();
      const notes: string[] = [];
      for (const w of WORKLOADS) {
        const { value, note } = await measure[w]();
        (results.get(key(w, c)) ?? results.set(key(w, c), []).get(key(w, c))!).push(value);
        notes.push(`${w} ${note}`);
      }
      steps[c].teardown();
      line.push(`    ${c.padEnd(6)} ${notes.join(", ")}`);
    }
    console.log(`  round ${round + 1} (load ${load()}):\n${line.join("\n")}`);
  }

  const unit: Record<Workload, [string, number, number]> = {
    tcp: ["Gbit/s", 1e9, 2],
    udp: ["kpps received", 1e3, 0],
    rr: ["transactions/s", 1, 0],
    crr: ["connections/s", 1, 0],
  };
  const summary = new Results();
  for (const w of WORKLOADS) {
    const [u, div, digits] = unit[w];
    const fmt = (x: number): string => (x / div).toLocaleString("en", { minimumFractionDigits: digits, maximumFractionDigits: digits });
    const xs = (c: Config): number[] => results.get(key(w, c))!;
    const m = (c: Config): number => median(xs(c));
    const paired = (c: Config, to: Config): number => median(xs(c).map((x, i) => x / xs(to)[i]!));
    const pct = (x: number): string => `${(x * 100).toFixed(1)}%`;
    summary.row(`${w}: ${u}`, CONFIGS.map((c) => `${c} ${fmt(m(c))} (${fmt(Math.min(...xs(c)))}–${fmt(Math.max(...xs(c)))})`).join(", "));
    if (w === "udp") summary.row(`udp: kpps sent (all configurations)`, `${fmt(median(sentPps))} (${fmt(Math.min(...sentPps))}–${fmt(Math.max(...sentPps))})`);
    if (w === "crr" && crrFailed) summary.row(`crr: connections that failed`, String(crrFailed));
    const target = w === "tcp" ? 0.95 : 0.9;
    if (CONFIGS.includes("bpf")) {
      const r = m("bpf") / m("bare");
      summary.row(`${w}: bpf/bare`, `${pct(r)} (ratio of medians; median of per-round ratios ${pct(paired("bpf", "bare"))})`, `>= ${target * 100}%`, r >= target);
    }
    for (const n of ["nft", "nftset"] as const) {
      if (!CONFIGS.includes(n)) continue;
      summary.row(`${w}: ${n}/bare`, `${pct(m(n) / m("bare"))} (median of per-round ratios ${pct(paired(n, "bare"))})`, "(comparison point)");
    }
    if (CONFIGS.includes("bpf") && CONFIGS.includes("nft")) {
      const r = m("bpf") / m("nft");
      summary.row(`${w}: bpf/nft (stateful)`, `${pct(r)} (median of per-round ratios ${pct(paired("bpf", "nft"))})`, ">= 100%", r >= 1);
    }
  }
  summary.print();
  console.log(`  load at the end: ${load()}`);
} catch (err) {
  console.error(`datapath benchmark failed: ${(err as Error).stack ?? String(err)}`);
  process.exitCode = 1;
} finally {
  cleanup();
}
