// The daemon keeps its manifests' load results in the state directory, and a restart reads them back
// instead of parsing again (the built binary, a private host namespace), judged by traffic:
// - restarted with nothing changed, every file is read back and the seed policy still holds;
// - a rule edited while the daemon was down is parsed (its stored result is for other content) and
//   the new port is enforced after the restart, the old one cut;
// - damaged records are parsed again, written again, and the policy is what the files say.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import {
  SEED_IPS,
  app1Allows,
  daemonStatus,
  expectSeedTraffic,
  killAndWait,
  makeEnv,
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
  lastRun: { result: string; revision: string } | null;
}

/** One daemon run: started, ready with `revision` applied, its log kept. */
async function startDaemon(env: Env, socket: string, stateDir: string) {
  const daemon = spawnReconcile(env, ["--source", env.dir, "--socket", socket, "--state-dir", stateDir, "--resync-interval", "30s", "--log-level", "debug"], { timeoutMs: 120_000 });
  env.defer(() => killAndWait(daemon.child));
  const log = { text: "" };
  daemon.child.stderr!.on("data", (d: Buffer) => (log.text += d.toString()));
  const status = await waitFor("the daemon to apply its source", async () => {
    if (daemon.child.exitCode !== null) throw new Error(`daemon exited ${daemon.child.exitCode}: ${log.text}`);
    const s = await daemonStatus<Status>(socket).catch(() => undefined);
    return s?.lastRun?.result === "ok" ? s : undefined;
  }, 30_000, 50);
  await waitFor("the compiled line", () => /msg=compiled /.test(log.text), 10_000, 20);
  return { ...daemon, log, status };
}

/** SIGTERM; the daemon must exit 0 (it writes the load results not saved yet on the way out). */
async function stop(d: Awaited<ReturnType<typeof startDaemon>>): Promise<void> {
  d.child.kill("SIGTERM");
  const stopped = await d.done;
  assert.equal(stopped.code, 0, show(stopped));
}

/** The "compiled" debug line's reuse note: how many files were read back and how many parsed. */
function loadCounts(log: string): { restored: number; parsed: number } {
  const m = /msg=compiled .*reuse="(\d+) files reused, (?:(\d+) read back from the load store, )?(\d+) parsed/.exec(log);
  assert.ok(m, `no compiled line with load counts in:\n${log.slice(-3000)}`);
  return { restored: Number(m[2] ?? 0), parsed: Number(m[3]) };
}

test("daemon: a restart reads the load results back from the state directory; a file edited meanwhile or a damaged record is parsed again", async (t) => {
  requireTools("bpftool", "python3", "nsenter");
  const env = makeEnv(t, "loadstore");
  const socket = path.join(env.tmp, "reconcile.sock");
  const stateDir = path.join(env.tmp, "daemon-state");
  const files = readdirSync(env.dir).filter((f) => /\.(ya?ml|json)$/.test(f)).length;
  const records = () => readdirSync(path.join(stateDir, "load-cache"), { recursive: true, withFileTypes: true }).filter((d) => d.isFile() && d.name.endsWith(".v8")).map((d) => path.join(d.parentPath, d.name));

  // First start: everything parsed, then saved.
  let d = await startDaemon(env, socket, stateDir);
  assert.deepEqual(loadCounts(d.log.text), { restored: 0, parsed: files });
  await waitFor("one record per manifest file", () => records().length === files, 10_000, 20);
  await Promise.all([80, 8080].map((p) => startServer(env, env.netns.app1, SEED_IPS.app1, p)));
  await expectSeedTraffic(env, 80, 8080);
  await stop(d);

  // Restart, nothing changed: every file read back, nothing parsed, the policy unchanged.
  d = await startDaemon(env, socket, stateDir);
  assert.deepEqual(loadCounts(d.log.text), { restored: files, parsed: 0 });
  assert.match(d.log.text, /msg=reconciled trigger=source .*result=ok changes=0/);
  await expectSeedTraffic(env, 80, 8080);
  await stop(d);

  // The rule moved to 8080 while the daemon was down: that file is parsed, the others read back.
  writeFileSync(path.join(env.dir, "l3-rule.json"), seedRuleWithPort(8080));
  d = await startDaemon(env, socket, stateDir);
  assert.deepEqual(loadCounts(d.log.text), { restored: files - 1, parsed: 1 });
  assert.ok(app1Allows(env, 8080) && !app1Allows(env, 80), "app1's policy map has 8080, not 80");
  await expectSeedTraffic(env, 8080, 80);
  await waitFor("the edited file's record replacing the old one", () => records().length === files && /load results saved/.test(d.log.text), 10_000, 20);
  await stop(d);

  // Every record damaged (one byte flipped): all parsed again, policy as the files say, records rewritten.
  for (const r of records()) {
    const bytes = readFileSync(r);
    bytes[bytes.length - 1] ^= 0xff;
    writeFileSync(r, bytes);
  }
  d = await startDaemon(env, socket, stateDir);
  assert.deepEqual(loadCounts(d.log.text), { restored: 0, parsed: files });
  await expectSeedTraffic(env, 8080, 80);
  await waitFor("the records written again", () => new RegExp(`msg="load results saved" files=${files} `).test(d.log.text), 10_000, 20);
  await stop(d);
  d = await startDaemon(env, socket, stateDir);
  assert.deepEqual(loadCounts(d.log.text), { restored: files, parsed: 0 });
  await stop(d);
});
