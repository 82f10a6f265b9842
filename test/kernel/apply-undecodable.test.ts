// Map entries that no desired key can name (written by someone else: a family byte of 0, non-zero
// padding, a prefix length out of range, a policy direction of 5, a slot of the policy map-of-maps
// that no endpoint has). Each is drift: the plan deletes it by its own bytes and names it by them,
// the rest of the datapath is repaired in the same run, the next observation is clean, and a
// teardown with such entries present removes everything. One map kind per test.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, rmSync } from "node:fs";
import { test, type TestContext } from "node:test";
import { reconcileOnce, Targets } from "../../reconciler/apply/executor.js";
import { KernelContext } from "../../reconciler/apply/kernel/context.js";
import { endpointsTarget, ipcacheTarget } from "../../reconciler/apply/kernel/entries.js";
import { createInnerPolicyMap, MapTarget } from "../../reconciler/apply/kernel/maps.js";
import { PolicyTarget } from "../../reconciler/apply/kernel/policy.js";
import { buildDesiredState } from "../../reconciler/datapath/desired.js";
import * as L from "../../reconciler/datapath/layouts.js";
import { emptyDesired, type DesiredState } from "../../reconciler/datapath/state.js";
import type { BpfMap } from "../../reconciler/ebpf-loader/index.js";
import { diff } from "../../reconciler/plan/diff.js";
import { renderPlanText } from "../../reconciler/plan/render.js";
import { compile } from "../../reconciler/policy/compile.js";
import { generateModel } from "../bench/generate.js";

function desiredState(): DesiredState {
  const model = generateModel({ endpoints: 4, rules: 4, remoteEndpoints: 3, apps: 2, groups: 2 });
  const d = buildDesiredState(model, compile(model, { node: "n", enforcement: "default" }), { attachMode: "tcx" });
  return { ...d, devices: new Map(), addresses: new Map(), routes: new Map(), sysctls: new Map(), neighbours: new Map(), attachments: new Map() };
}

/** A pin root and the map targets over it, applied once with the desired state; removed after. */
async function applied(t: TestContext): Promise<{ ctx: KernelContext; targets: Targets; desired: DesiredState }> {
  const pinRoot = `/sys/fs/bpf/apply-undecodable-${randomBytes(3).toString("hex")}`;
  let ctx: KernelContext | undefined;
  t.after(() => {
    ctx?.close();
    rmSync(pinRoot, { recursive: true, force: true });
  });
  mkdirSync(pinRoot);
  ctx = new KernelContext({ pinRoot, datapathObject: readFileSync("bpf/build/endpoint.o") });
  const targets = new Targets([new MapTarget(ctx), endpointsTarget(ctx), ipcacheTarget(ctx), new PolicyTarget(ctx)]);
  const desired = desiredState();
  const cold = await reconcileOnce(targets, desired);
  assert.deepEqual(cold.failed, []);
  assert.equal(diff(desired, await targets.observe(desired)).changes.length, 0);
  return { ctx, targets, desired };
}

function map(ctx: KernelContext, name: string): BpfMap {
  const m = ctx.map(name);
  assert.ok(m, `map ${name} is pinned`);
  return m;
}

/** Runs once more: no failures, the poisoned keys deleted (by id), the other drift repaired, then clean. */
async function repairs(targets: Targets, desired: DesiredState, expect: { deleted: string[]; alsoRepaired?: string[] }): Promise<string> {
  const report = await reconcileOnce(targets, desired);
  assert.deepEqual(report.failed, [], "nothing fails");
  const ids = report.plan.changes.map((c) => `${c.op} ${c.resource} ${c.id}`);
  for (const d of expect.deleted) assert.ok(ids.includes(d), `planned: ${d}; the plan was ${JSON.stringify(ids)}`);
  for (const r of expect.alsoRepaired ?? []) assert.ok(ids.includes(r), `also repaired in the same run: ${r}; the plan was ${JSON.stringify(ids)}`);
  const left = diff(desired, await targets.observe(desired));
  assert.deepEqual(left.changes.map((c) => `${c.op} ${c.resource} ${c.id}`), [], "the next observation is clean");
  return renderPlanText(report.plan, { notes: [] }, { colour: false });
}

async function tearsDown(ctx: KernelContext, targets: Targets): Promise<void> {
  const report = await reconcileOnce(targets, emptyDesired("teardown", "n"));
  assert.deepEqual(report.failed, []);
  for (const name of ["ipcache", "endpoints", "policy"]) assert.equal([...map(ctx, name).keys()].length, 0, `${name} is empty after teardown`);
}

test("ipcache: keys with family 0, non-zero padding and an out-of-range prefix length are deleted as drift; the rest is repaired", async (t) => {
  const { ctx, targets, desired } = await applied(t);
  const ipcache = map(ctx, "ipcache");
  const value = Buffer.alloc(L.IPCACHE_VALUE.size);
  L.encodeIpcacheValue({ identity: 2 }, value, 0);
  const family0 = Buffer.alloc(L.IPCACHE_KEY.size);
  family0.writeUInt32LE(64, 0); // /32 of family 0: 10.99.0.1
  Buffer.from([10, 99, 0, 1]).copy(family0, 8);
  const padded = Buffer.alloc(L.IPCACHE_KEY.size);
  L.encodeIpcacheKey("10.99.0.2/32", padded, 0);
  padded[L.IPCACHE_KEY.offsets.pad] = 7;
  const tooLong = Buffer.alloc(L.IPCACHE_KEY.size);
  L.encodeIpcacheKey("10.99.0.3/32", tooLong, 0);
  tooLong.writeUInt32LE(32 + 40, 0); // an IPv4 "/40"
  for (const k of [family0, padded, tooLong]) ipcache.update(k, value);
  // Drift of a nameable entry in the same run: one desired prefix removed.
  const [prefix] = desired.ipcache.keys();
  const gone = Buffer.alloc(L.IPCACHE_KEY.size);
  L.encodeIpcacheKey(prefix!, gone, 0);
  assert.ok(ipcache.delete(gone));

  // Observing does not throw, and names the entries by their key bytes.
  const seen = await targets.observe(desired);
  assert.ok(seen.ipcache.has(family0.toString("hex")));
  const text = await repairs(targets, desired, {
    deleted: [family0, padded, tooLong].map((k) => `delete ipcache ${k.toString("hex")}`),
    alsoRepaired: [`create ipcache ${prefix}`],
  });
  assert.match(text, new RegExp(`- ipcache ${family0.toString("hex")} \\[undecodable key \\(encode ipcache_key.family: expected 4 or 6, got 0\\)`));
  // (A lookup in an LPM trie finds the longest covering prefix: the keys are listed instead.)
  const left = new Set([...ipcache.keys()].map((k) => k.toString("hex")));
  for (const k of [family0, padded, tooLong]) assert.ok(!left.has(k.toString("hex")), `${k.toString("hex")} is gone`);

  ipcache.update(family0, value);
  await tearsDown(ctx, targets);
});

test("endpoints: keys with family 0 and with bytes after an IPv4 address are deleted as drift; the rest is repaired", async (t) => {
  const { ctx, targets, desired } = await applied(t);
  const endpoints = map(ctx, "endpoints");
  const [address, entry] = [...desired.endpoints][0]!;
  const value = Buffer.alloc(L.ENDPOINT_INFO.size);
  L.encodeEndpointInfo({ ifindex: 1, epId: 999, identity: 2, enforceIngress: false, enforceEgress: false }, value, 0);
  const family0 = Buffer.alloc(L.ENDPOINT_KEY.size);
  Buffer.from([10, 99, 0, 1]).copy(family0, 0);
  // Reads as a desired endpoint's address, but is another hash key: the desired entry must still be
  // written under its own key, and this one deleted.
  const trailing = Buffer.alloc(L.ENDPOINT_KEY.size);
  L.encodeEndpointKey(address, trailing, 0);
  trailing[9] = 1;
  for (const k of [family0, trailing]) endpoints.update(k, value);
  // Drift of the desired entry itself, in the same run.
  const own = Buffer.alloc(L.ENDPOINT_KEY.size);
  L.encodeEndpointKey(address, own, 0);
  assert.ok(endpoints.delete(own));

  await repairs(targets, desired, {
    deleted: [family0, trailing].map((k) => `delete endpoint ${k.toString("hex")}`),
    alsoRepaired: [`create endpoint ${address}`],
  });
  for (const k of [family0, trailing]) assert.equal(endpoints.lookup(k), undefined, `${k.toString("hex")} is gone`);
  const info = endpoints.lookup(own);
  assert.ok(info, "the desired entry is back");
  assert.equal(L.decodeEndpointInfo(info, 0).epId, entry.endpointId);

  endpoints.update(family0, value);
  await tearsDown(ctx, targets);
});

test("policy inner map: a direction of 5 and an L3 key with protocol bits make the map rebuilt; the desired entries stay", async (t) => {
  const { ctx, targets, desired } = await applied(t);
  const outer = map(ctx, "policy");
  const [endpoint] = [...desired.policy].find(([, set]) => set.size > 0)!;
  const epId = [...desired.endpoints.values()].find((e) => e.endpoint === endpoint)!.endpointId;
  const slot = Buffer.alloc(4);
  slot.writeUInt32LE(epId);
  const innerId = outer.innerId(slot);
  assert.ok(innerId !== undefined);
  const { BpfMap } = await import("../../reconciler/ebpf-loader/index.js");
  const inner = BpfMap.fromId(innerId);
  t.after(() => inner.close());
  const value = Buffer.alloc(L.POLICY_VALUE.size); // allow
  const direction5 = Buffer.alloc(L.POLICY_KEY.size);
  L.encodePolicyKey({ identity: 77, direction: "ingress", protocol: 6, port: 80, portPrefixLen: 16 }, direction5, 0);
  direction5[L.POLICY_KEY.offsets.direction] = 5;
  // An L3 prefix (40 bits: identity and direction) with protocol and port bytes after it: the trie
  // matches it as "every protocol from 78", not as the TCP/80 entry its bytes spell.
  const l3 = Buffer.alloc(L.POLICY_KEY.size);
  L.encodePolicyKey({ identity: 78, direction: "ingress", protocol: 6, port: 80, portPrefixLen: 16 }, l3, 0);
  l3.writeUInt32LE(L.POLICY_PREFIX_L3, 0);
  // One at a time: each alone must make the map rebuilt.
  inner.update(l3, value);
  await repairs(targets, desired, { deleted: [], alsoRepaired: [`update policy ${endpoint}/*`] });
  const rebuilt = BpfMap.fromId(outer.innerId(slot)!);
  rebuilt.update(direction5, value);
  rebuilt.close();
  await repairs(targets, desired, { deleted: [], alsoRepaired: [`update policy ${endpoint}/*`] });
  const fresh = BpfMap.fromId(outer.innerId(slot)!);
  try {
    for (const k of [direction5, l3]) {
      const v = fresh.lookup(k);
      // An LPM lookup: anything it still finds is a desired entry that covers the key.
      if (v) assert.equal(v[0], 0, "only desired entries remain");
    }
    assert.equal(fresh.lookupBatch().count, desired.policy.get(endpoint)!.size, "the rebuilt map holds exactly the desired entries");
  } finally {
    fresh.close();
  }

  const again = BpfMap.fromId(outer.innerId(slot)!);
  again.update(direction5, value);
  again.close();
  await tearsDown(ctx, targets);
});

test("policy outer map: slots no endpoint has, with an empty map and with entries, are deleted", async (t) => {
  const { ctx, targets, desired } = await applied(t);
  const outer = map(ctx, "policy");
  const used = new Set([...desired.endpoints.values()].map((e) => e.endpointId));
  const free = [60001, 60002].filter((n) => !used.has(n));
  assert.equal(free.length, 2);
  const slots = free.map((n) => {
    const k = Buffer.alloc(4);
    k.writeUInt32LE(n);
    return k;
  });
  const empty = createInnerPolicyMap(ctx);
  const filled = createInnerPolicyMap(ctx);
  const key = Buffer.alloc(L.POLICY_KEY.size);
  L.encodePolicyKey({ identity: 2, direction: "ingress", protocol: 0, port: 0, portPrefixLen: 0 }, key, 0);
  filled.update(key, Buffer.alloc(L.POLICY_VALUE.size));
  outer.updateInner(slots[0]!, empty);
  outer.updateInner(slots[1]!, filled);
  empty.close();
  filled.close();

  await repairs(targets, desired, { deleted: [`delete policy #${free[0]}/*`, `delete policy #${free[1]}/ingress/2/0/0/0`] });
  for (const s of slots) assert.equal(outer.innerId(s), undefined, `slot ${s.readUInt32LE(0)} is gone`);

  const again = createInnerPolicyMap(ctx);
  outer.updateInner(slots[0]!, again);
  again.close();
  await tearsDown(ctx, targets);
});
