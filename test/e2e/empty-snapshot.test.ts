// An empty snapshot (an emptied or unmounted manifest directory) must not tear the datapath down:
// `--once` and `--dry-run` refuse it with exit 1 while the kernel holds endpoints of ours, the daemon
// rejects it as `invalid` with the reason in `status` and keeps enforcing, and `--allow-empty`
// applies it (removing the endpoints).
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, readdirSync, rmSync } from "node:fs";
import path from "node:path";
import {
  SEED_EXPECTED,
  SEED_IPS,
  daemonStatus,
  expectSeedTraffic,
  kernelEndpoints,
  killAndWait,
  makeEnv,
  reconcile,
  requireTools,
  seedTraffic,
  show,
  spawnReconcile,
  startServer,
  waitFor,
  writeManifests,
} from "./helpers/reconcile.js";

interface Status {
  appliedRevision: string | null;
  attemptedRevision: string | null;
  lastRun: { result: string; revision: string; trigger: string; invalid: string[] } | null;
}

const REFUSAL = /holds no manifests, but the datapath in force has 3 endpoint\(s\): refusing to remove them .*--allow-empty/;

test("empty snapshot: refused by --once, --dry-run and the daemon while endpoints are in force; --allow-empty applies it", async (t) => {
  requireTools("bpftool", "python3", "nsenter");
  const env = makeEnv(t, "empty");
  const empty = path.join(env.tmp, "empty");
  mkdirSync(empty);

  const first = await reconcile(env, ["--once", "--source", env.dir]);
  assert.equal(first.code, 0, show(first));
  await Promise.all([80, 81].map((p) => startServer(env, env.netns.app1, SEED_IPS.app1, p)));
  await expectSeedTraffic(env, 80, 81);

  // One-shot: the revision in force is what the kernel holds (3 endpoints): refused, nothing written.
  for (const mode of ["--once", "--dry-run"]) {
    const r = await reconcile(env, [mode, "--source", empty]);
    assert.equal(r.code, 1, `${mode}: ${show(r)}`);
    assert.match(r.stderr, REFUSAL, mode);
    assert.doesNotMatch(r.stderr, /this is a bug/);
  }
  assert.equal(kernelEndpoints(env).size, 3);
  assert.deepEqual(await seedTraffic(env), SEED_EXPECTED);

  // The daemon: the watched directory is emptied.
  const socket = path.join(env.tmp, "reconcile.sock");
  const daemon = spawnReconcile(env, ["--source", env.dir, "--socket", socket, "--resync-interval", "1s"], { timeoutMs: 120_000 });
  env.defer(() => killAndWait(daemon.child));
  let log = "";
  daemon.child.stderr!.on("data", (d: Buffer) => (log += d.toString()));
  const ready = await waitFor("the daemon to apply the seed", async () => {
    if (daemon.child.exitCode !== null) throw new Error(`daemon exited ${daemon.child.exitCode}: ${log}`);
    const s = await daemonStatus<Status>(socket).catch(() => undefined);
    return s?.appliedRevision ? s : undefined;
  }, 30_000, 50);
  for (const f of readdirSync(env.dir)) rmSync(path.join(env.dir, f));
  const refused = await waitFor("the empty revision to be refused", async () => {
    const s = await daemonStatus<Status>(socket);
    return s.lastRun?.result === "invalid" && s.attemptedRevision !== ready.appliedRevision ? s : undefined;
  }, 10_000, 20);
  assert.equal(refused.appliedRevision, ready.appliedRevision, "the revision in force stays");
  assert.equal(refused.lastRun!.invalid.length, 1);
  assert.match(refused.lastRun!.invalid[0]!, REFUSAL);
  assert.match(log, /level=error msg="revision rejected: no manifests"/);
  // Resyncs keep re-applying the last good revision: the datapath stays, traffic follows the policy.
  await waitFor("a resync after the refusal", async () => {
    const s = await daemonStatus<Status>(socket);
    return s.lastRun?.trigger === "resync" && s.lastRun.result === "ok" ? s : undefined;
  }, 10_000, 50);
  assert.equal(kernelEndpoints(env).size, 3);
  assert.deepEqual(await seedTraffic(env), SEED_EXPECTED);

  // The manifests come back: applied again.
  writeManifests(env);
  await waitFor("the seed again", async () => {
    const s = await daemonStatus<Status>(socket);
    return s.lastRun?.result === "ok" && s.appliedRevision === ready.appliedRevision && s.attemptedRevision === ready.appliedRevision ? s : undefined;
  }, 10_000, 20);
  daemon.child.kill("SIGTERM");
  const stopped = await daemon.done;
  assert.equal(stopped.code, 0, show(stopped));

  // --allow-empty: the empty revision is applied, the endpoints are removed.
  const allowed = await reconcile(env, ["--once", "--allow-empty", "--source", empty]);
  assert.equal(allowed.code, 0, show(allowed));
  assert.equal(kernelEndpoints(env).size, 0);
});
