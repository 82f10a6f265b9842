// A map left by an older release with another layout is migrated: --dry-run shows exactly what
// --once then does (the map replaced, its entries written into the new map, every program updated in
// place onto programs bound to it), and connections keep working throughout.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { BpfMap, BpfProgram, TcxLink, loadCollection, parseElf, unpin, type CollectionSpec } from "../../reconciler/ebpf-loader/index.js";
import {
  APPS,
  REPO,
  SEED_IPS,
  dryRunJson,
  expectSeedTraffic,
  makeEnv,
  planOps,
  reconcileSrc,
  requireTools,
  show,
  spawnOwned,
  startServer,
  type Env,
} from "./helpers/reconcile.js";

const OLD_MAX = 1024;

/** What an older release would have left: `endpoints` with room for 1,024, programs bound to it. */
function installOldLayout(env: Env): void {
  const spec = parseElf(readFileSync(path.join(REPO, "bpf/build/endpoint.o")));
  const oldSpec: CollectionSpec = { ...spec, maps: new Map(spec.maps) };
  oldSpec.maps.set("endpoints", { ...spec.maps.get("endpoints")!, maxEntries: OLD_MAX });

  const current = BpfMap.openPinned(path.join(env.pinRoot, "endpoints"));
  const old = BpfMap.create(oldSpec.maps.get("endpoints")!);
  const replaceMaps = new Map<string, BpfMap>();
  try {
    const { keys, values, count } = current.lookupBatch();
    old.updateBatch(keys, values, count);
    for (const name of spec.maps.keys()) replaceMaps.set(name, name === "endpoints" ? old : BpfMap.openPinned(path.join(env.pinRoot, name)));
    const coll = loadCollection(oldSpec, { replaceMaps });
    try {
      for (const app of APPS) {
        for (const [hook, program] of [["egress", "to_endpoint"], ["ingress", "from_endpoint"]] as const) {
          const link = TcxLink.openPinned(path.join(env.pinRoot, "links", "host", env.hostIf[app], hook));
          link.update(coll.programs.get(program)!);
          link.close();
        }
      }
    } finally {
      coll.close();
    }
    unpin(path.join(env.pinRoot, "endpoints"));
    old.pin(path.join(env.pinRoot, "endpoints"));
  } finally {
    current.close();
    for (const m of replaceMaps.values()) if (m !== old) m.close();
    old.close();
  }
}

/** Map ids the program on a pinned link uses. */
function linkMapIds(env: Env, app: (typeof APPS)[number], hook: "ingress" | "egress"): number[] {
  const link = TcxLink.openPinned(path.join(env.pinRoot, "links", "host", env.hostIf[app], hook));
  try {
    const prog = BpfProgram.fromId(link.info().progId);
    try {
      return prog.mapIds();
    } finally {
      prog.close();
    }
  } finally {
    link.close();
  }
}

test("migration: a map of an older layout is replaced with no failed connection, as --dry-run announced", async (t) => {
  requireTools("python3", "nsenter");
  const env = makeEnv(t, "mig");
  const first = await reconcileSrc(env, ["--once"]);
  assert.equal(first.code, 0, show(first));
  await Promise.all([startServer(env, env.netns.app1, SEED_IPS.app1, 80), startServer(env, env.netns.app1, SEED_IPS.app1, 81)]);
  await expectSeedTraffic(env);

  installOldLayout(env);
  await expectSeedTraffic(env); // the old release's datapath enforces the same policy

  const dry = await dryRunJson(env);
  assert.equal(dry.code, 2, show(dry.run));
  const expected = [
    "update map endpoints",
    ...Object.values(SEED_IPS).map((ip) => `create endpoint ${ip}`),
    ...APPS.flatMap((app) => [`update attachment ${env.hostIf[app]}/egress`, `update attachment ${env.hostIf[app]}/ingress`]),
  ].sort();
  assert.deepEqual(planOps(dry.plan), expected);

  // New connections app2 → app1:80 every 50 ms while --once migrates; each must succeed.
  const client = spawnOwned(env, "ip", [
    "netns", "exec", env.netns.app2, "python3", "-c",
    [
      "import socket, time",
      "ok = failed = 0",
      "end = time.time() + 6",
      "while time.time() < end:",
      "    try:",
      `        s = socket.create_connection(("${SEED_IPS.app1}", 80), timeout=1); s.close(); ok += 1`,
      "    except Exception:",
      "        failed += 1",
      "    time.sleep(0.05)",
      "print(ok, failed)",
    ].join("\n"),
  ]);
  let out = "";
  client.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  const clientDone = new Promise<void>((resolve) => client.on("close", () => resolve()));
  await new Promise((r) => setTimeout(r, 1000));
  const once = await reconcileSrc(env, ["--once", "--output", "json"]);
  assert.equal(once.code, 0, show(once));
  const applied = JSON.parse(once.stdout) as { changes: Array<{ op: string; resource: string; id: string }> };
  assert.deepEqual(applied.changes.map((c) => `${c.op} ${c.resource} ${c.id}`).sort(), expected);
  await clientDone;
  const [ok, failed] = out.trim().split(" ").map(Number);
  t.diagnostic(`connections during the migration: ${ok} ok, ${failed} failed`);
  assert.ok(ok! > 50, `the client ran (${out})`);
  assert.equal(failed, 0);

  // The pin is the new layout, and every program uses it.
  const pinned = BpfMap.openPinned(path.join(env.pinRoot, "endpoints"));
  try {
    assert.equal(pinned.spec.maxEntries, 65536);
    for (const app of APPS) for (const hook of ["ingress", "egress"] as const) assert.ok(linkMapIds(env, app, hook).includes(pinned.id), `${app} ${hook}`);
  } finally {
    pinned.close();
  }
  await expectSeedTraffic(env);
  const again = await reconcileSrc(env, ["--dry-run"]);
  assert.equal(again.code, 0, show(again));
});
