// kill -9 in the middle of large applies: 300 extra rules give the seed endpoints ~27,000 policy
// entries. Whenever the process dies, the kernel must judge every packet as the old policy or the
// new one would (DESIGN §4); the next --once must converge, and then the maps hold exactly the
// desired entries: nothing missing, nothing stale.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import {
  APPS,
  EP_IDS,
  desiredMaps,
  dryRunJson,
  expectSeedTraffic,
  kernelEndpoints,
  kernelIpcache,
  kernelPolicy,
  killAndWait,
  mainThreadBpfCalls,
  makeEnv,
  policyInnerIds,
  reconcileSrc,
  requireTools,
  show,
  sleep,
  spawnReconcile,
  startServer,
  SEED_IPS,
  type DesiredMaps,
  type Env,
} from "./helpers/reconcile.js";

const RULES = 300;

/** 300 rules for all three endpoints, each from its own /32 (its own CIDR identity) on TCP lo..hi:
 *  a range that is not aligned expands into ~30 port prefixes, so ~9,000 entries per endpoint. */
function bulkRules(lo: number, hi: number): string {
  const docs: string[] = [];
  for (let i = 0; i < RULES; i++) {
    docs.push(
      [
        "apiVersion: reconcile/v1",
        "kind: Rule",
        "metadata:",
        `  name: bulk-${i}`,
        "spec:",
        "  endpointSelector:",
        "    matchExpressions:",
        '      - {key: "any:id", operator: In, values: [app1, app2, app3]}',
        "  ingress:",
        `    - fromCIDR: [10.200.${i >> 8}.${i & 255}/32]`,
        "      toPorts:",
        "        - ports:",
        `            - {port: "${lo}", endPort: ${hi}, protocol: TCP}`,
        "",
      ].join("\n"),
    );
  }
  return docs.join("---\n");
}

interface Verdicts {
  /** Entries in the kernel outside old ∪ new (would allow what neither allows). */
  foreign: string[];
  /** The kernel holds every entry of the old policy / of the new one. */
  hasOld: boolean;
  hasNew: boolean;
  /** Entries in the kernel now. */
  count: number;
}

/**
 * With allow-only policies an LPM lookup allows a packet iff some entry matches it. So the kernel
 * judges every packet as the old policy or the new one did when its entries lie within old ∪ new
 * and include all of old or all of new (creates before deletes gives exactly that).
 */
function verdicts(env: Env, old: DesiredMaps, next: DesiredMaps): Verdicts {
  const kernel = kernelPolicy(env);
  const foreign = [...kernel.keys()].filter((id) => !old.policy.has(id) && !next.policy.has(id));
  const has = (want: DesiredMaps) => [...want.policy.keys()].every((id) => kernel.has(id));
  return { foreign, hasOld: has(old), hasNew: has(next), count: kernel.size };
}

function safe(v: Verdicts): boolean {
  return v.foreign.length === 0 && (v.hasOld || v.hasNew);
}

test("restart: kill -9 during large applies never leaves a policy that neither old nor new is; --once converges with no stale entries", async (t) => {
  requireTools("bpftool", "python3", "nsenter");
  const env = makeEnv(t, "kill");
  const bulk = path.join(env.dir, "bulk.yaml");
  writeFileSync(bulk, bulkRules(1, 65534));
  const A = await desiredMaps(env);
  writeFileSync(bulk, bulkRules(3, 65533));
  const B = await desiredMaps(env);
  const total = A.policy.size;
  assert.ok(total > 20_000 && B.policy.size > 20_000, `expected tens of thousands of entries, got ${total} and ${B.policy.size}`);
  t.diagnostic(`desired policy entries: A ${A.policy.size}, B ${B.policy.size}; ipcache ${A.ipcache.size}`);

  // 1. Cold apply of A, killed (kill -9 from here) as soon as the first map is pinned: maps come
  //    before entries and programs, so the run is certainly unfinished.
  writeFileSync(bulk, bulkRules(1, 65534));
  const cold = spawnReconcile(env, ["--once", "--source", env.dir]);
  env.defer(() => killAndWait(cold.child));
  const pinned = path.join(env.pinRoot, "policy");
  const deadline = Date.now() + 30_000;
  while (!existsSync(pinned) && cold.child.exitCode === null && Date.now() < deadline) await sleep(2);
  await killAndWait(cold.child);
  const coldRun = await cold.done;
  assert.equal(coldRun.signal, "SIGKILL", `the cold apply finished before it could be killed: ${show(coldRun)}`);
  const partial = await dryRunJson(env);
  assert.equal(partial.code, 2, "a killed cold apply leaves work to do");
  t.diagnostic(`after kill -9 during the cold apply, the plan has ${JSON.stringify(partial.plan.summary)}`);
  const converge = await reconcileSrc(env, ["--once"], { timeoutMs: 120_000 });
  assert.equal(converge.code, 0, show(converge));

  // 2. A → B changes every endpoint's policy. One traced run gives the sequence of bpf calls; then,
  //    from A each time, the switch is killed at chosen map writes (strace injects SIGKILL at the
  //    Nth bpf call, so the kill lands exactly there) and the kernel state is judged.
  writeFileSync(bulk, bulkRules(3, 65533));
  const refTrace = path.join(env.tmp, "switch.strace");
  const ref = await reconcileSrc(env, ["--once"], { timeoutMs: 120_000, strace: refTrace });
  assert.equal(ref.code, 0, show(ref));
  const calls = mainThreadBpfCalls(readFileSync(refTrace, "utf8"));
  const writes = calls.flatMap((c, i) => (/^BPF_MAP_(UPDATE|DELETE)_(BATCH|ELEM)$/.test(c) ? [i + 1] : [])).slice(1); // [0] is the feature probe
  assert.ok(writes.length >= 3, `expected several map writes in the A→B switch, got ${writes.length}: ${calls.join(" ")}`);
  t.diagnostic(`A→B switch: ${calls.length} bpf calls, map writes at ${writes.map((n) => `${n}:${calls[n - 1]}`).join(", ")}`);

  const outcomes: string[] = [];
  let mixedSeen = false;
  for (const n of [...new Set([writes[1]!, writes[Math.floor(writes.length / 2)]!, writes[writes.length - 1]!])]) {
    writeFileSync(bulk, bulkRules(1, 65534));
    const back = await reconcileSrc(env, ["--once"], { timeoutMs: 120_000 });
    assert.equal(back.code, 0, show(back));
    writeFileSync(bulk, bulkRules(3, 65533));
    const killed = await reconcileSrc(env, ["--once"], { timeoutMs: 120_000, strace: path.join(env.tmp, `kill-${n}.strace`), straceExtra: ["-e", `inject=bpf:signal=KILL:when=${n}`] });
    assert.notEqual(killed.code, 0, `the run was not killed at bpf call ${n}: ${show(killed)}`);
    const v = verdicts(env, A, B);
    outcomes.push(`killed at call ${n} (${calls[n - 1]}): ${v.count} entries, all of old ${v.hasOld}, all of new ${v.hasNew}, outside both ${v.foreign.length}`);
    assert.ok(safe(v), `unsafe intermediate policy after a kill at bpf call ${n}: ${outcomes.at(-1)}; e.g. ${v.foreign.slice(0, 3)}`);
    if (!(v.hasOld && v.count === A.policy.size) && !(v.hasNew && v.count === B.policy.size)) mixedSeen = true;
  }
  t.diagnostic(outcomes.join(" | "));
  assert.ok(mixedSeen, "no kill landed between the first and the last policy write (the test did not test a mid-apply kill)");
  const current = B;

  // 3. Converge and compare the maps entry by entry with what the manifests compile to.
  const final = await reconcileSrc(env, ["--once"], { timeoutMs: 120_000 });
  assert.equal(final.code, 0, show(final));
  const dry = await dryRunJson(env);
  assert.equal(dry.code, 0, show(dry.run));
  assert.deepEqual(dry.plan.changes, []);

  const want = current;
  const kernel = kernelPolicy(env);
  const missing = [...want.policy.keys()].filter((id) => kernel.get(id) !== want.policy.get(id));
  const stale = [...kernel.keys()].filter((id) => !want.policy.has(id));
  assert.deepEqual({ missing: missing.slice(0, 5), stale: stale.slice(0, 5), count: kernel.size }, { missing: [], stale: [], count: want.policy.size });
  assert.deepEqual([...policyInnerIds(env).keys()].sort(), APPS.map((a) => EP_IDS.get(a)!).sort(), "one inner map per endpoint, no orphans");
  assert.deepEqual(kernelIpcache(env), want.ipcache);
  assert.deepEqual(new Set(kernelEndpoints(env).keys()), want.endpoints);

  await Promise.all([startServer(env, env.netns.app1, SEED_IPS.app1, 80), startServer(env, env.netns.app1, SEED_IPS.app1, 81)]);
  await expectSeedTraffic(env);
});
