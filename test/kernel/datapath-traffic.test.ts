// Real TCP traffic through endpoint.o for the seed scenario, without the reconciler: a private
// "host" netns holds the host-side veths (with to_endpoint on tcx egress and from_endpoint on tcx
// ingress of each), routes /32 to each endpoint netns and forwards. Maps are filled as the
// compiler would for the seed: app1 ingress {36895, TCP, 80} allow, app1 ingress enforced,
// app2 = identity 36895 in the ipcache.

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { TcxLink } from "../../reconciler/ebpf-loader/index.js";
import { withNetns } from "../../reconciler/netlink/index.js";
import * as L from "../../reconciler/datapath/layouts.js";
import { Datapath, suffix } from "./helpers/datapath.js";

const SERVER = `
import socket, sys, threading
def serve(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(16)
    while True:
        c, _ = s.accept()
        c.sendall(b"ok\\n")
        c.close()
for p in sys.argv[1:]:
    threading.Thread(target=serve, args=(int(p),), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
`;

const CLIENT = `
import socket, sys
try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1.0)
    sys.exit(0 if s.recv(16) == b"ok\\n" else 3)
except socket.timeout:
    sys.exit(2)
`;

function ip(...args: string[]): string {
  return execFileSync("ip", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

/** "connected" (got the server's reply), "timeout" (1 s, no answer) or "error: ..." */
function connect(netns: string, address: string, port: number): string {
  const r = spawnSync("ip", ["netns", "exec", netns, "python3", "-c", CLIENT, address, String(port)], { encoding: "utf8", timeout: 10_000 });
  if (r.status === 0) return "connected";
  if (r.status === 2) return "timeout";
  return `error: status ${r.status} ${r.stderr.trim().split("\n").pop()}`;
}

function startServer(netns: string, ports: number[]): Promise<ChildProcess> {
  const child = spawn("ip", ["netns", "exec", netns, "python3", "-c", SERVER, ...ports.map(String)], { stdio: ["ignore", "pipe", "pipe"] });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server in ${netns} did not start`)), 10_000);
    child.stdout!.on("data", (d: Buffer) => {
      if (d.toString().includes("ready")) {
        clearTimeout(timer);
        resolve(child);
      }
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`server in ${netns} exited with ${code}`));
    });
  });
}

interface Ep {
  name: string;
  netns: string;
  hostIf: string;
  address: string;
  epId: number;
  identity: number;
}

test("seed scenario with real traffic: app2 -> app1:80 connects; app3 -> app1:80 and app2 -> app1:81 dropped; egress rule on app2", async (t) => {
  const sfx = suffix();
  const hostNs = `dpt-host-${sfx}`;
  const eps: Ep[] = [
    { name: "app1", netns: `dpt-app1-${sfx}`, hostIf: `dpt1${sfx}`, address: "10.11.255.104", epId: 1, identity: 1001 },
    { name: "app2", netns: `dpt-app2-${sfx}`, hostIf: `dpt2${sfx}`, address: "10.11.90.17", epId: 2, identity: 36895 },
    { name: "app3", netns: `dpt-app3-${sfx}`, hostIf: `dpt3${sfx}`, address: "10.11.7.7", epId: 3, identity: 40000 },
  ];
  const [app1, app2, app3] = eps;
  const created: string[] = [];
  const servers: ChildProcess[] = [];
  const links: TcxLink[] = [];
  let dp: Datapath | undefined;
  t.after(() => {
    for (const s of servers) s.kill("SIGKILL");
    for (const l of links) l.close();
    dp?.close();
    for (const ns of created.reverse()) spawnSync("ip", ["netns", "del", ns]);
  });

  // Namespaces, veths, addresses, routes.
  for (const ns of [hostNs, ...eps.map((e) => e.netns)]) {
    ip("netns", "add", ns);
    created.push(ns);
  }
  ip("-n", hostNs, "link", "set", "lo", "up");
  execFileSync("ip", ["netns", "exec", hostNs, "sysctl", "-qw", "net.ipv4.ip_forward=1"]);
  for (const e of eps) {
    ip("-n", hostNs, "link", "add", e.hostIf, "type", "veth", "peer", "name", "eth0", "netns", e.netns);
    ip("-n", hostNs, "addr", "add", "169.254.1.1/32", "dev", e.hostIf);
    ip("-n", hostNs, "link", "set", e.hostIf, "up");
    ip("-n", hostNs, "route", "add", `${e.address}/32`, "dev", e.hostIf);
    ip("-n", e.netns, "link", "set", "lo", "up");
    ip("-n", e.netns, "addr", "add", `${e.address}/32`, "dev", "eth0");
    ip("-n", e.netns, "link", "set", "eth0", "up");
    ip("-n", e.netns, "route", "add", "169.254.1.1", "dev", "eth0", "scope", "link");
    ip("-n", e.netns, "route", "add", "default", "via", "169.254.1.1", "dev", "eth0");
  }

  // Maps as the compiler would fill them for the seed, then the programs on every host-side veth.
  dp = new Datapath();
  for (const e of eps) {
    const ifindex = (JSON.parse(ip("-n", hostNs, "-j", "link", "show", e.hostIf)) as Array<{ ifindex: number }>)[0].ifindex;
    dp.addEndpoint({ addresses: [e.address], epId: e.epId, identity: e.identity, enforceIngress: e === app1, enforceEgress: false, ifindex });
    dp.addIpcache(`${e.address}/32`, e.identity);
    withNetns(hostNs, () => {
      links.push(TcxLink.attach(dp!.coll.programs.get("to_endpoint")!, ifindex, "egress"));
      links.push(TcxLink.attach(dp!.coll.programs.get("from_endpoint")!, ifindex, "ingress"));
    });
  }
  dp.addRules(app1.epId, [{ direction: "ingress", identity: 36895, protocol: 6, port: 80, portPrefixLen: 16, decision: "allow" }]);

  servers.push(await startServer(app1.netns, [80, 81]));
  servers.push(await startServer(app3.netns, [80]));

  const noPolicy = () => dp!.drops(app1.epId, L.DropReason.NO_POLICY, "ingress");
  const seedEntry = { identity: 36895, direction: "ingress" as const, protocol: 6, port: 80, portPrefixLen: 16 };

  await t.test("app2 -> app1:80 connects and the reply flows; counted on the seed entry", () => {
    assert.equal(connect(app2.netns, app1.address, 80), "connected");
    assert.ok((dp!.policyStats(app1.epId, seedEntry)?.packets ?? 0n) >= 3n, "SYN, ACK, ... counted on {36895, TCP, 80}");
  });

  await t.test("app3 -> app1:80 and app2 -> app1:81 time out; drops show NO_POLICY for app1 ingress", () => {
    const before = noPolicy();
    assert.equal(connect(app3.netns, app1.address, 80), "timeout");
    assert.equal(connect(app2.netns, app1.address, 81), "timeout");
    assert.ok(noPolicy() >= before + 2n, `NO_POLICY drops went from ${before} to ${noPolicy()}`);
  });

  await t.test("app1 (egress not enforced) reaches app3 and gets its replies through its enforced ingress", () => {
    assert.equal(connect(app1.netns, app3.address, 80), "connected");
  });

  await t.test("an egress rule on app2 allows app1:80 and blocks app3:80", () => {
    assert.equal(connect(app2.netns, app3.address, 80), "connected", "before: app2 egress not enforced");
    dp!.addRules(app2.epId, [{ direction: "egress", identity: app1.identity, protocol: 6, port: 80, portPrefixLen: 16, decision: "allow" }]);
    dp!.addEndpoint({ addresses: [app2.address], epId: app2.epId, identity: app2.identity, enforceIngress: false, enforceEgress: true });
    const before = dp!.drops(app2.epId, L.DropReason.NO_POLICY, "egress");
    assert.equal(connect(app2.netns, app3.address, 80), "timeout");
    assert.ok(dp!.drops(app2.epId, L.DropReason.NO_POLICY, "egress") > before);
    assert.equal(connect(app2.netns, app1.address, 80), "connected");
  });
});
