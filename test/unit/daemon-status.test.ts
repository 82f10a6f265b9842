import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { DaemonMetrics, fetchStatus, startMetricsServer, startStatusServer } from "../../reconciler/daemon/status.js";
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
  await assert.rejects(startStatusServer({ socketPath, getStatus: () => ({}) }), /another reconcile daemon/);
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
  await assert.rejects(startStatusServer({ socketPath: filePath, getStatus: () => ({}) }), /not a socket/);
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
