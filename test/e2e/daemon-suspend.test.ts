// reconcile suspend / resume against a running daemon (the built binary, a private host namespace):
// a manifest change made while suspended is not applied (app1's policy map keeps port 80, and
// traffic to 80 still connects); status and the log report the pending change; a restart keeps the
// suspension; resume applies the change at once (8080 in the map and reachable, 80 gone).
import { test } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import path from "node:path";
import {
  SEED_IPS,
  app1Allows,
  connect,
  daemonStatus,
  expectSeedTraffic,
  killAndWait,
  makeEnv,
  reconcile,
  requireTools,
  seedRuleWithPort,
  show,
  spawnReconcile,
  startServer,
  waitFor,
  type Env,
} from "./helpers/reconcile.js";

interface Status {
  appliedRevision: string | null;
  latestRevision: string | null;
  suspended: { since: number; reason?: string; pending: { revision: string; changes: number } | null } | null;
  lastRun: { result: string; revision: string } | null;
}

function startDaemon(env: Env, socket: string) {
  const daemon = spawnReconcile(env, ["--source", env.dir, "--socket", socket, "--resync-interval", "1s"], { timeoutMs: 170_000 });
  env.defer(() => killAndWait(daemon.child));
  const log = { text: "" };
  daemon.child.stderr!.on("data", (d: Buffer) => (log.text += d.toString()));
  return { ...daemon, log };
}

test("daemon: suspend holds back a change (and survives a restart), resume applies it at once", async (t) => {
  requireTools("bpftool", "python3", "nsenter");
  const env = makeEnv(t, "suspend");
  const socket = path.join(env.tmp, "reconcile.sock");
  const status = () => daemonStatus<Status>(socket);
  let daemon = startDaemon(env, socket);
  const first = await waitFor("the daemon to apply the seed", async () => {
    if (daemon.child.exitCode !== null) throw new Error(`daemon exited ${daemon.child.exitCode}: ${daemon.log.text}`);
    const s = await status().catch(() => undefined);
    return s?.appliedRevision ? s : undefined;
  }, 30_000, 50);
  await Promise.all([80, 8080].map((p) => startServer(env, env.netns.app1, SEED_IPS.app1, p)));
  await expectSeedTraffic(env, 80, 81);

  const sus = await reconcile(env, ["suspend", "--socket", socket, "--reason", "NIC firmware upgrade"]);
  assert.equal(sus.code, 0, show(sus));
  assert.match(sus.stdout, /^Suspended since \S+ \(NIC firmware upgrade\): .* applies nothing until reconcile resume\.$/m);

  // The change: app2 → app1 on 8080 instead of 80. Seen, planned, not applied.
  writeFileSync(path.join(env.dir, "l3-rule.json"), seedRuleWithPort(8080));
  const held = await waitFor("the change to be pending", async () => {
    const s = await status();
    return s.suspended?.pending && s.suspended.pending.revision !== first.appliedRevision ? s : undefined;
  }, 15_000, 20);
  assert.equal(held.appliedRevision, first.appliedRevision);
  assert.equal(held.lastRun?.result, "suspended");
  assert.ok(held.suspended!.pending!.changes >= 2, JSON.stringify(held.suspended));
  assert.equal(held.suspended!.reason, "NIC firmware upgrade");
  // Several resyncs later the datapath is still the old revision's.
  await new Promise((r) => setTimeout(r, 2500));
  assert.equal(app1Allows(env, 80), true, "port 80 still allowed");
  assert.equal(app1Allows(env, 8080), false, "port 8080 not applied");
  assert.equal(await connect(env.netns.app2, SEED_IPS.app1, 80), "ok");
  assert.equal(await connect(env.netns.app2, SEED_IPS.app1, 8080), "timeout");
  assert.match(daemon.log.text, /level=warn msg="suspended: changes pending, nothing applied" revision=\S+ pending=\d+/);
  const cli = await reconcile(env, ["status", "--socket", socket, "--output", "json"]);
  assert.equal(cli.code, 0, show(cli));
  assert.equal((JSON.parse(cli.stdout) as Status).suspended?.reason, "NIC firmware upgrade");

  // A restart keeps the suspension: the new process plans, applies nothing.
  daemon.child.kill("SIGTERM");
  assert.equal((await daemon.done).code, 0);
  daemon = startDaemon(env, socket);
  const restarted = await waitFor("the restarted daemon to plan while suspended", async () => {
    if (daemon.child.exitCode !== null) throw new Error(`daemon exited ${daemon.child.exitCode}: ${daemon.log.text}`);
    const s = await status().catch(() => undefined);
    return s?.lastRun?.result === "suspended" ? s : undefined;
  }, 30_000, 50);
  assert.equal(restarted.suspended?.reason, "NIC firmware upgrade");
  assert.ok(restarted.suspended?.pending && restarted.suspended.pending.changes > 0);
  assert.match(daemon.log.text, /suspended \(recorded with the pins\)/);
  assert.equal(app1Allows(env, 8080), false, "still not applied after the restart");
  assert.equal(await connect(env.netns.app2, SEED_IPS.app1, 80), "ok");

  // resume: applied at once (well before a resync would matter: we look within 3 s).
  const resumedAt = Date.now();
  const res = await reconcile(env, ["resume", "--socket", socket]);
  assert.equal(res.code, 0, show(res));
  assert.match(res.stdout, /^Resumed: the daemon applies the pending changes now\.$/m);
  await waitFor("the change to be applied", () => app1Allows(env, 8080) && !app1Allows(env, 80), 3000, 10);
  t.diagnostic(`resume → applied in ${Date.now() - resumedAt} ms`);
  const after = await status();
  assert.equal(after.suspended, null);
  assert.equal(after.appliedRevision, after.latestRevision);
  await expectSeedTraffic(env, 8080, 80);
  const again = await reconcile(env, ["resume", "--socket", socket]);
  assert.match(again.stdout, /^Not suspended: nothing to resume\.$/m);
});
