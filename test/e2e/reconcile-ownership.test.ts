// Ownership: reconcile changes and removes only what it made. Foreign devices, tc filters, pins and
// a namespace that existed before survive apply and teardown; teardown removes all of reconcile's
// own devices, namespaces, pins and links. Also: a manifest change is planned exactly and applied,
// and an invalid manifest changes nothing.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import {
  SEED_IPS,
  connect,
  dryRunJson,
  expectSeedTraffic,
  makeEnv,
  parseBpfTrace,
  planOps,
  reconcile,
  reconcileSrc,
  requireTools,
  seedRuleWithPort,
  show,
  spawnSyncOk,
  startServer,
  waitFor,
  type Env,
} from "./helpers/reconcile.js";

function linkNames(netns: string): string[] {
  const links = JSON.parse(spawnSyncOk("ip", ["-j", "-n", netns, "link", "show"])) as Array<{ ifname: string }>;
  return links.map((l) => l.ifname).sort();
}

function tcFilters(netns: string, dev: string, dir: "ingress" | "egress"): Array<{ kind?: string; options?: { flowid?: string } }> {
  const out = spawnSyncOk("tc", ["-j", "-n", netns, "filter", "show", "dev", dev, dir]).trim();
  return out ? (JSON.parse(out) as Array<{ kind?: string }>) : [];
}

/** Foreign filters the test adds: u32 "match all" with classid 1:1 (this kernel has no matchall). */
function foreignFilterCount(netns: string, dev: string, dir: "ingress" | "egress"): number {
  return tcFilters(netns, dev, dir).filter((f) => f.kind === "u32" && f.options?.flowid === "1:1").length;
}

/** ids of the tcx links reconcile pinned, read through bpftool. */
function pinnedLinkIds(env: Env): number[] {
  const ids: number[] = [];
  const root = path.join(env.pinRoot, "links", "host");
  for (const dev of readdirSync(root)) {
    for (const hook of readdirSync(path.join(root, dev))) {
      const info = JSON.parse(spawnSyncOk("bpftool", ["-j", "link", "show", "pinned", path.join(root, dev, hook)])) as { id: number };
      ids.push(info.id);
    }
  }
  return ids;
}

function bpfObjectExists(kind: "link" | "map", id: number): boolean {
  return spawnSync("bpftool", [kind, "show", "id", String(id)], { stdio: "ignore" }).status === 0;
}

test("ownership: foreign objects survive apply and teardown; teardown removes all of reconcile's", async (t) => {
  requireTools("bpftool", "tc", "nsenter");
  const env = makeEnv(t, "own");
  const foreignPinOutside = `/sys/fs/bpf/rcf-${env.suffix}`;
  env.defer(() => rmSync(foreignPinOutside, { force: true }));

  // Before reconcile runs: a namespace named by app3 already exists (not reconcile's to delete),
  // a foreign veth pair with a clsact qdisc and a filter, foreign pins in and next to the pin root.
  spawnSyncOk("ip", ["netns", "add", env.netns.app3]);
  const fv = `fv-${env.suffix}`;
  spawnSyncOk("ip", ["-n", env.hostNs, "link", "add", fv, "type", "veth", "peer", "name", `fvp-${env.suffix}`]);
  spawnSyncOk("tc", ["-n", env.hostNs, "qdisc", "add", "dev", fv, "clsact"]);
  spawnSyncOk("tc", ["-n", env.hostNs, "filter", "add", "dev", fv, "ingress", "prio", "100", "u32", "match", "u32", "0", "0", "classid", "1:1"]);
  mkdirSync(env.pinRoot);
  const foreignPinInside = path.join(env.pinRoot, "foreign");
  for (const pin of [foreignPinInside, foreignPinOutside]) {
    spawnSyncOk("bpftool", ["map", "create", pin, "type", "hash", "key", "4", "value", "4", "entries", "4", "name", "foreign"]);
  }

  const applied = await reconcileSrc(env, ["--once"]);
  assert.equal(applied.code, 0, show(applied));
  // A filter someone adds to reconcile's own device (tcx and clsact coexist) is left alone too.
  spawnSyncOk("tc", ["-n", env.hostNs, "qdisc", "add", "dev", env.hostIf.app1, "clsact"]);
  spawnSyncOk("tc", ["-n", env.hostNs, "filter", "add", "dev", env.hostIf.app1, "ingress", "prio", "100", "u32", "match", "u32", "0", "0", "classid", "1:1"]);
  const again = await reconcileSrc(env, ["--once"]);
  assert.equal(again.code, 0, show(again));
  assert.match(again.stdout, /^No changes\./, "foreign objects must not appear as changes");

  assert.equal(foreignFilterCount(env.hostNs, fv, "ingress"), 1, "foreign filter on the foreign veth");
  assert.equal(foreignFilterCount(env.hostNs, env.hostIf.app1, "ingress"), 1, "foreign filter on reconcile's device");
  assert.ok(existsSync(foreignPinInside) && existsSync(foreignPinOutside));
  // The pre-existing namespace is used but not marked as reconcile's.
  assert.ok(linkNames(env.netns.app3).includes("eth0"));
  assert.deepEqual(readdirSync(path.join(env.pinRoot, "netns")).sort(), [env.netns.app1, env.netns.app2].sort());

  await startServer(env, env.netns.app1, SEED_IPS.app1, 80);
  assert.equal(await connect(env.netns.app2, SEED_IPS.app1, 80, 2), "ok", "the foreign filter must not disturb the datapath");

  const linkIds = pinnedLinkIds(env);
  assert.equal(linkIds.length, 6, "two links per endpoint");
  const mapIds = ["ipcache", "endpoints", "policy"].map(
    (m) => (JSON.parse(spawnSyncOk("bpftool", ["-j", "map", "show", "pinned", path.join(env.pinRoot, m)])) as { id: number }).id,
  );

  const down = await reconcile(env, ["teardown"]);
  assert.equal(down.code, 0, show(down));

  // reconcile's devices are gone, the foreign pair and its filter are not.
  assert.deepEqual(linkNames(env.hostNs), ["fv-" + env.suffix, "fvp-" + env.suffix, "lo"].sort());
  assert.equal(foreignFilterCount(env.hostNs, fv, "ingress"), 1);
  // Namespaces it created are deleted; the one that existed before stays, without reconcile's device.
  assert.ok(!existsSync(`/run/netns/${env.netns.app1}`) && !existsSync(`/run/netns/${env.netns.app2}`));
  assert.ok(existsSync(`/run/netns/${env.netns.app3}`), "teardown deleted a namespace it did not create");
  assert.deepEqual(linkNames(env.netns.app3), ["lo"]);
  // Pins: only the foreign ones remain (the pin root stays because it is not empty).
  assert.deepEqual(readdirSync(env.pinRoot), ["foreign"]);
  assert.ok(existsSync(foreignPinOutside));
  // Links and maps are released (the kernel frees them once the last reference is gone).
  await waitFor("links and maps released", () => linkIds.every((id) => !bpfObjectExists("link", id)) && mapIds.every((id) => !bpfObjectExists("map", id)), 5000, 50);

  // A second teardown has nothing left to do.
  const down2 = await reconcile(env, ["teardown"]);
  assert.equal(down2.code, 0, show(down2));
  assert.deepEqual(readdirSync(env.pinRoot), ["foreign"]);

  // Without the foreign pin, teardown leaves no trace at all: the empty pin root goes too.
  rmSync(foreignPinInside);
  const down3 = await reconcile(env, ["teardown"]);
  assert.equal(down3.code, 0, show(down3));
  assert.equal(existsSync(env.pinRoot), false, "teardown left the empty pin root");
});

test("ownership: a rule change is planned exactly and applied; an invalid manifest changes nothing", async (t) => {
  requireTools("bpftool", "strace", "python3", "nsenter");
  const env = makeEnv(t, "chg");
  const first = await reconcileSrc(env, ["--once"]);
  assert.equal(first.code, 0, show(first));
  await Promise.all([80, 81, 8080].map((p) => startServer(env, env.netns.app1, SEED_IPS.app1, p)));
  await expectSeedTraffic(env, 80, 81);

  // Port 80 → 8080 in the seed rule: exactly app1's entry for 80 goes and one for 8080 comes.
  writeFileSync(path.join(env.dir, "l3-rule.json"), seedRuleWithPort(8080));
  const dry = await dryRunJson(env);
  assert.equal(dry.code, 2, show(dry.run));
  assert.deepEqual(planOps(dry.plan), ["create policy app1/ingress/36895/6/8080/16", "delete policy app1/ingress/36895/6/80/16"]);
  const created = dry.plan.changes.find((c) => c.op === "create")!;
  assert.deepEqual(created.after, {
    endpoint: "app1",
    direction: "ingress",
    identity: 36895,
    protocol: 6,
    port: 8080,
    endPort: 8080,
    decision: "allow",
    audit: false, // an enforced entry (docs/audit.md)
    rule: { file: "l3-rule.json", line: 2, name: "l3-rule" },
    rules: [{ file: "l3-rule.json", line: 2, name: "l3-rule" }],
    // The names beside the numbers (issue 19): what the identity and the protocol stand for.
    protocolName: "TCP",
    peer: { kind: "endpoint", names: ["app2"] },
  });
  const goodRevision = dry.plan.revision;
  const apply = await reconcileSrc(env, ["--once"]);
  assert.equal(apply.code, 0, show(apply));
  assert.match(apply.stdout, /1 created, 0 updated, 1 deleted/);
  await expectSeedTraffic(env, 8080, 80);

  // An invalid snapshot (a bad endpoint next to another rule change) is refused whole: exit 1,
  // file:line of the problem, and not one bpf write.
  writeFileSync(path.join(env.dir, "l3-rule.json"), seedRuleWithPort(9090));
  writeFileSync(path.join(env.dir, "bad.yaml"), "apiVersion: reconcile/v1\nkind: Endpoint\nmetadata:\n  name: app4\nspec:\n  ipv4: 10.11.999.4\n  interface:\n    name: lx4-" + env.suffix + "\n");
  const trace = path.join(env.tmp, "invalid.strace");
  const bad = await reconcileSrc(env, ["--once"], { strace: trace });
  assert.equal(bad.code, 1, show(bad));
  assert.match(bad.stderr, /^bad\.yaml:6: Endpoint\/app4: spec\.ipv4: /m);
  assert.match(bad.stderr, /nothing was applied/);
  assert.deepEqual(parseBpfTrace(readFileSync(trace, "utf8")).writes, []);
  const badDry = await reconcileSrc(env, ["--dry-run"]);
  assert.equal(badDry.code, 1, show(badDry));

  // Back to the last good manifests: the kernel still matches them exactly, traffic as before.
  rmSync(path.join(env.dir, "bad.yaml"));
  writeFileSync(path.join(env.dir, "l3-rule.json"), seedRuleWithPort(8080));
  const after = await dryRunJson(env);
  assert.equal(after.code, 0, show(after.run));
  assert.equal(after.plan.revision, goodRevision);
  assert.deepEqual(after.plan.changes, []);
  await expectSeedTraffic(env, 8080, 80);
});

test("ownership: one change that turns an allow into a deny and drops another allow of the same endpoint", async (t) => {
  requireTools("bpftool", "python3", "nsenter");
  const env = makeEnv(t, "upd");
  const rule = (allow: number[], deny: number[]) =>
    JSON.stringify([
      {
        endpointSelector: { matchLabels: { "any:id": "app1" } },
        ...(allow.length ? { ingress: [{ fromEndpoints: [{ matchLabels: { "any:id": "app2" } }], toPorts: [{ ports: allow.map((p) => ({ port: String(p), protocol: "TCP" })) }] }] } : {}),
        ...(deny.length ? { ingressDeny: [{ fromEndpoints: [{ matchLabels: { "any:id": "app2" } }], toPorts: [{ ports: deny.map((p) => ({ port: String(p), protocol: "TCP" })) }] }] } : {}),
        labels: [{ key: "name", value: "l3-rule", source: "" }],
      },
    ]);
  writeFileSync(path.join(env.dir, "l3-rule.json"), rule([80, 81], []));
  const first = await reconcileSrc(env, ["--once"]);
  assert.equal(first.code, 0, show(first));
  await Promise.all([80, 81].map((p) => startServer(env, env.netns.app1, SEED_IPS.app1, p)));
  assert.deepEqual(await Promise.all([80, 81].map((p) => connect(env.netns.app2, SEED_IPS.app1, p, 2))), ["ok", "ok"]);

  writeFileSync(path.join(env.dir, "l3-rule.json"), rule([], [80]));
  const dry = await dryRunJson(env);
  assert.equal(dry.code, 2, show(dry.run));
  assert.deepEqual(planOps(dry.plan), ["delete policy app1/ingress/36895/6/81/16", "update policy app1/ingress/36895/6/80/16"]);
  const apply = await reconcileSrc(env, ["--once"]);
  // The update swaps in a complete new inner map; the delete, planned as a separate batch, then
  // finds its key already gone, which must count as done (at 28d570d..c012007 this run exited 1 with
  // "delete map policy.inner: bpf(BPF_MAP_DELETE_BATCH): ENOENT").
  assert.equal(apply.code, 0, show(apply));
  assert.match(apply.stdout, /0 created, 1 updated, 1 deleted; 2 ok, 0 failed/);
  const after = await dryRunJson(env);
  assert.equal(after.code, 0, show(after.run));
  assert.deepEqual(
    await Promise.all([80, 81].map((p) => connect(env.netns.app2, SEED_IPS.app1, p, 0.5))),
    ["timeout", "timeout"],
    "deny on 80 and nothing on 81 (default deny)",
  );
});
