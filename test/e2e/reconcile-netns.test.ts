// The namespace lifecycle, through the running daemon, with real traffic afterwards:
// - a namespace reconcile created is deleted by hand (`ip netns del`): the daemon makes it again and
//   puts the endpoint back into the new namespace (not into the old one, which its kept sockets
//   alone hold alive), and an external --dry-run then agrees that nothing is left to do;
// - a namespace is an object of the plan (`+ netns`, `- netns`): an endpoint removed after its veth
//   was deleted by hand takes its namespace and the namespace's mark with it, and teardown leaves
//   no namespace of reconcile's behind;
// - a daemon restarted while its source is invalid reports the revision the pins enforce and
//   becomes ready (sd_notify READY=1), with lastRun.result=invalid.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import {
  SEED_IPS,
  cliEnv,
  connect,
  daemonStatus,
  dryRunJson,
  killAndWait,
  makeEnv,
  reconcile,
  reconcileArgv,
  reconcileSrc,
  requireTools,
  seedTraffic,
  show,
  spawnOwned,
  waitFor,
  type Env,
  type SeedTraffic,
} from "./helpers/reconcile.js";

interface Status {
  appliedRevision: string | null;
  appliedFrom: string | null;
  attemptedRevision: string | null;
  driftCorrections: number;
  runs: number;
  lastRun: { result: string; revision: string; trigger: string; changes: number; drift: number; invalid: string[]; startedAt: number; finishedAt: number } | null;
}

// A TCP server that answers every connection with an HTTP status line, bound by hand (not
// http.server, which can hang inside a namespace), so that connect() sees "ok".
const SERVER = `
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(64)
print("listening", flush=True)
while True:
    c, _ = s.accept()
    try:
        c.settimeout(2)
        c.recv(1024)
        c.sendall(b"HTTP/1.0 200 OK\\r\\nContent-Length: 0\\r\\n\\r\\n")
    except OSError:
        pass
    finally:
        c.close()
`;

/** Starts SERVER on ip:port in `netns` (killed at cleanup); resolves once it listens. */
async function startTcpServer(env: Env, netns: string, ip: string, port: number): Promise<void> {
  const child = spawnOwned(env, "ip", ["netns", "exec", netns, "python3", "-c", SERVER, ip, String(port)]);
  let out = "";
  let err = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (err += d.toString()));
  await waitFor(`tcp server ${ip}:${port} in ${netns}`, () => {
    if (child.exitCode !== null) throw new Error(`tcp server ${ip}:${port} in ${netns} exited with ${child.exitCode}: ${err}`);
    return out.includes("listening");
  }, 15_000, 20);
}

async function startSeedServers(env: Env): Promise<void> {
  await Promise.all([80, 81].map((p) => startTcpServer(env, env.netns.app1, SEED_IPS.app1, p)));
}

/** Waits (with a deadline) for the seed's verdicts: app2 → app1:80 connects, app3 → app1:80 and app2 → app1:81 are dropped. */
async function expectSeed(env: Env, timeoutMs = 10_000): Promise<SeedTraffic> {
  let last: SeedTraffic | undefined;
  try {
    return await waitFor("seed traffic", async () => {
      last = await seedTraffic(env);
      return last.allowed === "ok" && last.otherIdentity === "timeout" && last.otherPort === "timeout" ? last : undefined;
    }, timeoutMs, 100);
  } catch {
    throw new Error(`seed traffic not as expected: ${JSON.stringify(last)}`);
  }
}

function startDaemon(env: Env, socket: string, extraEnv: NodeJS.ProcessEnv = {}) {
  const argv = reconcileArgv(env, ["--source", env.dir, "--socket", socket, "--resync-interval", "1s"]);
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", "pipe", "pipe"], env: { ...cliEnv(env), ...extraEnv } });
  env.defer(() => killAndWait(child));
  const out = { log: "" };
  child.stderr!.on("data", (d: Buffer) => (out.log += d.toString()));
  child.stdout!.on("data", (d: Buffer) => (out.log += d.toString()));
  return { child, out };
}

/** SIGTERM, then waits (up to 15 s) for the exit code. */
async function stopDaemon(child: ReturnType<typeof spawn>): Promise<number | null> {
  child.kill("SIGTERM");
  await waitFor("the daemon to exit on SIGTERM", () => child.exitCode !== null || child.signalCode !== null, 15_000, 20);
  return child.exitCode;
}

function hasAddress(netns: string, cidr: string): boolean {
  return spawnSync("ip", ["-n", netns, "-o", "addr", "show", "dev", "eth0"], { encoding: "utf8" }).stdout.includes(cidr);
}

function netnsInode(name: string): number | undefined {
  const r = spawnSync("stat", ["-L", "-c", "%i", `/run/netns/${name}`], { encoding: "utf8" });
  return r.status === 0 ? Number(r.stdout.trim()) : undefined;
}

test("netns: `ip netns del` of a namespace reconcile made is repaired by the daemon into the new namespace, and the repair is confirmed", async (t) => {
  requireTools("bpftool", "python3", "nsenter", "stat");
  const env = makeEnv(t, "nsdel");
  const socket = path.join(env.tmp, "reconcile.sock");
  const { child, out } = startDaemon(env, socket);
  const status = () => daemonStatus<Status>(socket);
  const good = await waitFor("the daemon to apply the seed", async () => {
    if (child.exitCode !== null) throw new Error(`daemon exited ${child.exitCode}: ${out.log}`);
    const s = await status().catch(() => undefined);
    return s?.appliedRevision && s.lastRun?.result === "ok" ? s : undefined;
  }, 30_000, 50);
  await startSeedServers(env);
  await expectSeed(env);

  const ns = env.netns.app1;
  const oldInode = netnsInode(ns);
  assert.ok(oldInode !== undefined);
  const deleted = Date.now();
  spawnSync("ip", ["netns", "delete", ns]);
  assert.equal(existsSync(`/run/netns/${ns}`), false);

  // The daemon makes the namespace again and puts the endpoint's end of the pair, its address and
  // routes into it: into the namespace now bound at /run/netns/NAME, as `ip -n` sees it.
  await waitFor(`${ns} made again with eth0 and ${SEED_IPS.app1} in it`, () => {
    const inode = netnsInode(ns);
    return inode !== undefined && inode !== oldInode && hasAddress(ns, `${SEED_IPS.app1}/32`);
  }, 15_000, 20);
  const repaired = Date.now();
  const repairedMs = repaired - deleted;

  // The address shows while the repairing run is still at work (attachments come last): a run of
  // the daemon that started after it and found no drift comes after the whole repair. Then an
  // outside observer must agree that nothing is left to do.
  const settled = await waitFor("a later ok run of the daemon with no drift", async () => {
    const s = await status();
    return s.lastRun?.result === "ok" && s.lastRun.drift === 0 && s.lastRun.startedAt > repaired ? s : undefined;
  }, 10_000, 50);
  const dry = await dryRunJson(env);
  assert.equal(dry.code, 0, `an external --dry-run still plans changes after the daemon's repair: ${JSON.stringify(dry.plan.changes.map((c) => `${c.op} ${c.resource} ${c.id} [${c.reason}]`))}\n${out.log.slice(-3000)}`);
  assert.ok(settled.driftCorrections > good.driftCorrections, "the repair counts as drift corrected");
  assert.match(out.log, /msg="drift corrected" op=create resource=netns id=\S+/);

  // Real traffic: the old servers live on in the old namespace; new ones in the new one get the seed's verdicts.
  await startSeedServers(env);
  await expectSeed(env);
  t.diagnostic(`ip netns del → namespace, device, address and routes back in the new namespace after ${repairedMs} ms (resync every 1 s)`);
  const repairs = out.log.split("\n").filter((l) => l.includes('msg="drift corrected"')).map((l) => /op=(\S+) resource=(\S+) id=(\S+) reason=("[^"]*"|\S+)/.exec(l)?.slice(1).join(" "));
  t.diagnostic(`repairs: ${repairs.join("; ")}`);

  const code = await stopDaemon(child);
  assert.equal(code, 0, out.log.slice(-2000));
});

test("netns: a namespace is an object of the plan, deleted with its endpoint even when its veth is gone, and by teardown", async (t) => {
  requireTools("bpftool", "python3", "nsenter");
  const env = makeEnv(t, "nsobj");
  const ns = env.netns.app1;

  const preview = await reconcileSrc(env, ["--dry-run"]);
  assert.equal(preview.code, 2, show(preview));
  for (const n of Object.values(env.netns)) assert.match(preview.stdout, new RegExp(`^  \\+ netns ${n}$`, "m"));
  const previewJson = await dryRunJson(env);
  const netnsChanges = previewJson.plan.changes.filter((c) => c.resource === "netns");
  assert.deepEqual(netnsChanges.map((c) => `${c.op} ${c.id}`).sort(), Object.values(env.netns).map((n) => `create ${n}`).sort());
  // Before the devices that go into them.
  const firstDevice = previewJson.plan.changes.findIndex((c) => c.resource === "device");
  const lastNetns = previewJson.plan.changes.map((c) => c.resource).lastIndexOf("netns");
  assert.ok(lastNetns < firstDevice, "netns creates come before device creates");

  const socket = path.join(env.tmp, "reconcile.sock");
  const { child, out } = startDaemon(env, socket);
  const status = () => daemonStatus<Status>(socket);
  await waitFor("the daemon to apply the seed", async () => {
    if (child.exitCode !== null) throw new Error(`daemon exited ${child.exitCode}: ${out.log}`);
    const s = await status().catch(() => undefined);
    return s?.lastRun?.result === "ok" ? s : undefined;
  }, 30_000, 50);
  assert.deepEqual(readdirSync(path.join(env.pinRoot, "netns")).sort(), Object.values(env.netns).sort());

  // The host-side veth deleted by hand (the pair goes, the namespace stays), then the endpoint is
  // removed from the manifests: the daemon deletes the namespace and its mark.
  spawnSync("ip", ["-n", env.hostNs, "link", "del", env.hostIf.app1]);
  const endpoints = path.join(env.dir, "endpoints.yaml");
  const docs = readFileSync(endpoints, "utf8").split(/^---\s*$/m).filter((d) => !/name:\s*app1\b/.test(d));
  assert.equal(docs.filter((d) => /kind:\s*Endpoint/.test(d)).length, 2);
  writeFileSync(endpoints, docs.join("---\n"));
  await waitFor(`${ns} and its mark to be deleted`, () => !existsSync(`/run/netns/${ns}`) && !existsSync(path.join(env.pinRoot, "netns", ns)), 15_000, 20);
  // The run's change lines are written once it finishes, after the namespace is already gone.
  await waitFor("the netns delete in the daemon's log", () => /msg=change op=delete resource=netns id=\S+/.test(out.log), 15_000, 20);
  const dry = await reconcileSrc(env, ["--dry-run"]);
  assert.equal(dry.code, 0, show(dry));
  assert.match(dry.stdout, /No changes/);

  // Traffic: app1 is gone; app2 and app3 (no rule selects them now) still talk.
  await startTcpServer(env, env.netns.app2, SEED_IPS.app2, 80);
  assert.equal(await connect(env.netns.app3, SEED_IPS.app2, 80, 2), "ok");
  assert.notEqual(await connect(env.netns.app2, SEED_IPS.app1, 80, 0.5), "ok");
  assert.equal(await stopDaemon(child), 0, out.log.slice(-2000));

  // Teardown deletes the namespaces reconcile made, and their marks with the pin root.
  const down = await reconcile(env, ["teardown"]);
  assert.equal(down.code, 0, show(down));
  for (const n of [env.netns.app2, env.netns.app3]) assert.equal(existsSync(`/run/netns/${n}`), false, `teardown left ${n}`);
  assert.equal(existsSync(env.pinRoot), false, "teardown left the pin root");
});

/** A unix datagram socket standing in for systemd's NOTIFY_SOCKET: prints every message received. */
const NOTIFY_LISTENER = `
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print("bound", flush=True)
while True:
    data = s.recv(65536)
    print(repr(data.decode()), flush=True)
`;

test("netns/revision: a daemon restarted while its source is invalid reports the revision the pins enforce and becomes ready", async (t) => {
  requireTools("bpftool", "python3", "nsenter");
  const env = makeEnv(t, "nsrev");
  const socket = path.join(env.tmp, "reconcile.sock");
  const first = startDaemon(env, socket);
  const applied = await waitFor("the daemon to apply the seed", async () => {
    if (first.child.exitCode !== null) throw new Error(`daemon exited ${first.child.exitCode}: ${first.out.log}`);
    const s = await daemonStatus<Status>(socket).catch(() => undefined);
    return s?.lastRun?.result === "ok" ? s : undefined;
  }, 30_000, 50);
  const revision = applied.appliedRevision!;
  assert.equal(await stopDaemon(first.child), 0, first.out.log.slice(-2000));

  // The source turns invalid while the daemon is down.
  writeFileSync(path.join(env.dir, "bad.yaml"), "apiVersion: reconcile/v1\nkind: Endpoint\nmetadata:\n  name: app4\nspec:\n  ipv4: 10.11.999.4\n");
  const notifyPath = path.join(env.tmp, "notify.sock");
  const listener = spawnOwned(env, "python3", ["-c", NOTIFY_LISTENER, notifyPath]);
  let notes = "";
  listener.stdout!.on("data", (d: Buffer) => (notes += d.toString()));
  await waitFor("the notify listener", () => notes.includes("bound"), 10_000, 20);

  const second = startDaemon(env, socket, { NOTIFY_SOCKET: notifyPath });
  const st = await waitFor("the restarted daemon to judge the invalid source", async () => {
    if (second.child.exitCode !== null) throw new Error(`daemon exited ${second.child.exitCode}: ${second.out.log}`);
    const s = await daemonStatus<Status>(socket).catch(() => undefined);
    return s?.lastRun ? s : undefined;
  }, 30_000, 50);
  assert.equal(st.lastRun!.result, "invalid", JSON.stringify(st));
  assert.ok(st.lastRun!.invalid.some((p) => /^bad\.yaml:\d+: /.test(p)), JSON.stringify(st.lastRun));
  assert.equal(st.appliedRevision, revision, `the revision in force: ${JSON.stringify(st)}`);
  assert.equal(st.appliedFrom, "record");
  assert.notEqual(st.attemptedRevision, revision);
  await waitFor("READY=1 on NOTIFY_SOCKET", () => notes.includes("READY=1"), 10_000, 20);

  // The pinned datapath enforces the recorded revision.
  await startSeedServers(env);
  await expectSeed(env);

  // Fixed: the good revision is applied again and comes from a run.
  spawnSync("rm", ["-f", path.join(env.dir, "bad.yaml")]);
  const fixed = await waitFor("the good revision applied by a run", async () => {
    const s = await daemonStatus<Status>(socket);
    return s.lastRun?.result === "ok" && s.appliedFrom === "run" ? s : undefined;
  }, 15_000, 50);
  assert.equal(fixed.appliedRevision, revision);
  await expectSeed(env);
  assert.equal(await stopDaemon(second.child), 0, second.out.log.slice(-2000));
});
