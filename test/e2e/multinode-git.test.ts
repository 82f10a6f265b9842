// Three "nodes", each a private host network namespace, joined by an underlay: a bridge in a fourth
// ("switch") namespace with one veth per node (192.0.2.0/24). Each node runs the reconcile DAEMON
// with its own pin root, status socket and state dir, against the SAME local git repository
// (file:// URL, polled every second). app1 lives on n1, app2 (identity 36895) on n2, app3 on n3.
// Policy: the seed's (app1 accepts TCP/80 from app2) plus app2 accepting TCP/8080 from app3.
// Then commits: app2 moves from n2 to n3; the VNI changes on every Node; a commit with bad YAML.
// Which revision each node enforces comes from its status socket, not from sleeping.
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { decodeEndpointInfo, decodeEndpointKey, decodePolicyKey } from "../../reconciler/datapath/layouts.js";
import {
  REPO,
  cliCommand,
  cliEnv,
  connect,
  daemonStatus,
  killAndWait,
  mapDump,
  requireTools,
  spawnSyncOk,
  waitFor,
  type ConnectResult,
} from "./helpers/reconcile.js";
import { makeCluster as makeNodes, startServer, ipcache as nodeIpcache, type Cluster as Nodes } from "./helpers/cluster.js";
import { git } from "./helpers/git.js";

const SEED = path.join(REPO, "examples/seed");
const NODES = ["n1", "n2", "n3"] as const;
type NodeName = (typeof NODES)[number];
const ADDR: Record<NodeName, string> = { n1: "192.0.2.11", n2: "192.0.2.12", n3: "192.0.2.13" };
const POD_CIDR: Record<NodeName, string> = { n1: "10.11.255.0/24", n2: "10.11.90.0/24", n3: "10.11.33.0/24" };
/** app2 keeps its name, labels and identity when it moves, and takes an address of n3's pod CIDR. */
const IP = { app1: "10.11.255.104", app2: "10.11.90.17", app3: "10.11.33.3", app2OnN3: "10.11.33.17" } as const;

interface Status {
  appliedRevision: string | null;
  attemptedRevision: string | null;
  lastRun: { result: string; revision: string; invalid: string[]; errors: { object: string; message: string }[] } | null;
  git?: { revision: string | null; lastError: string | null };
}

interface Daemon {
  child: ChildProcess;
  socket: string;
  /** Everything the daemon logged (stderr). */
  log: () => string;
}

interface Cluster extends Nodes<NodeName> {
  /** Bare repository the daemons fetch from, and a work clone the test commits and pushes from. */
  bare: string;
  work: string;
  /** Endpoint namespaces; app2 gets a new one when it moves (these "machines" share /run/netns). */
  ns: { app1: string; app2: string; app3: string; app2b: string };
  /** Host-side interface names (the same on whichever node hosts the endpoint). */
  ifname: { app1: string; app2: string; app3: string };
  daemons: Partial<Record<NodeName, Daemon>>;
}

/**
 * Three nodes on a switch (a bridge in a fourth namespace) and the git repository. The daemons are
 * stopped first at cleanup; then the servers; then the nodes are torn down and deleted.
 */
function makeCluster(t: TestContext): Cluster {
  const nodes = makeNodes(t, { prefix: "mg", topic: "mngit", nodes: NODES, underlay: "switch", address: (n) => [`${ADDR[n]}/24`] });
  const sfx = nodes.sfx;
  const c: Cluster = Object.assign(nodes, {
    bare: path.join(nodes.tmp, "remote.git"),
    work: path.join(nodes.tmp, "work"),
    ns: { app1: nodes.name("a1"), app2: nodes.name("a2"), app3: nodes.name("a3"), app2b: nodes.name("b2") },
    ifname: { app1: `mx1-${sfx}`, app2: `mx2-${sfx}`, app3: `mx3-${sfx}` },
    daemons: {},
  });
  c.defer(() => Promise.all(Object.values(c.daemons).map((d) => killAndWait(d.child, "SIGTERM", 15_000).then(() => killAndWait(d.child)).catch(() => undefined))));
  git(c.tmp, "init", "-q", "--bare", "-b", "main", c.bare);
  git(c.tmp, "init", "-q", "-b", "main", c.work);
  git(c.work, "remote", "add", "origin", c.bare);
  return c;
}

function nodeYaml(name: NodeName, vni: number): string {
  return `apiVersion: reconcile/v1\nkind: Node\nmetadata:\n  name: ${name}\nspec:\n  address: ${ADDR[name]}\n  tunnel:\n    type: vxlan\n    vni: ${vni}\n  podCIDRs:\n    - ${POD_CIDR[name]}\n`;
}

function endpointYaml(c: Cluster, app: "app1" | "app2" | "app3", node: NodeName, ip: string, netns: string): string {
  return `apiVersion: reconcile/v1\nkind: Endpoint\nmetadata:\n  name: ${app}\n  labels:\n    id: ${app}\nspec:\n  node: ${node}\n  ipv4: ${ip}\n  interface:\n    name: ${c.ifname[app]}\n    create:\n      kind: veth\n      netns: ${netns}\n      ifname: eth0\n`;
}

/** app2 accepts TCP/8080 from app3 only: a policy enforced on whichever node hosts app2. */
const APP2_RULE = `apiVersion: reconcile/v1
kind: Rule
metadata:
  name: app2-from-app3
spec:
  endpointSelector:
    matchLabels:
      id: app2
  ingress:
    - fromEndpoints:
        - matchLabels:
            id: app3
      toPorts:
        - ports:
            - port: "8080"
              protocol: TCP
`;

interface Layout {
  /** Where app2 lives. */
  app2On: "n2" | "n3";
  vni: number;
}

/** Writes the whole manifest tree into the work clone, commits and pushes; returns the commit. */
function commitLayout(c: Cluster, l: Layout, message: string): string {
  writeFileSync(path.join(c.work, "nodes.yaml"), NODES.map((n) => nodeYaml(n, l.vni)).join("---\n"));
  const app2 = l.app2On === "n2" ? endpointYaml(c, "app2", "n2", IP.app2, c.ns.app2) : endpointYaml(c, "app2", "n3", IP.app2OnN3, c.ns.app2b);
  writeFileSync(
    path.join(c.work, "endpoints.yaml"),
    [endpointYaml(c, "app1", "n1", IP.app1, c.ns.app1), app2, endpointYaml(c, "app3", "n3", IP.app3, c.ns.app3)].join("---\n"),
  );
  for (const f of ["identities.yaml", "l3-rule.json"]) writeFileSync(path.join(c.work, f), readFileSync(path.join(SEED, f), "utf8"));
  writeFileSync(path.join(c.work, "app2-rule.yaml"), APP2_RULE);
  return commitAndPush(c, message);
}

function commitAndPush(c: Cluster, message: string): string {
  git(c.work, "add", "-A");
  git(c.work, "commit", "-q", "-m", message);
  git(c.work, "push", "-q", "origin", "main");
  return git(c.work, "rev-parse", "HEAD");
}

/** The reconcile daemon of `node` in its host namespace: git source polled every second. */
function startDaemon(c: Cluster, node: NodeName): Daemon {
  const socket = path.join(c.tmp, `${node}.sock`);
  const args = [
    "--source", `file://${c.bare}`, "--git-interval", "1s", "--resync-interval", "30s",
    "--state-dir", path.join(c.tmp, `state-${node}`), "--socket", socket,
    "--node", node, "--bpffs-root", c.pin[node],
  ];
  const child = spawn("nsenter", [`--net=/run/netns/${c.hostNs[node]}`, ...cliCommand(), ...args], { cwd: REPO, stdio: ["ignore", "ignore", "pipe"], env: cliEnv(c) });
  let log = "";
  child.stderr!.on("data", (d: Buffer) => (log += d.toString()));
  const d: Daemon = { child, socket, log: () => log };
  c.daemons[node] = d;
  return d;
}

async function status(c: Cluster, node: NodeName): Promise<Status | undefined> {
  const d = c.daemons[node]!;
  if (d.child.exitCode !== null) throw new Error(`daemon ${node} exited ${d.child.exitCode}:\n${d.log().slice(-3000)}`);
  return daemonStatus<Status>(d.socket).catch(() => undefined);
}

/** Waits until every node's daemon has applied `revision` (status), returns ms from `since`. */
async function converged(c: Cluster, revision: string, since: number, timeoutMs = 60_000): Promise<{ all: number; each: Record<NodeName, number> }> {
  const each: Partial<Record<NodeName, number>> = {};
  try {
    await waitFor(`every node to apply ${revision.slice(0, 8)}`, async () => {
      for (const node of NODES) {
        if (each[node] !== undefined) continue;
        const s = await status(c, node);
        if (s?.appliedRevision === revision && s.lastRun?.result === "ok") each[node] = Date.now() - since;
      }
      return NODES.every((n) => each[n] !== undefined);
    }, timeoutMs, 20);
  } catch (err) {
    const states = await Promise.all(NODES.map(async (n) => `${n}: ${JSON.stringify(await status(c, n))}\n${c.daemons[n]!.log().slice(-1500)}`));
    throw new Error(`${(err as Error).message}\n${states.join("\n")}`, { cause: err });
  }
  return { all: Math.max(...Object.values(each)), each: each as Record<NodeName, number> };
}

interface Flow {
  /** What the flow is, for messages: "app2@n2 → app1@n1:80". */
  name: string;
  from: string;
  to: string;
  port: number;
  want: "ok" | "timeout";
}

/** Runs the flows (in parallel) until each gives what it should; the last results in the error. */
async function expectFlows(flows: Flow[], timeoutMs = 20_000): Promise<void> {
  let last: ConnectResult[] = [];
  try {
    await waitFor("traffic as the policy says", async () => {
      last = await Promise.all(flows.map((f) => connect(f.from, f.to, f.port, f.want === "ok" ? 3 : 1)));
      return flows.every((f, i) => last[i] === f.want);
    }, timeoutMs, 200);
  } catch {
    throw new Error(`flows not as expected:\n${flows.map((f, i) => `  ${f.name}: expected ${f.want}, got ${last[i]}`).join("\n")}`);
  }
}

/** A node's pinned ipcache, endpoint prefixes only: prefix → "identity[ via tunnel endpoint]". */
function ipcache(c: Cluster, node: NodeName): Map<string, string> {
  return nodeIpcache(c, node, ["10.11."]);
}

/** A node's local endpoints (pinned endpoints map): address → endpoint number. */
function localEndpoints(c: Cluster, node: NodeName): Map<string, number> {
  return new Map(mapDump(path.join(c.pin[node], "endpoints")).map((e) => [decodeEndpointKey(e.key, 0), decodeEndpointInfo(e.value, 0).epId]));
}

/** Policy entries of one local endpoint number, as "direction identity/protocol/port". */
function policyOf(c: Cluster, node: NodeName, epId: number): string[] {
  const outer = mapDump(path.join(c.pin[node], "policy"));
  const inner = outer.find((e) => e.key.readUInt32LE(0) === epId);
  if (!inner) return [];
  return mapDump(inner.value.readUInt32LE(0)).map((e) => {
    const k = decodePolicyKey(e.key, 0);
    return `${k.direction} ${k.identity}/${k.protocol}/${k.port}`;
  }).sort();
}

/** Number of local endpoints with a policy map on a node. */
function policyMaps(c: Cluster, node: NodeName): number {
  return mapDump(path.join(c.pin[node], "policy")).length;
}

function hasLink(ns: string, dev: string): boolean {
  return spawnSync("ip", ["-n", ns, "link", "show", dev], { stdio: "ignore" }).status === 0;
}

function vxlanVni(c: Cluster, node: NodeName): number | undefined {
  const out = spawnSync("ip", ["-n", c.hostNs[node], "-d", "-j", "link", "show", "rc-vxlan"], { encoding: "utf8" });
  if (out.status !== 0) return undefined;
  const [link] = JSON.parse(out.stdout) as Array<{ ifindex: number; linkinfo: { info_kind: string; info_data: { id: number } } }>;
  return link?.linkinfo.info_kind === "vxlan" ? link.linkinfo.info_data.id : undefined;
}

function vxlanIfindex(c: Cluster, node: NodeName): number | undefined {
  const out = spawnSync("ip", ["-n", c.hostNs[node], "-j", "link", "show", "rc-vxlan"], { encoding: "utf8" });
  return out.status === 0 ? (JSON.parse(out.stdout) as Array<{ ifindex: number }>)[0]?.ifindex : undefined;
}

test("multinode-git: three daemons on one git repo enforce policy across nodes, follow an endpoint move and a VNI change, refuse a bad commit", async (t) => {
  requireTools("bpftool", "python3", "nsenter", "git", "bridge");
  const c = makeCluster(t);
  const timings: string[] = [];
  const diag = (line: string) => (timings.push(line), t.diagnostic(line));

  const seed = commitLayout(c, { app2On: "n2", vni: 7 }, "three nodes, app2 on n2, vni 7");
  const startedAt = Date.now();
  for (const node of NODES) startDaemon(c, node);
  const ready = await converged(c, seed, startedAt, 90_000);
  diag(`daemons started → seed applied on all three: ${ready.all} ms (${NODES.map((n) => `${n} ${ready.each[n]}`).join(", ")})`);
  for (const node of NODES) assert.equal(vxlanVni(c, node), 7, `${node}: rc-vxlan VNI`);

  // Each node built only its own endpoints; app2's identity is the same everywhere.
  assert.ok(hasLink(c.hostNs.n1, c.ifname.app1) && !hasLink(c.hostNs.n1, c.ifname.app2));
  assert.ok(hasLink(c.hostNs.n2, c.ifname.app2) && !hasLink(c.hostNs.n2, c.ifname.app3));
  assert.ok(hasLink(c.hostNs.n3, c.ifname.app3) && !hasLink(c.hostNs.n3, c.ifname.app2));
  const ip0 = NODES.map((n) => ipcache(c, n));
  assert.equal(ip0[0]!.get(`${IP.app2}/32`), `36895 via ${ADDR.n2}`);
  assert.equal(ip0[1]!.get(`${IP.app2}/32`), "36895");
  assert.equal(ip0[2]!.get(`${IP.app2}/32`), `36895 via ${ADDR.n2}`);
  const app3Identity = Number(ip0[2]!.get(`${IP.app3}/32`));
  assert.ok(app3Identity > 0, `app3's identity on n3: ${ip0[2]!.get(`${IP.app3}/32`)}`);
  assert.equal(ip0[0]!.get(`${IP.app3}/32`), `${app3Identity} via ${ADDR.n3}`);
  // n2 enforces app2's ingress policy (TCP/8080 from app3's identity).
  const app2OnN2 = localEndpoints(c, "n2").get(IP.app2);
  assert.ok(app2OnN2 !== undefined, "n2's endpoints map holds app2");
  assert.ok(policyOf(c, "n2", app2OnN2).includes(`ingress ${app3Identity}/6/8080`), JSON.stringify(policyOf(c, "n2", app2OnN2)));

  await startServer(c, c.ns.app1, IP.app1, 80);
  await startServer(c, c.ns.app1, IP.app1, 81);
  const app2Server = await startServer(c, c.ns.app2, IP.app2, 8080);
  const before: Flow[] = [
    { name: "app2@n2 → app1@n1:80 (allowed)", from: c.ns.app2, to: IP.app1, port: 80, want: "ok" },
    { name: "app3@n3 → app1@n1:80 (other identity)", from: c.ns.app3, to: IP.app1, port: 80, want: "timeout" },
    { name: "app2@n2 → app1@n1:81 (other port)", from: c.ns.app2, to: IP.app1, port: 81, want: "timeout" },
    { name: "app3@n3 → app2@n2:8080 (allowed, n3 → n2)", from: c.ns.app3, to: IP.app2, port: 8080, want: "ok" },
    { name: "app1@n1 → app2@n2:8080 (other identity)", from: c.ns.app1, to: IP.app2, port: 8080, want: "timeout" },
  ];
  await expectFlows(before);

  // ---- A commit moves app2 from n2 to n3 (new address in n3's pod CIDR, new namespace). ----
  await killAndWait(app2Server); // the workload leaves n2
  const n3Vxlan = vxlanIfindex(c, "n3");
  const movedAt = Date.now();
  const moved = commitLayout(c, { app2On: "n3", vni: 7 }, "move app2 to n3");
  const mv = await converged(c, moved, movedAt);
  diag(`commit moving app2 n2 → n3 → applied on all three: ${mv.all} ms (${NODES.map((n) => `${n} ${mv.each[n]}`).join(", ")})`);
  // The old node removed app2's veth, the namespace it had made, its endpoint entry and its policy.
  assert.ok(!hasLink(c.hostNs.n2, c.ifname.app2), "n2 deleted app2's veth");
  assert.ok(!existsSync(`/run/netns/${c.ns.app2}`), "n2 deleted the namespace it had made for app2");
  assert.deepEqual([...localEndpoints(c, "n2").keys()], [], "n2 has no local endpoint left");
  // Checked as soon as the commit is applied: the run of the commit itself removed app2's slot in
  // the policy map-of-maps (not a resync after it; see the drift check at the end).
  assert.equal(policyMaps(c, "n2"), 0, "n2 holds no endpoint policy");
  // The new node made them, with the same policy.
  assert.ok(hasLink(c.hostNs.n3, c.ifname.app2), "n3 created app2's veth");
  assert.ok(existsSync(`/run/netns/${c.ns.app2b}`), "n3 created app2's namespace");
  const app2OnN3 = localEndpoints(c, "n3").get(IP.app2OnN3);
  assert.ok(app2OnN3 !== undefined, "n3's endpoints map holds app2 at its new address");
  assert.ok(policyOf(c, "n3", app2OnN3).includes(`ingress ${app3Identity}/6/8080`), JSON.stringify(policyOf(c, "n3", app2OnN3)));
  assert.equal(vxlanIfindex(c, "n3"), n3Vxlan, "moving an endpoint leaves the overlay device alone");
  // Every ipcache: the old address gone, the new one with app2's identity, tunnelled to n3.
  const ip1 = NODES.map((n) => ipcache(c, n));
  for (const [i, node] of NODES.entries()) {
    assert.equal(ip1[i]!.get(`${IP.app2}/32`), undefined, `${node}: old address of app2 still in the ipcache`);
    assert.equal(ip1[i]!.get(`${IP.app2OnN3}/32`), node === "n3" ? "36895" : `36895 via ${ADDR.n3}`, `${node}: app2's new address`);
  }
  await startServer(c, c.ns.app2b, IP.app2OnN3, 8080);
  const after: Flow[] = [
    { name: "app2@n3 → app1@n1:80 (allowed)", from: c.ns.app2b, to: IP.app1, port: 80, want: "ok" },
    { name: "app3@n3 → app1@n1:80 (other identity)", from: c.ns.app3, to: IP.app1, port: 80, want: "timeout" },
    { name: "app2@n3 → app1@n1:81 (other port)", from: c.ns.app2b, to: IP.app1, port: 81, want: "timeout" },
    { name: "app3@n3 → app2@n3:8080 (allowed, local)", from: c.ns.app3, to: IP.app2OnN3, port: 8080, want: "ok" },
    { name: "app1@n1 → app2@n3:8080 (other identity)", from: c.ns.app1, to: IP.app2OnN3, port: 8080, want: "timeout" },
  ];
  await expectFlows(after);

  // ---- A commit changes the VNI on every Node: rc-vxlan is recreated everywhere. ----
  const ifindexBefore = NODES.map((n) => vxlanIfindex(c, n));
  const vniAt = Date.now();
  const vni = commitLayout(c, { app2On: "n3", vni: 42 }, "vni 7 → 42");
  const v = await converged(c, vni, vniAt);
  diag(`commit changing the VNI → applied on all three: ${v.all} ms (${NODES.map((n) => `${n} ${v.each[n]}`).join(", ")})`);
  for (const [i, node] of NODES.entries()) {
    assert.equal(vxlanVni(c, node), 42, `${node}: rc-vxlan VNI after the commit`);
    assert.notEqual(vxlanIfindex(c, node), ifindexBefore[i], `${node}: rc-vxlan was recreated`);
    // Routes to the other nodes' pod CIDRs are back on the new device.
    const routes = JSON.parse(spawnSyncOk("ip", ["-n", c.hostNs[node], "-j", "route", "show", "dev", "rc-vxlan"])) as Array<{ dst: string; gateway: string }>;
    assert.deepEqual(routes.map((r) => `${r.dst} via ${r.gateway}`).sort(), NODES.filter((n) => n !== node).map((n) => `${POD_CIDR[n]} via ${ADDR[n]}`).sort(), `${node}: overlay routes`);
  }
  await expectFlows(after);

  // ---- A commit with bad YAML: every daemon refuses it, the VNI commit stays in force. ----
  writeFileSync(path.join(c.work, "broken.yaml"), "apiVersion: reconcile/v1\nkind: Endpoint\nmetadata: {name: app9\nspec: [\n");
  const bad = commitAndPush(c, "broken yaml");
  const badAt = Date.now();
  const refused: Partial<Record<NodeName, Status>> = {};
  await waitFor("every daemon to refuse the bad commit", async () => {
    for (const node of NODES) {
      const s = await status(c, node);
      if (s?.attemptedRevision === bad && s.lastRun?.result === "invalid") refused[node] = s;
    }
    return NODES.every((n) => refused[n]);
  }, 30_000, 20);
  diag(`bad commit → refused by all three: ${Date.now() - badAt} ms`);
  for (const node of NODES) {
    const s = refused[node]!;
    assert.equal(s.appliedRevision, vni, `${node}: the last good revision stays in force`);
    assert.equal(s.lastRun!.revision, bad);
    assert.ok(s.lastRun!.invalid.some((p) => /^broken\.yaml:\d+: /.test(p)), `${node}: ${JSON.stringify(s.lastRun)}`);
    const rejected = c.daemons[node]!.log().split("\n").find((l) => l.includes("revision rejected") && l.includes(bad));
    assert.ok(rejected, `${node}: no "revision rejected" line naming ${bad} in the log`);
    assert.equal(vxlanVni(c, node), 42);
  }
  await expectFlows(after);
  // Still in force a few polls later.
  await new Promise((r) => setTimeout(r, 2500));
  for (const node of NODES) {
    const s = await status(c, node);
    assert.equal(s?.appliedRevision, vni, `${node}: applied revision after more polls of the bad commit`);
    assert.equal(s?.attemptedRevision, bad);
  }
  // Nobody but the daemons touched their datapaths: no resync may have found anything to correct
  // (a commit's own run leaving something behind shows up here as "drift corrected").
  for (const node of NODES) {
    const drift = c.daemons[node]!.log().split("\n").filter((l) => l.includes("drift corrected"));
    assert.deepEqual(drift, [], `${node}: a resync corrected what a commit's run left behind`);
  }
  t.diagnostic(`summary: ${timings.join("; ")}`);
});

