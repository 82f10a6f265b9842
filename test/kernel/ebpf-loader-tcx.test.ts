// SPDX-License-Identifier: Apache-2.0
// tcx links against the real kernel, in private namespaces: attach, traffic counted, update in place,
// pin survives closing fds, query, detach.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { BpfMap, TcxLink, loadCollection, parseElf, queryTcx, unpin } from "../../reconciler/ebpf-loader/index.js";
import { ifindexIn, makeNetns, makePinDir, sh, suffix, withNetns } from "./helpers/ebpf-loader.js";

const counterObj = new URL("../../bpf/build/counter.o", import.meta.url);
const zeroKey = Buffer.alloc(4);
const count = (m: BpfMap): bigint => m.lookup(zeroKey)!.readBigUInt64LE(0);

test("tcx: attach to a veth in our netns, count UDP packets, update in place, pin, query, detach", (t) => {
  const id = suffix();
  const nsA = `ldr-a-${id}`;
  const nsB = `ldr-b-${id}`;
  const pins = makePinDir();
  t.after(pins.cleanup);
  t.after(makeNetns(nsA));
  t.after(makeNetns(nsB));
  const va = `lva${id}`;
  const vb = `lvb${id}`;
  sh("ip", ["-n", nsA, "link", "add", va, "type", "veth", "peer", "name", vb, "netns", nsB]);
  sh("ip", ["-n", nsA, "addr", "add", "10.201.0.1/24", "dev", va]);
  sh("ip", ["-n", nsB, "addr", "add", "10.201.0.2/24", "dev", vb]);
  sh("ip", ["-n", nsA, "link", "set", va, "up"]);
  sh("ip", ["-n", nsB, "link", "set", vb, "up"]);
  const ifindex = ifindexIn(nsA, va);
  const ping = (n: number): void => {
    // No ping on this machine: send n UDP datagrams from netns A to B with node itself.
    const js =
      `const s=require("node:dgram").createSocket("udp4");let i=0;` +
      `const f=()=>{if(i++>=${n})return s.close();s.send("x",9,"10.201.0.2",()=>setTimeout(f,20));};f();`;
    sh("ip", ["netns", "exec", nsA, process.execPath, "-e", js]);
  };

  const spec = parseElf(readFileSync(counterObj));
  const c1 = loadCollection(spec);
  t.after(() => c1.close());
  const c2 = loadCollection(spec);
  t.after(() => c2.close());
  const p1 = c1.programs.get("count_packets")!;
  const p2 = c2.programs.get("count_packets")!;
  const m1 = c1.maps.get("counter")!;
  const m2 = c2.maps.get("counter")!;

  const link = withNetns(nsA, () => TcxLink.attach(p1, ifindex, "egress"));
  t.after(() => link.close());
  const info = link.info();
  assert.deepEqual({ ...info, id: 0 }, { id: 0, progId: p1.info().id, ifindex, hook: "egress" });

  ping(3);
  assert.ok(count(m1) >= 3n, `counter after 3 pings: ${count(m1)}`);

  const q = withNetns(nsA, () => queryTcx(ifindex, "egress"));
  assert.deepEqual(q.progIds, [p1.info().id]);
  assert.deepEqual(q.linkIds, [info.id]);
  assert.ok(q.revision > 0n);
  assert.deepEqual(withNetns(nsA, () => queryTcx(ifindex, "ingress")).progIds, []);

  // update in place: new program counts, old stops, same link id
  link.update(p2);
  const old = count(m1);
  ping(2);
  assert.ok(count(m2) >= 2n);
  assert.equal(count(m1), old);
  assert.equal(link.info().id, info.id);
  assert.equal(link.info().progId, p2.info().id);

  // pin the link and the map, close every fd: traffic is still counted
  link.pin(`${pins.dir}/link`);
  m2.pin(`${pins.dir}/counter`);
  link.close();
  c1.close();
  c2.close();
  const m2b = BpfMap.openPinned(`${pins.dir}/counter`);
  t.after(() => m2b.close());
  const before = count(m2b);
  ping(2);
  assert.ok(count(m2b) >= before + 2n, "pinned link keeps the program attached");

  // reopen by pin and by id, then detach
  const again = TcxLink.openPinned(`${pins.dir}/link`);
  t.after(() => again.close());
  assert.equal(again.info().id, info.id);
  const byId = TcxLink.fromId(info.id);
  byId.close();
  again.detach();
  unpin(`${pins.dir}/link`);
  assert.deepEqual(withNetns(nsA, () => queryTcx(ifindex, "egress")).progIds, []);
  const afterDetach = count(m2b);
  ping(1);
  assert.equal(count(m2b), afterDetach, "detached: no more counting");
});
