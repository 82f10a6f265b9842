// The seed scenario end to end: `reconcile --once` builds the datapath in a private host namespace,
// real TCP traffic follows the policy, `inspect` shows counters and provenance, and a second run
// writes nothing (proved by counting bpf(2) write commands with strace).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import {
  APP2_IDENTITY,
  SEED_ALLOW_ID,
  SEED_IPS,
  expectSeedTraffic,
  kernelIpcache,
  kernelPolicy,
  makeEnv,
  parseBpfTrace,
  reconcileSrc,
  requireTools,
  show,
  startServer,
} from "./helpers/reconcile.js";

test("seed: --once applies, traffic follows the policy, inspect shows counters, a second run writes nothing", async (t) => {
  requireTools("strace", "bpftool", "python3", "nsenter");
  const env = makeEnv(t, "seed");

  const first = await reconcileSrc(env, ["--once"]);
  assert.equal(first.code, 0, show(first));
  assert.match(first.stdout, /^Applied revision sha256:[0-9a-f]+: \d+ created, \d+ updated, 0 deleted; \d+ ok, 0 failed\.\n$/, "stdout: the result line only");
  // stderr is a pipe: a plain progress line per phase and the summary, no escape codes.
  const progress = first.stderr.split("\n").filter((l) => l.startsWith("reconcile: ") && !l.startsWith("reconcile: note:"));
  assert.deepEqual(
    progress.map((l) => /^reconcile: (compiling|reading the kernel|applying|done in)/.exec(l)?.[1]),
    ["compiling", "reading the kernel", "applying", "reading the kernel", "applying", "done in"],
    first.stderr,
  );
  // The second apply (after the maps exist): the counts are the run's, so the changes made before
  // the maps are done already, and the entries and attachments are still to come.
  const afterMaps = /^reconcile: applying \([\d.]+m?s\): endpoints 0\/3, entries 0\/\d+, other changes (\d+)\/(\d+)$/.exec(progress[4]!);
  assert.ok(afterMaps, progress[4]);
  assert.ok(Number(afterMaps[1]) > 0 && Number(afterMaps[1]) < Number(afterMaps[2]), progress[4]);
  assert.doesNotMatch(first.stderr, /\x1b/);

  // The maps hold what DESIGN §9 expects.
  assert.equal(kernelPolicy(env).get(SEED_ALLOW_ID), "allow");
  assert.equal(kernelIpcache(env).get(`${SEED_IPS.app2}/32`), APP2_IDENTITY);

  await Promise.all([startServer(env, env.netns.app1, SEED_IPS.app1, 80), startServer(env, env.netns.app1, SEED_IPS.app1, 81)]);
  await expectSeedTraffic(env);

  const inspected = await reconcileSrc(env, ["inspect", "policy", "app1", "--output", "json"]);
  assert.equal(inspected.code, 0, show(inspected));
  const rows = JSON.parse(inspected.stdout) as Array<Record<string, unknown>>;
  const allow = rows.find((r) => r.identity === APP2_IDENTITY && r.port === 80 && r.protocol === 6 && r.direction === "ingress");
  assert.ok(allow, `no allow row for 36895 TCP/80 in ${inspected.stdout}`);
  assert.equal(allow.decision, "allow");
  assert.ok((allow.packets as number) > 0, `allow entry counted no packets: ${JSON.stringify(allow)}`);
  assert.match(String(allow.rules), /^l3-rule \(l3-rule\.json:2\)$/);
  const noPolicy = rows.find((r) => r.drops === "NO_POLICY" && r.direction === "ingress");
  assert.ok(noPolicy && (noPolicy.packets as number) > 0, `no NO_POLICY ingress drops counted: ${inspected.stdout}`);

  // Second run: nothing to do, and nothing written. Every bpf(2) command is traced; the only writes
  // allowed are to a map the run created itself as a feature probe.
  const trace = path.join(env.tmp, "second.strace");
  const second = await reconcileSrc(env, ["--once", "--no-progress"], { strace: trace });
  assert.equal(second.code, 0, show(second));
  assert.match(second.stdout, /^No changes\./);
  assert.doesNotMatch(second.stderr, /^reconcile: (compiling|reading|applying|done)/m, "--no-progress");
  const calls = parseBpfTrace(readFileSync(trace, "utf8"));
  assert.ok((calls.byCommand.get("BPF_OBJ_GET") ?? 0) > 0, `strace saw no bpf calls at all: is the trace empty? ${[...calls.byCommand]}`);
  assert.deepEqual(calls.writes, [], "a no-op --once must not write, delete, pin, create or link anything");
  t.diagnostic(`no-op --once bpf(2) calls: ${JSON.stringify(Object.fromEntries(calls.byCommand))}; probe writes: ${calls.probeWrites.length}`);

  const dry = await reconcileSrc(env, ["--dry-run"]);
  assert.equal(dry.code, 0, show(dry));
  assert.match(dry.stdout, /No changes/);

  // The datapath still enforces after all that.
  await expectSeedTraffic(env);
});
