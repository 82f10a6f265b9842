// Running a command in the real sandbox of systemd/reconcile.service: its [Service] properties,
// applied by systemd itself to a transient unit (`systemd-run -p KEY=VALUE ...`).
//
// The test machines do not boot systemd (PID 1 is the VM's own init), so there is no system
// manager to ask. systemd can still be run as the init of a private PID namespace ("container"
// mode, as systemd-nspawn runs it): `unshare --pid --mount --uts --cgroup` inside the test's own
// network namespace, with its own /run (the host's /run/netns bound back in), its own /var/lib
// (StateDirectory= lands there) and its own cgroup2 tree below a fresh cgroup of ours. Such a
// manager starts no unit but an empty target of ours, so it changes nothing on the host; its
// transient units get every sandbox the unit file asks for (namespaces, seccomp, capabilities,
// device cgroup). It is used even where systemd is PID 1, so a test never installs units in the
// host's manager. Killing it (PID 1 of its namespace) kills every process it started.

import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, readdirSync, readlinkSync, rmdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { killAndWait, waitFor } from "./reconcile.js";

/** Lines `Key=Value` of the [Service] section, in order (comments and blank lines dropped). */
export function serviceProperties(unitText: string): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  let section = "";
  for (const raw of unitText.split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#") || line.startsWith(";")) continue;
    const sec = /^\[(.+)\]$/.exec(line);
    if (sec) {
      section = sec[1]!;
      continue;
    }
    if (line.endsWith("\\")) throw new Error(`continuation lines are not supported here: ${line}`);
    if (section !== "Service") continue;
    const eq = line.indexOf("=");
    if (eq <= 0) throw new Error(`not a Key=Value line in [Service]: ${line}`);
    out.push([line.slice(0, eq), line.slice(eq + 1)]);
  }
  return out;
}

/** Why a private systemd cannot run here, or undefined when it can. */
export function privateSystemdUnavailable(): string | undefined {
  for (const tool of ["systemd-run", "systemctl", "unshare", "nsenter"]) {
    if (spawnSync("sh", ["-c", `command -v ${tool}`]).status !== 0) return `${tool} is not installed (Debian package: systemd / util-linux)`;
  }
  if (!existsSync(SYSTEMD)) return `${SYSTEMD} is missing (Debian package: systemd)`;
  if (!cgroup2()) return "no cgroup2 file system is mounted: systemd cannot supervise transient units";
  return undefined;
}

const SYSTEMD = "/lib/systemd/systemd";

/** The cgroup2 mount point and this process's cgroup2 path in it. */
function cgroup2(): { mount: string; self: string } | undefined {
  const mount = readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((l) => l.split(" "))
    .find((f) => f[f.indexOf("-") + 1] === "cgroup2")?.[4];
  const self = /^0::(.*)$/m.exec(readFileSync("/proc/self/cgroup", "utf8"))?.[1];
  return mount && self !== undefined ? { mount, self } : undefined;
}

export interface PrivateSystemd {
  /** Host pid of the private manager (PID 1 of its namespace). */
  pid: number;
  /** Runs `cmd ...args` inside the manager's mount and PID namespaces (systemctl, systemd-run). */
  exec(cmd: string, args: string[]): { status: number | null; stdout: string; stderr: string };
  /** The host pid of a pid of the private namespace. */
  hostPid(nsPid: number): number;
  /** Kills the manager and everything in its namespace, waits for it, removes its cgroups. */
  stop(): Promise<void>;
}

/**
 * Boots a private systemd in network namespace `netns` (a /run/netns name). `scratch` is a
 * directory of the test's own (the manager's unit directory and cgroup name come from `name`).
 */
export async function startPrivateSystemd(name: string, netns: string, scratch: string): Promise<PrivateSystemd> {
  const cg = cgroup2();
  if (!cg) throw new Error("no cgroup2 mount");
  const units = path.join(scratch, "units");
  mkdirSync(units, { recursive: true });
  // Empty targets: what the manager starts, and what a service's default dependencies name.
  for (const target of ["private.target", "sysinit.target", "basic.target", "shutdown.target"]) {
    writeFileSync(path.join(units, target), `[Unit]\nDescription=${target} of a private manager for a reconcile test (empty)\n`);
  }
  // A cgroup of our own: the manager's whole tree lives below it (cgroup namespace root).
  const cgroupDir = path.join(cg.mount, cg.self, name);
  mkdirSync(cgroupDir);
  const boot = [
    "set -e",
    `echo $$ > ${cgroupDir}/cgroup.procs`,
    // In the new namespaces (after unshare): the manager's own /run, /var/lib and cgroup2 view.
    `exec unshare --pid --fork --mount-proc --mount --uts --cgroup --propagation slave sh -euc '` +
      [
        "mount -t cgroup2 cgroup2 /sys/fs/cgroup",
        `mkdir -p ${scratch}/oldrun`,
        `mount --rbind /run ${scratch}/oldrun`,
        "mount -t tmpfs -o mode=0755 tmpfs /run",
        "mkdir -p /run/netns",
        `mount --rbind ${scratch}/oldrun/netns /run/netns`,
        `umount -l ${scratch}/oldrun`,
        "mount -t tmpfs -o mode=0755 tmpfs /var/lib",
        `exec env -i container=reconcile-test SYSTEMD_UNIT_PATH=${units} ${SYSTEMD} --system --unit=private.target --log-target=console --log-level=warning`,
      ].join("; ") +
      "'",
  ].join("\n");
  const child: ChildProcess = spawn("nsenter", [`--net=/run/netns/${netns}`, "sh", "-c", boot], { stdio: ["ignore", "pipe", "pipe"] });
  let log = "";
  child.stdout!.on("data", (d: Buffer) => (log += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (log += d.toString()));

  let managerPid = 0;
  const removeCgroups = () => {
    // Depth first; the kernel refuses to remove a cgroup that still has processes.
    const walk = (dir: string): void => {
      for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) walk(path.join(dir, e.name));
      rmdirSync(dir);
    };
    if (existsSync(cgroupDir)) walk(cgroupDir);
  };
  const stop = async () => {
    if (managerPid) spawnSync("kill", ["-KILL", String(managerPid)]);
    await killAndWait(child);
    await waitFor(`cgroups of ${name} removed`, () => {
      try {
        removeCgroups();
        return true;
      } catch {
        return false;
      }
    }, 10_000, 50);
  };

  const exec = (cmd: string, args: string[]) => {
    const r = spawnSync("nsenter", ["-t", String(managerPid), "--mount", "--pid", cmd, ...args], { encoding: "utf8" });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  };
  try {
    // unshare --fork: the manager is the child of the (exec'd) unshare, our spawned pid.
    managerPid = await waitFor("private systemd started", () => {
      if (child.exitCode !== null) throw new Error(`private systemd exited ${child.exitCode}: ${log}`);
      const kids = readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean);
      const pid = kids.map(Number).find((p) => readProc(`/proc/${p}/comm`) === "systemd");
      return pid && existsSync(`/proc/${pid}/root/run/systemd/private`) ? pid : undefined;
    }, 20_000, 50);
    await waitFor("private systemd running", () => {
      const state = exec("systemctl", ["is-system-running"]).stdout.trim();
      return state === "running" || state === "degraded";
    }, 20_000, 50);
  } catch (err) {
    await stop().catch(() => undefined);
    throw new Error(`${err instanceof Error ? err.message : String(err)}; its output:\n${log}`, { cause: err });
  }
  const nsOf = (pid: number) => readlinkSync(`/proc/${pid}/ns/pid`);
  const hostPid = (nsPid: number): number => {
    const ns = nsOf(managerPid);
    for (const e of readdirSync("/proc")) {
      if (!/^\d+$/.test(e)) continue;
      const status = readProc(`/proc/${e}/status`);
      const ids = /^NSpid:\s+(.*)$/m.exec(status)?.[1]?.trim().split(/\s+/).map(Number);
      if (ids && ids[ids.length - 1] === nsPid && ids.length > 1) {
        try {
          if (nsOf(Number(e)) === ns) return Number(e);
        } catch {
          /* gone */
        }
      }
    }
    throw new Error(`no host process for pid ${nsPid} of ${name}'s namespace`);
  };
  return { pid: managerPid, exec, hostPid, stop };
}

function readProc(file: string): string {
  try {
    return readFileSync(file, "utf8").trim();
  } catch {
    return "";
  }
}
