// Host policies end to end, with the built binary: a private "node" namespace (n1) runs
// `reconcile --once`, with two veth endpoints (app1, app2) and an underlay veth to a second private
// namespace that plays the other node (n2, the client from outside). n1's Node lists the underlay
// device under spec.hostFirewall.devices. One host policy (nodeSelector role=edge):
//   ingress: TCP/8080 from app1; TCP/2222 from remote nodes.
//   egress: TCP/80 to app1; TCP/8443 to remote nodes (its replies come back in through conntrack,
//   although ingress allows nothing from n2's port 8443).
// While n1 is labelled role=core the policy does not select it and nothing changes; relabelled
// role=edge, the host is in default deny both ways and exactly the allowed flows pass (with their
// replies); without the policy, everything passes again; teardown leaves the adopted device clean.
// A second test does the same enforcement with --attach-mode tc (cls_bpf filters on the device).
// A third one runs both namespaces as tunnelled nodes (vxlan overlay): n1's host firewall then also
// judges the overlay's own UDP packets on the underlay, and remote endpoints' traffic to the host.
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { decodeEndpointInfo, decodeEndpointKey } from "../../reconciler/datapath/layouts.js";
import { HOST_ENDPOINT_ID } from "../../reconciler/datapath/desired.js";
import { connect, killAndWait, mapDump, reconcileIn, requireTools, show, spawnSyncOk, waitFor, type RunResult } from "./helpers/reconcile.js";

const N1 = "192.0.2.21";
const N2 = "192.0.2.22";
const APP1 = "10.11.0.1";
const APP2 = "10.11.0.2";

interface Setup {
  sfx: string;
  /** n1's host namespace (reconcile runs here) and the client "node" n2. */
  hostNs: string;
  clientNs: string;
  /** The underlay device in n1 (adopted, host firewall) and its peer in n2. */
  underlay: string;
  app: { app1: string; app2: string };
  pin: string;
  tmp: string;
  dir: string;
  servers: ChildProcess[];
  /** Extra arguments of every reconcile run (the attach mode). */
  args: string[];
}

function safeReaddir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/** Namespaces, underlay, pin root; cleanup registered first (teardown, then delete by suffix). */
function makeSetup(t: TestContext, args: string[] = []): Setup {
  const sfx = randomBytes(2).toString("hex");
  const tmp = mkdtempSync(path.join(tmpdir(), "rc-e2e-host-policy-"));
  const s: Setup = {
    sfx,
    hostNs: `hph-${sfx}`,
    clientNs: `hpc-${sfx}`,
    underlay: `hpu1-${sfx}`,
    app: { app1: `hpa1-${sfx}`, app2: `hpa2-${sfx}` },
    pin: `/sys/fs/bpf/hp-${sfx}`,
    tmp,
    dir: path.join(tmp, "manifests"),
    servers: [],
    args,
  };
  t.after(async () => {
    for (const c of s.servers) await killAndWait(c).catch(() => undefined);
    if (existsSync(`/run/netns/${s.hostNs}`) && existsSync(s.pin)) await reconcile(s, ["teardown"]).catch(() => undefined);
    for (const name of safeReaddir("/run/netns")) {
      if (name.startsWith("hp") && name.endsWith(`-${sfx}`)) spawnSync("ip", ["netns", "delete", name], { stdio: "ignore" });
    }
    rmSync(s.pin, { recursive: true, force: true });
    rmSync(tmp, { recursive: true, force: true });
  });
  for (const ns of [s.hostNs, s.clientNs]) {
    spawnSyncOk("ip", ["netns", "add", ns]);
    spawnSyncOk("ip", ["-n", ns, "link", "set", "lo", "up"]);
  }
  spawnSyncOk("ip", ["-n", s.hostNs, "link", "add", s.underlay, "type", "veth", "peer", "name", `hpu2-${sfx}`, "netns", s.clientNs]);
  for (const [ns, dev, addr] of [[s.hostNs, s.underlay, N1], [s.clientNs, `hpu2-${sfx}`, N2]] as const) {
    spawnSyncOk("ip", ["-n", ns, "addr", "add", `${addr}/24`, "dev", dev]);
    spawnSyncOk("ip", ["-n", ns, "link", "set", dev, "up"]);
  }
  mkdirSync(s.pin);
  return s;
}

const HOST_RULE = `apiVersion: reconcile/v1
kind: Rule
metadata:
  name: edge-host
spec:
  nodeSelector:
    matchLabels:
      role: edge
  ingress:
  - fromEndpoints:
    - matchLabels:
        id: app1
    toPorts:
    - ports:
      - port: "8080"
        protocol: TCP
  - fromEntities: [remote-node]
    toPorts:
    - ports:
      - port: "2222"
        protocol: TCP
  egress:
  - toEndpoints:
    - matchLabels:
        id: app1
    toPorts:
    - ports:
      - port: "80"
        protocol: TCP
  - toEntities: [remote-node]
    toPorts:
    - ports:
      - port: "8443"
        protocol: TCP
`;

function writeManifests(s: Setup, o: { n1Role: string; hostRule: boolean }): void {
  rmSync(s.dir, { recursive: true, force: true });
  mkdirSync(s.dir, { recursive: true });
  const node = (name: string, role: string, address: string, firewall: boolean) =>
    `apiVersion: reconcile/v1\nkind: Node\nmetadata:\n  name: ${name}\n  labels:\n    role: ${role}\nspec:\n  address: ${address}\n${firewall ? `  hostFirewall:\n    devices: [${s.underlay}]\n` : ""}`;
  writeFileSync(path.join(s.dir, "nodes.yaml"), `${node("n1", o.n1Role, N1, true)}---\n${node("n2", "core", N2, false)}`);
  const ep = (app: "app1" | "app2", ip: string) =>
    `apiVersion: reconcile/v1\nkind: Endpoint\nmetadata:\n  name: ${app}\n  labels:\n    id: ${app}\nspec:\n  node: n1\n  ipv4: ${ip}\n  interface:\n    name: hpe${app.slice(3)}-${s.sfx}\n    create:\n      netns: ${s.app[app]}\n      ifname: eth0\n`;
  writeFileSync(path.join(s.dir, "endpoints.yaml"), `${ep("app1", APP1)}---\n${ep("app2", APP2)}`);
  if (o.hostRule) writeFileSync(path.join(s.dir, "host-rule.yaml"), HOST_RULE);
}

/** `reconcile ARGS --source DIR --node n1 --bpffs-root PIN` inside n1's namespace. */
function reconcile(s: Setup, args: string[]): Promise<RunResult> {
  return reconcileIn(s.hostNs, [...args, ...s.args, "--source", s.dir, "--node", "n1", "--bpffs-root", s.pin], s);
}

async function once(s: Setup): Promise<RunResult> {
  const r = await reconcile(s, ["--once"]);
  assert.equal(r.code, 0, show(r));
  return r;
}

/** An HTTP server on bind:port in netns (killed at cleanup); resolves once it listens. */
async function startServer(s: Setup, netns: string, bind: string, port: number): Promise<void> {
  const child = spawn("ip", ["netns", "exec", netns, "python3", "-m", "http.server", String(port), "--bind", bind], { cwd: s.tmp, stdio: "ignore" });
  s.servers.push(child);
  await waitFor(`http server ${bind}:${port} in ${netns}`, () => {
    if (child.exitCode !== null) throw new Error(`http server in ${netns} exited with ${child.exitCode}`);
    return spawnSync("ip", ["netns", "exec", netns, "ss", "-ltnH", `sport = :${port}`], { encoding: "utf8" }).stdout.includes(`${bind}:${port}`);
  }, 15_000, 50);
}

type Flows = Record<string, string>;

/** Every flow of the test, in parallel: "ok" = connected and got the HTTP reply. */
async function flows(s: Setup, expectOk: Record<string, boolean>): Promise<Flows> {
  const spec: Record<string, [string, string, number]> = {
    "app1 -> host:8080": [s.app.app1, N1, 8080],
    "app2 -> host:8080": [s.app.app2, N1, 8080],
    "n2 -> host:2222 (underlay)": [s.clientNs, N1, 2222],
    "n2 -> host:2223 (underlay)": [s.clientNs, N1, 2223],
    "host -> app1:80": [s.hostNs, APP1, 80],
    "host -> app2:80": [s.hostNs, APP2, 80],
    "host -> n2:8443 (underlay)": [s.hostNs, N2, 8443],
    "host -> n2:8444 (underlay)": [s.hostNs, N2, 8444],
  };
  const names = Object.keys(spec);
  // A flow expected to be dropped gets a short timeout; one expected to pass a longer one.
  const results = await Promise.all(names.map((n) => connect(spec[n]![0], spec[n]![1], spec[n]![2], expectOk[n] ? 3 : 1)));
  return Object.fromEntries(names.map((n, i) => [n, results[i]!]));
}

/** Waits until every flow is as expected ("ok" or "timeout"), then returns the last observation. */
async function expectFlows(s: Setup, expectOk: Record<string, boolean>): Promise<void> {
  const want = Object.fromEntries(Object.entries(expectOk).map(([k, ok]) => [k, ok ? "ok" : "timeout"]));
  let last: Flows | undefined;
  try {
    await waitFor("flows as the host policy says", async () => {
      last = await flows(s, expectOk);
      return Object.entries(want).every(([k, v]) => last![k] === v);
    }, 20_000, 200);
  } catch {
    assert.deepEqual(last, want);
  }
}

/** The host endpoint's entries in the pinned endpoints map: address → enforce flags. */
function hostEntries(s: Setup): Map<string, string> {
  const out = new Map<string, string>();
  for (const e of mapDump(path.join(s.pin, "endpoints"))) {
    const v = decodeEndpointInfo(e.value, 0);
    if (v.epId !== HOST_ENDPOINT_ID) continue;
    out.set(decodeEndpointKey(e.key, 0), `${v.identity} ingress=${v.enforceIngress} egress=${v.enforceEgress}`);
  }
  return out;
}

/** reconcile's tcx links on the adopted device, by hook: link id and program name (this
 *  bpftool cannot list tcx attachments per device, so the pinned links are read). */
function netdevLinks(s: Setup): Map<string, { id: number; program: string }> {
  const out = new Map<string, { id: number; program: string }>();
  for (const hook of ["ingress", "egress"]) {
    const pin = path.join(s.pin, "links", "host", s.underlay, hook);
    if (!existsSync(pin)) continue;
    const link = JSON.parse(spawnSyncOk("bpftool", ["-j", "link", "show", "pinned", pin])) as { id: number; prog_id: number };
    const prog = JSON.parse(spawnSyncOk("bpftool", ["-j", "prog", "show", "id", String(link.prog_id)])) as { name: string };
    out.set(hook, { id: link.id, program: prog.name });
  }
  return out;
}

/** Ids of every BPF link in the kernel. */
function linkIds(): Set<number> {
  return new Set((JSON.parse(spawnSyncOk("bpftool", ["-j", "link", "show"]) || "[]") as Array<{ id: number }>).map((l) => l.id));
}

/** Names of reconcile's tc filters on a hook of the adopted device (tc mode). */
function ourFilters(s: Setup, hook: "ingress" | "egress"): string[] {
  const filters = JSON.parse(spawnSyncOk("tc", ["-n", s.hostNs, "-j", "filter", "show", "dev", s.underlay, hook]) || "[]") as Array<{ options?: { bpf_name?: string } }>;
  return filters.map((f) => f.options?.bpf_name ?? "").filter((n) => n.startsWith("reconcile:"));
}

const ALL_OK = {
  "app1 -> host:8080": true,
  "app2 -> host:8080": true,
  "n2 -> host:2222 (underlay)": true,
  "n2 -> host:2223 (underlay)": true,
  "host -> app1:80": true,
  "host -> app2:80": true,
  "host -> n2:8443 (underlay)": true,
  "host -> n2:8444 (underlay)": true,
};

/** What the host policy allows once it selects n1. */
const ENFORCED = {
  "app1 -> host:8080": true,
  "app2 -> host:8080": false,
  "n2 -> host:2222 (underlay)": true,
  "n2 -> host:2223 (underlay)": false,
  "host -> app1:80": true,
  "host -> app2:80": false,
  "host -> n2:8443 (underlay)": true,
  "host -> n2:8444 (underlay)": false,
};

test("host policy: enforced between endpoints and the host both ways and over the host firewall device, only on the selected node", async (t) => {
  requireTools("bpftool", "python3", "nsenter");
  const s = makeSetup(t);

  // 1. The rule exists but selects role=edge; n1 is role=core: the host is unaffected.
  writeManifests(s, { n1Role: "core", hostRule: true });
  await once(s);
  const links = netdevLinks(s);
  assert.deepEqual([...links].map(([hook, l]) => `${hook}:${l.program}`), ["ingress:from_netdev", "egress:to_netdev"]);
  assert.deepEqual(
    hostEntries(s),
    new Map([
      [N1, "1 ingress=false egress=false"],
      ["169.254.1.1", "1 ingress=false egress=false"],
    ]),
  );
  for (const port of [8080, 2222, 2223]) await startServer(s, s.hostNs, "0.0.0.0", port);
  for (const port of [8443, 8444]) await startServer(s, s.clientNs, N2, port);
  await startServer(s, s.app.app1, APP1, 80);
  await startServer(s, s.app.app2, APP2, 80);
  await expectFlows(s, ALL_OK);

  // 2. n1 becomes role=edge: default deny on the host in both directions, the allowed flows pass
  //    with their replies, and explain (through the binary) says the same.
  writeManifests(s, { n1Role: "edge", hostRule: true });
  await once(s);
  assert.equal(hostEntries(s).get(N1), "1 ingress=true egress=true");
  await expectFlows(s, ENFORCED);
  const explained = async (from: string, to: string, port: string) => {
    const r = await reconcile(s, ["explain", "--from", from, "--to", to, "--port", port, "--output", "json"]);
    return (JSON.parse(r.stdout) as { verdict: string }).verdict;
  };
  assert.deepEqual(
    [await explained("app1", "host", "8080/TCP"), await explained("app2", N1, "8080/TCP"), await explained(N2, "host", "2222/TCP"), await explained(N2, "host", "2223/TCP"), await explained("host", "app2", "80/TCP")],
    ["allow", "deny", "allow", "deny", "deny"],
  );
  // `inspect policy reserved:host` names the host's entries with their counters and its drops.
  const inspected = await reconcile(s, ["inspect", "policy", "reserved:host", "--output", "json"]);
  assert.equal(inspected.code, 0, show(inspected));
  const rows = JSON.parse(inspected.stdout) as Array<Record<string, unknown>>;
  const allowed = rows.filter((r) => r["decision"] === "allow" && (r["packets"] as number) > 0).map((r) => `${r["direction"]} ${r["port"]}`).sort();
  assert.deepEqual(allowed, ["egress 80", "egress 8443", "ingress 2222", "ingress 8080"]);
  const drops = new Set(rows.filter((r) => r["drops"] === "NO_POLICY" && (r["packets"] as number) > 0).map((r) => r["direction"]));
  assert.equal(drops.size, 2, `NO_POLICY drops in both directions: ${JSON.stringify(rows)}`);
  assert.match((await once(s)).stdout, /^No changes\./, "a second run has nothing to do");

  // 3. Without the host policy, the host endpoint enforces nothing again.
  writeManifests(s, { n1Role: "edge", hostRule: false });
  await once(s);
  assert.equal(hostEntries(s).get(N1), "1 ingress=false egress=false");
  await expectFlows(s, ALL_OK);

  // 4. Teardown removes reconcile's links from the adopted device and leaves the device itself.
  const down = await reconcile(s, ["teardown"]);
  assert.equal(down.code, 0, show(down));
  assert.deepEqual(netdevLinks(s), new Map());
  const remaining = linkIds();
  assert.deepEqual([...links.values()].filter((l) => remaining.has(l.id)), [], "the tcx links on the device are gone");
  assert.equal(spawnSync("ip", ["-n", s.hostNs, "link", "show", s.underlay], { stdio: "ignore" }).status, 0, "the adopted device is still there");
});

test("host policy in tc mode: cls_bpf filters on the host firewall device enforce it; teardown removes only them", async (t) => {
  requireTools("tc", "python3", "nsenter");
  const s = makeSetup(t, ["--attach-mode", "tc"]);
  writeManifests(s, { n1Role: "edge", hostRule: true });
  await once(s);
  assert.deepEqual([ourFilters(s, "ingress"), ourFilters(s, "egress")], [["reconcile:from_netdev"], ["reconcile:to_netdev"]]);
  for (const port of [8080, 2222, 2223]) await startServer(s, s.hostNs, "0.0.0.0", port);
  for (const port of [8443, 8444]) await startServer(s, s.clientNs, N2, port);
  await startServer(s, s.app.app1, APP1, 80);
  await startServer(s, s.app.app2, APP2, 80);
  await expectFlows(s, ENFORCED);
  const down = await reconcile(s, ["teardown"]);
  assert.equal(down.code, 0, show(down));
  assert.deepEqual([ourFilters(s, "ingress"), ourFilters(s, "egress")], [[], []]);
  assert.equal(spawnSync("ip", ["-n", s.hostNs, "link", "show", s.underlay], { stdio: "ignore" }).status, 0, "the adopted device is still there");
});

// ---- a tunnelled node: the overlay through the host firewall ----

const TUNNEL_APPS = { a1: "10.11.1.1", b1: "10.11.2.1" } as const;

/** n1 (role edge, host firewall on the underlay) and n2 (role core), both tunnelled; a1 on n1, b1
 *  on n2. The host rule admits b1 on TCP/8080, the overlay's UDP/8472 to remote nodes, and, unless
 *  `overlayIn` is false, UDP/8472 from them. */
function writeTunnelManifests(s: Setup, o: { overlayIn: boolean }): void {
  rmSync(s.dir, { recursive: true, force: true });
  mkdirSync(s.dir, { recursive: true });
  const node = (name: string, role: string, address: string, cidr: string, firewall: boolean) =>
    `apiVersion: reconcile/v1\nkind: Node\nmetadata:\n  name: ${name}\n  labels:\n    role: ${role}\nspec:\n  address: ${address}\n  tunnel:\n    vni: 7\n  podCIDRs: [${cidr}]\n` +
    (firewall ? `  hostFirewall:\n    devices: [${s.underlay}]\n` : "");
  writeFileSync(path.join(s.dir, "nodes.yaml"), `${node("n1", "edge", N1, "10.11.1.0/24", true)}---\n${node("n2", "core", N2, "10.11.2.0/24", false)}`);
  const ep = (app: "a1" | "b1", nodeName: string, netns: string) =>
    `apiVersion: reconcile/v1\nkind: Endpoint\nmetadata:\n  name: ${app}\n  labels:\n    id: ${app}\nspec:\n  node: ${nodeName}\n  ipv4: ${TUNNEL_APPS[app]}\n  interface:\n    name: hpt${app}-${s.sfx}\n    create:\n      netns: ${netns}\n      ifname: eth0\n`;
  writeFileSync(path.join(s.dir, "endpoints.yaml"), `${ep("a1", "n1", s.app.app1)}---\n${ep("b1", "n2", s.app.app2)}`);
  const overlay = (dir: "from" | "to") => `  - ${dir}Entities: [remote-node]\n    toPorts:\n    - ports:\n      - port: "8472"\n        protocol: UDP\n`;
  writeFileSync(
    path.join(s.dir, "host-rule.yaml"),
    `apiVersion: reconcile/v1\nkind: Rule\nmetadata:\n  name: edge-host\nspec:\n  nodeSelector:\n    matchLabels:\n      role: edge\n  ingress:\n` +
      `  - fromEndpoints:\n    - matchLabels:\n        id: b1\n    toPorts:\n    - ports:\n      - port: "8080"\n        protocol: TCP\n` +
      (o.overlayIn ? overlay("from") : "") +
      `  egress:\n` +
      overlay("to"),
  );
}

test("host policy on a tunnelled node: the overlay's UDP/8472 and remote endpoints' traffic to the host are judged by its host firewall", async (t) => {
  requireTools("bpftool", "python3", "nsenter");
  const s = makeSetup(t);
  // n2 runs its own reconcile in the client namespace, with its own pin root.
  const n2: Setup = { ...s, hostNs: s.clientNs, pin: `${s.pin}-n2`, servers: s.servers };
  mkdirSync(n2.pin);
  t.after(async () => {
    if (existsSync(`/run/netns/${n2.hostNs}`)) await reconcileAs(n2, "n2", ["teardown"]).catch(() => undefined);
    rmSync(n2.pin, { recursive: true, force: true });
  });
  writeTunnelManifests(s, { overlayIn: true });
  for (const [setup, name] of [[s, "n1"], [n2, "n2"]] as const) {
    const r = await reconcileAs(setup, name, ["--once"]);
    assert.equal(r.code, 0, `${name}: ${show(r)}`);
  }
  assert.ok(existsSync(path.join(s.pin, "links", "host", "rc-vxlan", "ingress")), "from_netdev on rc-vxlan");
  await startServer(s, s.app.app1, TUNNEL_APPS.a1, 80);
  for (const port of [8080, 8081]) await startServer(s, s.hostNs, "0.0.0.0", port);
  const want = async (expected: Record<string, string>) => {
    let last: Record<string, string> | undefined;
    try {
      await waitFor("tunnelled flows as the host policy says", async () => {
        const [overlay, allowed, other] = await Promise.all([
          connect(s.app.app2, TUNNEL_APPS.a1, 80, expected["b1 -> a1:80 (overlay)"] === "ok" ? 3 : 1),
          connect(s.app.app2, N1, 8080, 3),
          connect(s.app.app2, N1, 8081, 1),
        ]);
        last = { "b1 -> a1:80 (overlay)": overlay, "b1 -> host:8080": allowed, "b1 -> host:8081": other };
        return Object.entries(expected).every(([k, v]) => last![k] === v);
      }, 20_000, 200);
    } catch {
      assert.deepEqual(last, expected);
    }
  };
  await want({ "b1 -> a1:80 (overlay)": "ok", "b1 -> host:8080": "ok", "b1 -> host:8081": "timeout" });

  // Without UDP/8472 from remote nodes the host firewall on n1's underlay drops the overlay's
  // packets. b1 still reaches the host: its packets come over the underlay unencapsulated (n2 routes
  // n1's address directly), and the host's replies leave encapsulated, as UDP/8472 to n2, which the
  // egress section allows (that outer packet is the host's own traffic).
  writeTunnelManifests(s, { overlayIn: false });
  const r = await reconcileAs(s, "n1", ["--once"]);
  assert.equal(r.code, 0, show(r));
  await want({ "b1 -> a1:80 (overlay)": "timeout", "b1 -> host:8080": "ok", "b1 -> host:8081": "timeout" });
});

/** `reconcile ARGS` as node `name` in `setup`'s namespace and pin root. */
function reconcileAs(setup: Setup, name: string, args: string[]): Promise<RunResult> {
  return reconcileIn(setup.hostNs, [...args, "--source", setup.dir, "--node", name, "--bpffs-root", setup.pin], setup);
}
