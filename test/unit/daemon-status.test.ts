import { test } from "node:test";
import assert from "node:assert/strict";
import { chmod, chown, lstat, mkdir, mkdtemp, rm, stat, symlink, writeFile } from "node:fs/promises";
import { execFileSync } from "node:child_process";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { request } from "node:http";
import { DaemonMetrics, fetchStatus, requestAction, startMetricsServer, startStatusServer } from "../../reconciler/daemon/status.js";
import { ReconcileLoop } from "../../reconciler/daemon/loop.js";

async function tempDir(t: { after: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), "daemon-status-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

test("status socket: mode 0600 in a 0700 dir, serves the loop status, stale socket replaced", async (t) => {
  const dir = await tempDir(t);
  const socketPath = path.join(dir, "run/reconcile.sock");
  const loop = new ReconcileLoop({ reconcile: async () => ({ ok: true, changes: 3, errors: [] }), resyncIntervalMs: 0 });
  loop.submit({ revision: "abc123", files: [] });
  await loop.idle();
  const srv = await startStatusServer({ socketPath, getStatus: () => ({ loop: loop.status() }) });
  t.after(() => srv.close());
  assert.equal((await stat(socketPath)).mode & 0o777, 0o600);
  assert.equal((await stat(path.dirname(socketPath))).mode & 0o777, 0o700);
  const st = (await fetchStatus(socketPath)) as { loop: { appliedRevision: string; lastRun: { changes: number } } };
  assert.equal(st.loop.appliedRevision, "abc123");
  assert.equal(st.loop.lastRun.changes, 3);

  // A second daemon on the same socket is refused.
  await refused(startStatusServer({ socketPath, getStatus: () => ({}) }), /another reconcile daemon/);
  await srv.close();
  await assert.rejects(fetchStatus(socketPath), /cannot reach the daemon/);

  // A stale socket (its listener is gone without unlinking) is replaced.
  const stalePath = path.join(dir, "stale.sock");
  const stale = createServer();
  await new Promise<void>((r) => stale.listen(stalePath, r));
  (stale as unknown as { _handle: { close(): void } | null })._handle?.close(); // crash: socket file stays
  const srv2 = await startStatusServer({ socketPath: stalePath, getStatus: () => ({ ok: 1 }) });
  t.after(() => srv2.close());
  assert.deepEqual(await fetchStatus(stalePath), { ok: 1 });

  // A regular file in the way is not deleted.
  const filePath = path.join(dir, "file.sock");
  await writeFile(filePath, "x");
  await refused(startStatusServer({ socketPath: filePath, getStatus: () => ({}) }), /not a socket/);
});

/** Expects startStatusServer to be refused; a server that starts anyway is closed (so the test ends) and fails it. */
async function refused(start: Promise<{ close(): Promise<void> }>, check: RegExp | ((err: unknown) => boolean)): Promise<void> {
  let srv: { close(): Promise<void> } | undefined;
  await assert.rejects(
    start.then((s) => {
      srv = s;
      return s;
    }),
    check,
  ).finally(() => srv?.close());
}

test("status socket directory: never changed when reconcile did not create it; shared non-sticky ones refused", async (t) => {
  const base = await tempDir(t);
  const getStatus = () => ({ ok: 1 });
  const modeOf = async (p: string) => (await stat(p)).mode & 0o7777;

  // Created by reconcile (missing, nested): 0700.
  const made = path.join(base, "made/deeper");
  const s1 = await startStatusServer({ socketPath: path.join(made, "r.sock"), getStatus });
  await s1.close();
  assert.equal(await modeOf(made), 0o700);

  // An existing 0755 directory of ours: used as it is (only we can write it), never chmod'ed.
  const plain = path.join(base, "plain");
  await mkdir(plain);
  await chmod(plain, 0o755);
  const s2 = await startStatusServer({ socketPath: path.join(plain, "r.sock"), getStatus });
  assert.equal(await modeOf(plain), 0o755, "the directory's mode was changed");
  assert.equal((await lstat(path.join(plain, "r.sock"))).mode & 0o777, 0o600);
  assert.deepEqual(await fetchStatus(path.join(plain, "r.sock")), { ok: 1 });
  await s2.close();

  // World- or group-writable and not sticky: refused with the reason, mode left alone.
  for (const mode of [0o777, 0o775]) {
    const open = path.join(base, `open-${mode.toString(8)}`);
    await mkdir(open);
    await chmod(open, mode);
    await refused(startStatusServer({ socketPath: path.join(open, "r.sock"), getStatus }), (err: unknown) => {
      assert.ok(err instanceof Error && err.name === "StatusServerError", String(err));
      assert.match(err.message, new RegExp(`^socket directory ${open}: mode 0${mode.toString(8)} lets group or others write it and it is not sticky`));
      return true;
    });
    assert.equal(await modeOf(open), mode, "a directory reconcile did not create was changed");
  }

  // Sticky and world-writable, like /tmp: served, the directory untouched, the socket ours and 0600.
  const sticky = path.join(base, "sticky");
  await mkdir(sticky);
  await chmod(sticky, 0o1777);
  const sockPath = path.join(sticky, "r.sock");
  const s3 = await startStatusServer({ socketPath: sockPath, getStatus });
  assert.equal(await modeOf(sticky), 0o1777);
  const st = await lstat(sockPath);
  assert.ok(st.isSocket());
  assert.equal(st.mode & 0o777, 0o600);
  assert.equal(st.uid, process.getuid!());
  await s3.close();
  await assert.rejects(lstat(sockPath), /ENOENT/, "close removes its own socket");

  // What another user could leave at the name in a sticky directory is never removed or followed.
  const victim = path.join(base, "victim");
  await writeFile(victim, "x");
  await symlink(victim, sockPath);
  await refused(startStatusServer({ socketPath: sockPath, getStatus }), /exists and is not a socket; refusing to replace it/);
  assert.equal((await lstat(sockPath)).isSymbolicLink(), true);
  await rm(sockPath);

  // A directory through a symlink is judged by what it resolves to.
  const viaLink = path.join(base, "via");
  await symlink(path.join(base, "open-777"), viaLink);
  await refused(startStatusServer({ socketPath: path.join(viaLink, "r.sock"), getStatus }), /lets group or others write it/);
});

test("status socket directory: another user's directory or stale socket is refused (root only)", { skip: process.getuid?.() === 0 ? false : "needs root to chown" }, async (t) => {
  const base = await tempDir(t);
  const getStatus = () => ({});
  const theirs = path.join(base, "theirs");
  await mkdir(theirs);
  await chown(theirs, 65534, 65534);
  await refused(startStatusServer({ socketPath: path.join(theirs, "r.sock"), getStatus }), /socket directory .*theirs: owned by uid 65534/);

  // A stale socket of another user in a sticky directory: not unlinked.
  const sticky = path.join(base, "sticky");
  await mkdir(sticky);
  await chmod(sticky, 0o1777);
  const sockPath = path.join(sticky, "r.sock");
  // Bound by a process that then exits without unlinking it (Node's own close would unlink it).
  execFileSync("python3", ["-c", "import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])", sockPath]);
  await chown(sockPath, 65534, 65534);
  await refused(startStatusServer({ socketPath: sockPath, getStatus }), /a socket of uid 65534 .*refusing to replace another user's socket/);
  assert.equal((await lstat(sockPath)).uid, 65534);
});

test("metrics server: /metrics has the metrics, /healthz, /readyz before and after the first success", async (t) => {
  const metrics = new DaemonMetrics();
  let ready = false;
  const srv = await startMetricsServer({ listen: "127.0.0.1:0", metrics, isReady: () => ready });
  t.after(() => srv.close());
  const base = `http://${srv.address}`;
  assert.equal((await fetch(`${base}/healthz`)).status, 200);
  assert.equal((await fetch(`${base}/readyz`)).status, 503);

  const loop = new ReconcileLoop({
    reconcile: async () => ({ ok: true, changes: 1, errors: [], drift: 4 }),
    resyncIntervalMs: 0,
    onRun: (run, status) => {
      metrics.observeRun(run, status);
      ready = status.appliedRevision !== null;
    },
  });
  loop.submit({ revision: "deadbeef", files: [] });
  await loop.idle();
  metrics.setMapEntries("ipcache", 1234);
  metrics.setMapPressure("ipcache", 0.25);
  metrics.gitFetchFailed();
  assert.equal((await fetch(`${base}/readyz`)).status, 200);
  const text = await (await fetch(`${base}/metrics`)).text();
  for (const line of [
    /^reconcile_duration_seconds_count\{trigger="source",result="ok"\} 1$/m,
    /^reconcile_applied_revision_info\{revision="deadbeef"\} 1$/m,
    /^reconcile_drift_corrections_total 4$/m,
    /^reconcile_errors 0$/m,
    /^reconcile_map_entries\{map="ipcache"\} 1234$/m,
    /^reconcile_map_pressure\{map="ipcache"\} 0.25$/m,
    /^reconcile_git_fetch_failures_total 1$/m,
  ]) {
    assert.match(text, line);
  }
  assert.equal((await fetch(`${base}/nope`)).status, 404);
  assert.equal((await fetch(`${base}/metrics`, { method: "POST" })).status, 405);
});

test("status socket: POST /suspend and /resume reach the actions with their body; bad requests are refused", async (t) => {
  const dir = await tempDir(t);
  const socketPath = path.join(dir, "run", "r.sock");
  const calls: Array<[string, Record<string, unknown>]> = [];
  const srv = await startStatusServer({
    socketPath,
    getStatus: () => ({}),
    actions: {
      suspend: (body) => (calls.push(["suspend", body]), { suspended: { since: 1, reason: body.reason } }),
      resume: () => {
        throw new Error("cannot remove the suspension record: EROFS");
      },
    },
  });
  t.after(() => srv.close());
  assert.deepEqual(await requestAction(socketPath, "suspend", { reason: "maintenance" }), { suspended: { since: 1, reason: "maintenance" } });
  assert.deepEqual(calls, [["suspend", { reason: "maintenance" }]]);
  await assert.rejects(requestAction(socketPath, "resume"), /POST \/resume on .*: HTTP 500: cannot remove the suspension record: EROFS/);
  await assert.rejects(requestAction(socketPath, "suspend", { reason: "x".repeat(5000) }), /HTTP 413/);
  // GET is not an action; a server without actions knows no such path.
  await assert.rejects(fetchStatusAt(socketPath, "/suspend"), /405/);
  const plain = await startStatusServer({ socketPath: path.join(dir, "run", "p.sock"), getStatus: () => ({}) });
  t.after(() => plain.close());
  await assert.rejects(requestAction(path.join(dir, "run", "p.sock"), "suspend"), /HTTP 404/);
});

function fetchStatusAt(socketPath: string, p: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path: p, method: "GET" }, (res) => {
      res.resume();
      if (res.statusCode === 200) resolve(200);
      else reject(new Error(`HTTP ${res.statusCode}`));
    });
    req.on("error", reject);
    req.end();
  });
}
