// Drift: someone changes the datapath behind reconcile's back. Each kind of tamper must show up in
// `--dry-run --output json` as exactly the tampered object with the right op (exit 2), and
// `--once` must put it back so that traffic behaves as the seed says again. Because every tamper's
// plan is compared exactly, it also proves that the previous `--once` left nothing behind.
import { test } from "node:test";
import assert from "node:assert/strict";
import { unlinkSync } from "node:fs";
import path from "node:path";
import {
  encodeEndpointKey,
  encodeIpcacheKey,
  encodeIpcacheValue,
  encodePolicyKey,
  encodePolicyValue,
  ENDPOINT_KEY,
  ENDPOINT_INFO,
  IPCACHE_KEY,
  IPCACHE_VALUE,
  POLICY_KEY,
  POLICY_VALUE,
} from "../../reconciler/datapath/layouts.js";
import type { PolicyKey } from "../../reconciler/datapath/layouts.js";
import {
  APP2_IDENTITY,
  SEED_ALLOW_ID,
  SEED_IPS,
  connect,
  dryRunJson,
  expectSeedTraffic,
  innerPolicyMap,
  kernelEndpoints,
  makeEnv,
  mapDelete,
  mapDump,
  mapUpdate,
  pinPath,
  planOps,
  reconcileSrc,
  requireTools,
  show,
  spawnSyncOk,
  startServer,
  waitFor,
  type ConnectResult,
  type Env,
} from "./helpers/reconcile.js";

const SEED_ALLOW_KEY: PolicyKey = { identity: APP2_IDENTITY, direction: "ingress", protocol: 6, port: 80, portPrefixLen: 16 };

function policyKey(k: PolicyKey): Buffer {
  const b = Buffer.alloc(POLICY_KEY.size);
  encodePolicyKey(k, b, 0);
  return b;
}
function policyValue(k: PolicyKey, decision: "allow" | "deny"): Buffer {
  const b = Buffer.alloc(POLICY_VALUE.size);
  encodePolicyValue(decision, encodePolicyKey(k, Buffer.alloc(POLICY_KEY.size), 0), b, 0);
  return b;
}
function ipcacheKey(prefix: string): Buffer {
  const b = Buffer.alloc(IPCACHE_KEY.size);
  encodeIpcacheKey(prefix, b, 0);
  return b;
}
function ipcacheValue(identity: number): Buffer {
  const b = Buffer.alloc(IPCACHE_VALUE.size);
  encodeIpcacheValue({ identity }, b, 0);
  return b;
}
function endpointKey(address: string): Buffer {
  const b = Buffer.alloc(ENDPOINT_KEY.size);
  encodeEndpointKey(address, b, 0);
  return b;
}

interface Tamper {
  name: string;
  /** Changes the kernel behind reconcile's back. */
  apply(env: Env): void;
  /** The plan expected from --dry-run: "op resource id", sorted. */
  expected(env: Env): string[];
  /** A flow that the tamper must visibly break (proves it reached the datapath), with its result. */
  broken?: { flow: (env: Env) => Promise<ConnectResult>; result: ConnectResult };
}

const app2ToApp1 = (port: number, timeoutS: number) => (env: Env) => connect(env.netns.app2, SEED_IPS.app1, port, timeoutS);
const app3ToApp1 = (port: number, timeoutS: number) => (env: Env) => connect(env.netns.app3, SEED_IPS.app1, port, timeoutS);

const TAMPERS: Tamper[] = [
  {
    name: "policy entry deleted",
    apply: (env) => mapDelete(innerPolicyMap(env, "app1"), policyKey(SEED_ALLOW_KEY)),
    expected: () => [`create policy ${SEED_ALLOW_ID}`],
    broken: { flow: app2ToApp1(80, 0.5), result: "timeout" },
  },
  {
    name: "policy entry modified (allow → deny)",
    apply: (env) => mapUpdate(innerPolicyMap(env, "app1"), policyKey(SEED_ALLOW_KEY), policyValue(SEED_ALLOW_KEY, "deny")),
    expected: () => [`update policy ${SEED_ALLOW_ID}`],
    broken: { flow: app2ToApp1(80, 0.5), result: "timeout" },
  },
  {
    name: "foreign policy entry added",
    apply: (env) => {
      const k: PolicyKey = { identity: 4242, direction: "ingress", protocol: 17, port: 53, portPrefixLen: 16 };
      mapUpdate(innerPolicyMap(env, "app1"), policyKey(k), policyValue(k, "allow"));
    },
    expected: () => ["delete policy app1/ingress/4242/17/53/16"],
  },
  {
    name: "foreign policy entry with an identity beyond the key space (2^25) added",
    apply: (env) => {
      const k: PolicyKey = { identity: 0xfffffff0, direction: "ingress", protocol: 6, port: 80, portPrefixLen: 16 };
      mapUpdate(innerPolicyMap(env, "app1"), policyKey(k), policyValue(k, "allow"));
    },
    expected: () => ["update policy app1/*"],
  },
  {
    name: "ipcache entry deleted",
    apply: (env) => mapDelete(pinPath(env, "ipcache"), ipcacheKey(`${SEED_IPS.app2}/32`)),
    expected: () => [`create ipcache ${SEED_IPS.app2}/32`],
    broken: { flow: app2ToApp1(80, 0.5), result: "timeout" },
  },
  {
    name: "ipcache entry modified (identity changed)",
    apply: (env) => mapUpdate(pinPath(env, "ipcache"), ipcacheKey(`${SEED_IPS.app2}/32`), ipcacheValue(12345)),
    expected: () => [`update ipcache ${SEED_IPS.app2}/32`],
    broken: { flow: app2ToApp1(80, 0.5), result: "timeout" },
  },
  {
    name: "foreign ipcache entry added",
    apply: (env) => mapUpdate(pinPath(env, "ipcache"), ipcacheKey("10.99.0.0/16"), ipcacheValue(7777)),
    expected: () => ["delete ipcache 10.99.0.0/16"],
  },
  {
    name: "endpoints entry deleted",
    apply: (env) => mapDelete(pinPath(env, "endpoints"), endpointKey(SEED_IPS.app1)),
    expected: () => [`create endpoint ${SEED_IPS.app1}`],
  },
  {
    name: "endpoints entry modified (identity changed)",
    apply: (env) => {
      const row = mapDump(pinPath(env, "endpoints")).find((e) => e.key.equals(endpointKey(SEED_IPS.app1)));
      assert.ok(row, "app1 has no endpoints entry");
      const value = Buffer.from(row.value);
      value.writeUInt32LE(value.readUInt32LE(8) + 1, 8); // endpoint_info.identity
      mapUpdate(pinPath(env, "endpoints"), row.key, value);
    },
    expected: () => [`update endpoint ${SEED_IPS.app1}`],
  },
  {
    name: "foreign endpoints entry added",
    apply: (env) => {
      const value = Buffer.alloc(ENDPOINT_INFO.size);
      value.writeUInt32LE(999, 4);
      value.writeUInt32LE(4242, 8);
      mapUpdate(pinPath(env, "endpoints"), endpointKey("10.99.0.1"), value);
    },
    expected: () => ["delete endpoint 10.99.0.1"],
  },
  {
    name: "program detached (pinned link unlinked)",
    apply: (env) => unlinkSync(path.join(env.pinRoot, "links", "host", env.hostIf.app1, "egress")),
    expected: (env) => [`create attachment ${env.hostIf.app1}/egress`],
    // app1's ingress policy runs on its host-side veth's egress: without it app3 gets in.
    broken: { flow: app3ToApp1(80, 2), result: "ok" },
  },
  {
    name: "address changed in an endpoint namespace",
    // New address first: removing a device's last IPv4 address makes the kernel drop its routes too.
    apply: (env) => {
      spawnSyncOk("ip", ["-n", env.netns.app1, "addr", "add", "10.11.255.105/32", "dev", "eth0"]);
      spawnSyncOk("ip", ["-n", env.netns.app1, "addr", "del", `${SEED_IPS.app1}/32`, "dev", "eth0"]);
    },
    broken: { flow: app2ToApp1(80, 0.5), result: "timeout" },
    expected: (env) => [`create address ${env.netns.app1}/eth0/${SEED_IPS.app1}/32`, `delete address ${env.netns.app1}/eth0/10.11.255.105/32`].sort(),
  },
  {
    name: "route deleted in an endpoint namespace",
    apply: (env) => spawnSyncOk("ip", ["-n", env.netns.app1, "route", "del", "default"]),
    expected: (env) => [`create route ${env.netns.app1}/default`],
    // app1's replies have no route back.
    broken: { flow: app2ToApp1(80, 0.5), result: "timeout" },
  },
  {
    name: "host-side device set down",
    apply: (env) => spawnSyncOk("ip", ["-n", env.hostNs, "link", "set", env.hostIf.app1, "down"]),
    // The kernel drops the routes through a device that goes down.
    expected: (env) => [`create route ${SEED_IPS.app1}/32`, `update device ${env.hostIf.app1}`].sort(),
    broken: { flow: app2ToApp1(80, 0.5), result: "timeout" },
  },
  {
    name: "host-side device deleted",
    apply: (env) => spawnSyncOk("ip", ["-n", env.hostNs, "link", "del", env.hostIf.app1]),
    // The pair goes, and with it everything on it: addresses, routes, attachments.
    expected: (env) =>
      [
        `create device ${env.hostIf.app1}`,
        `create device ${env.netns.app1}/eth0`,
        `create address ${env.hostIf.app1}/169.254.1.1/32`,
        `create address ${env.netns.app1}/eth0/${SEED_IPS.app1}/32`,
        `create route ${SEED_IPS.app1}/32`,
        `create route ${env.netns.app1}/169.254.1.1/32`,
        `create route ${env.netns.app1}/default`,
        `create attachment ${env.hostIf.app1}/egress`,
        `create attachment ${env.hostIf.app1}/ingress`,
      ].sort(),
  },
];

test("drift: every tamper is planned exactly by --dry-run and corrected by --once", async (t) => {
  requireTools("bpftool", "python3", "nsenter");
  const env = makeEnv(t, "drift");
  const first = await reconcileSrc(env, ["--once"]);
  assert.equal(first.code, 0, show(first));
  assert.ok(kernelEndpoints(env).has(SEED_IPS.app1));

  // The app1 servers live in its namespace, which survives the device tamper (only the veth goes).
  await Promise.all([startServer(env, env.netns.app1, SEED_IPS.app1, 80), startServer(env, env.netns.app1, SEED_IPS.app1, 81)]);
  await expectSeedTraffic(env);

  for (const tamper of TAMPERS) {
    await t.test(tamper.name, async () => {
      tamper.apply(env);
      if (tamper.broken) {
        const { flow, result } = tamper.broken;
        await waitFor(`the tamper to show in traffic (${result})`, async () => (await flow(env)) === result, 5000, 50);
      }
      const dry = await dryRunJson(env);
      assert.equal(dry.code, 2, `dry-run must find the tamper: ${show(dry.run)}`);
      assert.deepEqual(planOps(dry.plan), tamper.expected(env));

      const fix = await reconcileSrc(env, ["--once"]);
      assert.equal(fix.code, 0, show(fix));
      await expectSeedTraffic(env);
    });
  }

  const dry = await reconcileSrc(env, ["--dry-run"]);
  assert.equal(dry.code, 0, show(dry));
  assert.match(dry.stdout, /No changes/);
});
