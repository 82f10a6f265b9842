// --expedite-attach against the real kernel, in a private namespace: a batch of fresh tcx links
// below EXPEDITE_FROM leaves /sys/kernel/rcu_expedited alone; a batch of EXPEDITE_FROM sets it
// while the links are made and puts it back; every link is made and pinned either way, and the
// next observation sees them all; removing them all sets and puts it back again and leaves no
// link. The time per link is reported, not asserted.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { test } from "node:test";
import { reconcileOnce, Targets } from "../../reconciler/apply/executor.js";
import { AttachmentTarget, EXPEDITE_FROM, tcxChains } from "../../reconciler/apply/kernel/attachment.js";
import { KernelContext } from "../../reconciler/apply/kernel/context.js";
import { MapTarget } from "../../reconciler/apply/kernel/maps.js";
import { RCU_EXPEDITED_PATH, sysfsRcuKnob, type RcuKnob } from "../../reconciler/apply/kernel/rcu.js";
import { buildDesiredState } from "../../reconciler/datapath/desired.js";
import type { AttachmentSpec, DesiredState } from "../../reconciler/datapath/state.js";
import { compile } from "../../reconciler/policy/compile.js";
import { generateModel } from "../bench/generate.js";
import { makeNetns, sh, suffix } from "./helpers/ebpf-loader.js";

function desired(netns: string, devices: string[]): DesiredState {
  const model = generateModel({ endpoints: 1, rules: 1, remoteEndpoints: 0, apps: 1, groups: 1 });
  const d = buildDesiredState(model, compile(model, { node: "n", enforcement: "default" }), { attachMode: "tcx" });
  const attachments = new Map<string, AttachmentSpec>(
    devices.map((device) => [`${netns}/${device}/ingress`, { device, netns, hook: "ingress", program: "from_endpoint", mode: "tcx" }]),
  );
  const none = new Map();
  return { ...d, devices: none, addresses: none, routes: none, sysctls: none, neighbours: none, endpoints: none, ipcache: none, policy: none, attachments };
}

test("expedite attach: a large batch of tcx links made or removed sets rcu_expedited while it runs and puts it back", async (t) => {
  const real = sysfsRcuKnob();
  const initial = real.read();
  if (initial !== "0") return t.skip(`${RCU_EXPEDITED_PATH} is ${initial ?? "absent"} here: nothing to expedite`);
  t.after(() => writeFileSync(RCU_EXPEDITED_PATH, initial)); // whatever happens below

  const id = suffix();
  const ns = `rcux-${id}`;
  t.after(makeNetns(ns));
  const small = EXPEDITE_FROM / 2;
  const devices = Array.from({ length: small + EXPEDITE_FROM }, (_, i) => `rx${i}`);
  for (const d of devices) sh("ip", ["-n", ns, "link", "add", d, "type", "veth", "peer", "name", `${d}p`]);

  const pinRoot = `/sys/fs/bpf/attach-expedite-${randomBytes(3).toString("hex")}`;
  mkdirSync(pinRoot);
  const ctx = new KernelContext({ pinRoot, datapathObject: readFileSync("bpf/build/endpoint.o") });
  t.after(() => {
    ctx.close();
    rmSync(pinRoot, { recursive: true, force: true }); // unpinning the links detaches them
  });

  // The real knob, with every write recorded and the value read back inside the batch.
  const writes: string[] = [];
  const knob: RcuKnob = { read: () => real.read(), write: (v) => (writes.push(v), real.write(v)) };
  const targets = new Targets([new MapTarget(ctx), new AttachmentTarget(ctx, "first", knob)]);

  let t0 = performance.now();
  let report = await reconcileOnce(targets, desired(ns, devices.slice(0, small)));
  const smallMs = (performance.now() - t0) / small;
  assert.deepEqual(report.failed, []);
  assert.deepEqual(writes, [], `${small} fresh links (< ${EXPEDITE_FROM}): the knob is not touched`);

  t0 = performance.now();
  report = await reconcileOnce(targets, desired(ns, devices));
  const largeMs = (performance.now() - t0) / EXPEDITE_FROM;
  assert.deepEqual(report.failed, []);
  assert.equal(report.plan.changes.filter((c) => c.resource === "attachment" && c.op === "create").length, EXPEDITE_FROM);
  assert.deepEqual(writes, ["1", "0"], `${EXPEDITE_FROM} fresh links: set, then put back`);
  assert.equal(real.read(), "0", "the knob is back as it was");

  const linked = tcxChains(ctx).filter((c) => c.hook === "ingress" && c.programs.some((p) => p.owner === "reconcile" && p.program === "from_endpoint"));
  assert.equal(linked.length, devices.length, "every device has reconcile's link, in both batches");
  const again = await reconcileOnce(targets, desired(ns, devices));
  assert.deepEqual(again.plan.changes, [], "the next run plans nothing");

  // Removing links waits for grace periods too: removing all of them expedites again.
  t0 = performance.now();
  report = await reconcileOnce(targets, desired(ns, []));
  const removeMs = (performance.now() - t0) / devices.length;
  assert.deepEqual(report.failed, []);
  assert.equal(report.plan.changes.filter((c) => c.resource === "attachment" && c.op === "delete").length, devices.length);
  assert.deepEqual(writes, ["1", "0", "1", "0"], `${devices.length} links removed: set, then put back`);
  assert.equal(real.read(), "0");
  assert.deepEqual(tcxChains(ctx), [], "no link of reconcile's is left");
  t.diagnostic(`ms per link, the whole run included: ${small} made not expedited ${smallMs.toFixed(2)}, ${EXPEDITE_FROM} made expedited ${largeMs.toFixed(2)}, ${devices.length} removed expedited ${removeMs.toFixed(2)}`);
});
