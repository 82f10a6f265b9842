// IPv6 across the vxlan overlay. Two "nodes", each a private host network namespace joined to the
// other by a veth underlay, each running its own `reconcile --once` against the SAME manifests with
// its own pin root. Dual-stack endpoints: app1 on n1; app2 (identity 36895) and app3 on n2. The seed
// policy (app1 ingress: TCP/80 from app2 only) is enforced on n1 for IPv6 traffic crossing the
// overlay, first over an IPv4 underlay (192.0.2.0/24), then over an IPv6 one (2001:db8::/64), where
// the IPv4 pod CIDRs also go via the remote link-local (RTA_VIA).
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { eui64LinkLocal, vxlanMac } from "../../reconciler/datapath/desired.js";
import { REPO, connect, requireTools, show, spawnSyncOk, waitFor, type PlanJson } from "./helpers/reconcile.js";
import { ipJson, makeCluster as makeNodes, noPolicyDrops, once, run, ipcache as nodeIpcache, type Cluster as Nodes } from "./helpers/cluster.js";

const SEED = path.join(REPO, "examples/seed");

type NodeName = "n1" | "n2";
type Underlay = "v4" | "v6";
const ADDR: Record<Underlay, Record<NodeName, string>> = {
  v4: { n1: "192.0.2.11", n2: "192.0.2.12" },
  v6: { n1: "2001:db8::11", n2: "2001:db8::12" },
};
const PODS: Record<NodeName, string[]> = { n1: ["10.11.255.0/24", "fd00:a:1::/64"], n2: ["10.11.90.0/24", "fd00:a:2::/64"] };
const IP = {
  app1: { v4: "10.11.255.104", v6: "fd00:a:1::104" },
  app2: { v4: "10.11.90.17", v6: "fd00:a:2::17" },
  app3: { v4: "10.11.90.33", v6: "fd00:a:2::33" },
} as const;
type App = keyof typeof IP;

interface Cluster extends Nodes<NodeName> {
  underlay: Underlay;
  dir: string;
  ns: Record<App, string>;
}

/** Two nodes joined by a veth underlay of the given family, then the shared manifests; the cleanup comes with the nodes. */
function makeCluster(t: TestContext, underlay: Underlay): Cluster {
  const nodes = makeNodes(t, {
    prefix: "m6",
    topic: "multinode-ipv6",
    nodes: ["n1", "n2"],
    underlay: "pair",
    // nodad: the vxlan device binds its local address at once, before DAD would have finished.
    address: (n) => (underlay === "v4" ? [`${ADDR.v4[n]}/24`] : [`${ADDR.v6[n]}/64`, "nodad"]),
    // n1's new devices default to random link-locals (as with stable-privacy setups): reconcile must
    // still give rc-vxlan exactly the EUI-64 link-local n2's NDP entry names, and no other.
    beforeUnderlay: (n) => void spawnSyncOk("ip", ["netns", "exec", n.hostNs.n1, "sysctl", "-qw", "net.ipv6.conf.default.addr_gen_mode=3"]),
  });
  const c: Cluster = Object.assign(nodes, {
    underlay,
    dir: path.join(nodes.tmp, "manifests"),
    ns: { app1: nodes.name("a1"), app2: nodes.name("a2"), app3: nodes.name("a3") },
  });
  c.args = ["--source", c.dir]; // every run (teardown at cleanup too) reads the shared manifests
  writeManifests(c);
  return c;
}

function writeManifests(c: Cluster): void {
  mkdirSync(c.dir, { recursive: true });
  const node = (name: NodeName) =>
    `apiVersion: reconcile/v1\nkind: Node\nmetadata:\n  name: ${name}\nspec:\n  address: ${ADDR[c.underlay][name]}\n  tunnel:\n    type: vxlan\n    vni: 7\n  podCIDRs:\n${PODS[name].map((p) => `    - ${p}\n`).join("")}`;
  const endpoint = (app: App, on: NodeName) =>
    `apiVersion: reconcile/v1\nkind: Endpoint\nmetadata:\n  name: ${app}\n  labels:\n    id: ${app}\nspec:\n  node: ${on}\n  ipv4: ${IP[app].v4}\n  ipv6: ${IP[app].v6}\n  interface:\n    name: m6x${app.slice(3)}-${c.sfx}\n    create:\n      kind: veth\n      netns: ${c.ns[app]}\n      ifname: eth0\n`;
  writeFileSync(path.join(c.dir, "nodes.yaml"), `${node("n1")}---\n${node("n2")}`);
  writeFileSync(path.join(c.dir, "endpoints.yaml"), [endpoint("app1", "n1"), endpoint("app2", "n2"), endpoint("app3", "n2")].join("---\n"));
  for (const f of ["identities.yaml", "l3-rule.json"]) writeFileSync(path.join(c.dir, f), readFileSync(path.join(SEED, f), "utf8"));
}

/** The pinned ipcache of a node, endpoint entries only: prefix → "identity[ via tunnel endpoint]". */
function ipcache(c: Cluster, node: NodeName): Map<string, string> {
  return nodeIpcache(c, node, ["10.11.", "fd00:a:"]);
}

function sysctl(netns: string, key: string): string {
  return spawnSyncOk("ip", ["netns", "exec", netns, "sysctl", "-n", key]).trim();
}

/** An HTTP server on app1 (both its addresses) port 80; resolves once both listen. */
async function startServers(c: Cluster): Promise<void> {
  for (const [ip, shown] of [[IP.app1.v4, `${IP.app1.v4}:80`], [IP.app1.v6, `[${IP.app1.v6}]:80`]] as const) {
    const child = spawn("ip", ["netns", "exec", c.ns.app1, "python3", "-m", "http.server", "80", "--bind", ip], { cwd: c.tmp, stdio: "ignore" });
    c.procs.push(child);
    await waitFor(`http server ${shown}`, () => {
      if (child.exitCode !== null) throw new Error(`http server ${shown} in ${c.ns.app1} exited with ${child.exitCode}`);
      return spawnSync("ip", ["netns", "exec", c.ns.app1, "ss", "-ltnH", "sport = :80"], { encoding: "utf8" }).stdout.includes(shown);
    }, 15_000, 50);
  }
}

/** app2 → app1:80 (allowed; the reply comes back) and app3 → app1:80 (no policy: dropped), per family. */
async function expectPolicy(c: Cluster, family: "v4" | "v6"): Promise<void> {
  let last: [string, string] | undefined;
  try {
    await waitFor(`cross-node ${family} traffic as the policy says`, async () => {
      last = await Promise.all([connect(c.ns.app2, IP.app1[family], 80, 3), connect(c.ns.app3, IP.app1[family], 80, 1)]);
      return last[0] === "ok" && last[1] === "timeout";
    }, 20_000, 200);
  } catch {
    throw new Error(`expected app2 → ${IP.app1[family]}:80 "ok" and app3 → it "timeout", got ${JSON.stringify(last)}`);
  }
}

/** A reply larger than one segment from app1 to app2 over IPv6: the overlay MTU on the veths holds. */
function bigTransfer(c: Cluster): void {
  writeFileSync(path.join(c.tmp, "big.bin"), Buffer.alloc(20_000, 7));
  const big = spawnSync("ip", ["netns", "exec", c.ns.app2, "python3", "-c",
    `import urllib.request;print(len(urllib.request.urlopen("http://[${IP.app1.v6}]/big.bin", timeout=5).read()))`], { encoding: "utf8", timeout: 20_000 });
  assert.equal(big.stdout.trim(), "20000", `a 20 kB reply over IPv6 across the overlay: ${big.stderr}`);
}

/** What both underlays share: rc-vxlan's link-local, the IPv6 routes and NDP entry, the sysctls. */
function checkIpv6Overlay(c: Cluster, mtu: number): void {
  const ll = { n1: eui64LinkLocal(vxlanMac("n1")), n2: eui64LinkLocal(vxlanMac("n2")) };
  type Link = { mtu: number; address: string; linkinfo: { info_kind: string; info_data: { local?: string; local6?: string } }; inet6_addr_gen_mode?: string };
  const [vx] = ipJson<Link[]>(c.hostNs.n1, ["-d", "link", "show", "rc-vxlan"]);
  // `ip -j` names an IPv6 local address "local6".
  assert.deepEqual([vx!.linkinfo.info_kind, vx!.linkinfo.info_data.local ?? vx!.linkinfo.info_data.local6, vx!.mtu, vx!.address], ["vxlan", ADDR[c.underlay].n1, mtu, vxlanMac("n1")]);
  assert.equal(vx!.inet6_addr_gen_mode, "eui64");
  // The remote's NDP entry on n2 names exactly the link-local the kernel gave n1's rc-vxlan.
  const addrs = ipJson<Array<{ addr_info: Array<{ local: string; scope: string }> }>>(c.hostNs.n1, ["-6", "addr", "show", "dev", "rc-vxlan"]);
  assert.deepEqual(addrs[0]!.addr_info.filter((a) => a.scope === "link").map((a) => a.local), [ll.n1]);
  const neigh2 = ipJson<Array<{ dst: string; lladdr: string }>>(c.hostNs.n2, ["-6", "neigh", "show", "dev", "rc-vxlan", "nud", "permanent"]);
  assert.deepEqual(neigh2.map((n) => [n.dst, n.lladdr]), [[ll.n1, vxlanMac("n1")]]);
  const routes6 = ipJson<Array<{ dst: string; gateway: string }>>(c.hostNs.n1, ["-6", "route", "show", "dev", "rc-vxlan"]);
  assert.deepEqual(routes6.filter((r) => r.gateway !== undefined).map((r) => `${r.dst} via ${r.gateway}`), [`fd00:a:2::/64 via ${ll.n2}`]);
  for (const node of ["n1", "n2"] as const) {
    assert.equal(sysctl(c.hostNs[node], "net.ipv6.conf.all.forwarding"), "1", node);
    assert.equal(sysctl(c.hostNs[node], "net.ipv6.conf.rc-vxlan.disable_ipv6"), "0", node);
  }
  assert.equal(ipJson<Link[]>(c.ns.app1, ["link", "show", "eth0"])[0]!.mtu, mtu, "endpoint veths at the overlay MTU");
}

async function trafficAndConvergence(c: Cluster, t: TestContext): Promise<void> {
  await startServers(c);
  const dropsBefore = await noPolicyDrops(c, "n1", "app1");
  await expectPolicy(c, "v6");
  assert.ok((await noPolicyDrops(c, "n1", "app1")) > dropsBefore, "n1 counted no NO_POLICY ingress drop for app3's IPv6 SYN");
  await expectPolicy(c, "v4");
  bigTransfer(c);
  // Observed as applied (the NDP entry next to the ARP entry of the same MAC, RTA_VIA routes): a
  // second run has nothing to do.
  for (const node of ["n1", "n2"] as const) {
    const r = await once(c, node);
    assert.match(r.stdout, /^No changes\./, `${node}: ${show(r)}`);
  }
  // Drift: the link-local NDP entry removed by hand is written again, and traffic flows again.
  const ll2 = eui64LinkLocal(vxlanMac("n2"));
  spawnSyncOk("ip", ["-n", c.hostNs.n1, "-6", "neigh", "del", ll2, "dev", "rc-vxlan"]);
  const preview = await run(c, "n1", ["--dry-run", "--output", "json"]);
  assert.equal(preview.code, 2, show(preview));
  const ops = (JSON.parse(preview.stdout) as PlanJson).changes.map((x) => `${x.op} ${x.resource} ${x.id}`);
  // On an IPv6 underlay the FDB entry rode with the NDP entry: observed alone, it is pruned and
  // written again with its pair.
  const orphan = c.underlay === "v6" ? [`delete neighbour rc-vxlan/fdb:${vxlanMac("n2")}`] : [];
  assert.deepEqual(ops.sort(), [`create neighbour rc-vxlan/${ll2}`, ...orphan].sort());
  await once(c, "n1");
  const neigh = ipJson<Array<{ dst: string; lladdr: string }>>(c.hostNs.n1, ["-6", "neigh", "show", "dev", "rc-vxlan", "nud", "permanent"]);
  assert.deepEqual(neigh.map((n) => [n.dst, n.lladdr]), [[ll2, vxlanMac("n2")]]);
  const fdb = JSON.parse(spawnSyncOk("bridge", ["-n", c.hostNs.n1, "-j", "fdb", "show", "dev", "rc-vxlan"])) as Array<{ mac: string; dst: string }>;
  assert.deepEqual(fdb.map((f) => [f.mac, f.dst]), [[vxlanMac("n2"), ADDR[c.underlay].n2]], "the FDB entry survives the repair");
  await expectPolicy(c, "v6");
  assert.match((await once(c, "n1")).stdout, /^No changes\./);
  const down = await run(c, "n1", ["teardown"]);
  assert.equal(down.code, 0, show(down));
  assert.equal(spawnSync("ip", ["-n", c.hostNs.n1, "link", "show", "rc-vxlan"], { stdio: "ignore" }).status, 1, "rc-vxlan is gone");
  t.diagnostic(`teardown n1: ${down.ms} ms`);
}

test("multinode-ipv6: dual-stack endpoints over an IPv4 underlay; IPv6 across the overlay obeys the seed policy", async (t) => {
  requireTools("bpftool", "python3", "nsenter", "bridge");
  const c = makeCluster(t, "v4");
  await once(c, "n2");
  const first = await once(c, "n1");
  t.diagnostic(`n1 first --once: ${first.ms} ms`);

  checkIpv6Overlay(c, 1450);
  const ll2 = eui64LinkLocal(vxlanMac("n2"));
  // IPv4 pod CIDRs keep their next hop (n2's underlay address); the FDB entry rides with it.
  const routes4 = ipJson<Array<{ dst: string; gateway: string }>>(c.hostNs.n1, ["-4", "route", "show", "dev", "rc-vxlan"]);
  assert.deepEqual(routes4.map((r) => `${r.dst} via ${r.gateway}`), [`10.11.90.0/24 via ${ADDR.v4.n2}`]);
  const neigh = ipJson<Array<{ dst: string; lladdr: string }>>(c.hostNs.n1, ["neigh", "show", "dev", "rc-vxlan", "nud", "permanent"]);
  assert.deepEqual(neigh.map((n) => [n.dst, n.lladdr]).sort(), [[ADDR.v4.n2, vxlanMac("n2")], [ll2, vxlanMac("n2")]].sort());
  const fdb = JSON.parse(spawnSyncOk("bridge", ["-n", c.hostNs.n1, "-j", "fdb", "show", "dev", "rc-vxlan"])) as Array<{ mac: string; dst: string }>;
  assert.deepEqual(fdb.map((f) => [f.mac, f.dst]), [[vxlanMac("n2"), ADDR.v4.n2]]);
  // Remote IPv6 endpoints: their identity and n2's underlay address as tunnel endpoint.
  const ip1 = ipcache(c, "n1");
  assert.equal(ip1.get(`${IP.app2.v6}/128`), `36895 via ${ADDR.v4.n2}`);
  assert.equal(ipcache(c, "n2").get(`${IP.app2.v6}/128`), "36895");

  await trafficAndConvergence(c, t);
});

test("multinode-ipv6: an IPv6 underlay carries both families; IPv4 pod CIDRs via the remote link-local (RTA_VIA)", async (t) => {
  requireTools("bpftool", "python3", "nsenter", "bridge");
  const c = makeCluster(t, "v6");
  await once(c, "n2");
  const first = await once(c, "n1");
  t.diagnostic(`n1 first --once: ${first.ms} ms`);

  checkIpv6Overlay(c, 1430);
  const ll2 = eui64LinkLocal(vxlanMac("n2"));
  const routes4 = ipJson<Array<{ dst: string; via?: { family: string; host: string } }>>(c.hostNs.n1, ["-4", "route", "show", "dev", "rc-vxlan"]);
  assert.deepEqual(routes4.map((r) => `${r.dst} via ${r.via?.family} ${r.via?.host}`), [`10.11.90.0/24 via inet6 ${ll2}`]);
  // One neighbour per remote node: its link-local, and the FDB entry to its IPv6 underlay address.
  const neigh = ipJson<Array<{ dst: string; lladdr: string }>>(c.hostNs.n1, ["neigh", "show", "dev", "rc-vxlan", "nud", "permanent"]);
  assert.deepEqual(neigh.map((n) => [n.dst, n.lladdr]), [[ll2, vxlanMac("n2")]]);
  const fdb = JSON.parse(spawnSyncOk("bridge", ["-n", c.hostNs.n1, "-j", "fdb", "show", "dev", "rc-vxlan"])) as Array<{ mac: string; dst: string }>;
  assert.deepEqual(fdb.map((f) => [f.mac, f.dst]), [[vxlanMac("n2"), ADDR.v6.n2]]);
  // The ipcache's tunnel endpoint is IPv4-only: empty for endpoints of an IPv6-underlay node.
  const ip1 = ipcache(c, "n1");
  assert.equal(ip1.get(`${IP.app2.v6}/128`), "36895");
  assert.equal(ip1.get(`${IP.app2.v4}/32`), "36895");

  await trafficAndConvergence(c, t);
});
