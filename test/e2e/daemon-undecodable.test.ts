// Undecodable map entries while the daemon runs: a key with family byte 0 written into the pinned
// ipcache and endpoints maps is drift. The daemon deletes both (by their bytes), reports them, the
// next observation is clean, and the seed's traffic verdicts hold. With the daemon stopped, the same
// entries show in `--dry-run` as `- ipcache <hex>`, `inspect` lists them, and `teardown` succeeds.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import path from "node:path";
import { ENDPOINT_INFO, ENDPOINT_KEY, IPCACHE_KEY, IPCACHE_VALUE, encodeIpcacheValue } from "../../reconciler/datapath/layouts.js";
import {
  SEED_IPS,
  daemonStatus,
  dryRunJson,
  expectSeedTraffic,
  killAndWait,
  makeEnv,
  mapDump,
  mapUpdate,
  pinPath,
  reconcile,
  reconcileSrc,
  requireTools,
  show,
  spawnReconcile,
  startServer,
  waitFor,
} from "./helpers/reconcile.js";

interface Status {
  appliedRevision: string | null;
  driftCorrections: number;
  lastRun: { result: string; trigger: string; drift: number; finishedAt: number; errors: unknown[] } | null;
}

/** An ipcache key of family 0 (a /32 of 10.99.0.1): no prefix names it. */
function family0Ipcache(): Buffer {
  const k = Buffer.alloc(IPCACHE_KEY.size);
  k.writeUInt32LE(64, 0);
  Buffer.from([10, 99, 0, 1]).copy(k, 8);
  return k;
}
function family0Endpoint(): Buffer {
  const k = Buffer.alloc(ENDPOINT_KEY.size);
  Buffer.from([10, 99, 0, 2]).copy(k, 0);
  return k;
}
const ipcacheValue = (): Buffer => {
  const v = Buffer.alloc(IPCACHE_VALUE.size);
  encodeIpcacheValue({ identity: 2 }, v, 0);
  return v;
};
const endpointValue = (): Buffer => Buffer.alloc(ENDPOINT_INFO.size, 1);

const holds = (map: string, key: Buffer): boolean => mapDump(map).some((e) => e.key.equals(key));

test("daemon: undecodable ipcache and endpoints entries are deleted as drift, the next observation is clean, traffic follows the policy", async (t) => {
  requireTools("bpftool", "python3", "nsenter");
  const env = makeEnv(t, "poison");
  const socket = path.join(env.tmp, "reconcile.sock");
  const daemon = spawnReconcile(env, ["--source", env.dir, "--socket", socket, "--resync-interval", "1s"], { timeoutMs: 120_000 });
  env.defer(() => killAndWait(daemon.child));
  let log = "";
  daemon.child.stderr!.on("data", (d: Buffer) => (log += d.toString()));
  const status = () => daemonStatus<Status>(socket);

  await waitFor("the daemon to apply the seed", async () => {
    if (daemon.child.exitCode !== null) throw new Error(`daemon exited ${daemon.child.exitCode}: ${log}`);
    const s = await status().catch(() => undefined);
    return s?.appliedRevision && s.lastRun?.result === "ok" ? s : undefined;
  }, 30_000, 50);
  await Promise.all([80, 81].map((p) => startServer(env, env.netns.app1, SEED_IPS.app1, p)));
  await expectSeedTraffic(env, 80, 81);

  const ipcache = pinPath(env, "ipcache");
  const endpoints = pinPath(env, "endpoints");
  const ipKey = family0Ipcache();
  const epKey = family0Endpoint();
  const poisoned = Date.now();
  mapUpdate(ipcache, ipKey, ipcacheValue());
  mapUpdate(endpoints, epKey, endpointValue());
  await waitFor("both undecodable entries to be deleted", () => !holds(ipcache, ipKey) && !holds(endpoints, epKey), 15_000, 10);
  const repairMs = Date.now() - poisoned;
  t.diagnostic(`undecodable entries written → deleted by the daemon in ${repairMs} ms (resync every 1 s)`);

  // The daemon said so, as drift, naming each entry by its key bytes; and no run failed.
  await waitFor("the drift lines", () => log.includes(ipKey.toString("hex")) && log.includes(epKey.toString("hex")), 5000);
  const lines = log.split("\n");
  const ipLine = lines.find((l) => l.includes(ipKey.toString("hex")))!;
  assert.match(ipLine, /drift corrected/, ipLine);
  assert.match(ipLine, /op=delete/, ipLine);
  assert.match(ipLine, /resource=ipcache/, ipLine);
  assert.match(ipLine, /expected 4 or 6, got 0/, ipLine);
  assert.match(lines.find((l) => l.includes(epKey.toString("hex")))!, /resource=endpoint/);
  assert.doesNotMatch(log, /result=failed/, "no run failed");
  const after = await waitFor("a clean run after the repair", async () => {
    const s = await status();
    return s.lastRun && s.lastRun.finishedAt > poisoned && s.lastRun.result === "ok" && s.lastRun.drift === 0 && s.driftCorrections >= 2 ? s : undefined;
  }, 10_000, 20);
  assert.deepEqual(after.lastRun!.errors, []);

  // The next observation, from outside the daemon, is clean.
  const clean = await dryRunJson(env);
  assert.equal(clean.code, 0, show(clean.run));
  assert.deepEqual(clean.plan.changes, []);
  await expectSeedTraffic(env, 80, 81);

  // Stopped, with the entries written again: the one-shot commands read past them.
  daemon.child.kill("SIGTERM");
  const stopped = await daemon.done;
  assert.equal(stopped.code, 0, show(stopped));
  mapUpdate(ipcache, ipKey, ipcacheValue());
  mapUpdate(endpoints, epKey, endpointValue());
  const text = await reconcileSrc(env, ["--dry-run"]);
  assert.equal(text.code, 2, show(text));
  assert.doesNotMatch(text.stdout, /empty datapath/, text.stdout);
  assert.match(text.stdout, new RegExp(`^  - ipcache ${ipKey.toString("hex")} \\[undecodable key`, "m"), text.stdout);
  assert.match(text.stdout, new RegExp(`^  - endpoint ${epKey.toString("hex")} \\[undecodable key`, "m"), text.stdout);
  assert.match(text.stdout, /Plan: 0 to create, 0 to update, 2 to delete\./, text.stdout);
  const json = await dryRunJson(env);
  const del = json.plan.changes.find((c) => c.id === ipKey.toString("hex"));
  assert.deepEqual(del && { op: del.op, resource: del.resource, before: del.before }, {
    op: "delete",
    resource: "ipcache",
    before: { undecodable: "encode ipcache_key.family: expected 4 or 6, got 0", key: ipKey.toString("hex"), value: ipcacheValue().toString("hex") },
  });
  const inspected = await reconcile(env, ["inspect", "ipcache", "--output", "json"]);
  assert.equal(inspected.code, 0, show(inspected));
  assert.ok((JSON.parse(inspected.stdout) as Array<{ key?: string }>).some((r) => r.key === ipKey.toString("hex")), inspected.stdout);
  const eps = await reconcile(env, ["inspect", "endpoints"]);
  assert.equal(eps.code, 0, show(eps));
  const down = await reconcile(env, ["teardown"]);
  assert.equal(down.code, 0, show(down));
  assert.equal(existsSync(env.pinRoot), false, "teardown removed the pin root");
});
