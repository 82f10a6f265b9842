// The policy key module: the packed form read from and written to the kernel's bytes agrees with
// the checked object codec of datapath/layouts.ts, and the port-block containment the compiler
// uses agrees with a plain comparison of port ranges.
import { test } from "node:test";
import assert from "node:assert/strict";
import { decodePolicyKey, encodePolicyKey } from "../../reconciler/datapath/layouts.js";
import { sameLpmKey } from "../../reconciler/apply/kernel/entries.js";
import {
  decodePolicyEntryKey,
  entryDecision,
  entryKey,
  keyableIdentity,
  packEntry,
  policyEntryKey,
  policyKeyBase,
  policyKeyPortPart,
  portPartContains,
  POLICY_KEY,
  readPackedPolicyKey,
  sameKeyBase,
  writePackedPolicyKey,
  type PolicyKey,
} from "../../reconciler/policy/key.js";
import { prng } from "./helpers/random-policy.js";

/** The shared deterministic PRNG (mulberry32), so a failure names its seed. */
const rng = (seed: number): (() => number) => prng(seed).next;

function randomKey(r: () => number): PolicyKey {
  const protocol = [0, 1, 6, 17, 58, 132, 255][Math.floor(r() * 7)]!;
  const portPrefixLen = protocol === 0 ? 0 : Math.floor(r() * 17);
  const block = 2 ** (16 - portPrefixLen);
  const port = protocol === 0 ? 0 : Math.floor((r() * 65536) / block) * block;
  const identity = [0, 1, 2, 256, 65535, 2 ** 24 + 7, 2 ** 25 - 1][Math.floor(r() * 7)]! + (r() < 0.5 ? 0 : Math.floor(r() * 1000));
  return { identity: Math.min(identity, 2 ** 25 - 1), direction: r() < 0.5 ? "ingress" : "egress", protocol, port, portPrefixLen };
}

/** What the kernel reader did before policy/key.ts: check, decode, re-encode, compare the LPM key. */
function oldRead(buf: Buffer): number {
  if (buf[POLICY_KEY.offsets.direction]! > 1 || !keyableIdentity(buf.readUInt32LE(POLICY_KEY.offsets.identity))) return -1;
  const k = decodePolicyKey(buf, 0);
  const scratch = Buffer.alloc(POLICY_KEY.size);
  try {
    encodePolicyKey(k, scratch, 0);
  } catch {
    return -1;
  }
  return sameLpmKey(buf, scratch) ? policyEntryKey(k) : -1;
}

test("writePackedPolicyKey writes what the checked codec writes, and readPackedPolicyKey reads it back", () => {
  const r = rng(17);
  const a = Buffer.alloc(POLICY_KEY.size);
  const b = Buffer.alloc(POLICY_KEY.size);
  for (let i = 0; i < 20000; i++) {
    const k = randomKey(r);
    const key = policyEntryKey(k);
    assert.deepEqual(decodePolicyEntryKey(key), k);
    const plen = writePackedPolicyKey(key, a, 0);
    assert.equal(plen, encodePolicyKey(k, b, 0));
    assert.deepEqual([...a], [...b], JSON.stringify(k));
    assert.equal(readPackedPolicyKey(a, 0), key);
  }
});

test("readPackedPolicyKey accepts exactly the kernel keys the decode/re-encode check accepted", () => {
  const r = rng(5);
  const buf = Buffer.alloc(POLICY_KEY.size);
  let accepted = 0;
  for (let i = 0; i < 200000; i++) {
    // Mostly near-valid keys with one field disturbed, so both outcomes are common.
    writePackedPolicyKey(policyEntryKey(randomKey(r)), buf, 0);
    const what = Math.floor(r() * 6);
    if (what === 0) buf.writeUInt32LE(Math.floor(r() * 70), 0);
    if (what === 1) buf[POLICY_KEY.offsets.direction] = Math.floor(r() * 3);
    if (what === 2) buf[POLICY_KEY.offsets.protocol] = r() < 0.5 ? 0 : Math.floor(r() * 256);
    if (what === 3) buf.writeUInt16BE(Math.floor(r() * 65536), POLICY_KEY.offsets.dport);
    if (what === 4) buf.writeUInt32LE(r() < 0.5 ? 2 ** 25 + Math.floor(r() * 10) : Math.floor(r() * 2 ** 32), POLICY_KEY.offsets.identity);
    const want = oldRead(buf);
    assert.equal(readPackedPolicyKey(buf, 0), want, buf.toString("hex"));
    if (want >= 0) accepted++;
  }
  assert.ok(accepted > 50000 && accepted < 180000, `both outcomes exercised (${accepted} accepted)`);
});

test("portPartContains: an L3 key contains every port part, else same protocol and a port block within", () => {
  const r = rng(9);
  for (let i = 0; i < 50000; i++) {
    const outer = randomKey(r);
    const inner = r() < 0.3 ? { ...outer, portPrefixLen: Math.min(16, outer.portPrefixLen + 2), protocol: outer.protocol } : randomKey(r);
    if (inner.protocol === 0) Object.assign(inner, { port: 0, portPrefixLen: 0 });
    const base = policyKeyBase(outer.direction, outer.identity);
    const o = base + policyKeyPortPart(outer.protocol, outer.port, outer.portPrefixLen);
    const n = base + policyKeyPortPart(inner.protocol, inner.port, inner.portPrefixLen);
    const last = (k: PolicyKey) => k.port + 2 ** (16 - k.portPrefixLen) - 1;
    const want = outer.protocol === 0 || (outer.protocol === inner.protocol && outer.port <= inner.port && last(inner) <= last(outer));
    assert.equal(portPartContains(o, n), want, `${JSON.stringify(outer)} ⊇ ${JSON.stringify(inner)}`);
  }
});

test("key parts: base + port part is the key; same base means same direction and identity; entries pack the decision", () => {
  const k: PolicyKey = { identity: 36895, direction: "egress", protocol: 6, port: 1024, portPrefixLen: 6 };
  const key = policyEntryKey(k);
  assert.equal(key, policyKeyBase("egress", 36895) + policyKeyPortPart(6, 1024, 6));
  assert.ok(sameKeyBase(key, policyEntryKey({ ...k, protocol: 17, port: 53, portPrefixLen: 16 })));
  assert.ok(!sameKeyBase(key, policyEntryKey({ ...k, identity: 36896 })));
  assert.ok(!sameKeyBase(key, policyEntryKey({ ...k, direction: "ingress" })));
  for (const d of ["allow", "deny"] as const) {
    assert.equal(entryKey(packEntry(key, d)), key);
    assert.equal(entryDecision(packEntry(key, d)), d);
  }
});
