// The verdict cache in conntrack (bpf/include/conntrack.h struct ct_verdict, policy_rev.h) through
// BPF_PROG_RUN: an established flow's forward packets reuse the allow its policy point cached while
// the policy revision is the one it was stored under, and are judged in full again once the
// revision moves on (reconcile bumps it after every batch of endpoint, ipcache or policy writes;
// test/kernel/helpers/datapath.ts does the same, `{ bump: false }` skips it to observe the cache).
//
// Cast: app1 (10.11.255.104, ep 1, identity 1001) enforces ingress and egress; ingress allows
// TCP/80 from app2 (10.11.90.17, identity 36895), TCP/8080-8087 from app2, and UDP/53 from anyone
// (identity 0); egress allows TCP/443 to app2. app3 (10.11.7.7) is identity 40000.

import { after, before, beforeEach, test } from "node:test";
import assert from "node:assert/strict";
import * as L from "../../reconciler/datapath/layouts.js";
import { Datapath, TC_ACT_OK, TC_ACT_SHOT, tcp, udp, v4, type RuleDef } from "./helpers/datapath.js";

const APP1 = "10.11.255.104";
const APP2 = "10.11.90.17";
const APP3 = "10.11.7.7";
const TCP = 6;
const UDP = 17;
const SYN = 0x02;
const ACK = 0x10;
const ingress = "ingress" as const;
const egress = "egress" as const;

const SEED: RuleDef = { direction: ingress, identity: 36895, protocol: TCP, port: 80, portPrefixLen: 16, decision: "allow" };
const RANGE: RuleDef = { direction: ingress, identity: 36895, protocol: TCP, port: 8080, portPrefixLen: 13, decision: "allow" };
const DNS: RuleDef = { direction: ingress, identity: 0, protocol: UDP, port: 53, portPrefixLen: 16, decision: "allow" };
const OUT: RuleDef = { direction: egress, identity: 36895, protocol: TCP, port: 443, portPrefixLen: 16, decision: "allow" };

let dp: Datapath;

before(() => {
  dp = new Datapath();
  dp.addEndpoint({ addresses: [APP1], epId: 1, identity: 1001, enforceIngress: true, enforceEgress: true });
  dp.addIpcache(`${APP1}/32`, 1001);
  dp.addIpcache(`${APP2}/32`, 36895);
  dp.addIpcache(`${APP3}/32`, 40000);
  dp.addRules(1, [SEED, RANGE, DNS, OUT]);
});
after(() => dp?.close());
beforeEach(() => dp.clearConntrack());

const toApp1 = (src: string, sport: number, dport: number, flags = ACK) => v4({ src, dst: APP1, proto: TCP }, tcp(sport, dport, flags));
const stats = (r: RuleDef) => dp.policyStats(1, r)?.packets ?? 0n;
const noPolicyDrops = (dir: "ingress" | "egress") => dp.drops(1, L.DropReason.NO_POLICY, dir);

test("an established flow's allow is cached with the current revision and reused; a revision bump after the rule is removed drops its next packet", () => {
  const rev = dp.policyRev();
  assert.notEqual(rev, 0);
  assert.equal(dp.run("to_endpoint", toApp1(APP2, 40000, 80, SYN)), TC_ACT_OK);
  const ct = dp.ct({ saddr: APP2, daddr: APP1, sport: 40000, dport: 80, protocol: TCP })!;
  assert.deepEqual(ct.verdict!.ingress, { rev, identity: 36895, prefixlen: L.POLICY_PREFIX_FULL }, "the deciding entry and the revision");
  assert.deepEqual(ct.verdict!.egress, { rev: 0, identity: 0, prefixlen: 0 }, "nothing cached for a point the flow did not cross");

  // The rule goes, the revision stays: the cached allow still answers (no policy lookup made).
  assert.equal(dp.removeRule(1, SEED, { bump: false }), true);
  try {
    assert.equal(dp.run("to_endpoint", toApp1(APP2, 40000, 80)), TC_ACT_OK, "cached verdict reused while the revision is unchanged");
    assert.equal(dp.run("to_endpoint", toApp1(APP2, 40001, 80, SYN)), TC_ACT_SHOT, "a new flow is judged in full");
    // The reconciler bumps after the batch: the established flow is cut.
    const drops = noPolicyDrops(ingress);
    dp.bumpPolicyRev();
    assert.equal(dp.run("to_endpoint", toApp1(APP2, 40000, 80)), TC_ACT_SHOT, "stale cache: judged in full, no rule, dropped");
    assert.equal(noPolicyDrops(ingress), drops + 1n);
    assert.equal(dp.run("to_endpoint", toApp1(APP2, 40000, 80)), TC_ACT_SHOT, "and stays dropped");
  } finally {
    dp.addRules(1, [SEED]);
  }
  // Rule back (written and bumped): the flow passes again and caches the new revision.
  assert.equal(dp.run("to_endpoint", toApp1(APP2, 40000, 80)), TC_ACT_OK);
  assert.equal(dp.ct({ saddr: APP2, daddr: APP1, sport: 40000, dport: 80, protocol: TCP })!.verdict!.ingress.rev, dp.policyRev());
});

test("a rule added makes a previously denied flow pass; a deny added cuts an established flow", () => {
  const denied = toApp1(APP2, 41000, 81);
  assert.equal(dp.run("to_endpoint", denied), TC_ACT_SHOT);
  assert.equal(dp.run("to_endpoint", denied), TC_ACT_SHOT, "denies are never cached");
  const port81: RuleDef = { ...SEED, port: 81 };
  dp.addRules(1, [port81]);
  try {
    assert.equal(dp.run("to_endpoint", denied), TC_ACT_OK, "the new rule applies to the same flow's next packet");
    assert.equal(dp.run("to_endpoint", denied), TC_ACT_OK, "and from the cache after that");
    // A deny for the same port (deny wins), written and bumped: the established flow is dropped.
    const deny: RuleDef = { ...port81, identity: 0, decision: "deny" };
    dp.addRules(1, [deny]);
    try {
      const before = dp.drops(1, L.DropReason.POLICY_DENIED, ingress);
      assert.equal(dp.run("to_endpoint", denied), TC_ACT_SHOT);
      assert.equal(dp.drops(1, L.DropReason.POLICY_DENIED, ingress), before + 1n);
    } finally {
      dp.removeRule(1, deny);
    }
  } finally {
    dp.removeRule(1, port81);
  }
  assert.equal(dp.run("to_endpoint", denied), TC_ACT_SHOT, "rule gone again");
});

test("the peer's identity changing (an ipcache write) re-evaluates the established flow", () => {
  assert.equal(dp.run("to_endpoint", toApp1(APP2, 42000, 80, SYN)), TC_ACT_OK);
  assert.equal(dp.run("to_endpoint", toApp1(APP2, 42000, 80)), TC_ACT_OK);
  dp.addIpcache(`${APP2}/32`, 40000); // app2's address now has app3's identity, which has no allow
  try {
    assert.equal(dp.run("to_endpoint", toApp1(APP2, 42000, 80)), TC_ACT_SHOT, "judged with the new identity");
  } finally {
    dp.addIpcache(`${APP2}/32`, 36895);
  }
  assert.equal(dp.run("to_endpoint", toApp1(APP2, 42000, 80)), TC_ACT_OK, "identity back: allowed again");
  // The endpoint's own entry changing (enforcement) is a revision bump too.
  dp.addEndpoint({ addresses: [APP1], epId: 1, identity: 1001, enforceIngress: true, enforceEgress: true, auditIngress: true });
  dp.addEndpoint({ addresses: [APP1], epId: 1, identity: 1001, enforceIngress: true, enforceEgress: true });
  assert.equal(dp.ct({ saddr: APP2, daddr: APP1, sport: 42000, dport: 80, protocol: TCP })!.verdict!.ingress.rev < dp.policyRev(), true, "cached under an older revision");
  assert.equal(dp.run("to_endpoint", toApp1(APP2, 42000, 80)), TC_ACT_OK);
});

test("cached packets count on the entry that decided them: exact port, port range (masked), identity-0 entry", () => {
  const seed = stats(SEED);
  const range = stats(RANGE);
  const dns = stats(DNS);
  for (let i = 0; i < 5; i++) assert.equal(dp.run("to_endpoint", toApp1(APP2, 43000, 80, i ? ACK : SYN)), TC_ACT_OK);
  for (let i = 0; i < 4; i++) assert.equal(dp.run("to_endpoint", toApp1(APP2, 43001, 8085, i ? ACK : SYN)), TC_ACT_OK);
  const dnsPkt = v4({ src: APP3, dst: APP1, proto: UDP }, udp(5353, 53));
  for (let i = 0; i < 3; i++) assert.equal(dp.run("to_endpoint", dnsPkt), TC_ACT_OK);
  assert.deepEqual(dp.ct({ saddr: APP2, daddr: APP1, sport: 43001, dport: 8085, protocol: TCP })!.verdict!.ingress.prefixlen, L.POLICY_PREFIX_PROTO + 13);
  assert.deepEqual(dp.ct({ saddr: APP3, daddr: APP1, sport: 5353, dport: 53, protocol: UDP })!.verdict!.ingress.identity, 0, "the L4-only entry decided");
  assert.equal(stats(SEED), seed + 5n, "1 full lookup + 4 cached");
  assert.equal(stats(RANGE), range + 4n, "counted on the /13 entry, not the packet's port");
  assert.equal(stats(DNS), dns + 3n, "counted on the identity-0 entry");
  assert.equal(dp.policyStats(1, { ...DNS, identity: 40000 }), undefined, "not on a made-up entry of the peer's identity");
  assert.equal(dp.policyStats(1, { ...RANGE, port: 8085, portPrefixLen: 16 }), undefined);
  const bytes = dp.policyStats(1, SEED)!.bytes;
  assert.equal(dp.run("to_endpoint", toApp1(APP2, 43000, 80)), TC_ACT_OK);
  assert.equal(dp.policyStats(1, SEED)!.bytes, bytes + 54n, "bytes too");
});

test("egress is cached at its own point; a reply still passes through conntrack, not the cache", () => {
  const out = v4({ src: APP1, dst: APP2, proto: TCP }, tcp(44000, 443, SYN));
  assert.equal(dp.run("from_endpoint", out), TC_ACT_OK);
  const ct = dp.ct({ saddr: APP1, daddr: APP2, sport: 44000, dport: 443, protocol: TCP })!;
  assert.deepEqual(ct.verdict!.egress, { rev: dp.policyRev(), identity: 36895, prefixlen: L.POLICY_PREFIX_FULL });
  assert.equal(ct.verdict!.ingress.rev, 0);
  assert.equal(dp.run("to_endpoint", v4({ src: APP2, dst: APP1, proto: TCP }, tcp(443, 44000, 0x12))), TC_ACT_OK, "reply");
  dp.removeRule(1, OUT);
  try {
    const drops = noPolicyDrops(egress);
    assert.equal(dp.run("from_endpoint", v4({ src: APP1, dst: APP2, proto: TCP }, tcp(44000, 443, ACK))), TC_ACT_SHOT);
    assert.equal(noPolicyDrops(egress), drops + 1n);
  } finally {
    dp.addRules(1, [OUT]);
  }
});

test("revision 0 (policy_rev never seeded) caches nothing: every forward packet is judged in full", () => {
  const rev = dp.policyRev();
  dp.setPolicyRev(0);
  try {
    assert.equal(dp.run("to_endpoint", toApp1(APP2, 45000, 80, SYN)), TC_ACT_OK);
    assert.equal(dp.ct({ saddr: APP2, daddr: APP1, sport: 45000, dport: 80, protocol: TCP })!.verdict!.ingress.rev, 0);
    dp.removeRule(1, SEED, { bump: false });
    try {
      assert.equal(dp.run("to_endpoint", toApp1(APP2, 45000, 80)), TC_ACT_SHOT, "no cache to answer");
    } finally {
      dp.addRules(1, [SEED], { bump: false });
    }
  } finally {
    dp.setPolicyRev(rev);
  }
});
