// The daemon with a directory source, in a private host namespace: it becomes ready, enforces
// manifest edits (timed: file saved → entry in the map), restores a tampered map entry on resync and
// a deleted route on the netlink event, keeps the last good revision over an invalid edit, and
// exits 0 on SIGTERM leaving the datapath enforcing.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { encodePolicyKey, POLICY_KEY } from "../../reconciler/datapath/layouts.js";
import {
  APP2_IDENTITY,
  SEED_IPS,
  app1Allows,
  daemonStatus,
  expectSeedTraffic,
  innerPolicyMap,
  killAndWait,
  makeEnv,
  mapDelete,
  reconcile,
  requireTools,
  seedRuleWithPort,
  show,
  spawnReconcile,
  startServer,
  waitFor,
} from "./helpers/reconcile.js";

interface Status {
  appliedRevision: string | null;
  attemptedRevision: string | null;
  driftCorrections: number;
  runs: number;
  nextResyncAt: number | null;
  lastRun: { result: string; revision: string; trigger: string; finishedAt: number; invalid: string[] } | null;
}

const status = (socketPath: string) => daemonStatus<Status>(socketPath);

function hasDefaultRoute(netns: string): boolean {
  return spawnSync("ip", ["-n", netns, "route", "show", "default"], { encoding: "utf8" }).stdout.includes("default via");
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

test("daemon: directory source, edits enforced, drift restored, invalid edit refused, SIGTERM leaves the datapath", async (t) => {
  requireTools("bpftool", "python3", "nsenter");
  const env = makeEnv(t, "daemon");
  const socket = path.join(env.tmp, "reconcile.sock");
  const daemon = spawnReconcile(env, ["--source", env.dir, "--socket", socket, "--resync-interval", "1s"], { timeoutMs: 170_000 });
  env.defer(() => killAndWait(daemon.child));
  let log = "";
  daemon.child.stderr!.on("data", (d: Buffer) => (log += d.toString()));

  // Ready: the status socket answers with an applied revision.
  const ready = await waitFor("the daemon to apply the seed", async () => {
    if (daemon.child.exitCode !== null) throw new Error(`daemon exited ${daemon.child.exitCode}: ${log}`);
    const s = await status(socket).catch(() => undefined);
    return s?.appliedRevision ? s : undefined;
  }, 30_000, 50);
  const cli = await reconcile(env, ["status", "--socket", socket, "--output", "json"]);
  assert.equal(cli.code, 0, show(cli));
  assert.equal((JSON.parse(cli.stdout) as Status).appliedRevision, ready.appliedRevision);

  await Promise.all([80, 81, 8080].map((p) => startServer(env, env.netns.app1, SEED_IPS.app1, p)));
  await expectSeedTraffic(env, 80, 81);

  // Manifest edits: file saved → the new entry is in app1's map. Timed, reported, not asserted.
  const enforceMs: number[] = [];
  let port = 80;
  for (const next of [8080, 80, 8080, 80, 8080]) {
    const saved = Date.now();
    writeFileSync(path.join(env.dir, "l3-rule.json"), seedRuleWithPort(next));
    await waitFor(`port ${next} enforced`, () => app1Allows(env, next) && !app1Allows(env, port), 15_000, 5);
    enforceMs.push(Date.now() - saved);
    port = next;
  }
  t.diagnostic(`file saved → enforced (ms): ${enforceMs.join(", ")}; median ${median(enforceMs)}`);
  await expectSeedTraffic(env, 8080, 80);
  const good = await waitFor("the edit to be the applied revision", async () => {
    const s = await status(socket);
    return s.appliedRevision === s.attemptedRevision && s.lastRun?.result === "ok" ? s : undefined;
  });

  // A map entry deleted behind its back comes back with the resync and counts as drift.
  const tampered = Date.now();
  const key = Buffer.alloc(POLICY_KEY.size);
  encodePolicyKey({ identity: APP2_IDENTITY, direction: "ingress", protocol: 6, port: 8080, portPrefixLen: 16 }, key, 0);
  mapDelete(innerPolicyMap(env, "app1"), key);
  await waitFor("the deleted entry to be restored", () => app1Allows(env, 8080), 10_000, 10);
  const restoreMs = Date.now() - tampered;
  const afterDrift = await waitFor("driftCorrections to grow", async () => {
    const s = await status(socket);
    return s.driftCorrections > good.driftCorrections ? s : undefined;
  }, 5000);
  t.diagnostic(`map entry deleted → restored in ${restoreMs} ms (resync every 1 s); driftCorrections ${good.driftCorrections} → ${afterDrift.driftCorrections}`);

  // A route deleted in an endpoint namespace comes back through the netlink event, before the
  // resync timer would have fired: delete it just after a run, when the next resync is ≥ 800 ms away.
  const quiet = await waitFor("a quiet moment after a run", async () => {
    const s = await status(socket);
    return s.nextResyncAt !== null && s.nextResyncAt - Date.now() >= 800 ? s : undefined;
  }, 10_000, 10);
  const deleted = Date.now();
  spawnSync("ip", ["-n", env.netns.app1, "route", "del", "default"]);
  assert.equal(hasDefaultRoute(env.netns.app1), false);
  await waitFor("the default route to be restored", () => hasDefaultRoute(env.netns.app1), 10_000, 5);
  const routeMs = Date.now() - deleted;
  t.diagnostic(`route deleted → restored in ${routeMs} ms; the resync timer was due in ${quiet.nextResyncAt! - deleted} ms`);
  assert.ok(Date.now() < quiet.nextResyncAt!, `the route came back only after ${routeMs} ms, with the resync timer (due after ${quiet.nextResyncAt! - deleted} ms), not on the netlink event`);
  await expectSeedTraffic(env, 8080, 80);

  // An invalid edit: attempted but not applied; the last good revision stays in force.
  writeFileSync(path.join(env.dir, "bad.yaml"), "apiVersion: reconcile/v1\nkind: Endpoint\nmetadata:\n  name: app4\nspec:\n  ipv4: 10.11.999.4\n");
  const refused = await waitFor("the invalid revision to be refused", async () => {
    const s = await status(socket);
    return s.lastRun?.result === "invalid" ? s : undefined;
  }, 10_000, 20);
  assert.equal(refused.appliedRevision, good.appliedRevision);
  assert.notEqual(refused.attemptedRevision, refused.appliedRevision);
  assert.ok(refused.lastRun!.invalid.some((p) => /^bad\.yaml:\d+: /.test(p)), JSON.stringify(refused.lastRun));
  await expectSeedTraffic(env, 8080, 80);
  rmSync(path.join(env.dir, "bad.yaml"));
  await waitFor("the good revision to be applied again", async () => {
    const s = await status(socket);
    return s.lastRun?.result === "ok" && s.attemptedRevision === good.appliedRevision ? s : undefined;
  }, 10_000, 20);

  // SIGTERM: exit 0, and the pinned datapath keeps enforcing without the daemon.
  daemon.child.kill("SIGTERM");
  let timer: NodeJS.Timeout | undefined;
  const exit = await Promise.race([daemon.done, new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), 15_000)))]);
  clearTimeout(timer);
  assert.ok(exit, "the daemon did not exit within 15 s of SIGTERM");
  assert.equal(exit.code, 0, show(exit));
  await expectSeedTraffic(env, 8080, 80);
});
