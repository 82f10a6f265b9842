// Two "nodes", each a private host network namespace joined to the other by a veth underlay
// (192.0.2.0/24), each running its own `reconcile --once` against the SAME manifest directory with
// its own pin root. app1 lives on n1; app2 (identity 36895) and app3 on n2. Traffic crosses the
// vxlan overlay reconcile builds; app1's ingress policy (TCP/80 from app2 only) is enforced on n1.
// Then app3 moves to n1, and both nodes converge.
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { vxlanMac } from "../../reconciler/datapath/desired.js";
import { REPO, connect, requireTools, show, spawnSyncOk, waitFor } from "./helpers/reconcile.js";
import { ipJson, makeCluster as makeNodes, noPolicyDrops, once, run, startServer, ipcache as nodeIpcache, type Cluster as Nodes } from "./helpers/cluster.js";

const SEED = path.join(REPO, "examples/seed");

type NodeName = "n1" | "n2";
const ADDR: Record<NodeName, string> = { n1: "192.0.2.11", n2: "192.0.2.12" };
const IP = { app1: "10.11.255.104", app2: "10.11.90.17", app3: "10.11.33.3", app3OnN1: "10.11.255.33" } as const;

interface Cluster extends Nodes<NodeName> {
  dir: string;
  /** Endpoint namespaces; app3 gets a new one when it moves (namespace names are per machine in
   *  real life, but these "machines" share /run/netns). */
  ns: { app1: string; app2: string; app3: string; app3b: string };
}

/** Two nodes joined by a veth underlay, then the shared manifests; the cleanup comes with the nodes. */
function makeCluster(t: TestContext): Cluster {
  const nodes = makeNodes(t, { prefix: "mn", topic: "multinode", nodes: ["n1", "n2"], underlay: "pair", address: (n) => [`${ADDR[n]}/24`] });
  const c: Cluster = Object.assign(nodes, {
    dir: path.join(nodes.tmp, "manifests"),
    ns: { app1: nodes.name("a1"), app2: nodes.name("a2"), app3: nodes.name("a3"), app3b: nodes.name("b3") },
  });
  c.args = ["--source", c.dir]; // every run (teardown at cleanup too) reads the shared manifests
  writeManifests(c, "n2");
  return c;
}

function nodeYaml(name: NodeName, podCIDRs: string[]): string {
  return `apiVersion: reconcile/v1\nkind: Node\nmetadata:\n  name: ${name}\nspec:\n  address: ${ADDR[name]}\n  tunnel:\n    type: vxlan\n    vni: 7\n  podCIDRs:\n${podCIDRs.map((p) => `    - ${p}\n`).join("")}`;
}

function endpointYaml(c: Cluster, app: string, node: NodeName, ip: string, netns: string): string {
  return `apiVersion: reconcile/v1\nkind: Endpoint\nmetadata:\n  name: ${app}\n  labels:\n    id: ${app}\nspec:\n  node: ${node}\n  ipv4: ${ip}\n  interface:\n    name: mx${app.slice(3)}-${c.sfx}\n    create:\n      kind: veth\n      netns: ${netns}\n      ifname: eth0\n`;
}

/** The shared manifest directory; `app3On` says where app3 lives. */
function writeManifests(c: Cluster, app3On: NodeName): void {
  rmSync(c.dir, { recursive: true, force: true });
  mkdirSync(c.dir, { recursive: true });
  writeFileSync(path.join(c.dir, "nodes.yaml"), `${nodeYaml("n1", ["10.11.255.0/24"])}---\n${nodeYaml("n2", ["10.11.90.0/24", "10.11.33.0/24"])}`);
  const app3 = app3On === "n2" ? endpointYaml(c, "app3", "n2", IP.app3, c.ns.app3) : endpointYaml(c, "app3", "n1", IP.app3OnN1, c.ns.app3b);
  writeFileSync(
    path.join(c.dir, "endpoints.yaml"),
    [endpointYaml(c, "app1", "n1", IP.app1, c.ns.app1), endpointYaml(c, "app2", "n2", IP.app2, c.ns.app2), app3].join("---\n"),
  );
  for (const f of ["identities.yaml", "l3-rule.json"]) writeFileSync(path.join(c.dir, f), readFileSync(path.join(SEED, f), "utf8"));
}

/** The pinned ipcache of a node: prefix → identity and tunnel endpoint (endpoint /32s only). */
function ipcache(c: Cluster, node: NodeName): Map<string, string> {
  return nodeIpcache(c, node, ["10.11."]);
}

/** app2 → app1:80 (allowed) and app3 → app1:80 (no policy), until both are as expected. */
async function expectPolicy(c: Cluster, app3Ns: string): Promise<void> {
  let last: [string, string] | undefined;
  try {
    await waitFor("cross-node traffic as the policy says", async () => {
      last = await Promise.all([connect(c.ns.app2, IP.app1, 80, 3), connect(app3Ns, IP.app1, 80, 1)]);
      return last[0] === "ok" && last[1] === "timeout";
    }, 15_000, 200);
  } catch {
    throw new Error(`expected app2 → app1:80 "ok" and app3 → app1:80 "timeout", got ${JSON.stringify(last)}`);
  }
}

test("multinode: two nodes over a vxlan overlay enforce the seed policy across nodes and converge when app3 moves", async (t) => {
  requireTools("bpftool", "python3", "nsenter", "bridge");
  const c = makeCluster(t);

  await once(c, "n2");
  const first = await once(c, "n1");
  t.diagnostic(`n1 first --once: ${first.ms} ms`);

  // The overlay device, its routes and its ARP/FDB entries on n1.
  type Link = { mtu: number; address: string; linkinfo: { info_kind: string; info_data: { id: number; port: number; local: string; learning: boolean } } };
  const [vx] = ipJson<Link[]>(c.hostNs.n1, ["-d", "link", "show", "rc-vxlan"]);
  assert.equal(vx!.linkinfo.info_kind, "vxlan");
  assert.deepEqual(
    [vx!.linkinfo.info_data.id, vx!.linkinfo.info_data.port, vx!.linkinfo.info_data.local, vx!.linkinfo.info_data.learning, vx!.mtu, vx!.address],
    [7, 8472, ADDR.n1, false, 1450, vxlanMac("n1")],
  );
  const routes = ipJson<Array<{ dst: string; gateway: string; flags: string[] }>>(c.hostNs.n1, ["route", "show", "dev", "rc-vxlan"]);
  assert.deepEqual(routes.map((r) => `${r.dst} via ${r.gateway}${r.flags.includes("onlink") ? " onlink" : ""}`).sort(), [
    `10.11.33.0/24 via ${ADDR.n2} onlink`,
    `10.11.90.0/24 via ${ADDR.n2} onlink`,
  ]);
  const neigh = ipJson<Array<{ dst: string; lladdr: string; state: string[] }>>(c.hostNs.n1, ["neigh", "show", "dev", "rc-vxlan", "nud", "permanent"]);
  assert.deepEqual(neigh.map((n) => [n.dst, n.lladdr]), [[ADDR.n2, vxlanMac("n2")]]);
  const fdb = JSON.parse(spawnSyncOk("bridge", ["-n", c.hostNs.n1, "-j", "fdb", "show", "dev", "rc-vxlan"])) as Array<{ mac: string; dst: string; state: string }>;
  assert.deepEqual(fdb.map((f) => [f.mac, f.dst, f.state]), [[vxlanMac("n2"), ADDR.n2, "permanent"]]);
  // Both ends of app1's veth at the overlay MTU.
  assert.equal(ipJson<Link[]>(c.hostNs.n1, ["link", "show", `mx1-${c.sfx}`])[0]!.mtu, 1450);
  assert.equal(ipJson<Link[]>(c.ns.app1, ["link", "show", "eth0"])[0]!.mtu, 1450);
  // n1 has only app1's devices; n2 only app2's and app3's.
  assert.ok(!existsSync(`/run/netns/${c.ns.app3b}`));
  assert.equal(spawnSync("ip", ["-n", c.hostNs.n2, "link", "show", `mx1-${c.sfx}`], { stdio: "ignore" }).status, 1);

  // Both ipcaches agree on every endpoint's identity; remote ones carry the other node's address.
  const ip1 = ipcache(c, "n1");
  const ip2 = ipcache(c, "n2");
  assert.equal(ip1.get(`${IP.app2}/32`), `36895 via ${ADDR.n2}`);
  assert.equal(ip2.get(`${IP.app2}/32`), "36895");
  const strip = (m: Map<string, string>) => new Map([...m].map(([k, v]) => [k, v.split(" ")[0]!]));
  assert.deepEqual(strip(ip1), strip(ip2));
  assert.equal(ip2.get(`${IP.app1}/32`), `${ip1.get(`${IP.app1}/32`)} via ${ADDR.n1}`);

  // Traffic across the overlay: app2 (n2) → app1 (n1):80 connects and the reply comes back;
  // app3 (n2) → app1:80 is dropped on n1 by app1's ingress policy.
  await startServer(c, c.ns.app1, IP.app1, 80);
  const dropsBefore = await noPolicyDrops(c, "n1", "app1");
  await expectPolicy(c, c.ns.app3);
  assert.ok((await noPolicyDrops(c, "n1", "app1")) > dropsBefore, "n1 counted no NO_POLICY ingress drop for app3's SYN");
  // A transfer larger than one segment (the directory listing is small; a 20 kB file is not).
  writeFileSync(path.join(c.tmp, "big.bin"), Buffer.alloc(20_000, 7));
  const big = spawnSync("ip", ["netns", "exec", c.ns.app2, "python3", "-c",
    `import urllib.request;print(len(urllib.request.urlopen("http://${IP.app1}/big.bin", timeout=5).read()))`], { encoding: "utf8", timeout: 20_000 });
  assert.equal(big.stdout.trim(), "20000", `a 20 kB reply across the overlay: ${big.stderr}`);

  // Nothing to do on a second run; n2's plan previewed from n1 is against nothing and not applied.
  for (const node of ["n1", "n2"] as const) assert.match((await once(c, node)).stdout, /^No changes\./, node);
  const preview = await run(c, "n2", ["--dry-run", "--output", "json"], "n1");
  assert.equal(preview.code, 2, show(preview));
  const plan = JSON.parse(preview.stdout) as { summary: { create: number; delete: number }; notes?: string[] };
  assert.equal(plan.summary.delete, 0, "a preview of another node deletes nothing of this one");
  assert.match(preview.stdout + preview.stderr, /node n2 is not this machine/);
  const refused = await run(c, "n2", ["--once"], "n1");
  assert.equal(refused.code, 1, show(refused));
  assert.match(refused.stderr, /refusing to apply: node n2 is not this machine/);

  // app3 moves to n1 (a new address in n1's pod CIDR). n2 removes its devices, n1 creates them.
  writeManifests(c, "n1");
  const moved2 = await once(c, "n2");
  const moved1 = await once(c, "n1");
  t.diagnostic(`after the move: n2 ${moved2.stdout.trim()} / n1 ${moved1.stdout.trim()}`);
  assert.equal(spawnSync("ip", ["-n", c.hostNs.n2, "link", "show", `mx3-${c.sfx}`], { stdio: "ignore" }).status, 1, "n2 deleted app3's veth");
  assert.ok(!existsSync(`/run/netns/${c.ns.app3}`), "n2 deleted the namespace it had created for app3");
  assert.equal(ipJson<Link[]>(c.hostNs.n1, ["link", "show", `mx3-${c.sfx}`])[0]!.mtu, 1450, "n1 created app3's veth");
  const after1 = ipcache(c, "n1");
  const after2 = ipcache(c, "n2");
  assert.deepEqual(strip(after1), strip(after2));
  assert.equal(after1.get(`${IP.app3}/32`), undefined);
  assert.equal(after1.get(`${IP.app3OnN1}/32`), ip1.get(`${IP.app3}/32`)!.split(" ")[0], "app3 keeps its identity");
  assert.equal(after2.get(`${IP.app3OnN1}/32`), `${after1.get(`${IP.app3OnN1}/32`)} via ${ADDR.n1}`);

  // The policy holds for the new placement: app3 (now local to app1) is still dropped.
  await expectPolicy(c, c.ns.app3b);
  for (const node of ["n1", "n2"] as const) assert.match((await once(c, node)).stdout, /^No changes\./, node);

  // Teardown removes the overlay with the rest (the cleanup runs it again; it is idempotent).
  const down = await run(c, "n1", ["teardown"]);
  assert.equal(down.code, 0, show(down));
  assert.equal(spawnSync("ip", ["-n", c.hostNs.n1, "link", "show", "rc-vxlan"], { stdio: "ignore" }).status, 1, "rc-vxlan is gone");
  assert.equal(spawnSync("ip", ["-n", c.hostNs.n1, "route", "get", IP.app2], { encoding: "utf8" }).stdout.includes("rc-vxlan"), false);
});
