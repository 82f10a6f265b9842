// macvlan endpoints (create.kind: macvlan, bridge mode on a parent device): reconcile creates them in
// their namespaces and attaches the programs inside those namespaces with the hooks swapped
// (to_endpoint on the device's ingress). The policy is enforced between endpoints on one parent.

import assert from "node:assert/strict";
import { readdirSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { connect, makeEnv, reconcile, reconcileSrc, requireTools, show, spawnSyncOk, startServer } from "./helpers/reconcile.js";

const IP = { web: "10.11.5.1", cli: "10.11.5.2", bad: "10.11.5.3" } as const;

test("macvlan: endpoints on one parent, programs inside their namespaces, policy enforced", async (t) => {
  requireTools("python3", "nsenter");
  const env = makeEnv(t, "mv");
  // The parent: a veth end in the private host namespace (this kernel has no dummy devices).
  const parent = `mvp-${env.suffix}`;
  spawnSyncOk("ip", ["-n", env.hostNs, "link", "add", parent, "type", "veth", "peer", "name", `mvq-${env.suffix}`]);
  spawnSyncOk("ip", ["-n", env.hostNs, "link", "set", parent, "up"]);
  spawnSyncOk("ip", ["-n", env.hostNs, "link", "set", `mvq-${env.suffix}`, "up"]);

  for (const f of readdirSync(env.dir)) rmSync(path.join(env.dir, f));
  const ns = (name: keyof typeof IP) => `rm-${name}-${env.suffix}`;
  const endpoint = (name: keyof typeof IP) =>
    [
      "apiVersion: reconcile/v1",
      "kind: Endpoint",
      `metadata: {name: ${name}, labels: {app: ${name}}}`,
      "spec:",
      `  ipv4: ${IP[name]}`,
      `  interface: {name: eth0, create: {kind: macvlan, parent: ${parent}, netns: ${ns(name)}, ifname: eth0}}`,
    ].join("\n");
  const rule = [
    "apiVersion: reconcile/v1",
    "kind: Rule",
    "metadata: {name: web-from-cli}",
    "spec:",
    "  endpointSelector: {matchLabels: {app: web}}",
    "  ingress:",
    "  - fromEndpoints: [{matchLabels: {app: cli}}]",
    '    toPorts: [{ports: [{port: "80", protocol: TCP}]}]',
  ].join("\n");
  writeFileSync(path.join(env.dir, "macvlan.yaml"), [endpoint("web"), endpoint("cli"), endpoint("bad"), rule].join("\n---\n") + "\n");

  const first = await reconcileSrc(env, ["--once"]);
  assert.equal(first.code, 0, show(first));
  // The device lives in the endpoint's namespace, is a macvlan in bridge mode, and carries the
  // programs: the endpoint's ingress policy on the device's ingress hook.
  const link = JSON.parse(spawnSyncOk("ip", ["-n", ns("web"), "-d", "-j", "link", "show", "eth0"]))[0] as { linkinfo?: { info_kind?: string; info_data?: { mode?: string } } };
  assert.equal(link.linkinfo?.info_kind, "macvlan");
  assert.equal(link.linkinfo?.info_data?.mode, "bridge");
  const links = await reconcile(env, ["inspect", "links", "--source", env.dir, "--output", "json"]);
  assert.equal(links.code, 0, show(links));
  const ours = (JSON.parse(links.stdout) as Array<{ device: string; netns?: string; hook: string; program: string }>).filter((l) => l.netns === ns("web"));
  assert.deepEqual(ours.map((l) => `${l.hook} ${l.program}`).sort(), ["egress from_endpoint", "ingress to_endpoint"]);

  await startServer(env, ns("web"), IP.web, 80);
  assert.equal(await connect(ns("cli"), IP.web, 80, 2), "ok");
  assert.equal(await connect(ns("bad"), IP.web, 80, 1), "timeout");

  const again = await reconcileSrc(env, ["--dry-run"]);
  assert.equal(again.code, 0, show(again));
  assert.match(again.stdout, /No changes/);

  const down = await reconcile(env, ["teardown"]);
  assert.equal(down.code, 0, show(down));
  const left = readdirSync("/run/netns").filter((n) => n.startsWith("rm-") && n.endsWith(env.suffix));
  assert.deepEqual(left, [], "teardown removes the namespaces it created");
  t.diagnostic(`parent ${parent} kept: ${spawnSyncOk("ip", ["-n", env.hostNs, "-br", "link", "show", parent]).trim()}`);
});
