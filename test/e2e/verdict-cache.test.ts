// The verdict cache through the built binary, judged by real traffic: an established allowed TCP
// connection (app2 → app1:80, a message every 50 ms) rides on the allow cached in its conntrack
// entry, and once the rule is removed and reconcile has applied the change (which bumps the policy
// revision), the connection's next packets are dropped. Once with `--once`, once through the
// running daemon watching the manifest directory. A second reconcile plans nothing (policy_rev's
// contents are reconcile's counter, not desired state).

import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import path from "node:path";
import * as L from "../../reconciler/datapath/layouts.js";
import { BpfMap } from "../../reconciler/ebpf-loader/index.js";
import { ECHO_SERVER, LONG_CLIENT, type ClientSummary } from "./helpers/long-connection.js";
import {
  SEED_IPS,
  connect,
  daemonStatus,
  dryRunJson,
  killAndWait,
  makeEnv,
  pinPath,
  planOps,
  reconcileSrc,
  requireTools,
  seedRuleWithPort,
  show,
  spawnOwned,
  spawnReconcile,
  waitFor,
  type Env,
} from "./helpers/reconcile.js";

function policyRev(env: Env): number {
  const m = BpfMap.openPinned(pinPath(env, "policy_rev"));
  try {
    return m.lookup(Buffer.alloc(4))!.readUInt32LE(0);
  } finally {
    m.close();
  }
}

/** The conntrack entry of the forward tuple local → app1:80 ("10.11.90.17:40123"). */
function ctEntry(env: Env, local: string): L.CtValue | undefined {
  const [addr, port] = local.split(":");
  const k = Buffer.alloc(L.CT_KEY.size);
  L.encodeCtKey({ saddr: addr!, daddr: SEED_IPS.app1, sport: Number(port), dport: 80, protocol: 6 }, k, 0);
  const m = BpfMap.openPinned(pinPath(env, "conntrack"));
  try {
    const v = m.lookup(k);
    return v ? L.decodeCtValue(v, 0) : undefined;
  } finally {
    m.close();
  }
}

interface LongConnection {
  /** Echoes so far. */
  echoes(): number;
  /** Resolves with the summary once the client has stopped (first failure, or 60 s). */
  done: Promise<ClientSummary>;
  /** Waits until n more echoes crossed the datapath. */
  more(what: string, n: number): Promise<void>;
  exited(): boolean;
}

/** Echo server in app1 on TCP/80 and one long-lived connection from app2. */
async function longConnection(env: Env): Promise<LongConnection> {
  const server = spawnOwned(env, "ip", ["netns", "exec", env.netns.app1, "python3", "-c", ECHO_SERVER, SEED_IPS.app1, "80"]);
  await waitFor("the echo server", async () => {
    if (server.exitCode !== null) throw new Error(`echo server exited ${server.exitCode}`);
    return (await connect(env.netns.app2, SEED_IPS.app1, 80, 1)) === "ok";
  }, 15_000, 100);
  const client = spawnOwned(env, "ip", ["netns", "exec", env.netns.app2, "python3", "-c", LONG_CLIENT, SEED_IPS.app1, "80", path.join(env.tmp, "stop-client")]);
  let out = "";
  let err = "";
  client.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  client.stderr!.on("data", (d: Buffer) => (err += d.toString()));
  const done = new Promise<ClientSummary>((resolve, reject) =>
    client.on("close", () => {
      const last = out.trim().split("\n").at(-1) ?? "";
      try {
        resolve(JSON.parse(last) as ClientSummary);
      } catch {
        reject(new Error(`client ended without a summary: ${out.slice(-300)} ${err}`));
      }
    }),
  );
  const echoes = (): number => Number(/(\d+)\n(?!.*\d)/s.exec(out)?.[1] ?? 0);
  const c: LongConnection = {
    echoes,
    done,
    exited: () => client.exitCode !== null,
    more: async (what, n) => {
      const from = echoes();
      await waitFor(`${n} more echoes ${what}`, () => {
        if (client.exitCode !== null) throw new Error(`client exited ${client.exitCode} ${what}: ${out.slice(-500)} ${err}`);
        return echoes() >= from + n;
      }, 10_000, 10);
    },
  };
  await c.more("on the new connection", 5);
  return c;
}

/** The connection's allow is cached in its conntrack entry under the current revision. */
async function expectCached(env: Env, conn: LongConnection, t: TestContext): Promise<{ rev: number; local: string }> {
  const rev = policyRev(env);
  assert.notEqual(rev, 0, "policy_rev seeded");
  // The client's local address: the only app2 → app1:80 flow whose entry keeps counting.
  const ss = spawnSync("ip", ["netns", "exec", env.netns.app2, "ss", "-tnH", "state", "established", `dst ${SEED_IPS.app1}:80`], { encoding: "utf8" }).stdout;
  const local = ss.trim().split(/\s+/).find((f) => f.startsWith(`${SEED_IPS.app2}:`));
  assert.ok(local, `no established connection in app2: ${ss}`);
  await conn.more("before looking at its conntrack entry", 2);
  const ct = ctEntry(env, local);
  assert.ok(ct, `no conntrack entry for ${local} → app1:80`);
  assert.deepEqual(ct.verdict!.ingress, { rev, identity: 36895, prefixlen: L.POLICY_PREFIX_FULL }, "app1's ingress allow cached under the current revision");
  t.diagnostic(`policy_rev ${rev}; ${local} → app1:80 conntrack: ${ct.packets} packets, ingress verdict cached at rev ${ct.verdict!.ingress.rev}`);
  return { rev, local };
}

test("verdict cache, --once: removing the rule cuts the established connection once reconcile applies; a second run plans nothing", async (t) => {
  requireTools("bpftool", "python3", "nsenter", "ss");
  const env = makeEnv(t, "vcache");
  const once = await reconcileSrc(env, ["--once"]);
  assert.equal(once.code, 0, show(once));
  const idle = await dryRunJson(env);
  assert.equal(idle.code, 0, show(idle.run));
  assert.deepEqual(planOps(idle.plan), [], "steady state: no change, policy_rev included");

  const conn = await longConnection(env);
  const { rev } = await expectCached(env, conn, t);
  const noop = await reconcileSrc(env, ["--once"]);
  assert.equal(noop.code, 0, show(noop));
  assert.equal(policyRev(env), rev, "a run that writes nothing leaves the revision (and the cached verdicts) alone");
  await conn.more("after a no-op run", 3);

  // The rule now allows TCP/8080 instead of TCP/80.
  writeFileSync(path.join(env.dir, "l3-rule.json"), seedRuleWithPort(8080));
  await conn.more("before the change is applied", 3); // a saved file is not enforced: reconcile applies it
  const change = await reconcileSrc(env, ["--once"]);
  assert.equal(change.code, 0, show(change));
  assert.notEqual(policyRev(env), rev, "the policy write bumped the revision");
  const summary = await waitFor("the established connection to stop", () => conn.exited() && conn.done, 10_000, 20);
  const s = await summary;
  t.diagnostic(`long-lived connection after the rule removal: ${s.ok}/${s.sent} echoes, stopped: ${s.reason}`);
  assert.equal(s.failures, 1);
  assert.match(s.reason ?? "", /no echo within 1 s/, "dropped, not reset");
  assert.equal(await connect(env.netns.app2, SEED_IPS.app1, 80, 1), "timeout", "new connections are dropped too");
  const again = await dryRunJson(env);
  assert.equal(again.code, 0, show(again.run));
  assert.deepEqual(planOps(again.plan), []);
});

test("verdict cache, daemon: the rule removed in the watched directory cuts the established connection once the daemon applies it; put back, it connects again", async (t) => {
  requireTools("bpftool", "python3", "nsenter", "ss");
  const env = makeEnv(t, "vcached");
  const socket = path.join(env.tmp, "reconcile.sock");
  const daemon = spawnReconcile(env, ["--source", env.dir, "--socket", socket], { timeoutMs: 170_000 });
  env.defer(() => killAndWait(daemon.child));
  let log = "";
  daemon.child.stderr!.on("data", (d: Buffer) => (log += d.toString()));
  type Status = { appliedRevision: string | null; runs: number };
  const status = () => daemonStatus<Status>(socket).catch(() => undefined);
  const ready = await waitFor("the daemon to apply the seed", async () => {
    if (daemon.child.exitCode !== null) throw new Error(`daemon exited ${daemon.child.exitCode}: ${log}`);
    const s = await status();
    return s?.appliedRevision ? s : undefined;
  }, 30_000, 50);

  const conn = await longConnection(env);
  const { rev } = await expectCached(env, conn, t);

  const saved = Date.now();
  writeFileSync(path.join(env.dir, "l3-rule.json"), seedRuleWithPort(8080));
  const applied = await waitFor("the daemon to apply the edit", async () => {
    if (daemon.child.exitCode !== null) throw new Error(`daemon exited ${daemon.child.exitCode}: ${log}`);
    const s = await status();
    return s?.appliedRevision && s.appliedRevision !== ready.appliedRevision ? s : undefined;
  }, 15_000, 10);
  const appliedMs = Date.now() - saved;
  assert.notEqual(policyRev(env), rev, "the daemon bumped the revision after its policy writes");
  const s = await (await waitFor("the established connection to stop", () => conn.exited() && conn.done, 10_000, 20));
  t.diagnostic(`saved → applied ${appliedMs} ms (revision ${applied.appliedRevision}); connection: ${s.ok}/${s.sent} echoes, stopped: ${s.reason}`);
  assert.match(s.reason ?? "", /no echo within 1 s/);
  assert.equal(await connect(env.netns.app2, SEED_IPS.app1, 80, 1), "timeout");

  // The rule back: a new connection works again (and app3 stays out).
  writeFileSync(path.join(env.dir, "l3-rule.json"), seedRuleWithPort(80));
  await waitFor("app2 → app1:80 allowed again", async () => (await connect(env.netns.app2, SEED_IPS.app1, 80, 1)) === "ok", 15_000, 50);
  assert.equal(await connect(env.netns.app3, SEED_IPS.app1, 80, 0.5), "timeout");
});
