import { test } from "node:test";
import assert from "node:assert/strict";
import {
  filterAddBpf, filterDelete, filterList, filterReplaceBpf, linkCreate, NetlinkError, openRoute, qdiscDeleteClsact,
  qdiscEnsureClsact, qdiscList, QdiscConflictError, type NetlinkSocket,
} from "../../reconciler/netlink/index.js";
import { loadTrivialClassifier, makeNetns, run, tcJson } from "./helpers/netlink.js";

interface TcFilterJson {
  kind: string; pref: number; options?: { handle?: string; bpf_name?: string; "direct-action"?: boolean; prog?: { id: number; tag: string } };
}

function setup(t: { after: (fn: () => void) => void }, ns: string): NetlinkSocket {
  const s = openRoute(ns);
  t.after(() => s.close());
  linkCreate(s, { kind: "veth", name: "tc0", peer: { name: "tc1" } });
  return s;
}

test("clsact + cls_bpf direct-action filter: add, list (matches tc), replace, delete ours only", (t) => {
  const ns = makeNetns(t, "tc");
  const s = setup(t, ns);
  assert.deepEqual(filterList(s, "tc0", "ingress"), [], "no clsact yet: no filters");
  assert.equal(qdiscEnsureClsact(s, "tc0"), true);
  assert.equal(qdiscEnsureClsact(s, "tc0"), false, "idempotent");
  const q = tcJson<Array<{ kind: string; handle: string }>>(ns, ["qdisc", "show", "dev", "tc0"]);
  assert.ok(q.some((x) => x.kind === "clsact" && x.handle === "ffff:"), JSON.stringify(q));
  assert.ok(qdiscList(s, "tc0").some((x) => x.kind === "clsact" && x.handle === 0xffff0000));

  const fd1 = loadTrivialClassifier(t, "nl_first", 0);
  const fd2 = loadTrivialClassifier(t, "nl_second", 2);
  filterAddBpf(s, { dev: "tc0", direction: "ingress", fd: fd1, name: "reconcile:tc0:in", prio: 10, handle: 1 });
  // A foreign filter, installed by someone else with tc, at another prio.
  run("tc", ["-n", ns, "filter", "add", "dev", "tc0", "ingress", "prio", "5", "protocol", "all", "u32", "match", "u32", "0", "0"]);
  assert.throws(() => filterAddBpf(s, { dev: "tc0", direction: "ingress", fd: fd1, name: "dup", prio: 10, handle: 1 }),
    (e: unknown) => e instanceof NetlinkError && e.code === "EEXIST");

  let ours = filterList(s, "tc0", "ingress");
  assert.ok(ours.some((f) => f.kind === "u32" && f.prio === 5), "foreign filters are listed");
  const bpf = ours.filter((f) => f.kind === "bpf");
  assert.equal(bpf.length, 1);
  assert.deepEqual([bpf[0]!.prio, bpf[0]!.handle, bpf[0]!.protocol, bpf[0]!.bpf?.name, bpf[0]!.bpf?.directAction], [10, 1, 3, "reconcile:tc0:in", true]);
  const tcView = tcJson<TcFilterJson[]>(ns, ["filter", "show", "dev", "tc0", "ingress"]).filter((f) => f.kind === "bpf" && f.options);
  assert.equal(tcView.length, 1);
  assert.equal(tcView[0]!.options!.prog!.id, bpf[0]!.bpf!.id, "same program id as tc reports");
  assert.equal(tcView[0]!.options!.prog!.tag, bpf[0]!.bpf!.tag);
  assert.equal(tcView[0]!.options!["direct-action"], true);
  assert.equal(tcView[0]!.options!.bpf_name, "reconcile:tc0:in");

  filterReplaceBpf(s, { dev: "tc0", direction: "ingress", fd: fd2, name: "reconcile:tc0:in2", prio: 10, handle: 1 });
  ours = filterList(s, "tc0", "ingress").filter((f) => f.kind === "bpf");
  assert.equal(ours.length, 1, "replaced in place");
  assert.equal(ours[0]!.bpf?.name, "reconcile:tc0:in2");
  assert.notEqual(ours[0]!.bpf?.id, bpf[0]!.bpf?.id, "now runs the second program");
  assert.deepEqual(filterList(s, "tc0", "egress"), []);

  assert.equal(filterDelete(s, { dev: "tc0", direction: "ingress", prio: 10, handle: 1 }), true);
  assert.equal(filterDelete(s, { dev: "tc0", direction: "ingress", prio: 10, handle: 1 }), false);
  const left = tcJson<TcFilterJson[]>(ns, ["filter", "show", "dev", "tc0", "ingress"]);
  assert.ok(left.some((f) => f.kind === "u32" && f.pref === 5), "the foreign filter survives");
  assert.ok(!left.some((f) => f.kind === "bpf"));
  assert.throws(() => filterDelete(s, { dev: "tc0", direction: "ingress", prio: 5, handle: 0, kind: "u32" }), /handle must be non-zero/);
});

test("egress filter and clsact removal", (t) => {
  const ns = makeNetns(t, "tc");
  const s = setup(t, ns);
  qdiscEnsureClsact(s, "tc1");
  const fd = loadTrivialClassifier(t, "nl_egress", 0);
  filterAddBpf(s, { dev: "tc1", direction: "egress", fd, name: "eg", prio: 1, handle: 7, directAction: false });
  const [f] = filterList(s, "tc1", "egress");
  assert.deepEqual([f?.handle, f?.bpf?.directAction, f?.bpf?.name], [7, false, "eg"]);
  assert.equal(tcJson<TcFilterJson[]>(ns, ["filter", "show", "dev", "tc1", "egress"]).filter((x) => x.options).length, 1);
  assert.equal(qdiscDeleteClsact(s, "tc1"), true);
  assert.equal(qdiscDeleteClsact(s, "tc1"), false);
  assert.deepEqual(filterList(s, "tc1", "egress"), []);
});

test("a plain ingress qdisc in clsact's slot is reported, not replaced", (t) => {
  const ns = makeNetns(t, "tc");
  const s = setup(t, ns);
  run("tc", ["-n", ns, "qdisc", "add", "dev", "tc0", "ingress"]);
  assert.throws(() => qdiscEnsureClsact(s, "tc0"), (e: unknown) => e instanceof QdiscConflictError && /got ingress/.test(e.message));
  assert.ok(tcJson<Array<{ kind: string }>>(ns, ["qdisc", "show", "dev", "tc0"]).some((x) => x.kind === "ingress"));
});
