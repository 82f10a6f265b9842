// A foreign tcx program attached ahead of reconcile's on an endpoint's device, while the daemon
// runs. A pass-all program there lets denied traffic through; reconcile must not remove it, but it
// says so: one warning per change, status.foreignAhead, the reconcile_foreign_programs metric, and
// `inspect links` in run order. Asked to (the link pin removed, as docs/operations.md says), the
// daemon attaches afresh with --attach-position first, ahead of the foreign program, and denied
// traffic is dropped again.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, unlinkSync } from "node:fs";
import path from "node:path";
import { loadCollection, parseElf, TcxLink } from "../../reconciler/ebpf-loader/index.js";
import { withNetns } from "../../reconciler/netlink/index.js";
import {
  REPO,
  SEED_IPS,
  connect,
  daemonStatus,
  expectSeedTraffic,
  killAndWait,
  makeEnv,
  reconcile,
  requireTools,
  show,
  spawnReconcile,
  spawnSyncOk,
  startServer,
  waitFor,
} from "./helpers/reconcile.js";

interface Status {
  appliedRevision: string | null;
  runs: number;
  lastRun: { result: string } | null;
  foreignAhead: Array<{ device: string; netns?: string; hook: string; progId: number }>;
}

interface LinkRow {
  device: string;
  netns?: string;
  hook: string;
  order: number;
  progId: number;
  program: string;
  owner: string;
}

test("daemon: a foreign pass-all program ahead of ours is reported (log, status, metric, inspect), left alone, and a fresh attach goes ahead of it", async (t) => {
  requireTools("bpftool", "python3", "nsenter");
  const env = makeEnv(t, "foreign");
  spawnSyncOk("ip", ["-n", env.hostNs, "link", "set", "lo", "up"]);
  const socket = path.join(env.tmp, "reconcile.sock");
  const daemon = spawnReconcile(env, ["--source", env.dir, "--socket", socket, "--resync-interval", "1s", "--listen", "127.0.0.1:0", "--attach-position", "first"], { timeoutMs: 150_000 });
  env.defer(() => killAndWait(daemon.child));
  let log = "";
  daemon.child.stderr!.on("data", (d: Buffer) => (log += d.toString()));
  const status = () => daemonStatus<Status>(socket);
  await waitFor("the daemon to apply the seed", async () => {
    if (daemon.child.exitCode !== null) throw new Error(`daemon exited ${daemon.child.exitCode}: ${log}`);
    const s = await status().catch(() => undefined);
    return s?.appliedRevision && s.lastRun?.result === "ok" ? s : undefined;
  }, 30_000, 50);
  const listen = /listen=(\S+)/.exec(log)?.[1];
  assert.ok(listen, `the started line names the metrics address: ${log}`);
  const metrics = () => spawnSyncOk("ip", ["netns", "exec", env.hostNs, process.execPath, "-e", `fetch("http://${listen}/metrics").then((r) => r.text()).then((t) => process.stdout.write(t))`]);
  await Promise.all([80, 81].map((p) => startServer(env, env.netns.app1, SEED_IPS.app1, p)));
  await expectSeedTraffic(env, 80, 81);
  assert.deepEqual((await status()).foreignAhead, []);

  // The foreign program: counter.o returns TC_ACT_OK (TCX_PASS) for every packet. Attached at the
  // head of the egress hook of app1's host-side veth, where app1's ingress policy runs.
  const foreign = loadCollection(parseElf(readFileSync(path.join(REPO, "bpf/build/counter.o"))));
  env.defer(() => foreign.close());
  const prog = foreign.programs.get("count_packets")!;
  const progId = prog.info().id;
  const ifindex = (JSON.parse(spawnSyncOk("ip", ["-n", env.hostNs, "-j", "link", "show", "dev", env.hostIf.app1])) as Array<{ ifindex: number }>)[0]!.ifindex;
  const link = withNetns(env.hostNs, () => TcxLink.attach(prog, ifindex, "egress", "first"));
  env.defer(() => link.close()); // not pinned: closing the fd detaches it
  const attachedAt = Date.now();

  // It bypasses the policy: app3 → app1:80, denied, now connects.
  assert.equal(await connect(env.netns.app3, SEED_IPS.app1, 80, 2), "ok", "a pass-all program ahead of ours lets denied traffic through");

  const warned = await waitFor("the warning", () => log.split("\n").find((l) => l.includes("runs ahead of reconcile's") && l.includes(`progId=${progId}`)), 10_000, 20);
  t.diagnostic(`foreign program attached → warned in ${Date.now() - attachedAt} ms`);
  assert.match(warned, /level=warn/, warned);
  assert.match(warned, new RegExp(`device=${env.hostIf.app1}`), warned);
  assert.match(warned, /hook=egress/, warned);
  const s = await waitFor("status.foreignAhead", async () => {
    const st = await status();
    return st.foreignAhead.length ? st : undefined;
  }, 5000);
  assert.deepEqual(s.foreignAhead.map(({ device, hook, progId: id }) => ({ device, hook, progId: id })), [{ device: env.hostIf.app1, hook: "egress", progId }]);
  assert.match(metrics(), new RegExp(`^reconcile_foreign_programs\\{device="${env.hostIf.app1}",netns="",hook="egress",position="before"\\} 1$`, "m"));
  const inspected = await reconcile(env, ["inspect", "links", "--output", "json"]);
  assert.equal(inspected.code, 0, show(inspected));
  const rows = (JSON.parse(inspected.stdout) as LinkRow[]).filter((r) => r.device === env.hostIf.app1 && r.hook === "egress").sort((a, b) => a.order - b.order);
  assert.deepEqual(rows.map((r) => `${r.order} ${r.owner} ${r.program}`), ["0 foreign count_packets", "1 reconcile to_endpoint"], inspected.stdout);
  assert.equal(rows[0]!.progId, progId);
  const plan = await reconcile(env, ["--dry-run", "--source", env.dir]);
  assert.equal(plan.code, 0, show(plan));
  assert.match(plan.stdout, new RegExp(`Note: foreign tcx program ${progId} \\(count_packets\\) runs ahead of reconcile's on ${env.hostIf.app1}/egress`), plan.stdout);

  // Once per change: more runs, no second warning; the program is still there, still ahead.
  const runs = (await status()).runs;
  await waitFor("two more runs", async () => (await status()).runs >= runs + 2, 10_000, 50);
  assert.equal(log.split("\n").filter((l) => l.includes("runs ahead of reconcile's")).length, 1, "one warning for one change");
  assert.deepEqual(link.info().ifindex, ifindex, "the foreign program is left attached");

  // Asked to: the pin of our link removed (detaching it), the daemon attaches afresh, at the head.
  unlinkSync(path.join(env.pinRoot, "links", "host", env.hostIf.app1, "egress"));
  await waitFor("status.foreignAhead to clear", async () => ((await status()).foreignAhead.length === 0 ? true : undefined), 10_000, 20);
  const after = await reconcile(env, ["inspect", "links", "--output", "json"]);
  const order = (JSON.parse(after.stdout) as LinkRow[]).filter((r) => r.device === env.hostIf.app1 && r.hook === "egress").sort((a, b) => a.order - b.order);
  assert.deepEqual(order.map((r) => `${r.owner} ${r.program}`), ["reconcile to_endpoint", "foreign count_packets"], after.stdout);
  assert.match(metrics(), new RegExp(`^reconcile_foreign_programs\\{device="${env.hostIf.app1}",netns="",hook="egress",position="after"\\} 1$`, "m"));
  await expectSeedTraffic(env, 80, 81);
});
