// Helpers for the reconcile end-to-end tests: a private "host" network namespace per test, a
// private copy of examples/seed with unique namespace and interface names, a private bpffs pin
// root, the CLI run from source inside that host namespace, real TCP traffic between endpoint
// namespaces, bpftool views of the pinned maps, and one cleanup (registered before anything is
// made) that removes all of it even when the test fails.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import type { TestContext } from "node:test";
import { fileURLToPath } from "node:url";
import {
  decodeEndpointInfo,
  decodeEndpointKey,
  decodeIpcacheKey,
  decodeIpcacheValue,
  decodePolicyKey,
  decodePolicyValue,
  encodePolicyKey,
  POLICY_KEY,
} from "../../../reconciler/datapath/layouts.js";
import { endpointIds } from "../../../reconciler/datapath/desired.js";
import { policyEntryId } from "../../../reconciler/datapath/state.js";
import { compileSnapshot } from "../../../reconciler/plan/snapshot-to-desired.js";
import { readDirSnapshot } from "../../../reconciler/source/dir.js";

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
const MAIN = path.join(REPO, "reconciler/cli/main.ts");
const SEED = path.join(REPO, "examples/seed");

/** The seed's endpoints (DESIGN §9). */
export const SEED_IPS = { app1: "10.11.255.104", app2: "10.11.90.17", app3: "10.11.33.3" } as const;
export type App = keyof typeof SEED_IPS;
export const APPS: readonly App[] = ["app1", "app2", "app3"];
/** app2's pinned identity. */
export const APP2_IDENTITY = 36895;
/** Policy entry id of the seed's allow (app1 ingress, from 36895, TCP/80). */
export const SEED_ALLOW_ID = "app1/ingress/36895/6/80/16";

/** Endpoint numbers (keys of the policy map-of-maps) are a pure function of the endpoint names. */
export const EP_IDS = endpointIds([...APPS]);

export interface Env {
  /** Unique suffix in every name this test makes. */
  suffix: string;
  /** Private "host" namespace reconcile runs in. */
  hostNs: string;
  /** Endpoint namespaces (unique copies of rc-appN). */
  netns: Record<App, string>;
  /** Host-side interface names (unique copies of lxc-appN). */
  hostIf: Record<App, string>;
  /** bpffs pin root. */
  pinRoot: string;
  /** Private scratch directory (manifests live in `dir`). */
  tmp: string;
  /** Manifest directory: a rewritten copy of examples/seed. */
  dir: string;
  /** --node value. */
  node: string;
  /** Registers a cleanup step run (last registered first) before the standard teardown. */
  defer(fn: () => void | Promise<void>): void;
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Fails with a clear message when a tool the e2e tests need is missing. */
export function requireTools(...tools: string[]): void {
  for (const tool of tools) {
    const r = spawnSync("sh", ["-c", `command -v ${tool}`], { encoding: "utf8" });
    if (r.status !== 0) {
      throw new Error(`${tool} is not installed: run \`npm run setup\` (tools/setup.sh installs the e2e tools)`);
    }
  }
}

/**
 * A private environment: host namespace, unique seed copy, pin root. The cleanup is registered
 * before anything is created: it kills processes the test started, runs `reconcile teardown`
 * with the same pin root, then deletes the host namespace, every namespace carrying this test's
 * suffix, the pin root and the scratch directory.
 */
export function makeEnv(t: TestContext, topic: string): Env {
  const suffix = `${topic.slice(0, 1)}${randomBytes(2).toString("hex")}`;
  const tmp = mkdtempSync(path.join(tmpdir(), `rc-e2e-${topic}-`));
  const deferred: Array<() => void | Promise<void>> = [];
  const env: Env = {
    suffix,
    hostNs: `rch-${suffix}`,
    netns: { app1: `rc-a1-${suffix}`, app2: `rc-a2-${suffix}`, app3: `rc-a3-${suffix}` },
    hostIf: { app1: `lx1-${suffix}`, app2: `lx2-${suffix}`, app3: `lx3-${suffix}` },
    pinRoot: `/sys/fs/bpf/rce-${suffix}`,
    tmp,
    dir: path.join(tmp, "manifests"),
    node: `node-${suffix}`,
    defer: (fn) => void deferred.push(fn),
  };
  t.after(async () => {
    for (const fn of deferred.reverse()) {
      try {
        await fn();
      } catch {
        /* keep cleaning */
      }
    }
    if (existsSync(`/run/netns/${env.hostNs}`) && existsSync(env.pinRoot)) {
      await reconcile(env, ["teardown"], { timeoutMs: 30_000 }).catch(() => undefined);
    }
    for (const name of safeReaddir("/run/netns")) {
      if (name.endsWith(suffix)) spawnSync("ip", ["netns", "delete", name], { stdio: "ignore" });
    }
    rmSync(env.pinRoot, { recursive: true, force: true });
    rmSync(tmp, { recursive: true, force: true });
  });
  spawnSyncOk("ip", ["netns", "add", env.hostNs]);
  writeManifests(env);
  return env;
}

function safeReaddir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/** Rewrites one seed file's names to this env's unique ones. */
export function rewriteNames(env: Env, text: string): string {
  let out = text;
  for (const app of APPS) {
    const n = app.slice(3);
    out = out.replaceAll(`rc-app${n}`, env.netns[app]).replaceAll(`lxc-app${n}`, env.hostIf[app]);
  }
  return out;
}

/** (Re)writes the manifest directory as the seed (names made unique). */
export function writeManifests(env: Env): void {
  rmSync(env.dir, { recursive: true, force: true });
  spawnSyncOk("mkdir", ["-p", env.dir]);
  for (const f of ["endpoints.yaml", "identities.yaml", "l3-rule.json"]) {
    writeFileSync(path.join(env.dir, f), rewriteNames(env, readFileSync(path.join(SEED, f), "utf8")));
  }
}

/** The seed rule with another port (and optionally endPort). */
export function seedRuleWithPort(port: number, endPort?: number): string {
  const rule = JSON.parse(readFileSync(path.join(SEED, "l3-rule.json"), "utf8")) as Array<{ ingress: Array<{ toPorts: Array<{ ports: Array<Record<string, unknown>> }> }> }>;
  const p = rule[0]!.ingress[0]!.toPorts[0]!.ports[0]!;
  p.port = String(port);
  if (endPort !== undefined) p.endPort = endPort;
  return JSON.stringify(rule, null, 2) + "\n";
}

export function spawnSyncOk(cmd: string, args: string[], opts: { input?: string } = {}): string {
  // Map dumps of tens of thousands of entries are megabytes of JSON.
  const r = spawnSync(cmd, args, { encoding: "utf8", maxBuffer: 512 * 1024 * 1024, ...(opts.input !== undefined ? { input: opts.input } : {}) });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ").slice(0, 300)} failed (exit ${r.status}${r.error ? `, ${r.error.message}` : ""}): ${(r.stderr || r.stdout).slice(0, 1000)}`);
  return r.stdout;
}

export interface RunOptions {
  /** Kill (SIGKILL) after this long; default 60 s. */
  timeoutMs?: number;
  /** Run under `strace -f -e trace=bpf,close -o FILE`. */
  strace?: string;
  /** More strace arguments (e.g. "-e", "inject=bpf:signal=KILL:when=40"). */
  straceExtra?: string[];
}

/**
 * How the e2e tests run reconcile: the single binary named by RECONCILE_BIN (what `npm run test:e2e`
 * builds and sets), else the sources through tsx.
 */
export function cliCommand(): string[] {
  const bin = process.env.RECONCILE_BIN;
  return bin ? [path.resolve(REPO, bin)] : [process.execPath, "--import", "tsx", MAIN];
}

/** Environment for a reconcile process: the binary extracts its native module below the test's own dir. */
export function cliEnv(env: Pick<Env, "tmp">): NodeJS.ProcessEnv {
  // The state directory (load results, git checkouts) inside the test's own, never the host's /var/lib/reconcile.
  return { ...process.env, NO_COLOR: "1", RUNTIME_DIRECTORY: path.join(env.tmp, "run"), RECONCILE_STATE_DIR: path.join(env.tmp, "state") };
}

/** argv for the CLI inside the host namespace (optionally under strace). */
export function reconcileArgv(env: Env, args: readonly string[], opts: RunOptions = {}): string[] {
  const cli = [...cliCommand(), ...args, "--bpffs-root", env.pinRoot, "--node", env.node];
  const traced = opts.strace ? ["strace", "-f", "-qq", "-e", "trace=bpf,close", ...(opts.straceExtra ?? []), "-o", opts.strace, ...cli] : cli;
  return ["nsenter", `--net=/run/netns/${env.hostNs}`, ...traced];
}

/** Runs `reconcile ARGS --bpffs-root <env> --node <env>` inside the host namespace. */
export function reconcile(env: Env, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return spawnReconcile(env, args, opts).done;
}

/**
 * The same, handing back the process too (to signal it). nsenter execs the CLI in place, so the
 * child's pid is the reconcile process itself. Killed after `timeoutMs` (default 60 s).
 */
export function spawnReconcile(env: Env, args: readonly string[], opts: RunOptions = {}): { child: ChildProcess; done: Promise<RunResult> } {
  const [cmd, ...argv] = reconcileArgv(env, args, opts);
  return spawnCollected(cmd!, argv, cliEnv(env), opts.timeoutMs);
}

/**
 * `reconcile ARGS` inside the host namespace `hostNs`, with the arguments exactly as given (the
 * multi-node tests name each node's --node, --bpffs-root and --source themselves).
 */
export function reconcileIn(hostNs: string, args: readonly string[], env: Pick<Env, "tmp">, timeoutMs?: number): Promise<RunResult> {
  return spawnCollected("nsenter", [`--net=/run/netns/${hostNs}`, ...cliCommand(), ...args], cliEnv(env), timeoutMs).done;
}

/** Spawns a command and collects its output; killed (SIGKILL) after `timeoutMs` (default 60 s). */
function spawnCollected(cmd: string, argv: readonly string[], env: NodeJS.ProcessEnv, timeoutMs = 60_000): { child: ChildProcess; done: Promise<RunResult> } {
  const started = Date.now();
  const child = spawn(cmd, argv, { cwd: REPO, stdio: ["ignore", "pipe", "pipe"], env });
  const done = new Promise<RunResult>((resolve, reject) => {
    let stdout = "";
    let stderr = "";
    child.stdout!.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("error", reject);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, ms: Date.now() - started });
    });
  });
  return { child, done };
}

export function reconcileSrc(env: Env, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return reconcile(env, [...args, "--source", env.dir], opts);
}

/** Describes a run for assertion messages. */
export function show(r: RunResult): string {
  return `exit ${r.code}${r.signal ? ` (${r.signal})` : ""}\n--- stdout\n${r.stdout.slice(0, 4000)}\n--- stderr\n${r.stderr.slice(0, 4000)}`;
}

export interface PlanJson {
  revision: string;
  summary: { create: number; update: number; delete: number };
  changes: Array<{ op: string; resource: string; id: string; before: unknown; after: unknown; reason: string }>;
}

/** `--dry-run --output json`: exit code and the parsed plan. */
export async function dryRunJson(env: Env): Promise<{ code: number | null; plan: PlanJson; run: RunResult }> {
  const run = await reconcileSrc(env, ["--dry-run", "--output", "json"]);
  let plan: PlanJson;
  try {
    plan = JSON.parse(run.stdout) as PlanJson;
  } catch (err) {
    throw new Error(`dry-run printed no JSON plan: ${show(run)}`, { cause: err });
  }
  return { code: run.code, plan, run };
}

/** "op resource id" of every change, sorted: the shape tests compare plans by. */
export function planOps(plan: PlanJson): string[] {
  return plan.changes.map((c) => `${c.op} ${c.resource} ${c.id}`).sort();
}

// ---- processes ---------------------------------------------------------------------------------

/** Spawns a long-running process whose kill (by pid) is part of the env's cleanup. */
export function spawnOwned(env: Env, cmd: string, args: string[], opts: { cwd?: string } = {}): ChildProcess {
  const child = spawn(cmd, args, { cwd: opts.cwd ?? env.tmp, stdio: ["ignore", "pipe", "pipe"] });
  env.defer(() => killAndWait(child));
  return child;
}

/** SIGKILL a child we started (by its pid) and wait until it is gone. */
export async function killAndWait(child: ChildProcess, signal: NodeJS.Signals = "SIGKILL", timeoutMs = 5000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  let timer: NodeJS.Timeout | undefined;
  const gone = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)));
  child.kill(signal);
  await Promise.race([gone, late]);
  clearTimeout(timer);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `check` until it returns a value (not undefined/false) or the deadline passes. */
export async function waitFor<T>(what: string, check: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 10_000, everyMs = 20): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

// ---- traffic -----------------------------------------------------------------------------------

/** An HTTP server on ip:port inside `netns`, killed at cleanup; resolves once it listens. */
export async function startServer(env: Env, netns: string, ip: string, port: number): Promise<void> {
  const child = spawnOwned(env, "ip", ["netns", "exec", netns, "python3", "-m", "http.server", String(port), "--bind", ip]);
  await waitFor(`http server ${ip}:${port} in ${netns}`, () => {
    if (child.exitCode !== null) throw new Error(`http server ${ip}:${port} in ${netns} exited with ${child.exitCode}`);
    const r = spawnSync("ip", ["netns", "exec", netns, "ss", "-ltnH", `sport = :${port}`], { encoding: "utf8" });
    return r.stdout.includes(`${ip}:${port}`);
  }, 15_000, 50);
}

export type ConnectResult = "ok" | "timeout" | "refused" | string;

const CLIENT = `
import socket, sys
ip, port, t = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
try:
    s = socket.create_connection((ip, port), timeout=t)
    s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
    data = s.recv(12)
    s.close()
    print("ok" if data.startswith(b"HTTP/") else "no-reply")
except socket.timeout:
    print("timeout")
except ConnectionRefusedError:
    print("refused")
except OSError as e:
    print("error " + str(e))
`;

/**
 * Connects from `netns` to ip:port with a bounded timeout, sends an HTTP request and reads the
 * reply status line: "ok" means the handshake and the reply both crossed the datapath.
 */
export function connect(netns: string, ip: string, port: number, timeoutS = 1): Promise<ConnectResult> {
  return new Promise((resolve) => {
    const child = spawn("ip", ["netns", "exec", netns, "python3", "-c", CLIENT, ip, String(port), String(timeoutS)], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), (timeoutS + 10) * 1000);
    child.on("close", () => {
      clearTimeout(timer);
      resolve(out.trim() || `no output: ${err.trim()}`);
    });
  });
}

export interface SeedTraffic {
  /** app2 → app1:allowedPort */
  allowed: ConnectResult;
  /** app3 → app1:allowedPort */
  otherIdentity: ConnectResult;
  /** app2 → app1:otherPort */
  otherPort: ConnectResult;
}

/** The seed's three flows, run in parallel. Servers must already listen on app1:ports. */
export async function seedTraffic(env: Env, allowedPort = 80, otherPort = 81): Promise<SeedTraffic> {
  const [allowed, otherIdentity, otherPort_] = await Promise.all([
    connect(env.netns.app2, SEED_IPS.app1, allowedPort, 2),
    connect(env.netns.app3, SEED_IPS.app1, allowedPort, 0.5),
    connect(env.netns.app2, SEED_IPS.app1, otherPort, 0.5),
  ]);
  return { allowed, otherIdentity, otherPort: otherPort_ };
}

/** What the seed policy must do: the allowed flow connects and gets its reply, the others are dropped. */
export const SEED_EXPECTED: SeedTraffic = { allowed: "ok", otherIdentity: "timeout", otherPort: "timeout" };

/** Waits for the seed traffic to be as expected (the datapath may need a moment after a change). */
export async function expectSeedTraffic(env: Env, allowedPort = 80, otherPort = 81, timeoutMs = 8000): Promise<SeedTraffic> {
  let last: SeedTraffic | undefined;
  try {
    return await waitFor("seed traffic", async () => {
      last = await seedTraffic(env, allowedPort, otherPort);
      return last.allowed === "ok" && last.otherIdentity === "timeout" && last.otherPort === "timeout" ? last : undefined;
    }, timeoutMs, 100);
  } catch {
    throw new Error(`seed traffic not as expected: ${JSON.stringify(last)} (expected ${JSON.stringify(SEED_EXPECTED)})`);
  }
}

// ---- maps through bpftool ------------------------------------------------------------------------

export interface RawEntry {
  key: Buffer;
  value: Buffer;
}

function bytes(list: unknown): Buffer {
  return Buffer.from((list as string[]).map((h) => parseInt(h, 16)));
}

/** Hex byte arguments for bpftool ("hex 0a 0b ..."). */
export function hexArgs(b: Buffer): string[] {
  return ["hex", ...[...b].map((x) => x.toString(16).padStart(2, "0"))];
}

/** `bpftool map dump` of a pinned map (a path) or of a map id. */
export function mapDump(map: string | number): RawEntry[] {
  const ref = typeof map === "number" ? ["id", String(map)] : ["pinned", map];
  const out = spawnSyncOk("bpftool", ["-j", "map", "dump", ...ref]);
  const rows = JSON.parse(out) as Array<{ key: unknown; value: unknown }>;
  return rows.map((r) => ({ key: bytes(r.key), value: bytes(r.value) }));
}

export function mapDelete(map: string | number, key: Buffer): void {
  const ref = typeof map === "number" ? ["id", String(map)] : ["pinned", map];
  spawnSyncOk("bpftool", ["map", "delete", ...ref, "key", ...hexArgs(key)]);
}

export function mapUpdate(map: string | number, key: Buffer, value: Buffer): void {
  const ref = typeof map === "number" ? ["id", String(map)] : ["pinned", map];
  spawnSyncOk("bpftool", ["map", "update", ...ref, "key", ...hexArgs(key), "value", ...hexArgs(value)]);
}

export function pinPath(env: Env, map: string): string {
  return path.join(env.pinRoot, map);
}

/** Outer policy map: endpoint number → inner map id. */
export function policyInnerIds(env: Env): Map<number, number> {
  return new Map(mapDump(pinPath(env, "policy")).map((e) => [e.key.readUInt32LE(0), e.value.readUInt32LE(0)]));
}

/** Inner policy map id of a seed endpoint (throws when it has none). */
export function innerPolicyMap(env: Env, app: App): number {
  const id = policyInnerIds(env).get(EP_IDS.get(app)!);
  if (id === undefined) throw new Error(`${app} (endpoint number ${EP_IDS.get(app)}) has no inner policy map`);
  return id;
}

/** Policy entries in the kernel, as policyEntryId strings → decision, for every endpoint number. */
export function kernelPolicy(env: Env): Map<string, string> {
  const names = new Map([...EP_IDS].map(([name, id]) => [id, name]));
  const out = new Map<string, string>();
  for (const [epId, innerId] of policyInnerIds(env)) {
    for (const e of mapDump(innerId)) {
      const k = decodePolicyKey(e.key, 0);
      out.set(policyEntryId({ endpoint: names.get(epId) ?? `#${epId}`, ...k }), decodePolicyValue(e.value, 0).decision);
    }
  }
  return out;
}

/** ipcache in the kernel: prefix → identity. */
export function kernelIpcache(env: Env): Map<string, number> {
  return new Map(mapDump(pinPath(env, "ipcache")).map((e) => [decodeIpcacheKey(e.key, 0).prefix, decodeIpcacheValue(e.value, 0).identity]));
}

/** endpoints map in the kernel: address → {epId, identity}. */
export function kernelEndpoints(env: Env): Map<string, { epId: number; identity: number; enforceIngress: boolean }> {
  return new Map(
    mapDump(pinPath(env, "endpoints")).map((e) => {
      const v = decodeEndpointInfo(e.value, 0);
      return [decodeEndpointKey(e.key, 0), { epId: v.epId, identity: v.identity, enforceIngress: v.enforceIngress }];
    }),
  );
}

export interface DesiredMaps {
  /** policyEntryId → decision, every local endpoint. */
  policy: Map<string, string>;
  /** prefix → identity. */
  ipcache: Map<string, number>;
  /** Endpoint addresses. */
  endpoints: Set<string>;
}

/** What the env's manifests should put in the maps, from the pure compiler (in-process). */
export async function desiredMaps(env: Env): Promise<DesiredMaps> {
  const { policy, desired } = compileSnapshot(await readDirSnapshot(env.dir), { node: env.node, enforcement: "default", attachMode: "tcx" });
  return {
    policy: new Map(policy.endpoints.flatMap((ep) => ep.entries.map((e) => [policyEntryId(e), e.decision] as const))),
    ipcache: new Map(policy.ipcache.map((e) => [e.prefix, e.identity])),
    endpoints: new Set(desired.endpoints.keys()),
  };
}

// ---- strace ------------------------------------------------------------------------------------

export interface BpfCalls {
  /** Count of every bpf command seen. */
  byCommand: Map<string, number>;
  /** Writes (update, delete, link and pin commands) to maps reconcile did not create in this run
   *  as a feature probe; each line as strace printed it. */
  writes: string[];
  /** Feature-probe maps the run created (map_name "probe_*"), with the writes made to them. */
  probeWrites: string[];
}

const WRITE_COMMANDS = /^(BPF_MAP_UPDATE_ELEM|BPF_MAP_UPDATE_BATCH|BPF_MAP_DELETE_ELEM|BPF_MAP_DELETE_BATCH|BPF_MAP_LOOKUP_AND_DELETE_ELEM|BPF_MAP_LOOKUP_AND_DELETE_BATCH|BPF_LINK_\w+|BPF_OBJ_PIN|BPF_MAP_CREATE|BPF_PROG_LOAD|BPF_PROG_ATTACH|BPF_PROG_DETACH)$/;

/**
 * Parses `strace -f -e trace=bpf,close` output. A map the process created itself with a name
 * starting "probe_" is a feature probe (e.g. "does this kernel have batch ops?"): writes to it are
 * reported apart, as they touch nothing reconcile owns. File descriptors are tracked through
 * close() so a reused number is not mistaken for the probe.
 */
export function parseBpfTrace(text: string): BpfCalls {
  const byCommand = new Map<string, number>();
  const writes: string[] = [];
  const probeWrites: string[] = [];
  const probeFds = new Set<string>();
  for (const line of text.split("\n")) {
    // A call another thread interrupts is printed in two parts ("<unfinished ...>", "resumed"):
    // the first part names the command and its arguments, which is all that is counted here.
    const close = /^\d+\s+close\((\d+)/.exec(line);
    if (close) {
      probeFds.delete(close[1]!);
      continue;
    }
    const m = /^\d+\s+bpf\((BPF_\w+),(.*)$/.exec(line);
    if (!m) continue;
    const cmd = m[1]!;
    const body = m[2]!;
    const ret = /\)\s+=\s+(-?\d+)/.exec(body)?.[1] ?? "-1";
    byCommand.set(cmd, (byCommand.get(cmd) ?? 0) + 1);
    if (cmd === "BPF_MAP_CREATE" && /map_name="probe_/.test(body) && Number(ret) >= 0) {
      probeFds.add(ret);
      probeWrites.push(line);
      continue;
    }
    if (!WRITE_COMMANDS.test(cmd)) continue;
    const fd = /map_fd=(\d+)/.exec(body)?.[1];
    if (fd !== undefined && probeFds.has(fd)) probeWrites.push(line);
    else writes.push(line);
  }
  return { byCommand, writes, probeWrites };
}

/**
 * The bpf(2) commands of the thread that made most of them (reconcile's main thread), in order:
 * element i is the (i+1)-th bpf call of that thread, as strace's `inject=bpf:...:when=N` counts.
 */
export function mainThreadBpfCalls(text: string): string[] {
  const byPid = new Map<string, string[]>();
  for (const line of text.split("\n")) {
    const m = /^(\d+)\s+bpf\((BPF_\w+)/.exec(line);
    if (!m) continue;
    let calls = byPid.get(m[1]!);
    if (!calls) byPid.set(m[1]!, (calls = []));
    calls.push(m[2]!);
  }
  return [...byPid.values()].sort((a, b) => b.length - a.length)[0] ?? [];
}

/** GET /status on a daemon's unix socket: a plain HTTP request, independent of the CLI's client. */
export function daemonStatus<T>(socketPath: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ socketPath, path: "/status", method: "GET", timeout: 2000 }, (res) => {
      let body = "";
      res.on("data", (c: Buffer) => (body += c.toString()));
      res.on("end", () => {
        try {
          resolve(JSON.parse(body) as T);
        } catch (err) {
          reject(err);
        }
      });
    });
    req.on("timeout", () => req.destroy(new Error("status: no answer")));
    req.on("error", reject);
    req.end();
  });
}

/** Does app1's inner policy map hold the allow from app2 (the seed's identity) on TCP `port`? */
export function app1Allows(env: Env, port: number): boolean {
  const key = Buffer.alloc(POLICY_KEY.size);
  encodePolicyKey({ identity: APP2_IDENTITY, direction: "ingress", protocol: 6, port, portPrefixLen: 16 }, key, 0);
  try {
    return mapDump(innerPolicyMap(env, "app1")).some((e) => e.key.equals(key));
  } catch {
    return false; // mid-swap or not there yet
  }
}
