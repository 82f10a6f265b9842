// The shipped unit passes `systemd-analyze verify` and rates at most 3.0 in `systemd-analyze security`
// (package: systemd). test/e2e/systemd-sandbox.test.ts runs the daemon in that sandbox.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";

const unitPath = path.join(import.meta.dirname, "../../systemd/reconcile.service");
const analyzer = (() => {
  try {
    execFileSync("systemd-analyze", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
})();

test("systemd-analyze verify accepts reconcile.service", { skip: analyzer ? false : "systemd-analyze not installed (Debian package: systemd)" }, async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), "daemon-systemd-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  // verify checks that ExecStart's binary exists; the reconcile binary is not installed on a test
  // machine, so point it at an executable that is (nothing else in the unit changes).
  const unit = (await readFile(unitPath, "utf8")).replaceAll("/usr/local/bin/reconcile", process.execPath);
  const copy = path.join(dir, "reconcile.service");
  await writeFile(copy, unit);
  const r = spawnSync("systemd-analyze", ["verify", "--man=no", copy], { encoding: "utf8" });
  // Lines about the host's other units are not ours; only report lines naming this unit.
  const ours = `${r.stdout}${r.stderr}`.split("\n").filter((l) => l.includes("reconcile.service"));
  assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
  assert.deepEqual(ours, []);
});

test("systemd-analyze security: the unit's exposure is at most 3.0", { skip: analyzer ? false : "systemd-analyze not installed (Debian package: systemd)" }, async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), "daemon-systemd-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const copy = path.join(dir, "reconcile.service");
  await writeFile(copy, (await readFile(unitPath, "utf8")).replaceAll("/usr/local/bin/reconcile", process.execPath));
  // --threshold is in tenths: a higher exposure than 3.0 exits non-zero.
  const r = spawnSync("systemd-analyze", ["security", "--offline=yes", "--threshold=30", "--no-pager", copy], { encoding: "utf8" });
  const overall = /Overall exposure level for reconcile\.service: (\d+\.\d)/.exec(r.stdout)?.[1];
  assert.ok(overall, `no overall exposure in:\n${r.stdout}${r.stderr}`);
  t.diagnostic(`exposure ${overall}`);
  assert.ok(Number(overall) <= 3.0, `exposure ${overall} > 3.0:\n${r.stdout.split("\n").filter((l) => l.includes("✗")).join("\n")}`);
  assert.equal(r.status, 0, r.stderr);
});

test("the unit keeps the settings the daemon depends on", async () => {
  const unit = await readFile(unitPath, "utf8");
  for (const line of [
    "Type=notify",
    "NotifyAccess=main",
    "WatchdogSec=60",
    "EnvironmentFile=-/etc/reconcile/reconcile.env",
    "ExecReload=/bin/kill -HUP $MAINPID",
    "Restart=on-failure",
    "StateDirectory=reconcile",
    "RuntimeDirectory=reconcile",
    "RuntimeDirectoryMode=0700",
    "ProtectSystem=strict",
    "ReadWritePaths=/sys/fs/bpf /run/netns",
    "NoNewPrivileges=yes",
    "LimitMEMLOCK=infinity",
    "RestrictAddressFamilies=AF_UNIX AF_NETLINK AF_INET AF_INET6",
    "CapabilityBoundingSet=CAP_BPF CAP_NET_ADMIN CAP_SYS_ADMIN CAP_PERFMON",
    // bpf(2) and the netns bind mounts are outside @system-service; namespaces of kind net only.
    "SystemCallFilter=@system-service bpf @mount",
    "RestrictNamespaces=net",
  ]) {
    assert.ok(unit.split("\n").includes(line), `missing: ${line}`);
  }
});
