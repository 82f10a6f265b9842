// Helpers for the multi-node e2e tests: "nodes" that are private host network namespaces joined by
// an underlay (one veth pair for two nodes, or a bridge in a "switch" namespace), each with its own
// pin root; reconcile run inside a node's namespace; http servers in endpoint namespaces; a node's
// pinned ipcache. One cleanup, registered before anything is made, removes all of it.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import assert from "node:assert/strict";
import type { TestContext } from "node:test";
import { decodeIpcacheKey, decodeIpcacheValue } from "../../../reconciler/datapath/layouts.js";
import { killAndWait, mapDump, reconcileIn, show, spawnSyncOk, waitFor, type RunResult } from "./reconcile.js";

export interface ClusterOptions<N extends string> {
  /** Starts every name this test makes: namespaces `<prefix>h1-<sfx>`, pin root `/sys/fs/bpf/<prefix>-<sfx>`. */
  prefix: string;
  /** Names the scratch directory (`rc-e2e-<topic>-*`). */
  topic: string;
  /** The nodes, in order (node i's host namespace is `<prefix>h<i+1>-<sfx>`). */
  nodes: readonly N[];
  /** "pair": one veth between two nodes; "switch": a bridge in its own namespace, a veth per node. */
  underlay: "pair" | "switch";
  /** A node's underlay address with its prefix length, then any `ip addr add` flags: ["2001:db8::11/64", "nodad"]. */
  address: (node: N) => string[];
  /** Runs after the host namespaces exist and before the underlay is made (e.g. sysctls). */
  beforeUnderlay?: (c: Cluster<N>) => void;
}

export interface Cluster<N extends string> {
  /** Unique suffix in every name this test makes. */
  sfx: string;
  /** Private scratch directory, removed at cleanup. */
  tmp: string;
  nodes: readonly N[];
  /** Each node's host namespace. */
  hostNs: Record<N, string>;
  /** Directory of the pin roots, removed at cleanup. */
  pinBase: string;
  /** Each node's pin root (`<pinBase>/<node>`). */
  pin: Record<N, string>;
  /** Arguments every `run` passes before --node and --bpffs-root (e.g. --source DIR). */
  args: string[];
  /** Long-running helpers (http servers) killed at cleanup. */
  procs: ChildProcess[];
  /** `<prefix><part>-<sfx>`: a name this test's cleanup deletes (namespaces) or that dies with them. */
  name(part: string): string;
  /** Registers a cleanup step, run (last registered first) before the helpers are killed. */
  defer(fn: () => Promise<unknown> | void): void;
}

/**
 * Host namespaces, underlay and pin roots. The cleanup is registered first: it runs the deferred
 * steps, kills the helpers, runs `reconcile teardown` on each node that still has its namespace and
 * pin root, then deletes every namespace carrying this test's prefix and suffix, the pin roots and
 * the scratch directory.
 */
export function makeCluster<N extends string>(t: TestContext, o: ClusterOptions<N>): Cluster<N> {
  const sfx = randomBytes(2).toString("hex");
  const tmp = mkdtempSync(path.join(tmpdir(), `rc-e2e-${o.topic}-`));
  const pinBase = `/sys/fs/bpf/${o.prefix}-${sfx}`;
  const perNode = (f: (node: N, i: number) => string) => Object.fromEntries(o.nodes.map((n, i) => [n, f(n, i)])) as Record<N, string>;
  const deferred: Array<() => Promise<unknown> | void> = [];
  const c: Cluster<N> = {
    sfx,
    tmp,
    nodes: o.nodes,
    hostNs: perNode((_, i) => `${o.prefix}h${i + 1}-${sfx}`),
    pinBase,
    pin: perNode((n) => `${pinBase}/${n}`),
    args: [],
    procs: [],
    name: (part) => `${o.prefix}${part}-${sfx}`,
    defer: (fn) => void deferred.push(fn),
  };
  t.after(async () => {
    for (const fn of deferred.reverse()) await Promise.resolve().then(fn).catch(() => undefined);
    for (const p of c.procs) await killAndWait(p).catch(() => undefined);
    for (const node of c.nodes) {
      if (existsSync(`/run/netns/${c.hostNs[node]}`) && existsSync(c.pin[node])) await run(c, node, ["teardown"]).catch(() => undefined);
    }
    for (const name of safeReaddir("/run/netns")) {
      if (name.startsWith(o.prefix) && name.endsWith(`-${sfx}`)) spawnSync("ip", ["netns", "delete", name], { stdio: "ignore" });
    }
    rmSync(pinBase, { recursive: true, force: true });
    rmSync(tmp, { recursive: true, force: true });
  });
  for (const node of c.nodes) {
    spawnSyncOk("ip", ["netns", "add", c.hostNs[node]]);
    spawnSyncOk("ip", ["-n", c.hostNs[node], "link", "set", "lo", "up"]);
  }
  o.beforeUnderlay?.(c);
  if (o.underlay === "pair") makePair(c);
  else makeSwitch(c);
  for (const [i, node] of c.nodes.entries()) {
    const dev = c.name(`u${i + 1}`);
    const [addr, ...flags] = o.address(node);
    spawnSyncOk("ip", ["-n", c.hostNs[node], "addr", "add", addr!, "dev", dev, ...flags]);
    spawnSyncOk("ip", ["-n", c.hostNs[node], "link", "set", dev, "up"]);
  }
  mkdirSync(pinBase);
  return c;
}

/** Two nodes: one veth pair, `<prefix>u1` in the first, `<prefix>u2` in the second. */
function makePair<N extends string>(c: Cluster<N>): void {
  const [a, b] = c.nodes;
  if (a === undefined || b === undefined || c.nodes.length !== 2) throw new Error(`a veth pair joins two nodes, not ${c.nodes.length}`);
  spawnSyncOk("ip", ["-n", c.hostNs[a], "link", "add", c.name("u1"), "type", "veth", "peer", "name", c.name("u2"), "netns", c.hostNs[b]]);
}

/** A bridge `<prefix>br` in namespace `<prefix>sw`, with port `<prefix>s<i>` to node i's `<prefix>u<i>`. */
function makeSwitch<N extends string>(c: Cluster<N>): void {
  const sw = c.name("sw");
  const br = c.name("br");
  spawnSyncOk("ip", ["netns", "add", sw]);
  spawnSyncOk("ip", ["-n", sw, "link", "add", br, "type", "bridge"]);
  spawnSyncOk("ip", ["-n", sw, "link", "set", br, "up"]);
  for (const [i, node] of c.nodes.entries()) {
    const port = c.name(`s${i + 1}`);
    spawnSyncOk("ip", ["-n", sw, "link", "add", port, "type", "veth", "peer", "name", c.name(`u${i + 1}`), "netns", c.hostNs[node]]);
    spawnSyncOk("ip", ["-n", sw, "link", "set", port, "master", br, "up"]);
  }
}

function safeReaddir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/**
 * `reconcile ARGS <c.args> --node NODE --bpffs-root PIN`, run to completion inside NODE's host
 * namespace (inside `where`'s, with `where`'s pin root, if given).
 */
export function run<N extends string>(c: Cluster<N>, node: N, args: string[], where: N = node): Promise<RunResult> {
  return reconcileIn(c.hostNs[where], [...args, ...c.args, "--node", node, "--bpffs-root", c.pin[where]], c);
}

/** `reconcile --once` on a node; it must exit 0. */
export async function once<N extends string>(c: Cluster<N>, node: N): Promise<RunResult> {
  const r = await run(c, node, ["--once"]);
  assert.equal(r.code, 0, `${node}: ${show(r)}`);
  return r;
}

/** A node's pinned ipcache, prefixes starting with one of `starts` only: prefix → "identity[ via tunnel endpoint]". */
export function ipcache<N extends string>(c: Cluster<N>, node: N, starts: readonly string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const e of mapDump(path.join(c.pin[node], "ipcache"))) {
    const { prefix } = decodeIpcacheKey(e.key, 0);
    if (!starts.some((s) => prefix.startsWith(s))) continue;
    const v = decodeIpcacheValue(e.value, 0);
    out.set(prefix, `${v.identity}${v.tunnelEndpoint ? ` via ${v.tunnelEndpoint}` : ""}`);
  }
  return out;
}

/** `ip -n NETNS -j ARGS`, parsed. */
export function ipJson<T>(netns: string, args: string[]): T {
  return JSON.parse(spawnSyncOk("ip", ["-n", netns, "-j", ...args]) || "[]") as T;
}

/** An HTTP server on ip:port in `netns` serving the scratch directory, killed at cleanup; resolves once it listens. */
export async function startServer<N extends string>(c: Cluster<N>, netns: string, ip: string, port: number): Promise<ChildProcess> {
  const child = spawn("ip", ["netns", "exec", netns, "python3", "-m", "http.server", String(port), "--bind", ip], { cwd: c.tmp, stdio: "ignore" });
  c.procs.push(child);
  await waitFor(`http server ${ip}:${port}`, () => {
    if (child.exitCode !== null) throw new Error(`http server in ${netns} exited with ${child.exitCode}`);
    return spawnSync("ip", ["netns", "exec", netns, "ss", "-ltnH", `sport = :${port}`], { encoding: "utf8" }).stdout.includes(`${ip}:${port}`);
  }, 15_000, 50);
  return child;
}

/** Packets `endpoint` dropped at ingress for want of a policy, as `reconcile inspect policy` counts them on `node`. */
export async function noPolicyDrops<N extends string>(c: Cluster<N>, node: N, endpoint: string): Promise<number> {
  const r = await run(c, node, ["inspect", "policy", endpoint, "--output", "json"]);
  assert.equal(r.code, 0, show(r));
  const rows = JSON.parse(r.stdout) as Array<Record<string, unknown>>;
  return rows.filter((x) => x.drops === "NO_POLICY" && x.direction === "ingress").reduce((n, x) => n + (x.packets as number), 0);
}
