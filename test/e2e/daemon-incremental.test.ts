// The daemon compiles each new commit incrementally (plan/snapshot-to-desired.ts IncrementalPipeline) and plans
// it against the state its last run left: after every kind of edit (a rule's port, a rule added, an
// endpoint's labels, a rule removed) the debug log says what was reused, and a full, independent
// `--dry-run` (whole compile, kernel read) then finds nothing to change: the kernel holds exactly
// what a full compile of the commit wants.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import {
  app1Allows,
  daemonStatus,
  dryRunJson,
  killAndWait,
  makeEnv,
  planOps,
  requireTools,
  seedRuleWithPort,
  spawnReconcile,
  waitFor,
} from "./helpers/reconcile.js";

interface Status {
  appliedRevision: string | null;
  attemptedRevision: string | null;
  lastRun: { result: string; revision: string } | null;
}

const EXTRA_RULE = `apiVersion: reconcile/v1
kind: Rule
metadata:
  name: app3-from-app1
spec:
  endpointSelector:
    matchLabels:
      id: app3
  ingress:
    - fromEndpoints:
        - matchLabels:
            id: app1
      toPorts:
        - ports:
            - port: "443"
              protocol: TCP
`;

test("daemon: commits compiled incrementally leave the kernel as a full compile wants it", async (t) => {
  requireTools("bpftool", "nsenter");
  const env = makeEnv(t, "incremental");
  const socket = path.join(env.tmp, "reconcile.sock");
  // No resync during the test: every run below is a commit, planned without reading the kernel.
  const daemon = spawnReconcile(env, ["--source", env.dir, "--socket", socket, "--resync-interval", "1h", "--log-level", "debug", "--log-format", "json"], {
    timeoutMs: 170_000,
  });
  env.defer(() => killAndWait(daemon.child));
  let log = "";
  daemon.child.stderr!.on("data", (d: Buffer) => (log += d.toString()));
  const status = () => daemonStatus<Status>(socket);
  /** The reuse note of the debug line `compiled` for one revision. */
  const reuseOf = (revision: string): string | undefined => {
    for (const line of log.split("\n")) {
      if (!line.startsWith("{")) continue;
      const entry = JSON.parse(line) as { msg?: string; revision?: string; reuse?: string };
      if (entry.msg === "compiled" && entry.revision === revision) return entry.reuse;
    }
    return undefined;
  };

  const first = await waitFor("the daemon to apply the seed", async () => {
    if (daemon.child.exitCode !== null) throw new Error(`daemon exited ${daemon.child.exitCode}: ${log}`);
    const s = await status().catch(() => undefined);
    return s?.appliedRevision ? s : undefined;
  }, 30_000, 50);
  assert.match(reuseOf(first.appliedRevision!) ?? "", /^0 files reused, 3 parsed; full compile \(no previous compile\)$/);

  const endpointsFile = path.join(env.dir, "endpoints.yaml");
  const steps: Array<{ what: string; edit: () => void; reuse: RegExp }> = [
    {
      what: "a rule's port",
      edit: () => writeFileSync(path.join(env.dir, "l3-rule.json"), seedRuleWithPort(8080)),
      reuse: /^2 files reused, 1 parsed; 2 rules changed, 1 endpoint policies recomputed, ipcache reused$/,
    },
    {
      what: "a rule added",
      edit: () => writeFileSync(path.join(env.dir, "extra.yaml"), EXTRA_RULE),
      reuse: /^3 files reused, 1 parsed; 1 rules changed, 1 endpoint policies recomputed, ipcache reused$/,
    },
    {
      what: "an endpoint's labels",
      edit: () => writeFileSync(endpointsFile, readFileSync(endpointsFile, "utf8").replace("id: app3", "id: app3\n    tier: back")),
      reuse: /^3 files reused, 1 parsed; full compile \(endpoints changed\)$/,
    },
    {
      what: "the added rule removed",
      edit: () => rmSync(path.join(env.dir, "extra.yaml")),
      reuse: /^3 files reused, 0 parsed; 1 rules changed, 1 endpoint policies recomputed, ipcache reused$/,
    },
  ];
  let applied = first.appliedRevision!;
  for (const step of steps) {
    step.edit();
    const s = await waitFor(`${step.what}: the new revision applied`, async () => {
      const st = await status();
      return st.appliedRevision !== applied && st.attemptedRevision === st.appliedRevision && st.lastRun?.result === "ok" ? st : undefined;
    }, 15_000, 10);
    applied = s.appliedRevision!;
    assert.match(reuseOf(applied) ?? "(no compiled line)", step.reuse, step.what);
    const dry = await dryRunJson(env);
    assert.equal(dry.code, 0, `${step.what}: a full --dry-run still finds changes:\n${planOps(dry.plan).join("\n")}`);
  }
  assert.ok(app1Allows(env, 8080) && !app1Allows(env, 80), "app1's map holds port 8080 and not 80");
});
