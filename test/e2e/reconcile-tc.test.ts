// The legacy attach path (--attach-mode tc: clsact + cls_bpf direct-action filters) end to end: the
// seed is enforced, a second run changes nothing, a foreign filter is left alone, and teardown
// removes reconcile's filters also from an adopted interface (which it does not delete).

import assert from "node:assert/strict";
import { appendFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { expectSeedTraffic, makeEnv, reconcile, reconcileSrc, requireTools, show, spawnSyncOk, SEED_IPS, startServer } from "./helpers/reconcile.js";

/** Names of the tc filters on a device hook that carry reconcile's name. */
function ourFilters(netns: string, device: string, hook: "ingress" | "egress"): string[] {
  const filters = JSON.parse(spawnSyncOk("tc", ["-n", netns, "-j", "filter", "show", "dev", device, hook]) || "[]") as Array<{ options?: { bpf_name?: string } }>;
  return filters.map((f) => f.options?.bpf_name ?? "").filter((n) => n.startsWith("reconcile:"));
}

test("tc mode: enforced, idempotent, foreign filters kept, teardown cleans adopted interfaces too", async (t) => {
  requireTools("tc", "python3", "nsenter");
  const env = makeEnv(t, "tc");
  // An interface reconcile adopts (no `create`): it attaches to it, and must never delete it.
  const adopted = `ad-${env.suffix}`;
  spawnSyncOk("ip", ["-n", env.hostNs, "link", "add", adopted, "type", "veth", "peer", "name", `adp-${env.suffix}`]);
  appendFileSync(
    path.join(env.dir, "endpoints.yaml"),
    ["---", "apiVersion: reconcile/v1", "kind: Endpoint", "metadata:", "  name: adopted", "  labels: {app: adopted}", "spec:", "  ipv4: 10.11.7.7", "  interface:", `    name: ${adopted}`, ""].join("\n"),
  );
  const tc = ["--attach-mode", "tc"];

  const first = await reconcileSrc(env, ["--once", ...tc]);
  assert.equal(first.code, 0, show(first));
  assert.deepEqual(ourFilters(env.hostNs, env.hostIf.app1, "egress"), ["reconcile:to_endpoint"]);
  assert.deepEqual(ourFilters(env.hostNs, env.hostIf.app1, "ingress"), ["reconcile:from_endpoint"]);
  assert.deepEqual(ourFilters(env.hostNs, adopted, "egress"), ["reconcile:to_endpoint"]);
  // A filter someone else puts next to ours stays through every run.
  spawnSyncOk("tc", ["-n", env.hostNs, "filter", "add", "dev", adopted, "ingress", "prio", "100", "u32", "match", "u32", "0", "0", "classid", "1:1"]);

  await Promise.all([startServer(env, env.netns.app1, SEED_IPS.app1, 80), startServer(env, env.netns.app1, SEED_IPS.app1, 81)]);
  await expectSeedTraffic(env);

  const again = await reconcileSrc(env, ["--dry-run", ...tc]);
  assert.equal(again.code, 0, show(again));
  assert.match(again.stdout, /No changes/);

  const down = await reconcile(env, ["teardown"]);
  assert.equal(down.code, 0, show(down));
  assert.deepEqual(ourFilters(env.hostNs, adopted, "egress"), [], "teardown left reconcile's filter on the adopted interface");
  assert.deepEqual(ourFilters(env.hostNs, adopted, "ingress"), []);
  assert.match(spawnSyncOk("ip", ["-n", env.hostNs, "link", "show", adopted]), new RegExp(adopted), "the adopted interface itself stays");
  assert.match(spawnSyncOk("tc", ["-n", env.hostNs, "filter", "show", "dev", adopted, "ingress"]), /u32/, "the foreign filter stays");
});
