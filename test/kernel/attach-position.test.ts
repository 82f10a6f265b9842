// Foreign tcx programs on reconcile's hooks, against the real kernel in a private namespace: a fresh
// attach with position "first" lands ahead of a foreign program already there, "last" behind it; a
// foreign program attached ahead of an existing link of ours is reported as "before" and is neither
// removed nor reordered by the next run; the chains list every program in run order.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, rmSync } from "node:fs";
import { test } from "node:test";
import { reconcileOnce, Targets } from "../../reconciler/apply/executor.js";
import { tcxChains } from "../../reconciler/apply/kernel/attachment.js";
import { foreignPrograms, type TcxChain } from "../../reconciler/apply/port.js";
import { AttachmentTarget } from "../../reconciler/apply/kernel/attachment.js";
import { KernelContext } from "../../reconciler/apply/kernel/context.js";
import { MapTarget } from "../../reconciler/apply/kernel/maps.js";
import { buildDesiredState } from "../../reconciler/datapath/desired.js";
import type { AttachmentSpec, DesiredState } from "../../reconciler/datapath/state.js";
import { loadCollection, parseElf, TcxLink, type BpfProgram } from "../../reconciler/ebpf-loader/index.js";
import { diff } from "../../reconciler/plan/diff.js";
import { compile } from "../../reconciler/policy/compile.js";
import { generateModel } from "../bench/generate.js";
import { ifindexIn, makeNetns, sh, suffix, withNetns } from "./helpers/ebpf-loader.js";

function desired(netns: string, device: string, hooks: Array<AttachmentSpec["hook"]>): DesiredState {
  const model = generateModel({ endpoints: 1, rules: 1, remoteEndpoints: 0, apps: 1, groups: 1 });
  const d = buildDesiredState(model, compile(model, { node: "n", enforcement: "default" }), { attachMode: "tcx" });
  const attachments = new Map<string, AttachmentSpec>();
  for (const hook of hooks) {
    const a: AttachmentSpec = { device, netns, hook, program: hook === "egress" ? "to_endpoint" : "from_endpoint", mode: "tcx" };
    attachments.set(`${netns}/${device}/${hook}`, a);
  }
  const none = new Map();
  return { ...d, devices: none, addresses: none, routes: none, sysctls: none, neighbours: none, endpoints: none, ipcache: none, policy: none, attachments };
}

const order = (chains: TcxChain[], hook: string): string[] => chains.find((c) => c.hook === hook)!.programs.map((p) => `${p.owner}:${p.program}`);

test("tcx attach position: first lands ahead of a foreign program, last behind; an existing link is never moved", async (t) => {
  const id = suffix();
  const ns = `apos-${id}`;
  const dev = `ap${id}`;
  t.after(makeNetns(ns));
  sh("ip", ["-n", ns, "link", "add", dev, "type", "veth", "peer", "name", `${dev}p`]);
  sh("ip", ["-n", ns, "link", "set", dev, "up"]);
  const ifindex = ifindexIn(ns, dev);
  const pinRoot = `/sys/fs/bpf/attach-position-${randomBytes(3).toString("hex")}`;
  let ctx: KernelContext | undefined;
  t.after(() => {
    ctx?.close();
    rmSync(pinRoot, { recursive: true, force: true }); // unpinning our links detaches them
  });
  mkdirSync(pinRoot);
  ctx = new KernelContext({ pinRoot, datapathObject: readFileSync("bpf/build/endpoint.o") });

  // A foreign pass-all program (returns TC_ACT_OK = TCX_PASS) on both hooks before reconcile comes.
  const foreign = loadCollection(parseElf(readFileSync("bpf/build/counter.o")));
  t.after(() => foreign.close());
  const pass = foreign.programs.get("count_packets")!;
  const links: TcxLink[] = [];
  t.after(() => links.forEach((l) => l.close())); // unpinned: closing detaches
  const attachForeign = (p: BpfProgram, hook: "ingress" | "egress", position: "first" | "last") => links.push(withNetns(ns, () => TcxLink.attach(p, ifindex, hook, position)));
  attachForeign(pass, "egress", "last");
  attachForeign(pass, "ingress", "last");

  // Fresh attaches: egress with "first", ingress with "last".
  const first = new Targets([new MapTarget(ctx), new AttachmentTarget(ctx, "first")]);
  const last = new Targets([new MapTarget(ctx), new AttachmentTarget(ctx, "last")]);
  const egressOnly = desired(ns, dev, ["egress"]);
  let report = await reconcileOnce(first, egressOnly);
  assert.deepEqual(report.failed, []);
  const both = desired(ns, dev, ["egress", "ingress"]);
  report = await reconcileOnce(last, both);
  assert.deepEqual(report.failed, []);
  assert.deepEqual(report.plan.changes.map((c) => `${c.op} ${c.id}`), [`create ${ns}/${dev}/ingress`]);

  let chains = tcxChains(ctx);
  assert.deepEqual(order(chains, "egress"), ["reconcile:to_endpoint", "foreign:count_packets"], "first: ahead of the foreign program");
  assert.deepEqual(order(chains, "ingress"), ["foreign:count_packets", "reconcile:from_endpoint"], "last: behind it");
  assert.deepEqual(
    foreignPrograms(chains).map((p) => `${p.hook} ${p.position}`).sort(),
    ["egress after", "ingress before"],
  );

  // A foreign program put ahead of our existing egress link: reported, and left where it is, as is
  // ours. (Another copy: one program attaches to a hook once.)
  const foreign2 = loadCollection(parseElf(readFileSync("bpf/build/counter.o")));
  t.after(() => foreign2.close());
  const pass2 = foreign2.programs.get("count_packets")!;
  attachForeign(pass2, "egress", "first");
  chains = tcxChains(ctx);
  assert.deepEqual(order(chains, "egress"), ["foreign:count_packets", "reconcile:to_endpoint", "foreign:count_packets"]);
  const ahead = foreignPrograms(chains).filter((p) => p.hook === "egress" && p.position === "before");
  assert.equal(ahead.length, 1);
  assert.equal(ahead[0]!.progId, pass2.info().id);
  assert.equal(ahead[0]!.netns, ns);
  assert.equal(ahead[0]!.device, dev);
  report = await reconcileOnce(first, both);
  assert.deepEqual(report.failed, []);
  assert.deepEqual(report.plan.changes, [], "nothing to change: the attachment is ours and in place");
  assert.deepEqual(order(tcxChains(ctx), "egress"), ["foreign:count_packets", "reconcile:to_endpoint", "foreign:count_packets"], "nothing reordered, nothing foreign removed");
  assert.equal(diff(both, await first.observe(both)).changes.length, 0);
});
