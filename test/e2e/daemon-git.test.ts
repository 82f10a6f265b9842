// The daemon with a git source (a real bare repository in the test's temp dir, file:// URL), in a
// private host namespace: it becomes ready on the seed commit, enforces pushed commits (timed both
// by polling and by a signed webhook POST), refuses an invalid commit while keeping the last good
// one in force, follows a force push back to an earlier commit, and exits 0 on SIGTERM leaving the
// datapath enforcing.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { signWebhookBody } from "../../reconciler/source/webhook.js";
import {
  REPO,
  SEED_IPS,
  app1Allows,
  cliEnv,
  daemonStatus,
  expectSeedTraffic,
  killAndWait,
  makeEnv,
  reconcile,
  reconcileArgv,
  requireTools,
  seedRuleWithPort,
  show,
  sleep,
  spawnSyncOk,
  startServer,
  waitFor,
  type Env,
  type RunResult,
} from "./helpers/reconcile.js";
import { git } from "./helpers/git.js";

interface Status {
  appliedRevision: string | null;
  attemptedRevision: string | null;
  latestRevision: string | null;
  lastRun: { result: string; revision: string; trigger: string; invalid: string[]; errors: { object: string; message: string }[] } | null;
  git?: { revision: string | null; lastSyncAt: number | null; lastError: string | null };
}

const status = (socketPath: string) => daemonStatus<Status>(socketPath);


function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** POSTs `body` to the daemon's webhook from inside the host namespace (its loopback is private); returns the HTTP code. */
function postWebhook(env: Env, port: number, body: string, signature: string | undefined): Promise<string> {
  const args = ["netns", "exec", env.hostNs, "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", "-X", "POST",
    "-H", "content-type: application/json", "-H", "X-GitHub-Event: push", ...(signature ? ["-H", `X-Hub-Signature-256: ${signature}`] : []),
    "--data-binary", body, `http://127.0.0.1:${port}/hooks/git`];
  return new Promise((resolve) => {
    const child = spawn("ip", args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (out += d.toString()));
    child.on("close", () => resolve(out.trim()));
  });
}

test("daemon: git source, pushes enforced (poll and webhook), invalid commit refused, force push, SIGTERM", async (t) => {
  requireTools("bpftool", "python3", "nsenter", "git", "curl");
  const env = makeEnv(t, "dgit");

  // The remote: a bare repository holding the env's (renamed) seed, and a work clone to push from.
  const bare = path.join(env.tmp, "remote.git");
  const work = path.join(env.tmp, "work");
  git(env.tmp, "init", "-q", "--bare", "-b", "main", bare);
  git(env.tmp, "init", "-q", "-b", "main", work);
  git(work, "remote", "add", "origin", bare);
  for (const f of ["endpoints.yaml", "identities.yaml", "l3-rule.json"]) execFileSync("cp", [path.join(env.dir, f), path.join(work, f)]);
  const commit = (files: Record<string, string>, message: string): string => {
    for (const [f, text] of Object.entries(files)) writeFileSync(path.join(work, f), text);
    git(work, "add", "-A");
    git(work, "commit", "-q", "-m", message);
    return git(work, "rev-parse", "HEAD");
  };
  const seed = commit({}, "seed");
  git(work, "push", "-q", "origin", "main");

  // The daemon, in the host namespace, its webhook on that namespace's private loopback.
  spawnSyncOk("ip", ["-n", env.hostNs, "link", "set", "lo", "up"]);
  const port = 20_000 + Math.floor(Math.random() * 40_000);
  const secret = randomBytes(16).toString("hex");
  const secretFile = path.join(env.tmp, "webhook-secret");
  writeFileSync(secretFile, `${secret}\n`, { mode: 0o600 });
  const socket = path.join(env.tmp, "s.sock");
  const args = ["--source", `file://${bare}`, "--git-interval", "1s", "--state-dir", path.join(env.tmp, "state"), "--socket", socket, "--resync-interval", "30s", "--listen", `127.0.0.1:${port}`];
  const [cmd, ...argv] = reconcileArgv(env, args);
  const child = spawn(cmd!, argv, { cwd: REPO, stdio: ["ignore", "pipe", "pipe"], env: { ...cliEnv(env), RECONCILE_WEBHOOK_SECRET_FILE: secretFile } });
  env.defer(() => killAndWait(child));
  let stdout = "";
  let log = "";
  child.stdout!.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (log += d.toString()));
  const done = new Promise<RunResult>((resolve) => child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr: log, ms: 0 })));

  // (a) Ready: applied revision is the seed commit; the seed policy is enforced.
  const ready = await waitFor("the daemon to apply the seed commit", async () => {
    if (child.exitCode !== null) throw new Error(`daemon exited ${child.exitCode}: ${log}`);
    const s = await status(socket).catch(() => undefined);
    return s?.appliedRevision ? s : undefined;
  }, 30_000, 50);
  assert.equal(ready.appliedRevision, seed, log);
  assert.equal(ready.git?.revision, seed);
  const cli = await reconcile(env, ["status", "--socket", socket, "--output", "json"]);
  assert.equal(cli.code, 0, show(cli));
  assert.equal((JSON.parse(cli.stdout) as Status).appliedRevision, seed);
  await Promise.all([80, 81, 8080].map((p) => startServer(env, env.netns.app1, SEED_IPS.app1, p)));
  await expectSeedTraffic(env, 80, 81);

  // An unsigned or wrongly signed delivery is refused.
  assert.equal(await postWebhook(env, port, "{}", undefined), "401");
  assert.equal(await postWebhook(env, port, "{}", signWebhookBody("not-the-secret", "{}")), "401");

  // (b) Pushes: commit changing the rule's port, push → the new entry is in app1's map.
  // Timed, reported, not asserted. Polling alone first, then a signed webhook POST right after a poll
  // (so the next poll is most of an interval away and the webhook is what triggers the fetch).
  let current = 80;
  const commits = new Map<number, string>(); // port → first commit with that port after the seed
  const pushAndWait = async (next: number, viaWebhook: boolean): Promise<number> => {
    if (viaWebhook) {
      const before = (await status(socket)).git?.lastSyncAt;
      await waitFor("a poll to start", async () => (await status(socket)).git?.lastSyncAt !== before, 5000, 5);
      await sleep(150); // let that poll finish: the next one is ~850 ms away
    } else {
      await sleep(Math.random() * 1000); // push at a random point of the poll interval
    }
    const sha = commit({ "l3-rule.json": seedRuleWithPort(next) }, `port ${next}`);
    if (!commits.has(next)) commits.set(next, sha);
    const pushed = Date.now();
    git(work, "push", "-q", "origin", "main");
    if (viaWebhook) {
      const body = JSON.stringify({ ref: "refs/heads/main", after: sha });
      assert.equal(await postWebhook(env, port, body, signWebhookBody(secret, body)), "202");
    }
    await waitFor(`port ${next} enforced`, () => app1Allows(env, next) && !app1Allows(env, current), 15_000, 5);
    const ms = Date.now() - pushed;
    current = next;
    const s = await waitFor(`status to show ${sha}`, async () => {
      const st = await status(socket);
      return st.appliedRevision === sha ? st : undefined;
    }, 5000, 10);
    assert.equal(s.lastRun?.result, "ok");
    return ms;
  };
  const pollMs: number[] = [];
  const hookMs: number[] = [];
  for (const next of [8080, 80, 8080]) pollMs.push(await pushAndWait(next, false));
  for (const next of [80, 8080, 80]) hookMs.push(await pushAndWait(next, true));
  t.diagnostic(`push → enforced by polling (--git-interval 1s), ms: ${pollMs.join(", ")}; median ${median(pollMs)}`);
  t.diagnostic(`push → enforced with a signed webhook POST, ms: ${hookMs.join(", ")}; median ${median(hookMs)}`);
  // The daemon's own share: compile + apply of each pushed commit (the rest is push, fetch and checkout).
  const runMs = log.split("\n").filter((l) => /reconciled/.test(l) && /trigger=source/.test(l)).map((l) => Number(/\bms=(\d+)/.exec(l)?.[1])).slice(1);
  if (runMs.length) t.diagnostic(`daemon run (compile + apply) per pushed commit, ms: ${runMs.join(", ")}; median ${median(runMs)}`);
  await expectSeedTraffic(env, 80, 8080);
  const good = await status(socket);

  // (c) An invalid commit: attempted, refused with its errors, the last good commit stays in force.
  const bad = commit({ "bad.yaml": "apiVersion: reconcile/v1\nkind: Endpoint\nmetadata:\n  name: app4\nspec:\n  ipv4: 10.11.999.4\n" }, "invalid endpoint");
  git(work, "push", "-q", "origin", "main");
  const refused = await waitFor("the invalid commit to be refused", async () => {
    const s = await status(socket);
    return s.attemptedRevision === bad && s.lastRun?.result === "invalid" ? s : undefined;
  }, 10_000, 20);
  assert.equal(refused.appliedRevision, good.appliedRevision);
  assert.equal(refused.lastRun!.revision, bad);
  assert.ok(refused.lastRun!.invalid.some((p) => /^bad\.yaml:\d+: /.test(p)), JSON.stringify(refused.lastRun));
  await sleep(1500); // more polls of the same bad commit change nothing
  const still = await status(socket);
  assert.equal(still.appliedRevision, good.appliedRevision);
  assert.equal(still.attemptedRevision, bad);
  assert.ok(app1Allows(env, 80) && !app1Allows(env, 8080));
  await expectSeedTraffic(env, 80, 8080);

  // (d) Force push back to an earlier commit (the first one with port 8080): applied.
  const earlier = commits.get(8080)!;
  git(work, "reset", "-q", "--hard", earlier);
  git(work, "push", "-q", "--force", "origin", "main");
  const back = await waitFor("the force-pushed commit to be applied", async () => {
    const s = await status(socket);
    return s.appliedRevision === earlier ? s : undefined;
  }, 10_000, 20);
  assert.equal(back.lastRun?.result, "ok");
  assert.equal(back.attemptedRevision, earlier);
  await expectSeedTraffic(env, 8080, 80);

  // (e) SIGTERM: exit 0, and the pinned datapath keeps enforcing without the daemon.
  child.kill("SIGTERM");
  let timer: NodeJS.Timeout | undefined;
  const exit = await Promise.race([done, new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), 15_000)))]);
  clearTimeout(timer);
  assert.ok(exit, "the daemon did not exit within 15 s of SIGTERM");
  assert.equal(exit.code, 0, show(exit));
  assert.ok(!log.includes(secret), "the webhook secret appears in the log");
  await expectSeedTraffic(env, 8080, 80);
  assert.equal(spawnSync("ip", ["-n", env.hostNs, "link", "show", env.hostIf.app1]).status, 0);
});
