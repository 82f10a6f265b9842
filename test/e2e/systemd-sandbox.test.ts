// The daemon in the real sandbox of systemd/reconcile.service: every [Service] line of the unit
// file (capabilities, seccomp filter, namespaces, protected paths, ...) except the few that only
// concern restarts and where settings come from, applied by systemd to a transient unit, on the
// seed. systemd-run returns once the daemon said READY=1 (Type=notify: after its first good
// reconcile), then real traffic must follow the policy. A hardening line that breaks the daemon
// makes the start fail (or the traffic wrong), and so this test.
//
// systemd runs privately for this test (helpers/systemd.ts explains why and how).
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import path from "node:path";
import {
  REPO,
  SEED_EXPECTED,
  SEED_IPS,
  cliCommand,
  connect,
  killAndWait,
  makeEnv,
  requireTools,
  spawnSyncOk,
  waitFor,
  type SeedTraffic,
} from "./helpers/reconcile.js";
import { privateSystemdUnavailable, serviceProperties, startPrivateSystemd } from "./helpers/systemd.js";

const UNIT = path.join(REPO, "systemd", "reconcile.service");
const INSTALLED_BIN = "/usr/local/bin/reconcile";
/** Not part of the sandbox: ExecStart is the command below; a failing start must fail, not
 *  restart; settings come from this test, not from the host's /etc/reconcile/reconcile.env. */
const NOT_SANDBOX = new Set(["ExecStart", "ExecReload", "Restart", "RestartSec", "EnvironmentFile"]);

const unavailable = privateSystemdUnavailable();

test("the daemon runs in the unit's sandbox: ready, datapath built, traffic follows the seed policy", { skip: unavailable ?? false }, async (t) => {
  requireTools("bpftool", "python3", "nsenter", "ip");
  const env = makeEnv(t, "sandbox");
  const props = serviceProperties(readFileSync(UNIT, "utf8"));
  const execStart = props.find(([k]) => k === "ExecStart")?.[1];
  assert.ok(execStart?.startsWith(`${INSTALLED_BIN} `), `ExecStart=${execStart}`);

  // PrivateTmp= hides the test's /tmp from the service: its files live in the repo's .tmp/.
  const scratch = path.join(REPO, ".tmp", `sandbox-${env.suffix}`);
  mkdirSync(scratch, { recursive: true });
  env.defer(() => rmSync(scratch, { recursive: true, force: true }));
  const manifests = path.join(scratch, "manifests");
  cpSync(env.dir, manifests, { recursive: true });
  const logFile = path.join(scratch, "service.log");
  const serviceLog = () => (existsSync(logFile) ? readFileSync(logFile, "utf8") : "(no log)");

  // The clients' namespaces exist beforehand (the host reaches them); app1's is created by the
  // daemon inside its sandbox, so namespace creation (unshare, bind mount) is exercised too.
  for (const app of ["app2", "app3"] as const) spawnSyncOk("ip", ["netns", "add", env.netns[app]]);

  const systemd = await startPrivateSystemd(`rce-systemd-${env.suffix}`, env.hostNs, scratch);
  env.defer(() => systemd.stop());

  const unit = `rce-${env.suffix}.service`;
  const cli = cliCommand();
  const command = [...cli, ...execStart!.split(/\s+/).slice(1)];
  const sandbox = props.filter(([k]) => !NOT_SANDBOX.has(k)).map(([k, v]) => `${k}=${v}`);
  const settings = [
    `Environment=RECONCILE_SOURCE=${manifests} RECONCILE_BPFFS_ROOT=${env.pinRoot} RECONCILE_NODE=${env.node}`,
    `StandardOutput=append:${logFile}`,
    `StandardError=append:${logFile}`,
    // From source (no RECONCILE_BIN): `--import tsx` resolves from the working directory.
    ...(process.env.RECONCILE_BIN ? [] : [`WorkingDirectory=${REPO}`]),
  ];
  t.diagnostic(`sandbox: ${sandbox.join(" | ")}`);
  env.defer(() => void systemd.exec("systemctl", ["stop", unit]));
  const started = systemd.exec("systemd-run", ["--unit", unit, "--description", "reconcile in its unit's sandbox (test)", ...[...sandbox, ...settings].flatMap((p) => ["-p", p]), "--", ...command]);
  assert.equal(started.status, 0, `systemd-run failed: ${started.stderr}\n--- service log\n${serviceLog()}`);

  const show = (prop: string) => systemd.exec("systemctl", ["show", "-p", prop, "--value", unit]).stdout.trim();
  assert.equal(show("ActiveState"), "active", serviceLog());
  const nsPid = Number(show("MainPID"));
  assert.ok(nsPid > 0, `MainPID=${nsPid}`);
  const pid = systemd.hostPid(nsPid);

  // The sandbox is really in force on the daemon: no new privileges, a seccomp filter, only the
  // unit's capabilities.
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  assert.match(status, /^NoNewPrivs:\s+1$/m);
  assert.match(status, /^Seccomp:\s+2$/m);
  const capEff = BigInt(`0x${/^CapEff:\s+([0-9a-f]+)$/m.exec(status)![1]}`);
  // CAP_NET_ADMIN 12, CAP_SYS_ADMIN 21, CAP_PERFMON 38, CAP_BPF 39.
  assert.equal(capEff, (1n << 12n) | (1n << 21n) | (1n << 38n) | (1n << 39n), `CapEff ${capEff.toString(16)}`);

  // app1's namespace exists in the service's mount namespace only (docs/operations.md): reach it
  // through the daemon's root.
  const app1Ns = `/proc/${pid}/root/run/netns/${env.netns.app1}`;
  assert.ok(existsSync(app1Ns), `${app1Ns} missing; service log:\n${serviceLog()}`);
  await startServerAt(env, app1Ns, SEED_IPS.app1, [80, 81]);

  let last: SeedTraffic | undefined;
  await waitFor(`seed traffic as expected (last: ${JSON.stringify(last)})`, async () => {
    const [allowed, otherIdentity, otherPort] = await Promise.all([
      connect(env.netns.app2, SEED_IPS.app1, 80, 2),
      connect(env.netns.app3, SEED_IPS.app1, 80, 0.5),
      connect(env.netns.app2, SEED_IPS.app1, 81, 0.5),
    ]);
    last = { allowed, otherIdentity, otherPort };
    return allowed === SEED_EXPECTED.allowed && otherIdentity === SEED_EXPECTED.otherIdentity && otherPort === SEED_EXPECTED.otherPort;
  }, 10_000, 100).catch(() => {
    throw new Error(`seed traffic ${JSON.stringify(last)}, expected ${JSON.stringify(SEED_EXPECTED)}; service log:\n${serviceLog()}`);
  });

  // Still running and nothing logged at error level (e.g. a blocked system call on a side path).
  assert.equal(show("ActiveState"), "active", serviceLog());
  assert.doesNotMatch(serviceLog(), /level=error/);
  const stopped = systemd.exec("systemctl", ["stop", unit]);
  assert.equal(stopped.status, 0, stopped.stderr);
});

/** A TCP server (reply "HTTP/1.0 200 OK") on ip:ports in the namespace file `nsPath`, killed at cleanup. */
async function startServerAt(env: ReturnType<typeof makeEnv>, nsPath: string, ip: string, ports: number[]): Promise<void> {
  const js = `
const net = require("node:net");
const [ip, ...ports] = process.argv.slice(1);
let n = 0;
for (const port of ports) {
  net.createServer((s) => { s.on("error", () => {}); s.once("data", () => s.end("HTTP/1.0 200 OK\\r\\n\\r\\n")); })
    .listen(Number(port), ip, () => { if (++n === ports.length) console.log("listening"); });
}`;
  const child = spawn("nsenter", [`--net=${nsPath}`, process.execPath, "-e", js, ip, ...ports.map(String)], { stdio: ["ignore", "pipe", "pipe"] });
  env.defer(() => killAndWait(child));
  let out = "";
  child.stdout.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr.on("data", (d: Buffer) => (out += d.toString()));
  await waitFor(`server on ${ip}:${ports.join(",")} in ${nsPath}`, () => {
    if (child.exitCode !== null) throw new Error(`server exited ${child.exitCode}: ${out}`);
    return out.includes("listening");
  }, 15_000, 20);
}
